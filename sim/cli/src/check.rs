//! `fathom check`: the checker on any history file. It needs only `fathom-history`, so it is in
//! every build of the binary, production-only ones included.

use std::path::Path;

use fathom_history::command::{EXIT_BAD_INPUT, EXIT_OK, EXIT_VIOLATED};

/// `fathom check`.
pub fn check(path: &Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let events = match fathom_history::read_jsonl(&text) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let report = fathom_history::check(&events);
    println!(
        "events {}  sent {}  acked {}  failed {}  unknown {} ({} of them read)  read {}",
        events.len(),
        report.sent,
        report.acked,
        report.failed,
        report.unknown,
        report.unknown_in_log,
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
