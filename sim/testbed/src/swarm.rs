//! Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012; FoundationDB's BUGGIFY on the
//! scenario level): with a `[swarm]` table, each seed draws which fault kinds are on, how many
//! faults, when and for how long, the disk's fault rates and the workload knobs the table
//! allows. A bug that needs one kind of fault *without* another is found by the seeds that
//! switched the other off.
//!
//! The draw is written into the scenario file's own text (toml_edit, [`ScenarioText`]) and
//! parsed back: the drawn scenario is a plain scenario file, checked like any other, printed,
//! saved in the run folder, and `fathom run` on it replays the seed exactly.

use std::fmt;

use fathom_queue::config::{FsyncPolicy, ShareFailover};
use fathom_queue::protocol::Acks;
use fathom_queue::rng::Rng;
use serde::Deserialize;

use crate::scenario::write::ScenarioText;
use crate::scenario::{Fault, FaultKind, Member, MillisRange, Scenario, ScenarioError, Target};

/// Keeps the draw's random stream apart from every other stream of the seed.
const SWARM_SALT: u64 = 0x5_3A12_D12A;
/// The stream of the kinds added after swarm's findings were published (see
/// [`SwarmKind::own_stream`]).
const SWARM_LATE_SALT: u64 = 0x1A7E_D12A;
/// Bytes per torn block when torn writes are drawn (a disk sector).
const TORN_BLOCK_BYTES: u64 = 512;

/// A fault kind a seed may switch on. Network and crash kinds add faults to the schedule; disk
/// kinds switch a fault model of every broker's disk on for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwarmKind {
    /// One broker (a random one or a partition's leader) crashes and restarts.
    Crash,
    /// A partition's leader crashes, and whoever leads it 50–600 ms later (often a candidate
    /// mid-election, or nobody yet) crashes too.
    CrashDuringElection,
    /// A partition's leader crashes; 300–900 ms later, while the others elect its successor
    /// (election time-outs are 300–600 ms), a broker crashes and is back within 20–300 ms,
    /// having voted or not: a voter that forgets its vote votes twice in one term.
    CrashVoter,
    /// A broker crashes and comes back 2–4 times in quick succession (down 20–300 ms, up
    /// 20–200 ms): the partitions it led elect successors while it is up for moments, so it
    /// answers some candidates and not others; candidates ask again, and a restarted voter must
    /// remember whom it voted for.
    CrashFlap,
    /// Two brokers crash within 300 ms of each other.
    CrashBurst,
    /// Every broker loses power at once.
    PowerLoss,
    /// One broker cannot reach the others, which can still reach it.
    PartitionOneway,
    /// A minority of brokers (a partition's leader, or a random one) is cut from the rest.
    PartitionMinority,
    /// Two brokers cannot talk to each other; a third still talks to both.
    PartitionBridge,
    /// Lossy links between one broker and everyone else.
    Loss,
    /// A latency spike on one broker's links.
    Latency,
    /// A broker stops the world: every message to and from it is held, then released. Its own
    /// timers keep running (turmoil cannot pause a host), so it is a pause as its peers see it.
    Pause,
    /// A crash leaves each unsynced write as a random prefix of whole 512-byte blocks.
    TornWrites,
    /// A small share of file operations fails with EIO.
    IoErrors,
    /// A small share of reads returns corrupted bytes.
    ReadCorruption,
    /// One broker's clock (a random one or a partition's leader) runs 4x slow to 4x fast for
    /// a while, and half the time first leaps 0.5–10 s forward.
    Clock,
    /// One broker's disk (a random one or a partition's leader) has no free space for a while:
    /// each append fails with ENOSPC, and the broker stops and is restarted until it has.
    DiskFull,
    /// One broker's disk (a random one or a partition's leader) fails up to `rate_max` of its
    /// operations with EIO for a while: the windowed form of `io_errors`, which lasts the whole
    /// run. Only where `kinds` names it (swarm.toml keeps the run-long model).
    DiskEio,
    /// A consumer instance of a group or share group dies without leaving (holding its
    /// partitions or its record locks) and a new process of it starts 0.05 s to `fault_s_max`
    /// later. Only where `kinds` names it: it needs such a consumer.
    ConsumerCrash,
    /// A consumer instance of a group or share group stalls for 0.05 s to `fault_s_max` (a GC
    /// pause or a stuck handler) with what it fetched. Only where `kinds` names it.
    ConsumerPause,
}

