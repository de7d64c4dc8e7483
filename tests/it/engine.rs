//! The engine end to end: the real binary against the in-process simulator.
