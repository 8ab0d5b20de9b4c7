//! One seeded run of a scenario: build the turmoil simulation, run the workload under the fault
//! schedule, heal, settle, read everything back, and judge the history.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use fathom_driver::{
    run_broker, BrokerObserver, BrokerRunError, Clock, Disk, Net, SharedResources,
};
use fathom_history::{self as history, CheckReport, Event};
use fathom_queue::broker::{Broker, BrokerLimits};
use fathom_queue::config::ClusterConfig;
use fathom_queue::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use fathom_queue::log::{batch, RecoveryReport};
use fathom_queue::protocol::{Message, Request};
use fathom_queue::rng::Rng;
use fathom_queue::time::Instant;

use crate::fault_log::{AppliedFault, AppliedKind};
use crate::faults::FaultPlan;
use crate::harness::{Harness, SimControl};
use crate::io::{SimDisk, SimNet, WritebackDisk};
use crate::liveness::{self, LeaderDeadline};
use crate::messages::Messages;
use crate::metrics::{Metrics, ProduceProbe};
use crate::resources::{self, World};
use crate::scenario::{broker_host, Scenario, BROKER_PORT};
use crate::summary::Summary;
use crate::view::{ClusterView, ReplicaSnapshot, SharedView};
use crate::violation::Violation;
use fathom_workload::clients::{ConsumerProcess, FinalRead, ProducerProcess};
use fathom_workload::trace::{AttemptRecord, SharedTrace, Trace};

/// The simulated clock starts here, so that no run depends on the real date.
pub(crate) const EPOCH_UNIX_S: u64 = 1_700_000_000;
/// How long a broker that stopped on a storage failure stays down before its supervisor
/// restarts it.
pub(crate) const FATAL_RESTART_DELAY: Duration = Duration::from_secs(1);
/// Past the scenario's own phases, how long the final read may take.
pub(crate) const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Simulated time the brokers get to report their logs after the final read.
pub(crate) const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the simulation failed: {0}")]
    Sim(String),
    /// The run took longer than its wall-clock limit ([`RunLimits::wall`]); it was abandoned
    /// and says nothing about the seed's safety.
    #[error("over the wall-time limit of {} s (at {:.1} simulated s)", .limit.as_secs_f64(), .simulated.as_secs_f64())]
    WallTime {
        limit: Duration,
        simulated: Duration,
    },
    /// The seed's `[swarm]` draw is not a valid scenario (a bug in the draw).
    #[error("the swarm draw is invalid: {0}")]
    Swarm(#[from] crate::scenario::ScenarioError),
    /// This binary cannot run the harness asked for.
    #[error("{0}")]
    Harness(String),
    /// The scenario uses something the harness does not model yet.
    #[error("not supported under the {harness} harness: {what}")]
    Unsupported { harness: &'static str, what: String },
}

/// Limits on one run that do not change what it does, only whether it is allowed to finish.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Real time the run may take; `None`: no limit.
    pub wall: Option<Duration>,
}

/// How many simulation steps pass between two looks at the wall clock.
const WALL_CHECK_STEPS: u64 = 1024;

/// What one run produced.
pub struct RunOutcome {
    pub summary: Summary,
    pub report: CheckReport,
    pub events: Vec<Event>,
    /// With `[swarm]`: the seed's drawn scenario file and one line per decision.
    pub drawn: Option<(String, Vec<String>)>,
    /// The send journal: every produce attempt, in the order outcomes were known.
    pub attempts: Vec<AttemptRecord>,
    /// Bound violations of the scenario's `[expect]` and the run-level properties (liveness,
    /// leader conflicts, finishing in time); empty when the run passes.
    pub violations: Vec<Violation>,
}

pub(crate) struct SimObserver {
    id: NodeId,
    view: SharedView,
    trace: SharedTrace,
    /// What this broker last led, to log changes.
    leading: BTreeMap<TopicPartition, u64>,
    /// The final snapshot of this broker's logs was taken.
    snapshot_taken: bool,
    /// This incarnation's `Broker::leader_conflicts` already added to the view.
    conflicts_counted: u64,
    /// Per replica, in `Broker::replicas` order: its partition, high watermark and led epoch
    /// when last observed. The observer runs after every input; a replica whose two figures
    /// did not move has nothing new to record in the view. A broker's replicas are fixed when
    /// it starts, so an index names the same partition for the whole incarnation.
    seen: Vec<(TopicPartition, u64, Option<u64>)>,
    /// `ClusterView::leader_updates` after this observer's last pass: while it stands, the
    /// leaders it recorded are still there and need not be written again.
    leader_updates_seen: u64,
    /// [`Broker::replica_events`] at this observer's last pass.
    events_seen: Option<u64>,
    /// The push and share state figures last handed to the probes.
    probed: Option<[u64; 4]>,
}

