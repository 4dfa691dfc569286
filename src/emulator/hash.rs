//! [`WordHasher`]: a fast hasher for the emulator's own maps and fingerprints.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by operation Id, hashed with [`WordHasher`].
pub(super) type IdMap<V> = HashMap<String, V, BuildHasherDefault<WordHasher>>;

/// A hasher that takes eight bytes per step, for the emulator's hot paths: the fingerprint
/// of a request's updates (hundreds of short fields, where SipHash's cost per `write` made it
/// the emulator's largest item) and the Id index of an execution's operations.
///
/// It does not resist crafted collisions, and need not: a colliding fingerprint could only
/// let a client that reuses a `ClientToken` for a different request get the first answer
/// (that client's own fault), and colliding Ids only slow down the emulator that the client
/// itself drives, on a test machine.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WordHasher(u64);

impl WordHasher {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
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