impl SwarmKind {
    pub const ALL: [SwarmKind; 20] = [
        SwarmKind::Crash,
        SwarmKind::CrashDuringElection,
        SwarmKind::CrashVoter,
        SwarmKind::CrashFlap,
        SwarmKind::CrashBurst,
        SwarmKind::PowerLoss,
        SwarmKind::PartitionOneway,
        SwarmKind::PartitionMinority,
        SwarmKind::PartitionBridge,
        SwarmKind::Loss,
        SwarmKind::Latency,
        SwarmKind::Pause,
        SwarmKind::TornWrites,
        SwarmKind::IoErrors,
        SwarmKind::ReadCorruption,
        SwarmKind::Clock,
        SwarmKind::DiskFull,
        SwarmKind::DiskEio,
        SwarmKind::ConsumerCrash,
        SwarmKind::ConsumerPause,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SwarmKind::Crash => "crash",
            SwarmKind::CrashDuringElection => "crash_during_election",
            SwarmKind::CrashVoter => "crash_voter",
            SwarmKind::CrashFlap => "crash_flap",
            SwarmKind::CrashBurst => "crash_burst",
            SwarmKind::PowerLoss => "power_loss",
            SwarmKind::PartitionOneway => "partition_oneway",
            SwarmKind::PartitionMinority => "partition_minority",
            SwarmKind::PartitionBridge => "partition_bridge",
            SwarmKind::Loss => "loss",
            SwarmKind::Latency => "latency",
            SwarmKind::Pause => "pause",
            SwarmKind::TornWrites => "torn_writes",
            SwarmKind::IoErrors => "io_errors",
            SwarmKind::ReadCorruption => "read_corruption",
            SwarmKind::Clock => "clock",
            SwarmKind::DiskFull => "disk_full",
            SwarmKind::DiskEio => "disk_eio",
            SwarmKind::ConsumerCrash => "consumer_crash",
            SwarmKind::ConsumerPause => "consumer_pause",
        }
    }

    /// A fault of a consumer instance rather than of the cluster (it needs a consumer it can
    /// hit).
    pub const fn is_consumer(self) -> bool {
        matches!(self, SwarmKind::ConsumerCrash | SwarmKind::ConsumerPause)
    }

    /// Not among the default `kinds`: a scenario names it. The consumer kinds, and kinds that
    /// would change the draws of the default file's published seeds.
    pub const fn opt_in(self) -> bool {
        self.is_consumer() || matches!(self, SwarmKind::DiskEio)
    }

    /// Drawn from a stream of its own, after every other draw: a kind added after published
    /// findings, so that a seed which does not switch it on draws exactly what it drew before
    /// (the planted-bug table's seeds and the regression files stay what they were).
    pub const fn own_stream(self) -> bool {
        matches!(
            self,
            SwarmKind::DiskFull
                | SwarmKind::DiskEio
                | SwarmKind::ConsumerCrash
                | SwarmKind::ConsumerPause
        )
    }

    /// A disk kind: a fault model for the whole run rather than faults in the schedule.
    pub const fn is_disk(self) -> bool {
        matches!(
            self,
            SwarmKind::TornWrites | SwarmKind::IoErrors | SwarmKind::ReadCorruption
        )
    }
}

