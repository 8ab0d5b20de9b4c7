//! The resource model's figures, in simulated time (deterministic, so asserted exactly or
//! within rounding): round trips cap synchronous senders, the narrowest bandwidth caps
//! throughput and its utilisation figure says so, fsync latency shows in acks=all latency and
//! setting it to zero removes it, steady-state latency leaves the first election out, and
//! idempotence is what removes duplicates.

use std::path::PathBuf;

use fathom_sim::experiment;
use fathom_sim::run;
use fathom_sim::scenario::Scenario;

fn base(file: &str, settings: &[(&str, toml::Value)]) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/experiments/base")
        .join(file);
    let mut tree: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (param, value) in settings {
        experiment::set(&mut tree, param, value.clone()).unwrap();
    }
    Scenario::from_toml_str(&toml::to_string(&tree).unwrap(), file).unwrap()
}

fn ms(a: i64, b: i64) -> toml::Value {
    toml::Value::Array(vec![a.into(), b.into()])
}

#[test]
fn a_10_ms_round_trip_caps_one_sync_producer_near_100_sends_per_second() {
    let s = base("sync-producer.toml", &[("network.latency_ms", ms(5, 5))]);
    let o = run::run(&s, 1).unwrap();
    let rate = o.summary.metrics.throughput.acked_per_s;
    assert!((95.0..=100.5).contains(&rate), "{rate} sends/s");
    assert!((10.0..11.0).contains(&o.summary.latency_ms.produce.p50));
}

#[test]
fn connecting_per_send_adds_a_round_trip_to_each_send() {
    let s = base(
        "sync-producer.toml",
        &[
            ("network.latency_ms", ms(5, 5)),
            ("producers[0].connect_per_send", true.into()),
        ],
    );
    let o = run::run(&s, 1).unwrap();
    assert!((19.0..21.5).contains(&o.summary.latency_ms.produce.p50));
}

#[test]
fn a_100_mbit_client_nic_caps_a_producer_at_12_5_megabytes_per_second() {
    let open = run::run(&base("bandwidth.toml", &[]), 1).unwrap();
    let capped = run::run(
        &base(
            "bandwidth.toml",
            &[("resources.client_nic_mbit_s", 100.0.into())],
        ),
        1,
    )
    .unwrap();
    let mb = |o: &run::RunOutcome| o.summary.metrics.throughput.acked_mbyte_s;
    assert!(mb(&open) > 18.0, "{} MB/s", mb(&open));
    assert!((11.5..=12.5).contains(&mb(&capped)), "{} MB/s", mb(&capped));
    // "Saturated" rests on a utilisation figure: the capped NIC is busy all the measured window,
    // the open one is not, and the brokers' CPUs are nowhere near.
    let nic = |o: &run::RunOutcome| {
        let u = &o.summary.metrics.utilisation;
        u.max_client_nic_tx_busy().unwrap()
    };
    assert!(nic(&capped) > 0.97, "capped NIC busy {}", nic(&capped));
    assert!(nic(&open) < 0.3, "open NIC busy {}", nic(&open));
    let cpu = capped
        .summary
        .metrics
        .utilisation
        .max_broker_cpu_busy()
        .unwrap();
    assert!(cpu < 0.5, "broker CPU busy {cpu}");
}

#[test]
fn a_leader_nic_carries_replication_twice_and_caps_at_half() {
    let o = run::run(
        &base(
            "bandwidth.toml",
            &[("resources.broker_nic_mbit_s", 100.0.into())],
        ),
        1,
    )
    .unwrap();
    let mb = o.summary.metrics.throughput.acked_mbyte_s;
    assert!((5.5..=6.6).contains(&mb), "{mb} MB/s");
    let u = &o.summary.metrics.utilisation;
    let leader = u.leader_host().expect("a leader in the window");
    assert!(
        leader.nic_tx.busy > 0.95,
        "leader NIC busy {}",
        leader.nic_tx.busy
    );
    assert_eq!(u.max_broker_nic_tx_busy(), Some(leader.nic_tx.busy));
}

