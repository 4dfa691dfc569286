//! checkpoint-batcher (work in progress).

#[cfg(feature = "emulator")]
pub mod emulator;
