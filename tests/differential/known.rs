//! The known differences between AWS's local runner and this crate's emulator: each is a
//! predicate over a request and its context (this crate's state before the request and its
//! answer) with the reason, and the exact shape the difference must take. A request both
//! servers answer alike while an entry applies fails the test too: one of them changed, and
//! the entry (and `docs/PROTOCOL.md`) must follow.

use checkpoint_batcher::emulator::OperationRecord;
use serde_json::Value;

use crate::drive::{Chain, EXEC, ErrorShape, Outcome, Side};
use crate::sequence::{MarkerRef, Request, expanded_len};

/// Where the difference stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Kept on purpose: the runner is the one that differs from the service. Quotes the text of
    /// `docs/PROTOCOL.md` (its row in "AWS's local runner, compared", or the rule) that says
    /// why; a test checks the quote is there.
    Deliberate(&'static str),
    /// Found by this test and not yet settled: neither `docs/PROTOCOL.md` nor a change of the
    /// emulator covers it. Says what needs deciding.
    #[allow(
        dead_code,
        reason = "every difference found so far is decided; the next one the test finds starts here"
    )]
    Open(&'static str),
}

/// What a predicate sees besides the request.
pub struct Ctx<'a> {
    /// The request's position in its sequence.
    pub index: usize,
    /// The whole sequence.
    pub requests: &'a [Request],
    /// This crate's side after the request: tokens sent and answers, this request's included.
    pub ours: &'a Side,
    /// This crate's operations before the request (its own Ids).
    pub ops_before: &'a [OperationRecord],
}

impl Ctx<'_> {
    fn op(&self, id: &str) -> Option<&OperationRecord> {
        let id = if id == "$EXEC" {
            self.ours.exec_id.as_str()
        } else {
            id
        };
        self.ops_before.iter().find(|op| op.id == id)
    }

    /// The index of the last earlier checkpoint this crate applied (answered with a new token
    /// or, completing the execution, with none), if any.
    fn last_applied(&self) -> Option<usize> {
        (0..self.index)
            .rev()
            .find(|&k| applied(&self.ours.answers[k].outcome))
    }

    /// Earlier checkpoints this crate applied with this request's client token and inbound
    /// token.
    fn same_call(&self, req: &Request) -> Option<usize> {
        let ct = req.client_token()?;
        let token = self.ours.sent.get(self.index)?.as_ref()?;
        (0..self.index).find(|&k| {
            self.requests[k].client_token() == Some(ct)
                && self.ours.sent[k].as_ref() == Some(token)
                && applied(&self.ours.answers[k].outcome)
        })
    }
}

impl Ctx<'_> {
    /// The update this crate refused the request for, when it names one: its message reads
    /// `update <index> (id "<Id>"): <rule>: <detail>` (or `update <index>: ...` without an Id),
    /// and `rule` is the rule's short name as the emulator writes it. `None` when this crate's
    /// refusal names another rule or no update.
    fn refused_update(&self, rule: &str) -> Option<usize> {
        let (index, after) = self.refusal()?;
        after
            .strip_prefix(rule)
            .is_some_and(|tail| tail.starts_with(": "))
            .then_some(index)
    }

    /// This crate's refusal message of this request, empty when it did not refuse.
    fn message(&self) -> &str {
        self.ours
            .answers
            .get(self.index)
            .map_or("", |a| a.message.as_str())
    }

    /// The index of the update this crate refused for, and its message from the rule on.
    fn refusal(&self) -> Option<(usize, &str)> {
        let message = self.message();
        let rest = message.strip_prefix("update ")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let index = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let after = match after.strip_prefix(" (id ") {
            // The Id is quoted as Rust's Debug writes it; the rule follows its `): `.
            Some(quoted) => &quoted[quoted.find("): ")? + 3..],
            None => after.strip_prefix(": ")?,
        };
        Some((index, after))
    }

    /// Whether this crate refused the request for update `i` of `req`, under `rule`, and `i`
    /// satisfies `explains`: the entry then explains the very update this crate refused,
    /// not merely some update of the request.
    fn refused_for(
        &self,
        req: &Request,
        rule: &str,
        explains: impl Fn(&[Value], usize) -> bool,
    ) -> bool {
        let ups = req.update_list();
        self.refused_update(rule)
            .is_some_and(|i| i < ups.len() && explains(ups, i))
    }
}

