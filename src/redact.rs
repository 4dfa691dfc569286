//! How secrets appear in `Debug` output and logs: never themselves.
//!
//! A checkpoint token is a bearer credential for the execution (whoever holds the current one
//! can checkpoint), and payloads are the user's data. Every public type that holds either
//! formats it through [`Redacted`]: its length and a short hash, enough to tell two tokens
//! apart in a log without revealing either. A payload (a result, an input, an error's text)
//! formats through [`Withheld`]: its length only, since a hash of a short value (`0`, `true`)
//! would be as good as the value.

use std::fmt;

/// A secret string shown as `‹N chars #hhhhhhhh›`: its length and a 32-bit FNV-1a hash.
#[derive(Clone, Copy)]
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl Redacted<'_> {
    fn hash(self) -> u32 {
        self.0.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        })
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "‹{} chars #{:08x}›", self.0.chars().count(), self.hash())
    }
}

/// A payload shown as `‹N bytes›`: its length, nothing of its content.
#[cfg_attr(
    not(any(feature = "lambda", feature = "emulator")),
    allow(
        dead_code,
        reason = "only the invocation types and the emulator hold payloads"
    )
)]
#[derive(Clone, Copy)]
pub(crate) struct Withheld<'a>(pub(crate) &'a str);

impl fmt::Debug for Withheld<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "‹{} bytes›", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{Redacted, Withheld};

    #[test]
    fn a_redacted_string_shows_its_length_and_hash_but_not_itself() {
        let shown = format!("{:?}", Redacted("secret-token"));
        assert!(
            !shown.contains("secret"),
            "the secret must not appear: {shown}"
        );
        assert!(shown.starts_with("‹12 chars #"), "length first: {shown}");
        assert_ne!(
            shown,
            format!("{}", Redacted("secret-tokeN")),
            "two tokens are told apart"
        );
    }

    #[test]
    fn a_withheld_payload_shows_its_length_only() {
        assert_eq!(
            format!("{:?}", Withheld("\"secret\"")),
            "‹8 bytes›",
            "a payload shows as its length, nothing of its content"
        );
    }
}
