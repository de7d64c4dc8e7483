//! Checkpoint, resume, lock, signals and run windows.
