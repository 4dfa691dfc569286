//! Wire-size accounting: how many bytes an update adds to a checkpoint request body.
//!
//! The service caps a request at 750 KiB of JSON. The count here is exact, not an estimate: it
//! follows the AWS SDK's serializer field by field (compact JSON, keys in the SDK's order,
//! strings escaped the way `aws-smithy-json` escapes them: `"`, `\` and control characters, with
//! the short forms `\b \f \n \r \t` and `\u00XX` for the rest). Tests check it against
//! `serde_json`, whose escaping is the same, and against the bodies the SDK really sends to the
//! emulator. Should the SDK ever change its output, the estimate must err high, never low: a
//! low count would let a batch exceed the service's limit.
//!
//! Pure functions: no I/O, no tokio.

#![cfg_attr(
    not(feature = "test-util"),
    allow(
        unreachable_pub,
        reason = "public only through the test-util internals"
    )
)]

use aws_sdk_lambda::types::{
    CallbackOptions, ChainedInvokeOptions, ContextOptions, ErrorObject, OperationUpdate,
    StepOptions, WaitOptions,
};

use crate::limits::SERVICE_MAX_TOKEN_CHARS;

/// The bytes a string takes in JSON once escaped, without its quotes.
#[must_use]
pub(crate) fn escaped_len(value: &str) -> usize {
    // Counted in `u8` lanes over blocks of 32 bytes, without branches, so that the compiler
    // vectorizes the loop: a 64 KiB payload is counted on every submit, and the per-byte
    // `match` this replaces took 27 µs for one. A block adds at most 5 × 32 to a lane-wise
    // total, which fits a `u8`.
    let bytes = value.as_bytes();
    let mut blocks = bytes.chunks_exact(32);
    let mut extra = 0;
    for block in &mut blocks {
        let mut sum: u8 = 0;
        for &b in block {
            sum += escape_extra(b);
        }
        extra += usize::from(sum);
    }
    // The tail (all of a short string) byte by byte: for a handful of bytes this is faster
    // than the vector loop's setup.
    extra += blocks
        .remainder()
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | 0x08 | 0x0C | b'\n' | b'\r' | b'\t' => 1,
            0..=0x1F => 5,
            _ => 0,
        })
        .sum::<usize>();
    value.len() + extra
}

/// The bytes escaping adds to one byte: 1 for `"`, `\` and the control characters with a short
/// form (`\b \f \n \r \t`), 5 for the other control characters (`\u00XX`: six bytes in
/// place of one), 0 otherwise.
#[inline(always)]
fn escape_extra(b: u8) -> u8 {
    // `|`, not `||`: no branches.
    let control = u8::from(b < 0x20);
    let short = u8::from((b == 0x08) | (b == 0x0C) | (b == b'\n') | (b == b'\r') | (b == b'\t'));
    let quote = u8::from((b == b'"') | (b == b'\\'));
    control * (5 - 4 * short) + quote
}

/// The bytes of a JSON object being counted field by field.
struct ObjectLen {
    bytes: usize,
    fields: usize,
}

impl ObjectLen {
    fn new() -> Self {
        Self {
            bytes: 0,
            fields: 0,
        }
    }

    /// `"key":` followed by a value of `value_len` bytes.
    fn field(&mut self, key: &str, value_len: usize) {
        self.bytes += key.len() + 3 + value_len;
        self.fields += 1;
    }

    fn string(&mut self, key: &str, value: &str) {
        self.field(key, escaped_len(value) + 2);
    }