/// The emulator's short names of the rules the entries explain (`src/emulator/rules.rs`).
mod rule {
    pub const TRANSITION: &str = "illegal status transition";
    pub const ID_FORMAT: &str = "id format";
    pub const NAME_TOO_LONG: &str = "name too long";
    pub const SUBTYPE_TOO_LONG: &str = "subtype too long";
    pub const PAYLOAD_TOO_LARGE: &str = "payload too large";
    pub const OUTCOME: &str = "a SUCCEED carries no Error and a FAIL no Payload";
    pub const INCONSISTENT: &str = "differs from the operation";
    pub const MISSING_OPTIONS: &str = "required options missing";
    /// The one refusal of the whole request that names no update.
    pub const CLIENT_TOKEN: &str = "client token format: ";
}

/// The checkpoint whose paged answer's `NextMarker` this state read carries, if it is one.
fn paged_checkpoint_read(req: &Request, ctx: &Ctx<'_>) -> Option<usize> {
    match req {
        Request::State {
            marker: MarkerRef::NextOf(k),
            ..
        } if ctx.requests.get(*k).is_some_and(Request::is_checkpoint)
            && ctx.ours.answers.get(*k).is_some_and(|a| a.outcome.more()) =>
        {
            Some(*k)
        }
        _ => None,
    }
}

fn applied(outcome: &Outcome) -> bool {
    matches!(outcome.chain(), Some(Chain::New) | Some(Chain::Absent))
}

/// One known difference.
pub struct Known {
    pub name: &'static str,
    pub standing: Standing,
    pub reason: &'static str,
    /// Whether the difference applies to this request, given this crate's answer.
    pub applies: fn(&Request, &Ctx<'_>, &Outcome) -> bool,
    /// Whether the runner's and this crate's answers show it exactly as documented.
    pub shows: fn(&Outcome, &Outcome, &Ctx<'_>) -> bool,
    /// Whether one server applied what the other did not: the sequence then stops, its later
    /// requests would compare two different states.
    pub diverges: bool,
}

fn str_of<'v>(update: &'v Value, key: &str) -> Option<&'v str> {
    update.get(key).and_then(Value::as_str)
}

fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_valid_client_token(ct: &str) -> bool {
    (1..=64).contains(&ct.len()) && ct.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// The JSON length of an `Error` object, as the runner measures it (Python's `json.dumps`
/// separators are `", "` and `": "`, a little longer than compact JSON).
fn error_len(error: &Value) -> usize {
    error.as_object().map_or(0, |map| {
        map.iter()
            .map(|(k, v)| {
                k.len()
                    + 6
                    + match v {
                        Value::String(s) => expanded_len(s),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| i.as_str().map_or(4, expanded_len) + 4)
                            .sum(),
                        other => other.to_string().len(),
                    }
            })
            .sum()
    })
}

/// Whether update `i` of `updates` is preceded by a START of the same Id.
fn started_earlier(updates: &[Value], i: usize) -> bool {
    let id = str_of(&updates[i], "Id");
    updates[..i]
        .iter()
        .any(|u| str_of(u, "Id") == id && str_of(u, "Action") == Some("START"))
}

/// The rule `u`, the end of an operation started by an update in `before`, breaks among those
/// the runner checks only against stored operations, as this crate names it: a ParentId, Name
/// or SubType other than the START's; a STEP SUCCEED with an Error or FAIL with a Payload (a
/// CONTEXT's the runner refuses in the same request too); a RETRY without
/// `StepOptions.NextAttemptDelaySeconds`. In this crate's order of checks, so that the rule
/// named is the one it refuses for.
fn breaks_an_end_rule(u: &Value, before: &[Value]) -> Option<&'static str> {
    let start = before
        .iter()
        .rev()
        .find(|b| str_of(b, "Id") == str_of(u, "Id") && str_of(b, "Action") == Some("START"))?;
    let differs = |key: &str| str_of(u, key).is_some_and(|v| str_of(start, key) != Some(v));
    if differs("ParentId") || differs("Name") || differs("SubType") {
        return Some(rule::INCONSISTENT);
    }
    let step = str_of(u, "Type") == Some("STEP");
    match str_of(u, "Action") {
        Some("SUCCEED") if step && u.get("Error").is_some() => Some(rule::OUTCOME),
        Some("FAIL") if step && u.get("Payload").is_some() => Some(rule::OUTCOME),
        Some("RETRY") if u["StepOptions"]["NextAttemptDelaySeconds"].is_null() => {
            Some(rule::MISSING_OPTIONS)
        }
        _ => None,
    }
}

