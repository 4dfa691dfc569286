//! The emulator's map keyed by operation Id, hashed with [`WordHasher`].

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

pub(super) use crate::hash::WordHasher;

/// A map keyed by operation Id, hashed with [`WordHasher`]. Colliding Ids, which a client would
/// have to craft, only slow down the emulator that the client itself drives, on a test machine.
pub(super) type IdMap<V> = HashMap<String, V, BuildHasherDefault<WordHasher>>;