impl BrokerObserver for SimObserver {
    fn recovered(&mut self, reports: &[RecoveryReport]) {
        let damaged = reports
            .iter()
            .filter(|r| r.truncated_bytes > 0 || r.first_error.is_some());
        for r in damaged {
            let mut view = self.view.borrow_mut();
            view.recoveries.damaged_logs += 1;
            view.recoveries.truncated_bytes += r.truncated_bytes;
            view.recoveries.corrupt_logs += u64::from(r.corrupt);
            let cause = r.first_error.as_deref().unwrap_or("no error");
            self.trace.borrow_mut().note(
                sim_now_ns(),
                format!(
                    "broker-{} recovery cut {} bytes off a log ({cause})",
                    self.id, r.truncated_bytes
                ),
            );
        }
    }

    fn input(&mut self, now: Instant, arrived: Instant, msg: &Message) {
        let Message::Request {
            request: Request::Produce {
                partition, batch, ..
            },
            ..
        } = msg
        else {
            return;
        };
        if partition.topic == OFFSETS_TOPIC {
            return;
        }
        let Ok(records) = batch::records(batch) else {
            return;
        };
        let handled_ns = sim_now_ns();
        let probe = ProduceProbe {
            broker: self.id,
            ids: records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.key).into_owned())
                .collect(),
            arrived_ns: handled_ns.saturating_sub(now.saturating_since(arrived).as_nanos() as u64),
            handled_ns,
        };
        self.view.borrow_mut().probes.produce.push(probe);
    }

    fn observe(&mut self, _now: Instant, broker: &Broker) {
        let mut view = self.view.borrow_mut();
        let (subscriptions, push_bytes) = broker.push_subscriptions();
        let probed = [
            subscriptions as u64,
            push_bytes,
            broker.share_records_in_flight() as u64,
            broker.share_state_bytes(),
        ];
        // Unchanged since this incarnation's last look, the cluster's sums and peaks stand.
        if self.probed != Some(probed) {
            self.probed = Some(probed);
            let [subscriptions, push_bytes, share_records, share_bytes] = probed;
            view.probes
                .observe_push_state(self.id, subscriptions, push_bytes);
            view.probes
                .observe_share_state(self.id, share_records, share_bytes);
        }
        let conflicts = broker.leader_conflicts();
        view.leader_conflicts += conflicts.saturating_sub(self.conflicts_counted);
        self.conflicts_counted = conflicts;
        // No replica changed and no other broker wrote leaders since the last pass: the pass
        // would find every replica as it left it.
        let events = broker.replica_events();
        let quiet = self.events_seen == Some(events)
            && view.leader_updates == self.leader_updates_seen
            && (self.snapshot_taken || !view.snapshot_wanted);
        if quiet {
            return;
        }
        self.events_seen = Some(events);
        for (i, r) in broker.replicas().enumerate() {
            let tp = r.partition();
            let hw = r.high_watermark();
            let leads = r.is_leader().then_some(r.term());
            let unchanged = self.seen.get(i).is_some_and(|(t, h, l)| {
                debug_assert_eq!(t, tp, "a broker's replicas are fixed at its start");
                *h == hw && *l == leads
            });
            if unchanged {
                // The high watermark timeline only grows and the leading set is this broker's
                // own to change, so both hold what they did. `leaders` is written again if it
                // changed since: a second leader of the same epoch (a leader conflict) may
                // have taken it.
                if let Some(epoch) =
                    leads.filter(|_| view.leader_updates != self.leader_updates_seen)
                {
                    record_leader(&mut view, tp, epoch, broker.id());
                }
                continue;
            }
            match self.seen.get_mut(i) {
                Some(seen) => (seen.1, seen.2) = (hw, leads),
                None => self.seen.push((tp.clone(), hw, leads)),
            }
            if tp.topic != OFFSETS_TOPIC {
                let timeline = slot(&mut view.probes.high_watermarks, tp);
                if timeline.last().is_none_or(|&(_, last)| hw > last) {
                    timeline.push((sim_now_ns(), hw));
                }
            }
            let led = self.leading.get(tp).copied();
            let leading = slot(&mut view.leading, tp);
            if leads.is_some() {
                leading.insert(broker.id());
            } else {
                leading.remove(&broker.id());
            }
            if led != leads {
                let text = match leads {
                    Some(epoch) => format!("broker-{} leads {tp} in epoch {epoch}", broker.id()),
                    None => format!("broker-{} no longer leads {tp}", broker.id()),
                };
                self.trace.borrow_mut().note(sim_now_ns(), text);
                if let Some(epoch) = leads {
                    let change = (sim_now_ns(), tp.clone(), broker.id(), epoch);
                    view.probes.leader_changes.push(change);
                    if view.record_epoch_leader(tp, epoch, broker.id()) {
                        let text = format!("two leaders of {tp} in epoch {epoch}");
                        self.trace.borrow_mut().note(sim_now_ns(), text);
                    }
                }
                match leads {
                    Some(epoch) => self.leading.insert(tp.clone(), epoch),
                    None => self.leading.remove(tp),
                };
            }
            if let Some(epoch) = leads {
                record_leader(&mut view, tp, epoch, broker.id());
            }
        }
        self.leader_updates_seen = view.leader_updates;
        if view.snapshot_wanted && !self.snapshot_taken {
            self.snapshot_taken = true;
            for r in broker.replicas() {
                let log = r.log();
                let mut records = Vec::new();
                let mut at = log.start_offset();
                while at < log.end_offset() {
                    let batches = log.read(at, log.end_offset(), 1 << 20);
                    if batches.is_empty() {
                        break;
                    }
                    for b in &batches {
                        // A batch that does not parse (none should: the log checked each on
                        // append) yields no records, and ends the walk if it is the last read.
                        let Ok(header) = batch::parse(b) else {
                            at = u64::MAX;
                            continue;
                        };
                        at = header.end_offset();
                        if header.is_control() {
                            continue;
                        }
                        for rec in batch::records_of(&header, b).unwrap_or_default() {
                            records.push((rec.offset, String::from_utf8_lossy(&rec.key).into()));
                        }
                    }
                }
                let snap = ReplicaSnapshot {
                    high_watermark: r.high_watermark(),
                    log_end: log.end_offset(),
                    records,
                };
                view.snapshots
                    .entry(r.partition().clone())
                    .or_default()
                    .insert(broker.id(), snap);
            }
        }
    }
}

