//! The documented exit codes of `simbulk`, one constant each.

/// Every row ok or skipped (already in the requested state).
pub(crate) const OK: u8 = 0;
/// The job ran to the end; some rows failed or were invalid (see the failures CSV).
pub(crate) const ROWS_FAILED: u8 = 1;
/// Usage or input-file error; nothing was sent.
pub(crate) const USAGE: u8 = 2;
/// The job was halted: credentials refused, permission denied, or a failure threshold hit.
pub(crate) const HALTED: u8 = 3;
/// Stopped early (signal or deadline); run again with `--resume` to continue.
pub(crate) const STOPPED: u8 = 75;

/// The table shown in `--help` and the README.
pub(crate) const TABLE: &str = "\
Exit codes:
  0   every row ok or skipped (already in the requested state)
  1   the job ran to the end; some rows failed or were invalid (see the failures CSV)
  2   usage or input-file error; nothing was sent
  3   the job was halted: credentials refused, permission denied, or a failure threshold hit
  75  stopped early (signal or deadline); run again with --resume to continue";