/// Whether `u` is a SUCCEED with a non-empty Error or a FAIL with a Payload: the runner
/// refuses those of a CONTEXT whether or not the CONTEXT exists.
fn misplaced_outcome(u: &Value) -> bool {
    match str_of(u, "Action") {
        Some("SUCCEED") => u.get("Error").is_some_and(|e| !is_empty_object(e)),
        Some("FAIL") => u.get("Payload").is_some(),
        _ => false,
    }
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(serde_json::Map::is_empty)
}

/// The account the differential test's runner starts its executions in.
const RUNNER_ACCOUNT: &str = "123456789012";

/// Whether `u` is a CHAINED_INVOKE START the runner refuses for its options: a `FunctionName`
/// that is no function name or ARN (or an ARN without its region or account), one in another
/// account, or a `TenantId` outside 1-256 characters of `[a-zA-Z0-9._:/=+\-@ ]`. Written for
/// the forms the generator makes, not a full copy of the runner's grammar (the generator names
/// no region in a well-formed target: the runner checks it against a region of its own).
fn invoke_options_refused_by_runner(u: &Value) -> bool {
    if str_of(u, "Type") != Some("CHAINED_INVOKE") || str_of(u, "Action") != Some("START") {
        return false;
    }
    let options = &u["ChainedInvokeOptions"];
    let bad_name = options["FunctionName"].as_str().is_some_and(|name| {
        let parts: Vec<&str> = name.split(':').collect();
        let chars_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:$".contains(&b));
        let arn = name.starts_with("arn:");
        !chars_ok
            || (arn && parts.len() < 7)
            || parts.iter().any(|p| {
                p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) && *p != RUNNER_ACCOUNT
            })
    });
    let bad_tenant = options.get("TenantId").is_some_and(|t| {
        t.as_str().is_none_or(|t| {
            !(1..=256).contains(&t.len())
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:/=+-@ ".contains(&b))
        })
    });
    bad_name || bad_tenant
}

/// Whether the Id of update `i` comes again later in the request (the runner refuses the
/// duplicate before it looks at transitions).
fn repeated_later(updates: &[Value], i: usize) -> bool {
    let id = str_of(&updates[i], "Id");
    updates[i + 1..].iter().any(|u| str_of(u, "Id") == id)
}

fn runner_applied(runner: &Outcome) -> bool {
    runner.chain() == Some(Chain::New)
}

fn runner_refused(runner: &Outcome) -> bool {
    runner.refused_ipve(false)
}

fn ours_refused(ours: &Outcome) -> bool {
    ours.refused_ipve(false)
}

/// The runner's error responses name the exception in the body's `Type` and send no
/// `X-Amzn-ErrorType` header; this crate's send Lambda's shape, `Type` `User` or `Server` and the
/// exception in the header. Checked on every refusal, before the types are compared.
pub const ERROR_SHAPE: &str = "error responses";

/// Whether a refusal's wire shape is the documented one for its server (`runner`: body only).
pub fn error_shape_as_documented(shape: &ErrorShape, runner: bool) -> bool {
    if runner {
        shape.header.is_none()
            && shape
                .body_type
                .as_deref()
                .is_some_and(|t| t.ends_with("Exception"))
    } else {
        shape
            .header
            .as_deref()
            .is_some_and(|t| t.ends_with("Exception"))
            && matches!(shape.body_type.as_deref(), Some("User" | "Server"))
    }
}