/// `map[tp]`, inserted empty if absent. The observer looks at every replica after every
/// change; `entry(tp.clone())` would copy the topic name each time.
fn slot<'m, V: Default>(
    map: &'m mut BTreeMap<TopicPartition, V>,
    tp: &TopicPartition,
) -> &'m mut V {
    if !map.contains_key(tp) {
        map.insert(tp.clone(), V::default());
    }
    map.get_mut(tp).expect("present: inserted above")
}

/// Records `id` as the leader of `tp` in `epoch` unless a later epoch's leader is known.
fn record_leader(view: &mut ClusterView, tp: &TopicPartition, epoch: u64, id: NodeId) {
    let entry = slot(&mut view.leaders, tp);
    if epoch >= entry.0 && *entry != (epoch, id) {
        *entry = (epoch, id);
        view.leader_updates += 1;
    }
}

/// Simulated nanoseconds since the run started: the trace's clock, from the running harness.
pub fn sim_now_ns() -> u64 {
    crate::harness::sim_elapsed().as_nanos() as u64
}

/// Runs `scenario` once with `seed`, with no wall-time limit.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunOutcome, RunError> {
    run_with_limits(scenario, seed, RunLimits::default())
}

/// Runs `scenario` once with `seed` on `harness`, which must be the one this binary was built
/// for (see [`crate::harness`]).
pub fn run_on(
    harness: Harness,
    scenario: &Scenario,
    seed: u64,
    limits: RunLimits,
) -> Result<RunOutcome, RunError> {
    if let Some(reason) = crate::harness::unavailable_reason(harness) {
        return Err(RunError::Harness(reason));
    }
    match harness {
        Harness::Turmoil => run_turmoil(scenario, seed, limits),
        Harness::Madsim => run_madsim(scenario, seed, limits),
    }
}

#[cfg(madsim)]
fn run_madsim(scenario: &Scenario, seed: u64, limits: RunLimits) -> Result<RunOutcome, RunError> {
    if let Some(swarm) = &scenario.swarm {
        let drawn = crate::swarm::draw(scenario, swarm, seed)?;
        let mut outcome = crate::madsim_run::run(&drawn.scenario, seed, limits)?;
        outcome.drawn = Some((drawn.text, drawn.description));
        return Ok(outcome);
    }
    crate::madsim_run::run(scenario, seed, limits)
}

