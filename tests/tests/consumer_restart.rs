//! A restarted consumer is a new process that resumes from the offsets its group committed to
//! the replicated offsets topic, not from the start (claim C4's "commit after processing").

use std::collections::BTreeMap;
use std::path::PathBuf;

use fathom_history::{EventType, Op};
use fathom_sim::run;
use fathom_sim::scenario::Scenario;

#[test]
fn restarted_consumer_resumes_from_its_committed_offsets() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/leader-crash-acks-all.toml");
    let scenario = Scenario::load(&path).unwrap();
    let spec = &scenario.consumers[0];
    assert!(
        !spec.restart_at_s.is_empty(),
        "the scenario restarts its consumer"
    );
    let names = spec.incarnation_names(0);
    let outcome = run::run(&scenario, 3).unwrap();

    // What the first incarnation committed last, per partition, and where the second began.
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    let mut first_poll: BTreeMap<u32, u64> = BTreeMap::new();
    for e in &outcome.events {
        match (&e.op, e.kind) {
            (
                Op::Commit {
                    partition, offset, ..
                },
                EventType::Ok,
            ) if e.process == names[0] => {
                committed.insert(*partition, *offset);
            }
            (
                Op::Poll {
                    partition, records, ..
                },
                EventType::Ok,
            ) if e.process == names[1] => {
                if let Some((offset, _)) = records.first() {
                    first_poll.entry(*partition).or_insert(*offset);
                }
            }
            _ => {}
        }
    }
    assert!(
        !committed.is_empty(),
        "the first incarnation committed nothing"
    );
    for (partition, &offset) in &committed {
        let resumed = first_poll
            .get(partition)
            .unwrap_or_else(|| panic!("{} never polled partition {partition}", names[1]));
        assert!(
            *resumed >= offset && offset > 0,
            "partition {partition}: committed {offset}, resumed at {resumed}"
        );
    }
}
