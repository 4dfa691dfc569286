//! An HTTP emulator of the checkpoint API (work in progress).