#[cfg(not(madsim))]
fn run_madsim(_: &Scenario, _: u64, _: RunLimits) -> Result<RunOutcome, RunError> {
    Err(RunError::Harness(
        crate::harness::unavailable_reason(Harness::Madsim).unwrap_or_default(),
    ))
}

/// Runs `scenario` once with `seed` on the harness this binary was built for (turmoil, or
/// madsim in the `--cfg madsim` build), so every command that runs seeds uses it.
pub fn run_with_limits(
    scenario: &Scenario,
    seed: u64,
    limits: RunLimits,
) -> Result<RunOutcome, RunError> {
    run_on(Harness::BUILT, scenario, seed, limits)
}

/// Runs `scenario` once with `seed` on turmoil: adds the hosts, steps the simulation through the
/// workload, the settle phase and the final read while applying the fault schedule, then judges.
/// A run still going at its simulated-time limit is judged `stuck`; one over `limits.wall` of
/// real time is abandoned with [`RunError::WallTime`].
fn run_turmoil(scenario: &Scenario, seed: u64, limits: RunLimits) -> Result<RunOutcome, RunError> {
    if let Some(swarm) = &scenario.swarm {
        let drawn = crate::swarm::draw(scenario, swarm, seed)?;
        let mut outcome = run_turmoil(&drawn.scenario, seed, limits)?;
        outcome.drawn = Some((drawn.text, drawn.description));
        return Ok(outcome);
    }
    let wall_start = std::time::Instant::now();
    let cluster = scenario.cluster_config();
    let trace: SharedTrace = Rc::new(RefCell::new(Trace::with_clock(sim_now_ns)));
    let view: SharedView = Rc::new(RefCell::new(ClusterView::default()));
    let workload_end = scenario.duration();
    let settle_end = workload_end + scenario.settle();
    // Producers may hold the final read back by up to one FINAL_READ_TIMEOUT, and the read
    // itself takes up to another. turmoil's own limit leaves room for the snapshots after it.
    let stuck_at = settle_end + FINAL_READ_TIMEOUT * 2 + SNAPSHOT_WAIT;
    let mut sim = build_sim(scenario, seed, stuck_at + SNAPSHOT_WAIT);
    let hosts = Hosts {
        scenario,
        cluster: &cluster,
        seed,
        trace: &trace,
        world: scenario
            .resources
            .clone()
            .map(|spec| World::new(spec, scenario.network.clone(), scenario.tick())),
    };
    hosts.add_brokers(&mut sim, &view);
    let producers_running = hosts.add_producers(&mut sim, workload_end);
    hosts.add_consumers(&mut sim, workload_end, settle_end);
    set_zone_latencies(&sim, scenario);

    let mut plan = FaultPlan::new(scenario, &cluster, Rng::new(seed ^ 0xFA17));
    let mut supervisor = StorageSupervisor::default();
    let mut healed = false;
    let mut final_read_start = None;
    let mut leaders = LeaderDeadline::new(data_partitions(&cluster));
    let mut stuck = false;
    let incomplete = Rc::new(RefCell::new(Vec::new()));
    for step in 0u64.. {
        let now = sim.elapsed();
        plan.apply_due(&mut sim, now, &view, &trace);
        supervisor.step(&mut sim, now, &view, &trace);
        if !healed && now >= workload_end {
            healed = true;
            plan.heal_all(&mut sim, now, &view, &trace);
            leaders.healed(now, scenario.liveness());
        }
        let producers_done = producers_running.get() == 0 || now >= settle_end + FINAL_READ_TIMEOUT;
        if final_read_start.is_none() && now >= settle_end && producers_done {
            final_read_start = Some(now);
            hosts.add_final_read(&mut sim, now, &incomplete);
        }
        if now >= stuck_at {
            stuck = true;
            break;
        }
        check_wall_time(&limits, wall_start, step, now)?;
        let finished = sim.step().map_err(|e| RunError::Sim(e.to_string()))?;
        // After the step, so that brokers restarted by the heal have started (and forgotten
        // what their previous incarnation led).
        leaders.sample(now, &view.borrow(), |id| {
            sim.is_host_running(broker_host(id))
        });
        if finished && final_read_start.is_some() {
            break;
        }
    }
    take_snapshots(&mut sim, &view)?;
    let world = hosts.world.clone();
    drop(hosts);

    let trace = Rc::try_unwrap(trace)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| {
            std::mem::replace(&mut *rc.borrow_mut(), Trace::with_clock(sim_now_ns))
        });
    let end = RunEnd {
        plan: &plan,
        supervisor,
        leaders: &leaders,
        final_read_start,
        incomplete: incomplete.borrow().clone(),
        stuck_at,
        stuck,
    };
    Ok(conclude(scenario, seed, trace, &view, world, end))
}

