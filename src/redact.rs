//! How secrets appear in `Debug` output and logs: never themselves.
//!
//! A checkpoint token is a bearer credential for the execution (whoever holds the current one
//! can checkpoint), and payloads are the user's data. Every public type that holds either
//! formats it through [`Redacted`]: its length and a short hash, enough to tell two tokens
//! apart in a log without revealing either.

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

#[cfg(test)]
mod tests {
    use super::Redacted;

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
}