/// Every known difference.
pub const KNOWN: &[Known] = &[
    Known {
        name: "close of a never-started STEP or CONTEXT",
        standing: Standing::Deliberate("`SUCCEED`, `FAIL` or `RETRY` of a STEP never started"),
        reason: "the runner skips its transition checks for an operation that does not exist yet; \
                 the service refuses a SUCCEED, FAIL or RETRY of an operation never started (rule 5)",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && ctx.refused_for(req, rule::TRANSITION, |ups, i| {
                    let u = &ups[i];
                    let ty = str_of(u, "Type");
                    matches!(ty, Some("STEP" | "CONTEXT"))
                        && matches!(str_of(u, "Action"), Some("SUCCEED" | "FAIL" | "RETRY"))
                        && str_of(u, "Id").is_some_and(|id| ctx.op(id).is_none())
                        && !started_earlier(ups, i)
                        && !repeated_later(ups, i)
                        // The runner refuses a CONTEXT's misplaced Error or Payload even when
                        // the CONTEXT does not exist.
                        && !(ty == Some("CONTEXT") && misplaced_outcome(u))
                })
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "Id outside the API model's pattern",
        standing: Standing::Deliberate(
            "Id with a space, an empty or 65-character Id; long Name or SubType",
        ),
        reason: "the runner checks no Id format; the API model's OperationId is 1-64 characters of [a-zA-Z0-9_-]",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && ctx.refused_for(req, rule::ID_FORMAT, |ups, i| {
                    str_of(&ups[i], "Id").is_some_and(|id| id != "$EXEC" && !is_valid_id(id))
                })
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "Name or SubType over the model's length",
        standing: Standing::Deliberate(
            "Id with a space, an empty or 65-character Id; long Name or SubType",
        ),
        reason: "the runner checks no Name or SubType length; the API model allows 256 and 32 characters",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && (ctx.refused_for(req, rule::NAME_TOO_LONG, |ups, i| {
                    str_of(&ups[i], "Name").is_some_and(|n| n.chars().count() > 256)
                }) || ctx.refused_for(req, rule::SUBTYPE_TOO_LONG, |ups, i| {
                    str_of(&ups[i], "SubType").is_some_and(|s| s.chars().count() > 32)
                }))
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "ClientToken outside the model's pattern",
        standing: Standing::Deliberate("ClientToken is 1 to 64 characters"),
        reason: "the runner checks no ClientToken format; the API model's ClientToken is 1-64 characters of [\\x21-\\x7E]",
        applies: |req, ctx, ours| {
            // Checked before any update: the refusal names the rule and no update.
            ours_refused(ours)
                && ctx.message().starts_with(rule::CLIENT_TOKEN)
                && req
                    .client_token()
                    .is_some_and(|ct| !is_valid_client_token(ct))
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "payload over the service's limit",
        standing: Standing::Deliberate("payload over 1 MiB (6 MiB for an EXECUTION)"),
        reason: "the runner caps no payload but a chained invoke's; the service takes 1 MiB, 6 MiB for an EXECUTION result",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && ctx.refused_for(req, rule::PAYLOAD_TOO_LARGE, |ups, i| {
                    let u = &ups[i];
                    let limit = if str_of(u, "Type") == Some("EXECUTION") {
                        6 << 20
                    } else {
                        1 << 20
                    };
                    str_of(u, "Payload").is_some_and(|p| expanded_len(p) > limit)
                })
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "error between 32 KiB and 1 MiB",
        standing: Standing::Deliberate("errors over 32 KiB"),
        reason: "the runner refuses an Error over 32 KiB; the service takes up to 1 MiB",
        applies: |req, _, ours| {
            ours.accepted()
                && req
                    .update_list()
                    .iter()
                    .any(|u| u.get("Error").is_some_and(|e| error_len(e) > 32 * 1024))
        },
        shows: |runner, _, _| runner_refused(runner),
        diverges: true,
    },
    Known {
        name: "MaxItems outside 0-1000",
        standing: Standing::Deliberate("`MaxItems` 1001 or -1"),
        reason: "the runner clamps MaxItems into 1-1000; the API model allows 0-1000",
        applies: |req, _, ours| {
            ours_refused(ours)
                && req
                    .max_items()
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| !(0..=1000).contains(&n))
        },
        shows: |runner, _, _| matches!(runner, Outcome::Page { .. }),
        diverges: false,
    },
    Known {
        name: "MaxItems 0",
        standing: Standing::Deliberate("`MaxItems` 0"),
        reason: "the runner clamps 0 up to 1 operation a page; the service reads 0 as the default, 100",
        applies: |req, _, ours| req.max_items() == Some("0") && ours.ops().len() > 1,
        shows: |runner, ours, _| {
            let ours_ops = ours.ops();
            matches!(runner, Outcome::Page { .. })
                && ours_ops.len() > 1
                && runner.ops() == &ours_ops[..1]
                && runner.more()
        },
        diverges: false,
    },
    Known {
        name: "ClientToken repeated with different updates",
        standing: Standing::Deliberate("a ClientToken repeated with different updates"),
        reason: "the runner replays the first answer and drops the new updates (or, past its one remembered call, \
                 calls the token stale); a client token names one request, so this crate refuses it",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && ctx
                    .same_call(req)
                    .is_some_and(|k| ctx.requests[k].update_list() != req.update_list())
        },
        shows: |runner, _, ctx| {
            let k = ctx.same_call(&ctx.requests[ctx.index]);
            if k == ctx.last_applied() {
                // The answer to that very call, replayed.
                runner.chain() == Some(Chain::Seen(k))
            } else {
                runner.refused_ipve(true)
            }
        },
        diverges: false,
    },
    Known {
        name: "replay of an older call",
        standing: Standing::Deliberate("an older call's ClientToken replayed after later calls"),
        reason: "the runner remembers only the last checkpoint's ClientToken; the service keeps them 15 minutes",
        applies: |req, ctx, ours| {
            ours.accepted()
                && ctx.same_call(req).is_some_and(|k| {
                    ctx.requests[k].update_list() == req.update_list()
                        && Some(k) != ctx.last_applied()
                })
        },
        shows: |runner, _, _| runner.refused_ipve(true),
        diverges: false,
    },
    Known {
        name: "answer to a checkpoint that completes the execution",
        standing: Standing::Deliberate("the answer to a checkpoint that completes the execution"),
        reason: "the runner answers a new token (refused on the next call) and leaves the EXECUTION operation out; \
                 the service answers no token after a completion",
        applies: |req, _, ours| {
            ours.chain() == Some(Chain::Absent)
                && req.update_list().last().is_some_and(|u| {
                    str_of(u, "Type") == Some("EXECUTION")
                        && matches!(str_of(u, "Action"), Some("SUCCEED" | "FAIL"))
                })
        },
        shows: |runner, ours, _| {
            let without_execution: Vec<_> = ours
                .ops()
                .iter()
                .filter(|op| op.id != EXEC)
                .cloned()
                .collect();
            matches!(runner.chain(), Some(Chain::New | Chain::Seen(_)))
                && runner.ops() == without_execution.as_slice()
                && ours.ops().iter().any(|op| op.id == EXEC)
        },
        diverges: false,
    },
    Known {
        name: "checkpoint answer paged",
        standing: Standing::Deliberate("a checkpoint answer with 1,200 new operations"),
        reason: "the runner never pages a checkpoint's answer; the service's answer may carry a NextMarker",
        applies: |req, _, ours| req.is_checkpoint() && ours.more(),
        shows: |runner, ours, _| {
            // A new answer, or the same earlier answer replayed by both (its client token
            // sent again).
            matches!(runner.chain(), Some(Chain::New | Chain::Seen(_)))
                && runner.chain() == ours.chain()
                && !runner.more()
                && runner.ops().len() > ours.ops().len()
                && ours.ops().iter().all(|op| runner.ops().contains(op))
        },
        diverges: false,
    },
    Known {
        name: "a checkpoint answer's marker read back",
        standing: Standing::Deliberate("a checkpoint answer with 1,200 new operations"),
        reason: "the runner answered no marker, so its read starts at the first page of the whole state; this \
                 crate's marker reads on through the operations that checkpoint changed",
        applies: |req, ctx, ours| {
            matches!(ours, Outcome::Page { .. }) && paged_checkpoint_read(req, ctx).is_some()
        },
        shows: |runner, ours, ctx| {
            let Some(k) = paged_checkpoint_read(&ctx.requests[ctx.index], ctx) else {
                return false;
            };
            // Exactly the rest of checkpoint k's operations: sent in k, not in its first page.
            let first_page = ctx.ours.answers[k].outcome.ops();
            let sent: Vec<&str> = ctx.requests[k]
                .update_list()
                .iter()
                .filter_map(|u| str_of(u, "Id"))
                .collect();
            matches!(runner, Outcome::Page { .. })
                && !ours.ops().is_empty()
                && ours.ops().iter().all(|op| {
                    sent.contains(&op.id.as_str()) && !first_page.iter().any(|f| f.id == op.id)
                })
        },
        diverges: false,
    },
    Known {
        name: "a rule broken by an update whose operation starts earlier in the request",
        standing: Standing::Deliberate(
            "a rule broken by an update whose operation starts earlier in the same request",
        ),
        reason: "the runner checks an update only against the operations already stored, so the end of an \
                 operation started in the same request escapes its rules; this crate judges it as if the two \
                 came in two requests",
        applies: |req, ctx, ours| {
            let ups = req.update_list();
            ours_refused(ours)
                && ctx.refusal().is_some_and(|(i, after)| {
                    i < ups.len()
                        && started_earlier(ups, i)
                        && str_of(&ups[i], "Id").is_some_and(|id| ctx.op(id).is_none())
                        && breaks_an_end_rule(&ups[i], &ups[..i])
                            .is_some_and(|rule| after.starts_with(&format!("{rule}: ")))
                })
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "SUCCEED carrying an empty Error",
        standing: Standing::Deliberate("a `SUCCEED` carrying an empty `Error` (`{}`)"),
        reason: "the runner reads an empty Error object as none; the API model's ErrorObject has no required \
                 member, so {} is an error object, and a SUCCEED carries none",
        applies: |req, ctx, ours| {
            ours_refused(ours)
                && ctx.refused_for(req, rule::OUTCOME, |ups, i| {
                    str_of(&ups[i], "Action") == Some("SUCCEED")
                        && ups[i].get("Error").is_some_and(is_empty_object)
                })
        },
        shows: |runner, _, _| runner_applied(runner),
        diverges: true,
    },
    Known {
        name: "CHAINED_INVOKE START with a malformed target or TenantId",
        standing: Standing::Deliberate(
            "a CHAINED_INVOKE `FunctionName` that is not a function name or ARN, or names another account or region; a malformed `TenantId`",
        ),
        reason: "the runner checks the options' formats and that the target is in the execution's account; \
                 this crate checks only the presence the API model requires",
        applies: |req, _, ours| {
            ours.accepted()
                && req
                    .update_list()
                    .iter()
                    .any(invoke_options_refused_by_runner)
        },
        shows: |runner, _, _| runner_refused(runner),
        diverges: true,
    },
    Known {
        name: "CHAINED_INVOKE START of a well-formed target",
        standing: Standing::Deliberate("a CHAINED_INVOKE `START` naming a well-formed function"),
        reason: "the runner resolves the target within the request and, started without function configurations, \
                 fails the invoke at once; this crate runs no chained invocation and leaves it STARTED",
        applies: |req, _, ours| {
            ours.accepted()
                && req.update_list().iter().any(|u| {
                    str_of(u, "Type") == Some("CHAINED_INVOKE")
                        && str_of(u, "Action") == Some("START")
                        && !invoke_options_refused_by_runner(u)
                })
        },
        shows: |runner, ours, _| {
            let invoke_in = |outcome: &Outcome, status: &str| {
                outcome
                    .ops()
                    .iter()
                    .any(|op| op.op_type == "CHAINED_INVOKE" && op.status == status)
            };
            runner_applied(runner) && invoke_in(runner, "FAILED") && invoke_in(ours, "STARTED")
        },
        diverges: true,
    },
    Known {
        name: "STEP RETRY with a delay of 0",
        standing: Standing::Deliberate("a STEP `RETRY` with a delay of 0"),
        reason: "the runner's retry timer fires within the request and leaves the step READY; this crate plays \
                 no retry timer and leaves it PENDING",
        applies: |req, _, ours| {
            ours.accepted()
                && req.update_list().iter().any(|u| {
                    str_of(u, "Action") == Some("RETRY")
                        && u["StepOptions"]["NextAttemptDelaySeconds"].as_u64() == Some(0)
                })
        },
        shows: |runner, ours, _| {
            runner_applied(runner)
                && runner
                    .ops()
                    .iter()
                    .any(|op| op.op_type == "STEP" && op.status == "READY")
                && ours
                    .ops()
                    .iter()
                    .any(|op| op.op_type == "STEP" && op.status == "PENDING")
        },
        diverges: true,
    },
    Known {
        name: "STEP RETRY carrying an Error and a Payload",
        standing: Standing::Deliberate("a STEP `RETRY` carrying both an `Error` and a `Payload`"),
        reason: "the runner refuses a RETRY with both; this crate stores both, as it forwards what a handler sends",
        applies: |req, ctx, ours| {
            ours.accepted()
                && req.update_list().iter().any(|u| {
                    str_of(u, "Action") == Some("RETRY")
                        && u.get("Error").is_some()
                        && u.get("Payload").is_some()
                        && str_of(u, "Id").is_some_and(|id| ctx.op(id).is_some())
                })
        },
        shows: |runner, _, _| runner_refused(runner),
        diverges: true,
    },
    Known {
        name: "START of a STEP whose retry is pending",
        standing: Standing::Deliberate("a `START` of a STEP still `PENDING`"),
        reason: "the runner starts a STEP again only once it is READY (its retry timer fired); this crate also starts a PENDING one",
        applies: |req, ctx, ours| {
            ours.accepted()
                && req.update_list().iter().any(|u| {
                    str_of(u, "Type") == Some("STEP")
                        && str_of(u, "Action") == Some("START")
                        && str_of(u, "Id")
                            .and_then(|id| ctx.op(id))
                            .is_some_and(|op| op.status == "PENDING")
                })
        },
        shows: |runner, _, _| runner_refused(runner),
        diverges: true,
    },
    Known {
        name: "update without the operation's ParentId",
        standing: Standing::Deliberate(
            "an update without `ParentId` of an operation started in a CONTEXT",
        ),
        reason: "the runner rebuilds the operation from each update, so one without ParentId takes the operation out of its \
                 CONTEXT; an operation's parent is fixed when it starts, and an update that leaves it out names no new \
                 parent, so this crate keeps the one the operation started with",
        applies: |req, ctx, ours| {
            ours.accepted()
                && req.update_list().iter().any(|u| {
                    u.get("ParentId").is_none()
                        && str_of(u, "Id")
                            .and_then(|id| ctx.op(id))
                            .is_some_and(|op| op.parent_id.is_some())
                })
        },
        shows: |runner, ours, _| {
            runner_applied(runner)
                && runner.ops().iter().any(|op| {
                    op.parent.is_none()
                        && ours
                            .ops()
                            .iter()
                            .any(|o| o.id == op.id && o.parent.is_some())
                })
        },
        diverges: true,
    },
];