/// What the run loop of either harness hands to [`conclude`].
pub(crate) struct RunEnd<'a> {
    pub(crate) plan: &'a FaultPlan,
    pub(crate) supervisor: StorageSupervisor,
    pub(crate) leaders: &'a LeaderDeadline,
    pub(crate) final_read_start: Option<Duration>,
    /// Partitions the final read could not finish.
    pub(crate) incomplete: Vec<String>,
    pub(crate) stuck_at: Duration,
    pub(crate) stuck: bool,
}

/// The end of a run under either harness: the history and the replicas judged, then the
/// properties every run must have (liveness, no leader conflict, not stuck).
pub(crate) fn conclude(
    scenario: &Scenario,
    seed: u64,
    trace: Trace,
    view: &SharedView,
    world: Option<Rc<RefCell<World>>>,
    end: RunEnd<'_>,
) -> RunOutcome {
    let mut faults = end.plan.applied();
    faults.extend(end.supervisor.failures);
    faults.sort_by_key(|f| f.at_ms);
    let incomplete = end.incomplete;
    let mut outcome = judge(
        scenario,
        seed,
        trace,
        view,
        faults,
        incomplete.clone(),
        world,
    );
    let liveness = Liveness {
        leaderless: end.leaders.leaderless(),
        final_read_start: end.final_read_start.unwrap_or(end.stuck_at),
        incomplete,
    };
    outcome.violations.extend(run_properties(
        scenario,
        &outcome,
        &view.borrow(),
        &liveness,
    ));
    if end.stuck {
        outcome.violations.push(Violation::Stuck {
            limit_s: end.stuck_at.as_secs_f64(),
        });
    }
    outcome
}

pub(crate) fn check_wall_time(
    limits: &RunLimits,
    wall_start: std::time::Instant,
    step: u64,
    now: Duration,
) -> Result<(), RunError> {
    let Some(limit) = limits.wall else {
        return Ok(());
    };
    if step.is_multiple_of(WALL_CHECK_STEPS) && wall_start.elapsed() > limit {
        return Err(RunError::WallTime {
            limit,
            simulated: now,
        });
    }
    Ok(())
}

/// What the run loop saw of recovery after the final heal.
struct Liveness {
    leaderless: Vec<TopicPartition>,
    final_read_start: Duration,
    incomplete: Vec<String>,
}

/// The properties every run must have whatever its `[expect]` says: no two leaders in a term,
/// and every partition available again within `liveness_s` of the final heal.
fn run_properties(
    scenario: &Scenario,
    outcome: &RunOutcome,
    view: &ClusterView,
    liveness: &Liveness,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if view.leader_conflicts > 0 || !view.epochs_with_two_leaders.is_empty() {
        out.push(Violation::LeaderConflict {
            seen_by_brokers: view.leader_conflicts,
            epochs: view
                .epochs_with_two_leaders
                .iter()
                .map(|(tp, epoch)| format!("{tp} epoch {epoch}"))
                .collect(),
        });
    }
    let mut unavailable: BTreeSet<String> = liveness
        .leaderless
        .iter()
        .map(|tp| tp.to_string())
        .collect();
    unavailable.extend(liveness::undelivered(
        &outcome.events,
        liveness.final_read_start,
        scenario.liveness(),
        &liveness.incomplete,
    ));
    if !unavailable.is_empty() {
        out.push(Violation::Unavailable {
            partitions: unavailable.into_iter().collect(),
            liveness_s: scenario.liveness_s,
        });
    }
    out
}

/// What adds the run's hosts to the simulation: brokers, producers, consumers, the final read.
pub(crate) struct Hosts<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) cluster: &'a ClusterConfig,
    pub(crate) seed: u64,
    pub(crate) trace: &'a SharedTrace,
    pub(crate) world: Option<Rc<RefCell<World>>>,
}