#[test]
fn fsync_latency_shows_in_acks_all_latency_and_never_fsyncing_loses_on_power_loss() {
    let every = run::run(
        &base("durability.toml", &[("disk.os_writeback_ms", 5000.into())]),
        1,
    )
    .unwrap();
    let slow_disk = run::run(
        &base(
            "durability.toml",
            &[("resources.disk_fsync_us", 10_000.0.into())],
        ),
        1,
    )
    .unwrap();
    let free_fsync = run::run(
        &base(
            "durability.toml",
            &[("resources.disk_fsync_us", 0.0.into())],
        ),
        1,
    )
    .unwrap();
    let p50 = |o: &run::RunOutcome| o.summary.latency_ms.steady.produce.p50;
    assert!(
        p50(&slow_disk) >= p50(&every) + 9.0,
        "{} vs {}",
        p50(&slow_disk),
        p50(&every)
    );
    // Zero is free, not the 1 ms default: the fsync queue never waits for a flush.
    let fsync_wait = |o: &run::RunOutcome| o.summary.metrics.utilisation.max_fsync_wait_ms();
    assert!(
        p50(&free_fsync) <= p50(&every),
        "{} vs {}",
        p50(&free_fsync),
        p50(&every)
    );
    let flush_busy = |o: &run::RunOutcome| {
        let u = &o.summary.metrics.utilisation;
        u.max_broker(|h| h.disk_fsync.map(|l| l.busy).unwrap_or(0.0))
            .unwrap()
    };
    assert_eq!(flush_busy(&free_fsync), 0.0);
    assert!(flush_busy(&every) > 0.0);
    assert!(fsync_wait(&slow_disk) > fsync_wait(&every));

    let power_loss = toml::Value::Array(vec![toml::Value::Table(
        toml::from_str("at_s = 4.0\nkind = \"power_loss\"\nrestart_after_s = 1.0").unwrap(),
    )]);
    let never = run::run(
        &base(
            "durability.toml",
            &[
                ("cluster.log.fsync", "never".into()),
                ("faults", power_loss.clone()),
            ],
        ),
        1,
    )
    .unwrap();
    let synced = run::run(&base("durability.toml", &[("faults", power_loss)]), 1).unwrap();
    assert!(never.report.anomalies.get("lost").unwrap() > 1000);
    assert_eq!(synced.report.anomalies.get("lost").unwrap(), 0);
}

#[test]
fn without_idempotence_retries_duplicate_and_reorder_under_the_same_faults() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/idempotent-producer.toml");
    let mut tree: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    experiment::set(&mut tree, "producers[0].idempotence", false.into()).unwrap();
    let s = Scenario::from_toml_str(&toml::to_string(&tree).unwrap(), "no-idempotence").unwrap();
    let (mut dup, mut reorder) = (0, 0);
    for seed in 1..=3 {
        let o = run::run(&s, seed).unwrap();
        dup += o.report.anomalies.get("duplicate").unwrap();
        reorder += o.report.anomalies.get("nonmonotonic_send").unwrap();
        assert_eq!(o.report.anomalies.get("lost").unwrap(), 0);
    }
    assert!(
        dup > 0 && reorder > 0,
        "duplicates {dup}, reorderings {reorder}"
    );
}

#[test]
fn steady_state_latency_leaves_the_first_election_out() {
    // 100 messages per second at 1 ms links: the messages queued during the first election
    // wait hundreds of ms, every later one a few ms.
    let o = run::run(&base("batching.toml", &[]), 1).unwrap();
    let l = &o.summary.latency_ms;
    assert!(
        l.end_to_end.p99 > 100.0,
        "whole run p99 {}",
        l.end_to_end.p99
    );
    assert!(
        l.steady.end_to_end.p99 < 10.0,
        "steady p99 {}",
        l.steady.end_to_end.p99
    );
    assert!(l.steady.end_to_end.p999 >= l.steady.end_to_end.p99);
    assert!(
        l.steady.end_to_end.count > 300,
        "{}",
        l.steady.end_to_end.count
    );
    let window = o.summary.metrics.throughput.window_s;
    assert_eq!(l.steady.sent_in_s, window);
    assert!(
        window[0] > 0.3,
        "the window starts after the election: {window:?}"
    );
}