/// The predicates against answers made up here, without either server: an entry explains the
/// update this crate refused for, and no other update of the same request.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::drive::Answer;
    use crate::sequence::{TokenRef, Updates};

    fn checkpoint(updates: Vec<Value>) -> Request {
        Request::Checkpoint {
            token: TokenRef::Current,
            client_token: None,
            updates: Updates::List(updates),
            unknown_arn: false,
        }
    }

    fn refused() -> Outcome {
        Outcome::Refused {
            status: 400,
            error_type: "InvalidParameterValueException".to_owned(),
            stale: false,
        }
    }

    /// The names of the entries that apply to `req`, the first request of a sequence, when
    /// this crate refuses it with `message` (written as the emulator writes its refusals).
    fn applying(req: &Request, message: &str) -> Vec<&'static str> {
        let mut ours = Side::new(
            "127.0.0.1:9".parse().unwrap(),
            "arn".to_owned(),
            "t0".to_owned(),
            "exec".to_owned(),
            true,
        );
        ours.sent.push(Some("t0".to_owned()));
        ours.answers.push(Answer {
            outcome: refused(),
            raw: String::new(),
            message: message.to_owned(),
            error_shape: None,
        });
        let requests = vec![req.clone()];
        let ctx = Ctx {
            index: 0,
            requests: &requests,
            ours: &ours,
            ops_before: &[],
        };
        KNOWN
            .iter()
            .filter(|k| (k.applies)(req, &ctx, &refused()))
            .map(|k| k.name)
            .collect()
    }

    const OUTCOME_AT_0: &str = "update 0 (id \"s1\"): a SUCCEED carries no Error and a FAIL no Payload: SUCCEED carries an Error";

    #[test]
    fn a_never_started_close_does_not_excuse_an_earlier_update_s_refusal() {
        // Update 0 breaks a rule both servers share (a non-empty Error on a SUCCEED); update 1
        // closes a STEP never started. This crate refuses for update 0, so the never-started
        // entry must not explain the request.
        let req = checkpoint(vec![
            json!({"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Error": {"ErrorType": "E"}}),
            json!({"Id": "s9", "Type": "STEP", "Action": "SUCCEED"}),
        ]);
        assert_eq!(applying(&req, OUTCOME_AT_0), Vec::<&str>::new());
        // Refused for update 1 instead, the entry explains it.
        let at_1 = "update 1 (id \"s9\"): illegal status transition: SUCCEED of a STEP in status absent: the operation was never started";
        assert_eq!(
            applying(&req, at_1),
            vec!["close of a never-started STEP or CONTEXT"]
        );
    }

    #[test]
    fn an_id_length_or_payload_entry_explains_only_the_update_refused() {
        let long = json!({"Id": "s2", "Type": "STEP", "Action": "START", "Name": "n".repeat(257)});
        let bad_id = json!({"Id": "a b", "Type": "STEP", "Action": "START"});
        let big = json!({"Id": "s3", "Type": "STEP", "Action": "START", "Payload": "$x*1048577"});
        let first =
            json!({"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Error": {"ErrorType": "E"}});
        let cases = [
            (
                long,
                "name too long: Name must be at most 256 characters",
                "Name or SubType over the model's length",
            ),
            (
                bad_id,
                "id format: Id must be 1-64 characters of [a-zA-Z0-9_-]",
                "Id outside the API model's pattern",
            ),
            (
                big,
                "payload too large: Payload is 1048577 bytes, at most 1048576 allowed",
                "payload over the service's limit",
            ),
        ];
        for (second, rule_at_1, entry) in cases {
            let req = checkpoint(vec![first.clone(), second]);
            assert_eq!(
                applying(&req, OUTCOME_AT_0),
                Vec::<&str>::new(),
                "{}",
                req.describe()
            );
            // Refused for that update, the entry explains it.
            assert_eq!(
                applying(&req, &format!("update 1 (id \"x\"): {rule_at_1}")),
                vec![entry],
                "{}",
                req.describe()
            );
        }
    }

    #[test]
    fn an_empty_error_entry_needs_the_refusal_to_name_that_update_and_rule() {
        let req = checkpoint(vec![
            json!({"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Error": {}}),
        ]);
        assert_eq!(
            applying(&req, OUTCOME_AT_0),
            vec!["SUCCEED carrying an empty Error"]
        );
        // The same update refused under another rule is not this entry's difference.
        let other_rule = "update 0 (id \"s1\"): differs from the operation: Name \"b\" differs from the operation's \"a\"";
        assert_eq!(applying(&req, other_rule), Vec::<&str>::new());
    }

    #[test]
    fn a_client_token_entry_needs_the_client_token_refusal() {
        let req = Request::Checkpoint {
            token: TokenRef::Current,
            client_token: Some("a b".to_owned()),
            updates: Updates::List(vec![
                json!({"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Error": {"ErrorType": "E"}}),
            ]),
            unknown_arn: false,
        };
        assert_eq!(applying(&req, OUTCOME_AT_0), Vec::<&str>::new());
        assert_eq!(
            applying(
                &req,
                "client token format: ClientToken must be 1-64 characters in [\\x21-\\x7E]"
            ),
            vec!["ClientToken outside the model's pattern"]
        );
    }
}