impl Hosts<'_> {
    fn add_brokers(&self, sim: &mut turmoil::Sim<'_>, view: &SharedView) {
        let writeback = (self.scenario.disk.os_writeback_ms > 0)
            .then(|| Duration::from_millis(self.scenario.disk.os_writeback_ms));
        for id in self.cluster.broker_ids() {
            let software = self.broker_software(id, view);
            sim.host(broker_host(id), move || {
                let disk = move || Ok(WritebackDisk::new(SimDisk::new("/data")?, writeback));
                software.clone().run::<SimNet, _>(disk)
            });
        }
    }

    /// What a broker host runs, every incarnation of it.
    pub(crate) fn broker_software(&self, id: NodeId, view: &SharedView) -> BrokerSoftware {
        BrokerSoftware {
            id,
            cluster: self.cluster.clone(),
            resources: resources::for_broker(
                self.world.as_ref(),
                &broker_host(id),
                self.scenario.disk.unmetered_fsync(),
                self.seed,
                id.into(),
            ),
            seed: self.seed,
            trace: self.trace.clone(),
            view: view.clone(),
        }
    }

    /// Adds every producer instance; the count returned is of those still sending. The final
    /// read waits for them (a fire-and-forget producer may still be draining its buffer after
    /// the workload phase).
    fn add_producers(&self, sim: &mut turmoil::Sim<'_>, workload_end: Duration) -> Rc<Cell<usize>> {
        let producers_running = Rc::new(Cell::new(0usize));
        for process in self.producers(workload_end) {
            let running = producers_running.clone();
            running.set(running.get() + 1);
            sim.client(process.name.clone(), async move {
                let result = process.run::<SimNet>().await;
                running.set(running.get() - 1);
                result
            });
        }
        producers_running
    }

    /// Every producer instance, named by its process (and host) name.
    pub(crate) fn producers(&self, workload_end: Duration) -> Vec<ProducerProcess> {
        let message_cpu = resources::producer_message_cpu(self.scenario.resources.as_ref());
        let mut out = Vec::new();
        for spec in &self.scenario.producers {
            let partitions = self.scenario.topic_partitions(&spec.topic).unwrap_or(1);
            for name in spec.process_names() {
                out.push(ProducerProcess {
                    name: name.clone(),
                    spec: spec.clone(),
                    partitions,
                    cluster: self.cluster.clone(),
                    seed: self.seed,
                    trace: self.trace.clone(),
                    stop_at: workload_end,
                    resources: resources::for_host(self.world.as_ref(), &name),
                    message_cpu,
                });
            }
        }
        out
    }

    fn add_consumers(
        &self,
        sim: &mut turmoil::Sim<'_>,
        workload_end: Duration,
        settle_end: Duration,
    ) {
        for (host, process) in self.consumers(workload_end, settle_end) {
            sim.client(host, process.run::<SimNet>());
        }
    }

    /// Every consumer instance, and the instances membership faults add (`join`), with the
    /// host each runs on.
    pub(crate) fn consumers(
        &self,
        workload_end: Duration,
        settle_end: Duration,
    ) -> Vec<(String, ConsumerProcess)> {
        let mut out = Vec::new();
        for (index, spec) in self.scenario.consumers.iter().enumerate() {
            let partitions = self.scenario.topic_partitions(&spec.topic).unwrap_or(1);
            let mut plan = self.scenario.membership_plan(index);
            let joined = (spec.instances.get()..).zip(plan.joins.iter().copied());
            let starts = (0..spec.instances.get())
                .map(|i| (i, Duration::ZERO))
                .chain(joined);
            for (instance, start_at) in starts {
                let host = spec.incarnation_names(instance)[0].clone();
                let process = ConsumerProcess {
                    spec: spec.clone(),
                    instance,
                    partitions,
                    cluster: self.cluster.clone(),
                    seed: self.seed,
                    trace: self.trace.clone(),
                    stop_at: settle_end,
                    resources: resources::for_host(self.world.as_ref(), &host),
                    start_at,
                    actions: plan.actions.remove(&instance).unwrap_or_default(),
                    workload_end,
                };
                out.push((host, process));
            }
        }
        out
    }

    fn add_final_read(
        &self,
        sim: &mut turmoil::Sim<'_>,
        now: Duration,
        incomplete: &Rc<RefCell<Vec<String>>>,
    ) {
        sim.client(
            fathom_workload::clients::FINAL_READ_PROCESS,
            self.final_read(now, incomplete).run::<SimNet>(),
        );
    }

    /// The final read of every data partition from offset 0 to its high watermark; partitions
    /// it could not finish land in `incomplete`.
    pub(crate) fn final_read(
        &self,
        now: Duration,
        incomplete: &Rc<RefCell<Vec<String>>>,
    ) -> FinalRead {
        FinalRead {
            process: fathom_workload::clients::FINAL_READ_PROCESS.to_string(),
            partitions: data_partitions(self.cluster),
            cluster: self.cluster.clone(),
            seed: self.seed,
            trace: self.trace.clone(),
            give_up_at: now + FINAL_READ_TIMEOUT,
            incomplete: incomplete.clone(),
        }
    }
}