impl fmt::Display for SwarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The `[swarm]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmSpec {
    /// The kinds a seed may switch on; each is on with probability 1/2, at least one.
    /// Default: every kind but the opt-in ones ([`SwarmKind::opt_in`]).
    pub kinds: Vec<SwarmKind>,
    /// How many faults a seed draws, `[min, max]`, over its enabled schedule kinds.
    pub faults: [u32; 2],
    /// Faults start within `[from, to]` simulated seconds; default: the workload phase minus
    /// its first and last half second.
    pub window_s: Option<[f64; 2]>,
    /// The longest a fault lasts before it is undone, in seconds.
    pub fault_s_max: f64,
    /// The largest rate of a `loss` fault and of a `disk_eio` window; the run-long `io_errors`
    /// model draws up to a twentieth of it, read corruption up to a tenth.
    pub rate_max: f64,
    /// Each producer's `acks`, drawn from this list; empty: as in the file.
    pub acks: Vec<String>,
    /// Each producer's `idempotence`, drawn from this list; empty: as in the file.
    pub idempotence: Vec<bool>,
    /// The cluster's `fsync` policy, drawn from this list; empty: as in the file.
    pub fsync: Vec<FsyncPolicy>,
    /// The cluster's `replication.buggify`, drawn from this list; empty: as in the file.
    pub buggify: Vec<bool>,
    /// The cluster's `replication.pre_vote`, drawn from this list; empty: as in the file.
    pub pre_vote: Vec<bool>,
    /// The cluster's `share.failover`, drawn from this list; empty: as in the file. Drawn
    /// from the late stream after everything else, so that listing it changes no other draw.
    pub share_failover: Vec<ShareFailover>,
}

impl Default for SwarmSpec {
    fn default() -> Self {
        SwarmSpec {
            kinds: SwarmKind::ALL.into_iter().filter(|k| !k.opt_in()).collect(),
            faults: [1, 6],
            window_s: None,
            fault_s_max: 4.0,
            rate_max: 0.05,
            acks: Vec::new(),
            idempotence: Vec::new(),
            fsync: Vec::new(),
            buggify: Vec::new(),
            pre_vote: Vec::new(),
            share_failover: Vec::new(),
        }
    }
}

/// A scenario with `[swarm]`: the table and the file text the draws are written into.
#[derive(Debug, Clone, PartialEq)]
pub struct Swarm {
    pub spec: SwarmSpec,
    pub text: String,
    pub source_name: String,
}

/// One seed's draw: the scenario to run, and its text.
pub struct Drawn {
    pub scenario: Scenario,
    pub text: String,
    /// One line per decision, for the terminal.
    pub description: Vec<String>,
}

/// Draws `scenario`'s configuration for `seed`; the scenario must have a `[swarm]` table.
pub fn draw(scenario: &Scenario, swarm: &Swarm, seed: u64) -> Result<Drawn, ScenarioError> {
    let mut rng = Rng::new(seed ^ SWARM_SALT);
    let spec = &swarm.spec;
    let mut text = ScenarioText::parse(&swarm.text, &swarm.source_name)?;
    text.remove("swarm");
    text.set("seed", seed as i64);
    let mut description = Vec::new();

    let mut late_rng = Rng::new(seed ^ SWARM_LATE_SALT);
    let enabled = enabled_kinds(spec, &mut rng);
    let late = enabled_late_kinds(spec, &mut late_rng);
    let names: Vec<&str> = enabled.iter().chain(&late).map(|k| k.name()).collect();
    description.push(format!("kinds      {}", names.join(", ")));
    draw_disk(&enabled, spec, &mut rng, &mut text, &mut description);
    draw_workload(scenario, spec, &mut rng, &mut text, &mut description);

    let mut draw = FaultDraw::new(scenario, spec, &mut rng);
    let schedule: Vec<SwarmKind> = enabled.iter().copied().filter(|k| !k.is_disk()).collect();
    if !schedule.is_empty() {
        let count = draw
            .rng
            .range_u64(spec.faults[0] as u64, spec.faults[1] as u64);
        for _ in 0..count {
            let kind = schedule[draw.rng.range_u64(0, schedule.len() as u64 - 1) as usize];
            draw.fault(kind);
        }
    }
    let mut drawn_faults = draw.faults;
    let mut late_draw = FaultDraw::new(scenario, spec, &mut late_rng);
    for &kind in &late {
        late_draw.fault(kind);
    }
    drawn_faults.extend(late_draw.faults);
    if !spec.share_failover.is_empty() {
        let options = &spec.share_failover;
        let failover = options[late_rng.range_u64(0, options.len() as u64 - 1) as usize];
        text.set("cluster.share.failover", failover.name());
        description.push(format!("workload   share.failover = {}", failover.name()));
    }
    let mut faults = scenario.faults.clone();
    faults.extend(drawn_faults);
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    text.set_faults(&faults);
    text.prepend_comment(&format!(
        "# Drawn by the [swarm] table of {} for seed {seed}; `fathom run` on this file replays it.\n",
        swarm.source_name
    ));
    let text = text.text();
    let drawn = Scenario::from_toml_str(&text, &format!("{} (seed {seed})", swarm.source_name))?;
    for f in &drawn.faults {
        description.push(format!("fault      {}", describe(f)));
    }
    Ok(Drawn {
        scenario: drawn,
        text,
        description,
    })
}

/// The kinds of the main stream a seed switches on: each with probability 1/2, at least one.
fn enabled_kinds(spec: &SwarmSpec, rng: &mut Rng) -> Vec<SwarmKind> {
    let kinds: Vec<SwarmKind> = spec
        .kinds
        .iter()
        .copied()
        .filter(|k| !k.own_stream())
        .collect();
    let mut on: Vec<SwarmKind> = kinds.iter().copied().filter(|_| rng.chance(0.5)).collect();
    if on.is_empty() && !kinds.is_empty() {
        on.push(kinds[rng.range_u64(0, kinds.len() as u64 - 1) as usize]);
    }
    on.sort();
    on.dedup();
    on
}

/// The kinds of their own stream a seed switches on, each with probability 1/2; each adds one
/// fault to the schedule.
fn enabled_late_kinds(spec: &SwarmSpec, rng: &mut Rng) -> Vec<SwarmKind> {
    let mut kinds: Vec<SwarmKind> = spec
        .kinds
        .iter()
        .copied()
        .filter(|k| k.own_stream())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds.retain(|_| rng.chance(0.5));
    kinds
}

fn draw_disk(
    enabled: &[SwarmKind],
    spec: &SwarmSpec,
    rng: &mut Rng,
    text: &mut ScenarioText,
    description: &mut Vec<String>,
) {
    for kind in enabled.iter().filter(|k| k.is_disk()) {
        match kind {
            SwarmKind::TornWrites => {
                text.set("disk.block_size", TORN_BLOCK_BYTES as i64);
                description.push(format!(
                    "disk       torn writes, {TORN_BLOCK_BYTES}-byte blocks"
                ));
            }
            SwarmKind::IoErrors => {
                let p = rate(rng, spec.rate_max / 20.0);
                text.set("disk.io_error_probability", p);
                description.push(format!("disk       EIO probability {p}"));
            }
            SwarmKind::ReadCorruption => {
                let p = rate(rng, spec.rate_max / 10.0);
                text.set("disk.corruption_probability", p);
                description.push(format!("disk       read corruption probability {p}"));
            }
            _ => {}
        }
    }
}

fn draw_workload(
    scenario: &Scenario,
    spec: &SwarmSpec,
    rng: &mut Rng,
    text: &mut ScenarioText,
    description: &mut Vec<String>,
) {
    if !spec.fsync.is_empty() {
        let fsync = spec.fsync[rng.range_u64(0, spec.fsync.len() as u64 - 1) as usize];
        let name = match fsync {
            FsyncPolicy::EveryBatch => "every_batch",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        };
        text.set("cluster.log.fsync", name);
        description.push(format!("workload   fsync = {name}"));
    }
    if !spec.buggify.is_empty() {
        let on = spec.buggify[rng.range_u64(0, spec.buggify.len() as u64 - 1) as usize];
        text.set("cluster.replication.buggify", on);
        description.push(format!("workload   replication.buggify = {on}"));
    }
    if !spec.pre_vote.is_empty() {
        let on = spec.pre_vote[rng.range_u64(0, spec.pre_vote.len() as u64 - 1) as usize];
        text.set("cluster.replication.pre_vote", on);
        description.push(format!("workload   replication.pre_vote = {on}"));
    }
    for (i, p) in scenario.producers.iter().enumerate() {
        if !spec.acks.is_empty() {
            let acks = &spec.acks[rng.range_u64(0, spec.acks.len() as u64 - 1) as usize];
            let name = Acks::from_name(acks).map_or(acks.clone(), |a| a.name().to_string());
            text.set_in_array("producers", i, "acks", name.as_str());
            description.push(format!(
                "workload   producers[{i}] ({}) acks = {name}",
                p.name
            ));
        }
        if !spec.idempotence.is_empty() {
            let on = spec.idempotence[rng.range_u64(0, spec.idempotence.len() as u64 - 1) as usize];
            text.set_in_array("producers", i, "idempotence", on);
            description.push(format!(
                "workload   producers[{i}] ({}) idempotence = {on}",
                p.name
            ));
        }
    }
}

/// A probability up to `max`, rounded to six decimals so that the file shows it plainly.
fn rate(rng: &mut Rng, max: f64) -> f64 {
    let micros = (max * 1e6) as u64;
    let low = (micros / 10).max(1);
    rng.range_u64(low, micros.max(low)) as f64 / 1e6
}

/// Draws schedule faults of the enabled kinds.
struct FaultDraw<'a> {
    rng: &'a mut Rng,
    brokers: u32,
    /// `(topic, partitions)` of every declared topic.
    topics: Vec<(String, u32)>,
    window_ms: (u64, u64),
    fault_ms_max: u64,
    duration_ms: u64,
    rate_max: f64,
    /// Instances a consumer fault may hit (`c-0`, ...): members of a group or a share group.
    consumer_instances: Vec<String>,
    faults: Vec<Fault>,
}

impl<'a> FaultDraw<'a> {
    fn new(scenario: &Scenario, spec: &SwarmSpec, rng: &'a mut Rng) -> FaultDraw<'a> {
        let duration_ms = (scenario.duration_s * 1e3) as u64;
        let window = spec
            .window_s
            .unwrap_or([0.5, (scenario.duration_s - 0.5).max(0.5)]);
        FaultDraw {
            rng,
            brokers: scenario.cluster.brokers,
            topics: scenario
                .cluster
                .topics
                .iter()
                .map(|t| (t.name.clone(), t.partitions))
                .collect(),
            window_ms: ((window[0] * 1e3) as u64, (window[1] * 1e3) as u64),
            fault_ms_max: ((spec.fault_s_max * 1e3) as u64).max(100),
            duration_ms,
            rate_max: spec.rate_max,
            consumer_instances: scenario
                .consumers
                .iter()
                .filter(|c| c.has_membership())
                .flat_map(|c| (0..c.instances.get()).map(|i| c.incarnation_names(i).swap_remove(0)))
                .collect(),
            faults: Vec::new(),
        }
    }

    fn fault(&mut self, kind: SwarmKind) {
        let at = self.rng.range_u64(self.window_ms.0, self.window_ms.1);
        match kind {
            SwarmKind::Crash => {
                let target = self.target();
                self.push(at, FaultKind::Crash { target });
            }
            SwarmKind::CrashDuringElection => {
                let (topic, partition) = self.partition();
                let leader = Target::LeaderOf { topic, partition };
                self.push(
                    at,
                    FaultKind::Crash {
                        target: leader.clone(),
                    },
                );
                let next = at + self.rng.range_u64(50, 600);
                self.push(next, FaultKind::Crash { target: leader });
            }
            SwarmKind::CrashVoter => {
                let (topic, partition) = self.partition();
                let leader = Target::LeaderOf { topic, partition };
                self.push(at, FaultKind::Crash { target: leader });
                let voter = Target::Broker(self.broker());
                let mid_election = at + self.rng.range_u64(300, 900);
                let back_ms = self.rng.range_u64(20, 300);
                self.push_for(mid_election, back_ms, FaultKind::Crash { target: voter });
            }
            SwarmKind::CrashFlap => {
                // One broker by id (a leader target would move to the successor after the
                // first crash); with a few partitions over the brokers it leads some of them.
                let id = self.broker();
                let mut t = at;
                for _ in 0..self.rng.range_u64(2, 4) {
                    let down_ms = self.rng.range_u64(20, 300);
                    let target = Target::Broker(id);
                    self.push_for(t, down_ms, FaultKind::Crash { target });
                    t += down_ms + self.rng.range_u64(20, 200);
                }
            }
            SwarmKind::CrashBurst => {
                let (a, b) = self.two_brokers();
                self.push(
                    at,
                    FaultKind::Crash {
                        target: Target::Broker(a),
                    },
                );
                let next = at + self.rng.range_u64(0, 300);
                self.push(
                    next,
                    FaultKind::Crash {
                        target: Target::Broker(b),
                    },
                );
            }
            SwarmKind::PowerLoss => self.push(at, FaultKind::PowerLoss),
            SwarmKind::PartitionOneway => {
                let id = self.broker();
                let others = self.brokers_except(&[id]);
                let from = vec![Member::Broker(Target::Broker(id))];
                self.push(at, FaultKind::PartitionOneway { from, to: others });
            }
            SwarmKind::PartitionMinority => {
                let minority = match self.rng.chance(0.5) {
                    true => {
                        let (topic, partition) = self.partition();
                        Member::Broker(Target::LeaderOf { topic, partition })
                    }
                    false => Member::Broker(Target::Broker(self.broker())),
                };
                let groups = vec![vec![minority], vec![Member::AllBrokers]];
                self.push(at, FaultKind::Partition { groups });
            }
            SwarmKind::PartitionBridge => {
                let (a, b) = self.two_brokers();
                let groups = vec![
                    vec![Member::Broker(Target::Broker(a))],
                    vec![Member::Broker(Target::Broker(b))],
                ];
                self.push(at, FaultKind::Partition { groups });
            }
            SwarmKind::Loss => {
                let between = self.one_broker_and_everyone();
                let rate = rate(self.rng, self.rate_max);
                self.push(at, FaultKind::Loss { between, rate });
            }
            SwarmKind::Latency => {
                let between = self.one_broker_and_everyone();
                let max_ms = self.rng.range_u64(20, 500);
                let latency_ms = MillisRange { min_ms: 1, max_ms };
                self.push(
                    at,
                    FaultKind::Latency {
                        between,
                        latency_ms,
                    },
                );
            }
            SwarmKind::Pause => {
                let between = self.one_broker_and_everyone();
                self.push(at, FaultKind::Hold { between });
            }
            SwarmKind::Clock => {
                let target = self.target();
                // Log-uniform in [1/4, 4]: as likely slow as fast.
                let clock_rate = 4f64.powf(self.rng.range_u64(0, 2_000) as f64 / 1_000.0 - 1.0);
                let clock_rate = (clock_rate * 1e3).round() / 1e3;
                // A clock at true speed must leap, or the fault does nothing.
                let jump_s = match self.rng.chance(0.5) || clock_rate == 1.0 {
                    true => self.rng.range_u64(500, 10_000) as f64 / 1e3,
                    false => 0.0,
                };
                self.push(
                    at,
                    FaultKind::Clock {
                        target,
                        clock_rate,
                        jump_s,
                    },
                );
            }
            SwarmKind::DiskFull => {
                let target = self.target();
                self.push(at, FaultKind::DiskFull { target });
            }
            SwarmKind::DiskEio => {
                let target = self.target();
                let rate = rate(self.rng, self.rate_max);
                self.push(at, FaultKind::DiskEio { target, rate });
            }
            SwarmKind::ConsumerCrash => {
                if let Some(process) = self.consumer_instance() {
                    // Always restarted, even past the workload (the final heal does not start
                    // consumer processes): a group whose every member stayed dead would leave
                    // its records unconsumed by design, not by a bug.
                    let at_ms = at.min(self.duration_ms);
                    let back_ms = at_ms + self.rng.range_u64(50, self.fault_ms_max);
                    self.faults.push(Fault {
                        at_s: at_ms as f64 / 1e3,
                        until_s: Some(back_ms as f64 / 1e3),
                        kind: FaultKind::ConsumerCrash { process },
                    });
                }
            }
            SwarmKind::ConsumerPause => {
                if let Some(process) = self.consumer_instance() {
                    let pause_ms = self.rng.range_u64(50, self.fault_ms_max);
                    let pause_s = pause_ms as f64 / 1e3;
                    self.push_for(at, pause_ms, FaultKind::Pause { process, pause_s });
                }
            }
            SwarmKind::TornWrites | SwarmKind::IoErrors | SwarmKind::ReadCorruption => {}
        }
    }

    /// Adds a fault at `at_ms` that lasts a drawn time; a fault that would outlast the workload
    /// is left to the final heal.
    fn push(&mut self, at_ms: u64, kind: FaultKind) {
        let lasts_ms = self.rng.range_u64(50, self.fault_ms_max);
        self.push_for(at_ms, lasts_ms, kind);
    }

    fn push_for(&mut self, at_ms: u64, lasts_ms: u64, kind: FaultKind) {
        let at_ms = at_ms.min(self.duration_ms);
        let end_ms = at_ms + lasts_ms;
        let until_s = (end_ms < self.duration_ms).then_some(end_ms as f64 / 1e3);
        self.faults.push(Fault {
            at_s: at_ms as f64 / 1e3,
            until_s,
            kind,
        });
    }

    /// A consumer instance faults may hit; validation keeps consumer kinds out of scenarios
    /// without one.
    fn consumer_instance(&mut self) -> Option<String> {
        let n = self.consumer_instances.len() as u64;
        let i = self.rng.range_u64(0, n.checked_sub(1)?) as usize;
        self.consumer_instances.get(i).cloned()
    }

    fn broker(&mut self) -> u32 {
        self.rng.range_u64(1, self.brokers as u64) as u32
    }

    fn two_brokers(&mut self) -> (u32, u32) {
        let a = self.broker();
        let mut b = self.rng.range_u64(1, self.brokers.max(2) as u64 - 1) as u32;
        if b >= a {
            b += 1;
        }
        (a, b.min(self.brokers))
    }

    fn brokers_except(&self, ids: &[u32]) -> Vec<Member> {
        (1..=self.brokers)
            .filter(|id| !ids.contains(id))
            .map(|id| Member::Broker(Target::Broker(id)))
            .collect()
    }

    fn partition(&mut self) -> (String, u32) {
        let (topic, partitions) =
            self.topics[self.rng.range_u64(0, self.topics.len() as u64 - 1) as usize].clone();
        let p = self.rng.range_u64(0, partitions as u64 - 1) as u32;
        (topic, p)
    }

    /// A random broker or a partition's leader.
    fn target(&mut self) -> Target {
        if self.rng.chance(0.5) {
            let (topic, partition) = self.partition();
            Target::LeaderOf { topic, partition }
        } else {
            Target::Broker(self.broker())
        }
    }

    /// A broker (or a leader) and every other host: its links to everyone.
    fn one_broker_and_everyone(&mut self) -> [Vec<Member>; 2] {
        let target = self.target();
        [
            vec![Member::Broker(target)],
            vec![Member::AllBrokers, Member::AllClients],
        ]
    }
}

/// One line for a fault: when, what, until when.
fn describe(f: &Fault) -> String {
    let until = f
        .until_s
        .map_or("the final heal".to_string(), |u| format!("{u:.3} s"));
    let what = match &f.kind {
        FaultKind::Crash { target } => format!("crash {target}"),
        FaultKind::PowerLoss => "power loss of every broker".to_string(),
        FaultKind::Join { consumer } => format!("a new instance of {consumer} joins"),
        FaultKind::Leave { process } => format!("{process} leaves its group"),
        FaultKind::ConsumerCrash { process } => format!("crash consumer {process}"),
        FaultKind::Pause { process, pause_s } => format!("pause {process} for {pause_s} s"),
        FaultKind::RollingRestart { consumer, gap_s } => {
            format!("rolling restart of {consumer}, {gap_s} s apart")
        }
        FaultKind::Partition { groups } => {
            let groups: Vec<String> = groups.iter().map(|g| hosts(g)).collect();
            format!("partition {}", groups.join(" | "))
        }
        FaultKind::PartitionOneway { from, to } => {
            format!("one-way partition {} -> {}", hosts(from), hosts(to))
        }
        FaultKind::Hold { between } => {
            format!(
                "pause (hold) {} <-> {}",
                hosts(&between[0]),
                hosts(&between[1])
            )
        }
        FaultKind::Loss { between, rate } => {
            format!(
                "loss {rate} {} <-> {}",
                hosts(&between[0]),
                hosts(&between[1])
            )
        }
        FaultKind::Latency {
            between,
            latency_ms,
        } => format!(
            "latency up to {} ms {} <-> {}",
            latency_ms.max_ms,
            hosts(&between[0]),
            hosts(&between[1])
        ),
        FaultKind::Heal => "heal".to_string(),
        FaultKind::Clock {
            target,
            clock_rate,
            jump_s,
        } => format!("clock of {target} at {clock_rate}x, {jump_s} s ahead"),
        FaultKind::DiskFull { target } => format!("disk of {target} full"),
        FaultKind::DiskEio { target, rate } => {
            format!(
                "EIO on {:.3}% of the disk operations of {target}",
                rate * 100.0
            )
        }
    };
    format!("{:>7.3} s  {what}, until {until}", f.at_s)
}

fn hosts(members: &[Member]) -> String {
    let names: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    format!("[{}]", names.join(", "))
}