    fn opt_string(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn opt_object<T>(&mut self, key: &str, value: Option<&T>, len: fn(&T) -> usize) {
        if let Some(value) = value {
            self.field(key, len(value));
        }
    }

    /// Braces plus the commas between fields.
    fn finish(self) -> usize {
        2 + self.bytes + self.fields.saturating_sub(1)
    }
}

fn integer_len(value: i32) -> usize {
    let sign = usize::from(value < 0);
    let mut magnitude = value.unsigned_abs();
    let mut digits = 1;
    while magnitude >= 10 {
        magnitude /= 10;
        digits += 1;
    }
    sign + digits
}

fn error_object_len(error: &ErrorObject) -> usize {
    let mut obj = ObjectLen::new();
    obj.opt_string("ErrorMessage", error.error_message());
    obj.opt_string("ErrorType", error.error_type());
    obj.opt_string("ErrorData", error.error_data());
    if let Some(trace) = &error.stack_trace {
        let items: usize = trace.iter().map(|line| escaped_len(line) + 2).sum();
        obj.field("StackTrace", 2 + items + trace.len().saturating_sub(1));
    }
    obj.finish()
}

fn context_options_len(options: &ContextOptions) -> usize {
    let mut obj = ObjectLen::new();
    if let Some(replay) = options.replay_children {
        obj.field("ReplayChildren", if replay { 4 } else { 5 });
    }
    obj.finish()
}

fn step_options_len(options: &StepOptions) -> usize {
    let mut obj = ObjectLen::new();
    if let Some(delay) = options.next_attempt_delay_seconds {
        obj.field("NextAttemptDelaySeconds", integer_len(delay));
    }
    obj.finish()
}

fn wait_options_len(options: &WaitOptions) -> usize {
    let mut obj = ObjectLen::new();
    if let Some(seconds) = options.wait_seconds {
        obj.field("WaitSeconds", integer_len(seconds));
    }
    obj.finish()
}

fn callback_options_len(options: &CallbackOptions) -> usize {
    let mut obj = ObjectLen::new();
    // The SDK leaves these required integers out when they are zero.
    if options.timeout_seconds != 0 {
        obj.field("TimeoutSeconds", integer_len(options.timeout_seconds));
    }
    if options.heartbeat_timeout_seconds != 0 {
        obj.field(
            "HeartbeatTimeoutSeconds",
            integer_len(options.heartbeat_timeout_seconds),
        );
    }
    obj.finish()
}

fn chained_invoke_options_len(options: &ChainedInvokeOptions) -> usize {
    let mut obj = ObjectLen::new();
    obj.string("FunctionName", &options.function_name);
    obj.opt_string("TenantId", options.tenant_id());
    obj.opt_string("XAmznTraceId", options.x_amzn_trace_id());
    obj.finish()
}

/// The exact bytes of one update's JSON object in a checkpoint request body, as the AWS SDK
/// serializes it.
///
/// # Examples
///
/// ```
/// use aws_sdk_lambda::types::{OperationAction, OperationType, OperationUpdate};
/// use checkpoint_batcher::internals::update_bytes;
///
/// let update = OperationUpdate::builder()
///     .id("step-1")
///     .r#type(OperationType::Step)
///     .action(OperationAction::Start)
///     .build()?;
/// assert_eq!(update_bytes(&update), r#"{"Id":"step-1","Type":"STEP","Action":"START"}"#.len());
/// # Ok::<(), aws_sdk_lambda::error::BuildError>(())
/// ```
#[must_use]
pub fn update_bytes(update: &OperationUpdate) -> usize {
    let mut obj = ObjectLen::new();
    obj.string("Id", &update.id);
    obj.opt_string("ParentId", update.parent_id());
    obj.opt_string("Name", update.name());
    obj.string("Type", update.r#type.as_str());
    obj.opt_string("SubType", update.sub_type());
    obj.string("Action", update.action.as_str());
    obj.opt_string("Payload", update.payload());
    obj.opt_object("Error", update.error.as_ref(), error_object_len);
    obj.opt_object(
        "ContextOptions",
        update.context_options.as_ref(),
        context_options_len,
    );
    obj.opt_object(
        "StepOptions",
        update.step_options.as_ref(),
        step_options_len,
    );
    obj.opt_object(
        "WaitOptions",
        update.wait_options.as_ref(),
        wait_options_len,
    );
    obj.opt_object(
        "CallbackOptions",
        update.callback_options.as_ref(),
        callback_options_len,
    );
    obj.opt_object(
        "ChainedInvokeOptions",
        update.chained_invoke_options.as_ref(),
        chained_invoke_options_len,
    );
    obj.finish()
}

/// The length of the client tokens the batcher generates (always this long).
pub(crate) const CLIENT_TOKEN_LEN: usize = 32;

/// The exact bytes of a checkpoint request body that carries no updates:
/// `{"CheckpointToken":"…","ClientToken":"…","Updates":[]}`.
///
/// Each update then adds [`update_bytes`], plus one byte for the comma before every update but
/// the first.
#[must_use]
pub fn envelope_bytes(checkpoint_token: &str, client_token_len: usize) -> usize {
    envelope_for(escaped_len(checkpoint_token), client_token_len)
}

/// The most bytes the envelope of one of the batcher's requests can take: a checkpoint token
/// as long as the service's get ([`SERVICE_MAX_TOKEN_CHARS`] characters of the base64
/// alphabet, which JSON does not escape) and the batcher's client token. What a group must fit
/// beside, whatever the token is when it goes.
pub(crate) fn max_envelope_bytes() -> usize {
    envelope_for(SERVICE_MAX_TOKEN_CHARS, CLIENT_TOKEN_LEN)
}

fn envelope_for(escaped_token_len: usize, client_token_len: usize) -> usize {
    let mut obj = ObjectLen::new();
    obj.field("CheckpointToken", escaped_token_len + 2);
    obj.field("ClientToken", client_token_len + 2);
    obj.field("Updates", 2);
    obj.finish()
}

/// The exact bytes of a checkpoint request body carrying `updates`.
#[must_use]
pub fn request_bytes(
    checkpoint_token: &str,
    client_token: &str,
    updates: &[OperationUpdate],
) -> usize {
    envelope_bytes(checkpoint_token, escaped_len(client_token))
        + updates.iter().map(update_bytes).sum::<usize>()
        + updates.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::types::{OperationAction, OperationType};
    use serde_json::json;

    #[test]
    fn escaped_length_matches_serde_json_for_every_byte_that_needs_escaping() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}b");
            let reference = serde_json::to_string(&s).unwrap().len() - 2;
            assert_eq!(
                escaped_len(&s),
                reference,
                "escaping of {c:?} must match serde_json"
            );
        }
        let unicode = "héllo — 日本 \u{7f}";
        assert_eq!(
            escaped_len(unicode),
            serde_json::to_string(unicode).unwrap().len() - 2
        );
    }

    #[test]
    fn escaped_length_matches_serde_json_in_long_strings_at_every_offset() {
        // Long strings take the block-wise path; the tail takes the byte-wise one.
        for c in (0u8..0x80).map(char::from) {
            for len in [31, 32, 33, 64, 100] {
                for at in [0, 1, 31, len / 2, len - 1]
                    .into_iter()
                    .filter(|&at| at < len)
                {
                    let mut s: Vec<char> = "x".repeat(len).chars().collect();
                    s[at] = c;
                    s[len - 1 - at] = c;
                    let s: String = s.into_iter().collect();
                    let reference = serde_json::to_string(&s).unwrap().len() - 2;
                    assert_eq!(
                        escaped_len(&s),
                        reference,
                        "escaping of {c:?} at {at} in {len} bytes must match serde_json"
                    );
                }
            }
        }
        let worst = "\u{1}".repeat(70_000);
        assert_eq!(
            escaped_len(&worst),
            serde_json::to_string(&worst).unwrap().len() - 2,
            "a string of only six-byte escapes must not overflow a block's count"
        );
    }

    #[test]
    fn integer_length_counts_sign_and_digits() {
        for n in [0, 9, 10, 99, 100, -1, -10, i32::MAX, i32::MIN, 123_456] {
            assert_eq!(integer_len(n), n.to_string().len(), "digits of {n}");
        }
    }

    #[test]
    fn a_full_update_counts_exactly_as_its_json() {
        let update = OperationUpdate::builder()
            .id("op-1")
            .parent_id("ctx_0")
            .name("say \"hi\"\n")
            .r#type(OperationType::Callback)
            .sub_type("Sub")
            .action(OperationAction::Fail)
            .payload("{\"a\":1}\t")
            .error(
                ErrorObject::builder()
                    .error_message("boom")
                    .error_type("E")
                    .error_data("\u{1}")
                    .stack_trace("at a")
                    .stack_trace("at b")
                    .build(),
            )
            .context_options(ContextOptions::builder().replay_children(false).build())
            .step_options(
                StepOptions::builder()
                    .next_attempt_delay_seconds(-30)
                    .build(),
            )
            .wait_options(WaitOptions::builder().wait_seconds(7).build())
            .callback_options(
                CallbackOptions::builder()
                    .timeout_seconds(300)
                    .heartbeat_timeout_seconds(0)
                    .build(),
            )
            .chained_invoke_options(
                ChainedInvokeOptions::builder()
                    .function_name("arn:fn")
                    .tenant_id("t")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let reference = json!({
            "Id": "op-1", "ParentId": "ctx_0", "Name": "say \"hi\"\n", "Type": "CALLBACK",
            "SubType": "Sub", "Action": "FAIL", "Payload": "{\"a\":1}\t",
            "Error": {"ErrorMessage": "boom", "ErrorType": "E", "ErrorData": "\u{1}",
                      "StackTrace": ["at a", "at b"]},
            "ContextOptions": {"ReplayChildren": false},
            "StepOptions": {"NextAttemptDelaySeconds": -30},
            "WaitOptions": {"WaitSeconds": 7},
            "CallbackOptions": {"TimeoutSeconds": 300},
            "ChainedInvokeOptions": {"FunctionName": "arn:fn", "TenantId": "t"},
        });
        assert_eq!(update_bytes(&update), reference.to_string().len());
    }

    #[test]
    fn empty_option_objects_count_as_empty_braces() {
        let update = OperationUpdate::builder()
            .id("w")
            .r#type(OperationType::Wait)
            .action(OperationAction::Start)
            .wait_options(WaitOptions::builder().build())
            .build()
            .unwrap();
        let reference = json!({"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {}});
        assert_eq!(update_bytes(&update), reference.to_string().len());
    }

    #[test]
    fn a_request_counts_envelope_updates_and_commas() {
        let updates: Vec<OperationUpdate> = (0..3)
            .map(|i| {
                OperationUpdate::builder()
                    .id(format!("s{i}"))
                    .r#type(OperationType::Step)
                    .action(OperationAction::Succeed)
                    .payload("x".repeat(i * 10))
                    .build()
                    .unwrap()
            })
            .collect();
        let reference = json!({
            "CheckpointToken": "dG9rZW4=",
            "ClientToken": "c".repeat(CLIENT_TOKEN_LEN),
            "Updates": [
                {"Id": "s0", "Type": "STEP", "Action": "SUCCEED", "Payload": ""},
                {"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Payload": "x".repeat(10)},
                {"Id": "s2", "Type": "STEP", "Action": "SUCCEED", "Payload": "x".repeat(20)},
            ],
        });
        let client_token = "c".repeat(CLIENT_TOKEN_LEN);
        assert_eq!(
            request_bytes("dG9rZW4=", &client_token, &updates),
            reference.to_string().len()
        );
        let empty =
            json!({"CheckpointToken": "dG9rZW4=", "ClientToken": client_token, "Updates": []});
        assert_eq!(
            envelope_bytes("dG9rZW4=", CLIENT_TOKEN_LEN),
            empty.to_string().len()
        );
    }
}