/// Stands in for a broker's process supervisor: a broker that stopped on a storage failure is
/// restarted after [`FATAL_RESTART_DELAY`].
#[derive(Default)]
pub(crate) struct StorageSupervisor {
    restarts: BTreeMap<Duration, Vec<NodeId>>,
    /// Every storage failure, for the fault log.
    pub(crate) failures: Vec<AppliedFault>,
}

impl StorageSupervisor {
    /// When the next restart is due (the event-driven harness sleeps until then).
    #[cfg_attr(not(madsim), allow(dead_code))]
    pub(crate) fn next_due(&self) -> Option<Duration> {
        self.restarts.keys().next().copied()
    }

    pub(crate) fn step(
        &mut self,
        sim: &mut dyn SimControl,
        now: Duration,
        view: &SharedView,
        trace: &SharedTrace,
    ) {
        let fatal: Vec<NodeId> = std::mem::take(&mut view.borrow_mut().fatal)
            .into_iter()
            .collect();
        for id in fatal {
            sim.crash(&broker_host(id));
            self.restarts
                .entry(now + FATAL_RESTART_DELAY)
                .or_default()
                .push(id);
            self.failures.push(AppliedFault {
                at_ms: now.as_millis() as u64,
                kind: AppliedKind::StorageFailure,
                detail: format!(
                    "{} stopped; restart in {FATAL_RESTART_DELAY:?}",
                    broker_host(id)
                ),
            });
        }
        let due: Vec<Duration> = self.restarts.range(..=now).map(|(t, _)| *t).collect();
        for t in due {
            for id in self.restarts.remove(&t).unwrap_or_default() {
                if !sim.is_running(&broker_host(id)) {
                    sim.bounce(&broker_host(id));
                    trace.borrow_mut().note(
                        now.as_nanos() as u64,
                        format!("restart broker-{id} after a storage failure"),
                    );
                }
            }
        }
    }
}

/// Asks every broker for its log and waits for the answers; brokers wake at least every gossip
/// interval.
fn take_snapshots(sim: &mut turmoil::Sim<'_>, view: &SharedView) -> Result<(), RunError> {
    view.borrow_mut().snapshot_wanted = true;
    let until = sim.elapsed() + SNAPSHOT_WAIT;
    while sim.elapsed() < until {
        sim.step().map_err(|e| RunError::Sim(e.to_string()))?;
    }
    Ok(())
}

/// Checks the history and the replicas, measures, and judges the run against its bounds.
fn judge(
    scenario: &Scenario,
    seed: u64,
    mut trace: Trace,
    view: &SharedView,
    faults: Vec<AppliedFault>,
    incomplete: Vec<String>,
    world: Option<Rc<RefCell<World>>>,
) -> RunOutcome {
    let mut events = std::mem::take(&mut trace.events);
    events.sort_by_key(|e| e.time_ns);
    let mut report = history::check(&events);
    let (divergence, examples) = replica_divergence(&view.borrow());
    report.set_replica_divergence(divergence, examples);
    {
        let mut view = view.borrow_mut();
        view.probes.consumers = trace.delivery.clone();
        view.probes.consumers_in_workload = trace.delivery_in_workload.clone();
        for a in trace.attempts.iter().filter(|a| a.attempt == 1) {
            for id in &a.ids {
                let t = view
                    .probes
                    .first_transmit
                    .entry(id.clone())
                    .or_insert(a.sent_ns);
                *t = (*t).min(a.sent_ns);
            }
        }
    }
    let messages = Messages::index(&events);
    let metrics = Metrics::build(
        scenario,
        &events,
        &messages,
        &view.borrow().probes,
        &faults,
        world.as_ref().map(|w| w.borrow()).as_deref(),
    );
    let mut violations = scenario.expect.violations(&report);
    violations.extend(scenario.expect.delivery_violations(&metrics.delivery));
    if !incomplete.is_empty() {
        violations.push(Violation::FinalReadIncomplete {
            partitions: incomplete.clone(),
        });
    }
    let recoveries = view.borrow().recoveries;
    let summary = Summary::build(
        scenario, seed, &trace, &events, &messages, &report, faults, incomplete, recoveries,
        metrics,
    );
    RunOutcome {
        summary,
        report,
        events,
        attempts: std::mem::take(&mut trace.attempts),
        drawn: None,
        violations,
    }
}

