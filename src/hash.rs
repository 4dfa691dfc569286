//! [`WordHasher`]: a fast, non-cryptographic hasher for short strings on hot paths.

use std::hash::{BuildHasher, Hasher};

/// A hasher that takes eight bytes per step, for hot paths that hash many short strings:
/// the batch assembler's Ids, and in the emulator the fingerprint of a request's updates and
/// the Id index of an execution's operations. SipHash's cost per `write` made each of them
/// a visible share of its profile (BENCHMARKS.md, "Real path").
///
/// It does not resist crafted collisions; use it only where a collision is harmless (each
/// user says why).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WordHasher(u64);

impl WordHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The length first: the last word is padded with zeros, which would otherwise make
        // `a` and `a\0` alike.
        self.mix(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.mix(u64::from_le_bytes(buf));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            for (to, from) in buf.iter_mut().zip(rest) {
                *to = *from;
            }
            self.mix(u64::from_le_bytes(buf));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn write_isize(&mut self, value: isize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        // A last avalanche, so that nearby inputs spread over all bits.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^ (x >> 33)
    }
}

/// Builds [`WordHasher`]s that start from a seed, so that hashes differ from one process (or
/// one map) to the next.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededWords(pub(crate) u64);

impl BuildHasher for SeededWords {
    type Hasher = WordHasher;

    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_hash_equal_and_the_seed_and_every_byte_matter() {
        let words = SeededWords(7);
        assert_eq!(words.hash_one("t12-s3"), words.hash_one("t12-s3"));
        assert_ne!(words.hash_one("t12-s3"), SeededWords(8).hash_one("t12-s3"));
        // Every byte position of strings around the word size, and the length (a string and
        // the same string with a zero byte more differ).
        for len in 1..=17 {
            let base = "a".repeat(len);
            let mut seen = vec![words.hash_one(base.as_str())];
            for at in 0..len {
                let mut changed = base.clone().into_bytes();
                changed[at] = b'b';
                seen.push(words.hash_one(String::from_utf8(changed).unwrap().as_str()));
            }
            seen.push(words.hash_one(format!("{base}\0").as_str()));
            let distinct: std::collections::HashSet<_> = seen.iter().collect();
            assert_eq!(
                distinct.len(),
                seen.len(),
                "collision among {len}-byte variants"
            );
        }
    }
}
