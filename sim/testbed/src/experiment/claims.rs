//! Verdicts: each claim's rule, applied to its experiment's medians.
//!
//! A rule states what the claim predicts in terms of the measured numbers, checks it, and says
//! in a sentence what was found, with the numbers it rests on. The rules are code so that a
//! verdict changes only when the numbers do; the finding text is generated from the numbers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::num;
use super::runner::Results;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    Refuted,
    /// True only under a condition, given in [`Judgement::condition`].
    Qualified,
    /// The experiment could not decide (e.g. a run produced no data).
    Inconclusive,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    pub finding: String,
    /// The numbers the verdict rests on, by name.
    pub numbers: BTreeMap<String, f64>,
}

impl Judgement {
    pub fn verdict_text(&self) -> String {
        match (&self.verdict, &self.condition) {
            (Verdict::Qualified, Some(c)) => format!("qualified ({c})"),
            (v, _) => serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        }
    }
}

/// Collects the key numbers while a rule reads them. A point the rule names but the results
/// lack (a renamed label) makes the judgement inconclusive rather than a silent zero.
struct Notes {
    numbers: BTreeMap<String, f64>,
    missing: Vec<String>,
}

impl Notes {
    fn new() -> Notes {
        Notes {
            numbers: BTreeMap::new(),
            missing: Vec::new(),
        }
    }

    fn take(&mut self, r: &Results, key: &str, labels: &[(&str, &str)], metric: &str) -> f64 {
        let v = match r.at(labels) {
            Some(p) => p.median(metric),
            None => {
                self.missing.push(format!("{labels:?}"));
                0.0
            }
        };
        self.numbers.insert(key.to_string(), v);
        v
    }