fn build_sim<'a>(scenario: &Scenario, seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S))
        .tick_duration(scenario.tick())
        .simulation_duration(duration)
        .min_message_latency(scenario.network.latency_ms.min())
        .max_message_latency(scenario.network.latency_ms.max())
        .fail_rate(scenario.network.loss)
        .repair_rate(scenario.network.repair);
    let disk = &scenario.disk;
    let fs = b.fs();
    if let Some(block) = disk.torn_write_block_size() {
        fs.block_size(block);
    }
    if let Some(capacity) = disk.capacity() {
        fs.capacity(capacity);
    }
    fs.io_error_probability(disk.io_error_probability)
        .corruption_probability(disk.corruption_probability)
        .sync_probability(disk.sync_probability);
    b.build()
}

/// Gives every link between two zones the cross-zone latency. Links within a zone keep the
/// network's default.
fn set_zone_latencies(sim: &turmoil::Sim<'_>, scenario: &Scenario) {
    let network = &scenario.network;
    if network.zones.is_empty() {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for id in scenario.cluster_config().broker_ids() {
        names.push(broker_host(id));
    }
    for p in &scenario.producers {
        names.extend(p.process_names());
    }
    for c in &scenario.consumers {
        for i in 0..c.instances.get() {
            names.push(c.incarnation_names(i)[0].clone());
        }
    }
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let range = network.link_latency(a, b);
            if range != network.latency_ms {
                sim.set_link_latency(a.as_str(), b.as_str(), range.min());
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), range.max());
            }
        }
    }
}

/// One broker host's software, started afresh on every (re)start: the driver over the harness's
/// network and a disk the harness makes.
#[derive(Clone)]
pub(crate) struct BrokerSoftware {
    id: NodeId,
    cluster: ClusterConfig,
    resources: SharedResources,
    seed: u64,
    trace: SharedTrace,
    view: SharedView,
}

impl BrokerSoftware {
    /// Runs one incarnation; a storage failure parks it for the supervisor to restart.
    pub(crate) async fn run<N: Net, D: Disk>(
        self,
        make_disk: impl FnOnce() -> std::io::Result<D>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let BrokerSoftware {
            id,
            cluster,
            resources,
            seed,
            trace,
            view,
        } = self;
        for leaders in view.borrow_mut().leading.values_mut() {
            leaders.remove(&id);
        }
        // A restarted broker holds no push subscriptions: its last incarnation's count is void.
        view.borrow_mut().probes.push_state.remove(&id);
        // Nor share state, until it leads again.
        view.borrow_mut().probes.share_state.remove(&id);
        let disk = crate::disk_faults::FaultyDisk::new(make_disk()?, id, view.clone());
        let mut observer = SimObserver {
            leader_updates_seen: 0,
            events_seen: None,
            probed: None,
            id,
            view: view.clone(),
            trace: trace.clone(),
            leading: BTreeMap::new(),
            snapshot_taken: false,
            seen: Vec::new(),
            conflicts_counted: 0,
        };
        let listen = format!("0.0.0.0:{BROKER_PORT}");
        let skew = view.borrow_mut().clocks.entry(id).or_default().clone();
        let result = run_broker::<N, _, SimObserver>(
            id,
            cluster,
            BrokerLimits::default(),
            &listen,
            disk,
            resources,
            Clock::skewed(skew),
            seed,
            &mut observer,
        )
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(BrokerRunError::Fatal(reason)) | Err(BrokerRunError::Load(reason)) => {
                trace
                    .borrow_mut()
                    .note(sim_now_ns(), format!("broker-{id} stopped: {reason}"));
                view.borrow_mut().fatal.insert(id);
                std::future::pending().await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Every partition of the declared topics (not the internal offsets topic).
pub fn data_partitions(cluster: &ClusterConfig) -> Vec<TopicPartition> {
    cluster
        .placement()
        .into_keys()
        .filter(|tp| tp.topic != OFFSETS_TOPIC)
        .collect()
}

/// Compares, for each partition, what every replica holds below the highest high watermark
/// any replica reports, over the prefix all of them have.
fn replica_divergence(view: &ClusterView) -> (u64, Vec<String>) {
    let mut logs: history::checker::ReplicaLogs = BTreeMap::new();
    for (tp, replicas) in &view.snapshots {
        if tp.topic == OFFSETS_TOPIC {
            continue;
        }
        let hw = replicas
            .values()
            .map(|s| s.high_watermark)
            .max()
            .unwrap_or(0);
        let common = replicas
            .values()
            .map(|s| s.log_end.min(hw))
            .min()
            .unwrap_or(0);
        let entry = logs.entry((tp.topic.clone(), tp.partition)).or_default();
        for (&node, snap) in replicas {
            let prefix = snap
                .records
                .iter()
                .filter(|(o, _)| *o < common)
                .cloned()
                .collect();
            entry.push((node, prefix));
        }
    }
    history::check_replicas(&logs)
}
