//! `fathom check`, and the exit codes of every `fathom` command that judges something: a
//! scenario run against its bounds, a history against the checker, a production read against
//! what was acknowledged.

use std::path::Path;

/// Every bound held; the history is clean.
pub const EXIT_OK: u8 = 0;
/// A bound was violated, or the checker found anomalies.
pub const EXIT_VIOLATED: u8 = 1;
/// The input could not be read: a bad scenario, history or configuration file.
pub const EXIT_BAD_INPUT: u8 = 2;

/// `fathom check`.
pub fn check(path: &Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let events = match crate::read_jsonl(&text) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let report = crate::check(&events);
    println!(
        "events {}  sent {}  acked {}  failed {}  unknown {}  read {}",
        events.len(),
        report.sent,
        report.acked,
        report.failed,
        report.unknown,
        report.read
    );
    for (name, count) in report.anomalies.iter() {
        println!("  {name:<22} {count:>8}");
    }
    for (class, examples) in &report.examples {
        for e in examples {
            println!("  e.g. {class}: {e}");
        }
    }
    if report.is_clean() {
        EXIT_OK
    } else {
        EXIT_VIOLATED
    }
}