    fn judge(self, verdict: Verdict, condition: Option<&str>, finding: String) -> Judgement {
        if !self.missing.is_empty() {
            return Judgement {
                verdict: Verdict::Inconclusive,
                condition: None,
                finding: format!("the results lack the points {}", self.missing.join(", ")),
                numbers: self.numbers,
            };
        }
        Judgement {
            verdict,
            condition: condition.map(str::to_string),
            finding,
            numbers: self.numbers,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// The verdict of one experiment on its claim, by experiment id.
pub fn judge(r: &Results) -> Judgement {
    match r.id.as_str() {
        "p1-connections" => p1(r),
        "p2-tls" => p2(r),
        "p3-network" => p3(r),
        "p4-send-modes" => p4_throughput(r),
        "p4-reliability" => p4_reliability(r),
        "p5-batching" => p5(r),
        "p5-batch-size" => p5_batch_size(r),
        "p6-retries" => p6(r),
        "p7-producers" => p7(r),
        "b1-durability" => b1(r),
        "b2-scaling" => b2_scaling(r),
        "b2-replication" => b2_replication(r),
        "e1-breakdown" => e1(r),
        other => Notes::new().judge(
            Verdict::Inconclusive,
            None,
            format!("no rule for experiment {other}"),
        ),
    }
}

fn verdict(holds: bool) -> Verdict {
    if holds {
        Verdict::Confirmed
    } else {
        Verdict::Refuted
    }
}

/// P1: long-lived connections beat a connection per send.
fn p1(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let mut holds = true;
    let mut parts = Vec::new();
    for l in ["1", "5", "20"] {
        let at = |c| [("connection", c), ("one-way latency (ms)", l)];
        let keep = n.take(
            r,
            &format!("long-lived sends/s at {l} ms"),
            &at("long-lived"),
            "acked_per_s",
        );
        let per = n.take(
            r,
            &format!("per-send sends/s at {l} ms"),
            &at("per send"),
            "acked_per_s",
        );
        holds &= keep > per * 1.2;
        parts.push(format!(
            "{} vs {} at {l} ms ({}×)",
            num(keep),
            num(per),
            num(ratio(keep, per))
        ));
    }
    let finding = format!(
        "One synchronous producer completes more sends per second on a long-lived connection \
         than when it connects for every send: {}. Each new connection adds the handshake's \
         round trip to the send, so the gap is a constant factor at every distance.",
        parts.join("; ")
    );
    n.judge(verdict(holds), None, finding)
}

/// P2: TLS has a cost; where is it paid?
fn p2(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |t, c| [("TLS", t), ("connection", c)];
    let off_long = n.take(
        r,
        "p50 ms, TLS off, long-lived",
        &at("off", "long-lived"),
        "produce_p50_ms",
    );
    let on_long = n.take(
        r,
        "p50 ms, TLS on, long-lived",
        &at("on", "long-lived"),
        "produce_p50_ms",
    );
    let off_per = n.take(
        r,
        "p50 ms, TLS off, per send",
        &at("off", "per send"),
        "produce_p50_ms",
    );
    let on_per = n.take(
        r,
        "p50 ms, TLS on, per send",
        &at("on", "per send"),
        "produce_p50_ms",
    );
    let rate_off = n.take(
        r,
        "sends/s, TLS off, per send",
        &at("off", "per send"),
        "acked_per_s",
    );
    let rate_on = n.take(
        r,
        "sends/s, TLS on, per send",
        &at("on", "per send"),
        "acked_per_s",
    );
    let long_cost = on_long - off_long;
    let per_cost = on_per - off_per;
    let finding = format!(
        "TLS is paid per connection. Reconnecting for every send, it raised the median send \
         latency from {} to {} ms (+{} ms: two more round trips and the key exchange) and cut \
         throughput from {} to {} sends/s. On a long-lived connection the median moved by {} ms: \
         encryption at 0.5 ns per byte is far below the network's cost at these rates. TCP \
         retransmission is not modelled (turmoil drops a connection on a lost segment; clients \
         reconnect and retry).",
        num(off_per),
        num(on_per),
        num(per_cost),
        num(rate_off),
        num(rate_on),
        num(long_cost)
    );
    let (v, condition) = if per_cost > 0.0 && long_cost < per_cost * 0.1 {
        (
            Verdict::Qualified,
            Some("the cost is per connection; on long-lived connections it is negligible"),
        )
    } else if per_cost > 0.0 {
        (Verdict::Confirmed, None)
    } else {
        (Verdict::Refuted, None)
    };
    n.judge(v, condition, finding)
}

/// P3: latency and the three bandwidth points.
fn p3(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |b, z| [("bottleneck", b), ("producer zone", z)];
    let none = n.take(
        r,
        "MB/s, no bottleneck",
        &at("none", "same"),
        "acked_mbyte_s",
    );
    let client = n.take(
        r,
        "MB/s, client NIC 100 Mbit/s",
        &at("client NIC", "same"),
        "acked_mbyte_s",
    );
    let path = n.take(
        r,
        "MB/s, path 100 Mbit/s",
        &at("path", "same"),
        "acked_mbyte_s",
    );
    let broker = n.take(
        r,
        "MB/s, broker NIC 100 Mbit/s",
        &at("broker NIC", "same"),
        "acked_mbyte_s",
    );
    let same = n.take(
        r,
        "p50 ms, same zone",
        &at("none", "same"),
        "produce_p50_ms",
    );
    let cross = n.take(
        r,
        "p50 ms, cross zone",
        &at("none", "cross"),
        "produce_p50_ms",
    );
    let capped = |x: f64| x < none * 0.8 && x <= 12.5 * 1.02;
    let holds = capped(client) && capped(path) && capped(broker) && cross > same;
    let finding = format!(
        "Each bandwidth point bounds throughput when it is the narrowest: with 20 MB/s offered, \
         {} MB/s got through unconstrained, {} with a 100 Mbit/s client NIC, {} with a 100 \
         Mbit/s path and {} with a 100 Mbit/s broker NIC. The broker NIC binds hardest: the \
         leader sends every byte out again to two followers (RF 3), so its transmit side \
         carries twice the produce rate. A producer one zone away (3 ms instead of 1 ms one \
         way) saw a median acknowledgement latency of {} ms instead of {} ms.",
        num(none),
        num(client),
        num(path),
        num(broker),
        num(cross),
        num(same)
    );
    n.judge(verdict(holds), None, finding)
}

/// P4, throughput: fire-and-forget > async > sync, and sync follows the round trip.
fn p4_throughput(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let mut take = |mode: &str, l: &str| {
        n.take(
            r,
            &format!("{mode} sends/s at {l} ms"),
            &[("mode", mode), ("one-way latency (ms)", l)],
            "sent_per_s",
        )
    };
    let sync: Vec<f64> = ["1", "5", "20"].iter().map(|l| take("sync", l)).collect();
    let asy: Vec<f64> = ["1", "5", "20"].iter().map(|l| take("async", l)).collect();
    let ffa: Vec<f64> = ["1", "5", "20"]
        .iter()
        .map(|l| take("fire-and-forget acks=all", l))
        .collect();
    let ff0: Vec<f64> = ["1", "5", "20"]
        .iter()
        .map(|l| take("fire-and-forget acks=0", l))
        .collect();
    let sync_falls = sync[0] > sync[1] && sync[1] > sync[2];
    let async_beats_sync = (0..3).all(|i| asy[i] > sync[i] * 2.0);
    let ff_beats_async_far = ff0[2] > asy[2] * 1.5;
    let ff_ties_near = ff0[0] < asy[0] * 1.1;
    let ffa_ties = (0..3).all(|i| (ffa[i] - asy[i]).abs() <= asy[i] * 0.15);
    let finding = format!(
        "Sync is slowest and follows the round trip: {} / {} / {} sends/s at 1 / 5 / 20 ms one \
         way (each send waits for the leader and its replication). Async sends {} / {} / {} \
         sends/s. Fire-and-forget with acks=0 sends {} / {} / {}: it beats async only where \
         async's window of 5 requests, not the 100 Mbit/s NIC, is the limit (20 ms); at 1 ms \
         both fill the NIC. Fire-and-forget with acks=all ({} / {} / {}) is no faster than \
         async: the client still waits for acknowledgements, the application just ignores \
         them.",
        num(sync[0]),
        num(sync[1]),
        num(sync[2]),
        num(asy[0]),
        num(asy[1]),
        num(asy[2]),
        num(ff0[0]),
        num(ff0[1]),
        num(ff0[2]),
        num(ffa[0]),
        num(ffa[1]),
        num(ffa[2])
    );
    let holds = sync_falls && async_beats_sync && ff_beats_async_far;
    let (v, condition) = match (holds, ff_ties_near && ffa_ties) {
        (true, true) => (
            Verdict::Qualified,
            Some("fire-and-forget is faster than async only with acks=0 and only when the in-flight window, not bandwidth, limits async"),
        ),
        (true, false) => (Verdict::Confirmed, None),
        (false, _) => (Verdict::Refuted, None),
    };
    n.judge(v, condition, finding)
}

/// P4, reliability and order.
fn p4_reliability(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let f = "link failures + leader crash";
    let mut take = |mode: &str, metric: &str| {
        n.take(
            r,
            &format!("{mode}: {metric}"),
            &[("mode", mode), ("faults", f)],
            metric,
        )
    };
    let sync_lost = take("sync", "lost");
    let async_lost = take("async", "lost");
    let ff_unread = take("fire-and-forget acks=0", "unread");
    let sync_reorder = take("sync", "nonmonotonic_send");
    let sync_dup = take("sync", "duplicate");
    let async_reorder = take("async", "nonmonotonic_send");
    let async_dup = take("async", "duplicate");
    let idem_reorder = take("async idempotent", "nonmonotonic_send");
    let idem_dup = take("async idempotent", "duplicate");
    let idem_lost = take("async idempotent", "lost");
    let holds = sync_lost == 0.0
        && async_lost == 0.0
        && idem_lost == 0.0
        && ff_unread > 0.0
        && sync_reorder == 0.0
        && async_reorder > 0.0
        && idem_reorder == 0.0
        && idem_dup == 0.0;
    let finding = format!(
        "Under link failures and a leader crash (medians of 8 seeds), sync and async lost no \
         acknowledged message ({} and {}), while fire-and-forget with acks=0 left {} messages \
         that no reader ever saw. Sync kept order ({} reorderings) but a retried send could \
         still be stored twice ({} duplicates); async without idempotence reordered ({}) and \
         duplicated ({}); the idempotent producer, with the same 5 requests in flight, had {} \
         reorderings and {} duplicates.",
        num(sync_lost),
        num(async_lost),
        num(ff_unread),
        num(sync_reorder),
        num(sync_dup),
        num(async_reorder),
        num(async_dup),
        num(idem_reorder),
        num(idem_dup)
    );
    n.judge(verdict(holds), None, finding)
}

/// P5: batching against latency.
fn p5(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |load, l| [("load", load), ("linger (ms)", l)];
    let low0 = n.take(
        r,
        "low load e2e p50 ms, linger 0",
        &at("low", "0"),
        "e2e_p50_ms",
    );
    let low50 = n.take(
        r,
        "low load e2e p50 ms, linger 50",
        &at("low", "50"),
        "e2e_p50_ms",
    );
    let high0 = n.take(
        r,
        "high load e2e p50 ms, linger 0",
        &at("high", "0"),
        "e2e_p50_ms",
    );
    let high5 = n.take(
        r,
        "high load e2e p50 ms, linger 5",
        &at("high", "5"),
        "e2e_p50_ms",
    );
    let tput0 = n.take(
        r,
        "high load acks/s, linger 0",
        &at("high", "0"),
        "acked_per_s",
    );
    let tput20 = n.take(
        r,
        "high load acks/s, linger 20",
        &at("high", "20"),
        "acked_per_s",
    );
    let latency_cost = low50 > low0 + 10.0;
    let throughput_gain = tput20 > tput0 * 1.05;
    let finding = format!(
        "At 100 messages/s, lingering only adds waiting: the median end-to-end latency grew \
         from {} ms (linger 0) to {} ms (linger 50). At 40,000 messages/s the leader kept up at \
         every linger ({} vs {} acks/s at linger 0 and 20): with 5 requests in flight, batches \
         fill by themselves while the window is full, even at linger 0. There a short linger \
         lowered latency instead ({} ms at linger 0, {} ms at linger 5) because fewer, larger \
         requests spared the leader's CPU, which pays 100 µs per request.",
        num(low0),
        num(low50),
        num(tput0),
        num(tput20),
        num(high0),
        num(high5)
    );
    let (v, condition) = match (latency_cost, throughput_gain) {
        (true, true) => (Verdict::Confirmed, None),
        (true, false) => (
            Verdict::Qualified,
            Some("batching costs latency at low load; under load batches form without linger, so linger added no throughput and cut latency"),
        ),
        _ => (Verdict::Refuted, None),
    };
    n.judge(v, condition, finding)
}

/// P5: batch size against throughput.
fn p5_batch_size(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let mut take = |b: &str| {
        n.take(
            r,
            &format!("acks/s, {b} per batch"),
            &[("messages per batch", b)],
            "acked_per_s",
        )
    };
    let one = take("1");
    let sixteen = take("16");
    let most = take("256");
    let holds = most > one * 3.0 && sixteen > one * 2.0;
    let finding = format!(
        "With a cost per request, batching is what throughput rests on: one message per \
         request gave {} acks/s against 40,000 offered, 16 per batch {} and 256 per batch {}.",
        num(one),
        num(sixteen),
        num(most)
    );
    n.judge(verdict(holds), None, finding)
}

/// P6: retries and the journal.
fn p6(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |retries, idem| [("retries", retries), ("idempotence", idem)];
    let mut unresolved = |retries, idem| {
        let failed = n.take(
            r,
            &format!("failed, retries {retries}, idempotence {idem}"),
            &at(retries, idem),
            "failed",
        );
        let unknown = n.take(
            r,
            &format!("unknown, retries {retries}, idempotence {idem}"),
            &at(retries, idem),
            "unknown",
        );
        failed + unknown
    };
    let without = unresolved("0", "off");
    let with = unresolved("10", "off");
    let with_idem = unresolved("10", "on");
    let dup = n.take(
        r,
        "duplicates, retries 10, idempotence off",
        &at("10", "off"),
        "duplicate",
    );
    let dup_idem = n.take(
        r,
        "duplicates, retries 10, idempotence on",
        &at("10", "on"),
        "duplicate",
    );
    // Every message's fate is recorded: acknowledged, failed or unknown, for every run.
    let complete = r.points.iter().all(|p| {
        p.seeds.iter().all(|s| {
            let g = |k: &str| s.numbers.get(k).copied().unwrap_or(-1.0);
            g("acked") + g("failed") + g("unknown") == g("sent")
        })
    });
    let holds = without > 0.0 && with == 0.0 && with_idem == 0.0 && complete;
    let finding = format!(
        "Without retries a median of {} sends per run ended failed or unknown; retrying (up to \
         10 times, with backoff) brought that to {} ({} with idempotence). Retries alone stored \
         {} messages twice; with idempotence {}. In every run each sent message had exactly one \
         recorded fate (acknowledged at an offset, failed, or unknown), and the journal holds \
         every attempt with its broker and error: `fathom trace` shows a message's attempts, \
         its acknowledgement and each delivery, including the duplicate a retry made.",
        num(without),
        num(with),
        num(with_idem),
        num(dup),
        num(dup_idem)
    );
    n.judge(verdict(holds), None, finding)
}

/// P7: one producer's ceiling, and several producers.
fn p7(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |c, p| [("broker cores", c), ("producers", p)];
    let one = n.take(r, "acks/s, 1 producer", &at("4", "1"), "acked_per_s");
    let sixteen = n.take(
        r,
        "acks/s, 16 producers, 4 cores",
        &at("4", "16"),
        "acked_per_s",
    );
    let many4 = n.take(
        r,
        "acks/s, 32 producers, 4 cores",
        &at("4", "32"),
        "acked_per_s",
    );
    let many1 = n.take(
        r,
        "acks/s, 32 producers, 1 core",
        &at("1", "32"),
        "acked_per_s",
    );
    let holds = sixteen > one * 12.0 && many4 > many1 * 1.2;
    let finding = format!(
        "One synchronous producer is capped by its round trip at {} sends/s. Instances add up \
         almost linearly ({} sends/s from 16 on 4 cores) until the leader's CPU saturates: with \
         32 producers a single-core leader managed {} sends/s against {} with 4 cores.",
        num(one),
        num(sixteen),
        num(many1),
        num(many4)
    );
    n.judge(verdict(holds), None, finding)
}

/// B1: fsync policy, speed and loss.
fn b1(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |f, x| [("fsync", f), ("fault", x)];
    let lost_every = n.take(
        r,
        "lost, every_batch, power loss",
        &at("every_batch", "power loss"),
        "lost",
    );
    let lost_interval = n.take(
        r,
        "lost, interval 200 ms, power loss",
        &at("interval", "power loss"),
        "lost",
    );
    let lost_never = n.take(
        r,
        "lost, never, power loss",
        &at("never", "power loss"),
        "lost",
    );
    let p50_every = n.take(
        r,
        "p50 ms, every_batch",
        &at("every_batch", "none"),
        "produce_p50_ms",
    );
    let p50_never = n.take(r, "p50 ms, never", &at("never", "none"), "produce_p50_ms");
    let t_every = n.take(
        r,
        "acks/s, every_batch",
        &at("every_batch", "none"),
        "acked_per_s",
    );
    let t_never = n.take(r, "acks/s, never", &at("never", "none"), "acked_per_s");
    let holds = lost_every == 0.0
        && lost_interval > 0.0
        && lost_never > lost_interval
        && p50_every > p50_never;
    let finding = format!(
        "When every broker lost power at once, acks=all writes survived only where they had \
         been fsynced: fsync per batch lost {}, fsync every 200 ms lost {} and never lost {} \
         acknowledged messages (everything since the OS last wrote back). Per-batch fsync cost \
         {} ms of median latency ({} vs {} ms) and no throughput at this load ({} vs {} acks/s): \
         the disk's 1 ms flush is paid in the commit path, on the followers and the leader in \
         parallel.",
        num(lost_every),
        num(lost_interval),
        num(lost_never),
        num(p50_every - p50_never),
        num(p50_every),
        num(p50_never),
        num(t_every),
        num(t_never)
    );
    n.judge(verdict(holds), None, finding)
}

/// B2: partitions and brokers against capacity.
fn b2_scaling(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |b, p| [("brokers", b), ("partitions", p)];
    let b3p1 = n.take(
        r,
        "MB/s, 3 brokers, 1 partition",
        &at("3", "1"),
        "acked_mbyte_s",
    );
    let b3p12 = n.take(
        r,
        "MB/s, 3 brokers, 12 partitions",
        &at("3", "12"),
        "acked_mbyte_s",
    );
    let b6p1 = n.take(
        r,
        "MB/s, 6 brokers, 1 partition",
        &at("6", "1"),
        "acked_mbyte_s",
    );
    let b6p6 = n.take(
        r,
        "MB/s, 6 brokers, 6 partitions",
        &at("6", "6"),
        "acked_mbyte_s",
    );
    let p99_3 = n.take(
        r,
        "p99 ms, 3 brokers, 12 partitions",
        &at("3", "12"),
        "produce_p99_ms",
    );
    let p99_6 = n.take(
        r,
        "p99 ms, 6 brokers, 6 partitions",
        &at("6", "6"),
        "produce_p99_ms",
    );
    let grows_with_brokers = b6p6 > b3p12 * 1.15;
    let partitions_alone = b3p12 < b3p1 * 1.3;
    let finding = format!(
        "Capacity came from CPUs, and partitions were the way to reach them. With one \
         partition, 3 or 6 brokers made no difference ({} vs {} MB/s): one leader's core did \
         the work. On 3 brokers with RF 3 every broker holds every partition, so 12 partitions \
         reached only {} MB/s (p99 {} ms, the CPUs saturated); on 6 brokers, 6 partitions spread \
         leaders and replicas and carried the whole 20 MB/s offered ({} MB/s, p99 {} ms).",
        num(b3p1),
        num(b6p1),
        num(b3p12),
        num(p99_3),
        num(b6p6),
        num(p99_6)
    );
    let (v, condition) = match (grows_with_brokers, partitions_alone) {
        (true, true) => (
            Verdict::Qualified,
            Some("partitions raise capacity only when they spread work over more brokers than the replication factor"),
        ),
        (true, false) => (Verdict::Confirmed, None),
        _ => (Verdict::Refuted, None),
    };
    n.judge(v, condition, finding)
}

/// B2: replicas and broker loss.
fn b2_replication(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |rf, f| [("replication factor", rf), ("fault", f)];
    let down = "broker-1 down";
    let rf1_failed = n.take(r, "failed, RF 1", &at("1", down), "failed");
    let rf1_unknown = n.take(r, "unknown, RF 1", &at("1", down), "unknown");
    let rf3_failed = n.take(r, "failed, RF 3", &at("3", down), "failed");
    let rf3_unknown = n.take(r, "unknown, RF 3", &at("3", down), "unknown");
    let rf3_lost = n.take(r, "lost, RF 3", &at("3", down), "lost");
    let holds =
        rf1_failed + rf1_unknown > 0.0 && rf3_failed + rf3_unknown == 0.0 && rf3_lost == 0.0;
    let finding = format!(
        "With one replica, the partition whose only broker died could not take writes for 4 \
         s: {} sends failed and {} ended unknown. With three replicas a new leader took over \
         and every send was acknowledged ({} failed, {} unknown, {} lost). (The broker comes \
         back with its disk; losing the disk itself is not modelled yet.)",
        num(rf1_failed),
        num(rf1_unknown),
        num(rf3_failed),
        num(rf3_unknown),
        num(rf3_lost)
    );
    n.judge(verdict(holds), None, finding)
}

/// E1: end-to-end latency as measured parts.
fn e1(r: &Results) -> Judgement {
    let mut n = Notes::new();
    let at = |l, d| [("linger (ms)", l), ("one-way latency (ms)", d)];
    let wait0 = n.take(
        r,
        "client wait ms, linger 0",
        &at("0", "1"),
        "e1_client_wait_ms",
    );
    let wait20 = n.take(
        r,
        "client wait ms, linger 20",
        &at("20", "1"),
        "e1_client_wait_ms",
    );
    let net1 = n.take(
        r,
        "network ms, 1 ms one way",
        &at("0", "1"),
        "e1_network_ms",
    );
    let net5 = n.take(
        r,
        "network ms, 5 ms one way",
        &at("0", "5"),
        "e1_network_ms",
    );
    let rep1 = n.take(
        r,
        "replication ms, 1 ms one way",
        &at("0", "1"),
        "e1_replication_ms",
    );
    let rep5 = n.take(
        r,
        "replication ms, 5 ms one way",
        &at("0", "5"),
        "e1_replication_ms",
    );
    let con1 = n.take(
        r,
        "consumer ms, 1 ms one way",
        &at("0", "1"),
        "e1_consumer_ms",
    );
    let con5 = n.take(
        r,
        "consumer ms, 5 ms one way",
        &at("0", "5"),
        "e1_consumer_ms",
    );
    let append = n.take(r, "broker append ms", &at("0", "1"), "e1_broker_append_ms");
    // The parts add up to the total for every run.
    let adds_up = r.points.iter().all(|p| {
        p.seeds.iter().all(|s| {
            let g = |k: &str| s.numbers.get(k).copied().unwrap_or(0.0);
            let sum = g("e1_client_wait_ms")
                + g("e1_network_ms")
                + g("e1_broker_append_ms")
                + g("e1_replication_ms")
                + g("e1_consumer_ms");
            (sum - g("e1_total_ms")).abs() <= 0.01 + g("e1_total_ms") * 0.001
        })
    });
    let holds = adds_up
        && wait20 > wait0 + 5.0
        && net5 > net1 + 2.0
        && rep5 > rep1 + 4.0
        && con5 > con1 + 2.0;
    let finding = format!(
        "Each message's end-to-end latency splits into five consecutive, measured parts that \
         add up to it in every run. Each part answered to its own cause: linger 20 raised the \
         producer's client wait from {} to {} ms; 5 ms instead of 1 ms one way raised the \
         network part from {} to {} ms, replication and commit (a round trip to the followers) \
         from {} to {} ms and the consumer's fetch from {} to {} ms. The leader's append itself \
         took {} ms.",
        num(wait0),
        num(wait20),
        num(net1),
        num(net5),
        num(rep1),
        num(rep5),
        num(con1),
        num(con5),
        num(append)
    );
    n.judge(verdict(holds), None, finding)
}
