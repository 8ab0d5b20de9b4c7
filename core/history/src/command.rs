//! The exit codes of every `fathom` command that judges something: a scenario run against its
//! bounds, a history against the checker (`fathom check`, in the binary), a production read
//! against what was acknowledged.

/// Every bound held; the history is clean.
pub const EXIT_OK: u8 = 0;
/// A bound was violated, or the checker found anomalies.
pub const EXIT_VIOLATED: u8 = 1;
/// The input could not be read: a bad scenario, history or configuration file.
pub const EXIT_BAD_INPUT: u8 = 2;
