//! The fault schedule of a run: resolves targets when a fault fires, applies it to the
//! simulation, undoes it at its end, and heals everything before the settle phase.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fathom_queue::client::coordinator_partition;
use fathom_queue::config::ClusterConfig;
use fathom_queue::ids::{NodeId, TopicPartition, OFFSETS_TOPIC};
use fathom_queue::rng::Rng;

use crate::fault_log::{AppliedFault, AppliedKind};
use crate::harness::SimControl;
use crate::scenario::{broker_host, FaultKind, FaultTag, Member, MillisRange, Scenario, Target};
use crate::view::SharedView;
use fathom_workload::trace::SharedTrace;

/// Something to do to the simulation at a given time.
#[derive(Debug, Clone)]
enum Action {
    Start(usize),
    Restart(Vec<NodeId>),
    Repair(Vec<(String, String)>),
    RepairOneway(Vec<(String, String)>),
    Release(Vec<(String, String)>),
    RestoreFailRate(Vec<(String, String)>),
    RestoreLatency(Vec<(String, String)>),
    RestoreClock(NodeId),
    FreeDisk(NodeId),
    EndEio(NodeId),
}

/// Salt of the generator a `disk_eio` fault draws its failures from (with the broker's id).
const DISK_EIO_SALT: u64 = 0xD15C_0E10;

pub struct FaultPlan {
    faults: Vec<(Duration, FaultKind, Option<Duration>)>,
    actions: BTreeMap<Duration, Vec<Action>>,
    brokers: Vec<NodeId>,
    /// Partitions of the offsets topic: where a group's coordinator is.
    offsets_partitions: u32,
    /// Client process name (any incarnation) to turmoil host.
    client_hosts: BTreeMap<String, String>,
    base_fail_rate: f64,
    network: crate::scenario::NetworkSpec,
    rng: Rng,
    // What is currently broken, so that heal_all can undo it.
    cut: BTreeSet<(String, String)>,
    cut_oneway: BTreeSet<(String, String)>,
    held: BTreeSet<(String, String)>,
    lossy: BTreeSet<(String, String)>,
    slow: BTreeSet<(String, String)>,
    crashed: BTreeSet<NodeId>,
    skewed: BTreeSet<NodeId>,
    /// Per broker, the `disk_full` and `disk_eio` windows open on it: windows may overlap, and
    /// the fault lasts until the last of them ends.
    full: BTreeMap<NodeId, u32>,
    failing: BTreeMap<NodeId, u32>,
    applied: Vec<AppliedFault>,
}

impl FaultPlan {
    pub fn new(scenario: &Scenario, cluster: &ClusterConfig, rng: Rng) -> FaultPlan {
        let mut actions: BTreeMap<Duration, Vec<Action>> = BTreeMap::new();
        let faults: Vec<_> = scenario
            .faults
            .iter()
            .map(|f| (f.at(), f.kind.clone(), f.until()))
            .collect();
        for (i, (at, _, _)) in faults.iter().enumerate() {
            actions.entry(*at).or_default().push(Action::Start(i));
        }
        let mut client_hosts = BTreeMap::new();
        for p in &scenario.producers {
            for name in p.process_names() {
                client_hosts.insert(name.clone(), name);
            }
        }
        for c in &scenario.consumers {
            for i in 0..c.instances.get() {
                let names = c.incarnation_names(i);
                for name in &names {
                    client_hosts.insert(name.clone(), names[0].clone());
                }
            }
        }
        FaultPlan {
            faults,
            actions,
            brokers: cluster.broker_ids(),
            offsets_partitions: cluster.offsets_partitions,
            client_hosts,
            base_fail_rate: scenario.network.loss,
            network: scenario.network.clone(),
            rng,
            cut: BTreeSet::new(),
            cut_oneway: BTreeSet::new(),
            held: BTreeSet::new(),
            lossy: BTreeSet::new(),
            slow: BTreeSet::new(),
            crashed: BTreeSet::new(),
            skewed: BTreeSet::new(),
            full: BTreeMap::new(),
            failing: BTreeMap::new(),
            applied: Vec::new(),
        }
    }

    /// When the next scheduled action is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.actions.keys().next().copied()
    }

    pub fn applied(&self) -> Vec<AppliedFault> {
        self.applied.clone()
    }

    /// Runs every action due at or before `now`.
    pub fn apply_due(
        &mut self,
        sim: &mut dyn SimControl,
        now: Duration,
        view: &SharedView,
        trace: &SharedTrace,
    ) {
        while let Some(entry) = self.actions.first_entry() {
            if *entry.key() > now {
                return;
            }
            for action in entry.remove() {
                self.act(sim, now, action, view, trace);
            }
        }
    }

    /// Undoes every network fault, sets every skewed clock to true speed, frees every full disk,
    /// ends every EIO window and restarts every crashed broker; pending undo actions are dropped and faults scheduled
    /// later never fire.
    pub fn heal_all(
        &mut self,
        sim: &mut dyn SimControl,
        now: Duration,
        view: &SharedView,
        trace: &SharedTrace,
    ) {
        self.actions.clear();
        self.undo_links(sim, 0.0);
        sim.set_fail_rate(0.0);
        for id in std::mem::take(&mut self.skewed) {
            if let Some(skew) = view.borrow().clocks.get(&id) {
                skew.set_rate(1.0);
            }
        }
        for id in std::mem::take(&mut self.full).into_keys() {
            view.borrow_mut().full_disks.remove(&id);
        }
        for id in std::mem::take(&mut self.failing).into_keys() {
            view.borrow_mut().eio_disks.remove(&id);
        }
        self.restart_crashed(sim);
        self.record(
            now,
            AppliedKind::Fault(FaultTag::Heal),
            "final phase: every fault undone".into(),
            trace,
        );
    }

    fn act(
        &mut self,
        sim: &mut dyn SimControl,
        now: Duration,
        action: Action,
        view: &SharedView,
        trace: &SharedTrace,
    ) {
        match action {
            Action::Start(i) => {
                let (_, kind, until) = self.faults[i].clone();
                self.start(sim, now, kind, until, view, trace);
            }
            Action::Restart(ids) => {
                for id in ids {
                    if self.crashed.remove(&id) {
                        sim.bounce(&broker_host(id));
                        self.record(now, AppliedKind::Restart, broker_host(id), trace);
                    }
                }
            }
            Action::Repair(pairs) => {
                for (a, b) in pairs {
                    if self.cut.remove(&(a.clone(), b.clone())) {
                        sim.repair(&a, &b);
                    }
                }
                self.record(
                    now,
                    AppliedKind::Fault(FaultTag::Heal),
                    "partition repaired".into(),
                    trace,
                );
            }
            Action::RepairOneway(pairs) => {
                for (a, b) in pairs {
                    if self.cut_oneway.remove(&(a.clone(), b.clone())) {
                        sim.repair_oneway(&a, &b);
                    }
                }
                self.record(
                    now,
                    AppliedKind::Fault(FaultTag::Heal),
                    "one-way partition repaired".into(),
                    trace,
                );
            }
            Action::Release(pairs) => {
                for (a, b) in pairs {
                    if self.held.remove(&(a.clone(), b.clone())) {
                        sim.release(&a, &b);
                    }
                }
                self.record(
                    now,
                    AppliedKind::Release,
                    "held links released".into(),
                    trace,
                );
            }
            Action::RestoreFailRate(pairs) => {
                for (a, b) in pairs {
                    if self.lossy.remove(&(a.clone(), b.clone())) {
                        sim.set_link_fail_rate(&a, &b, self.base_fail_rate);
                    }
                }
                self.record(
                    now,
                    AppliedKind::LossEnd,
                    "link loss restored".into(),
                    trace,
                );
            }
            Action::RestoreClock(id) => {
                if self.skewed.remove(&id) {
                    if let Some(skew) = view.borrow().clocks.get(&id) {
                        skew.set_rate(1.0);
                    }
                    self.record(now, AppliedKind::ClockEnd, broker_host(id), trace);
                }
            }
            Action::FreeDisk(id) => {
                if close_window(&mut self.full, id) {
                    view.borrow_mut().full_disks.remove(&id);
                    self.record(now, AppliedKind::DiskFullEnd, broker_host(id), trace);
                }
            }
            Action::EndEio(id) => {
                if close_window(&mut self.failing, id) {
                    view.borrow_mut().eio_disks.remove(&id);
                    self.record(now, AppliedKind::DiskEioEnd, broker_host(id), trace);
                }
            }
            Action::RestoreLatency(pairs) => {
                for (a, b) in pairs {
                    if self.slow.remove(&(a.clone(), b.clone())) {
                        let base = self.network.link_latency(&a, &b).max();
                        sim.set_link_max_latency(&a, &b, base);
                    }
                }
                self.record(
                    now,
                    AppliedKind::LatencyEnd,
                    "link latency restored".into(),
                    trace,
                );
            }
        }
    }

    fn start(
        &mut self,
        sim: &mut dyn SimControl,
        now: Duration,
        kind: FaultKind,
        until: Option<Duration>,
        view: &SharedView,
        trace: &SharedTrace,
    ) {
        let name = AppliedKind::Fault(kind.tag());
        let (undo, detail) = match kind {
            FaultKind::Crash { target } => self.crash(sim, &target, view),
            FaultKind::PowerLoss => self.power_loss(sim),
            FaultKind::Partition { groups } => self.partition(sim, &groups, view),
            FaultKind::PartitionOneway { from, to } => self.partition_oneway(sim, &from, &to, view),
            FaultKind::Hold { between } => self.hold(sim, &between, view),
            FaultKind::Loss { between, rate } => self.loss(sim, &between, rate, view),
            FaultKind::Latency {
                between,
                latency_ms,
            } => self.latency(sim, &between, latency_ms, view),
            FaultKind::Heal => {
                self.undo_links(sim, self.base_fail_rate);
                self.restart_crashed(sim);
                (None, "every fault undone".into())
            }
            // The consumer processes apply these themselves, on the same schedule (see
            // `Scenario::membership_plan`); the log records them here.
            FaultKind::Join { consumer } => (None, format!("a new instance of {consumer}")),
            FaultKind::Leave { process } => (None, format!("{process} leaves its group")),
            FaultKind::ConsumerCrash { process } => (None, format!("{process} crashes")),
            FaultKind::Pause { process, pause_s } => {
                (None, format!("{process} pauses for {pause_s} s"))
            }
            FaultKind::RollingRestart { consumer, gap_s } => (
                None,
                format!("every instance of {consumer} restarts in turn, {gap_s} s apart"),
            ),
            FaultKind::Clock {
                target,
                clock_rate,
                jump_s,
            } => self.clock(&target, clock_rate, jump_s, view),
            FaultKind::DiskFull { target } => self.disk_full(&target, view),
            FaultKind::DiskEio { target, rate } => self.disk_eio(now, &target, rate, view),
        };
        if let (Some(t), Some(undo)) = (until, undo) {
            self.actions.entry(t.max(now)).or_default().push(undo);
        }
        self.record(now, name, detail, trace);
    }

    // Each fault below applies itself and returns the action that undoes it (run at the fault's
    // end, if it has one) and the detail for the fault log.

    fn crash(
        &mut self,
        sim: &mut dyn SimControl,
        target: &Target,
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let id = self.resolve(target, view);
        if sim.is_running(&broker_host(id)) {
            sim.crash(&broker_host(id));
        }
        self.crashed.insert(id);
        let detail = format!("{target} = {}", broker_host(id));
        (Some(Action::Restart(vec![id])), detail)
    }

    fn clock(
        &mut self,
        target: &Target,
        rate: f64,
        jump_s: f64,
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let id = self.resolve(target, view);
        let skew = view.borrow_mut().clocks.entry(id).or_default().clone();
        skew.set_rate(rate);
        if jump_s > 0.0 {
            skew.jump(Duration::from_secs_f64(jump_s));
        }
        self.skewed.insert(id);
        let detail = format!(
            "{target} = {}: clock at {rate}x, {jump_s} s ahead",
            broker_host(id)
        );
        (Some(Action::RestoreClock(id)), detail)
    }

    /// The broker keeps running until its next append fails; the supervisor restarts it.
    fn disk_full(&mut self, target: &Target, view: &SharedView) -> (Option<Action>, String) {
        let id = self.resolve(target, view);
        view.borrow_mut().full_disks.insert(id);
        *self.full.entry(id).or_default() += 1;
        let detail = format!("{target} = {}: no space left", broker_host(id));
        (Some(Action::FreeDisk(id)), detail)
    }

    /// Draws come from a generator of their own, kept with the window in the view: forked from
    /// a copy of the plan's, so that a `disk_eio` fault added or removed (by the shrinker, say)
    /// leaves every other draw of the plan as it was.
    fn disk_eio(
        &mut self,
        now: Duration,
        target: &Target,
        rate: f64,
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let id = self.resolve(target, view);
        let salt = DISK_EIO_SALT ^ u64::from(id) ^ (now.as_nanos() as u64);
        let rng = self.rng.clone().fork(salt);
        let window = crate::disk_faults::EioWindow { rate, rng };
        // The newest window's rate holds while windows overlap.
        view.borrow_mut().eio_disks.insert(id, window);
        *self.failing.entry(id).or_default() += 1;
        let detail = format!(
            "{target} = {}: EIO on {:.3}% of disk operations",
            broker_host(id),
            rate * 100.0
        );
        (Some(Action::EndEio(id)), detail)
    }

    fn power_loss(&mut self, sim: &mut dyn SimControl) -> (Option<Action>, String) {
        for &id in &self.brokers {
            if sim.is_running(&broker_host(id)) {
                sim.crash(&broker_host(id));
            }
            self.crashed.insert(id);
        }
        let undo = Action::Restart(self.brokers.clone());
        (Some(undo), "every broker".into())
    }

    fn partition(
        &mut self,
        sim: &mut dyn SimControl,
        groups: &[Vec<Member>],
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let groups = self.resolve_groups(groups, view);
        let mut pairs = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for a in g {
                    for b in h {
                        sim.partition(a, b);
                        self.cut.insert((a.clone(), b.clone()));
                        pairs.push((a.clone(), b.clone()));
                    }
                }
            }
        }
        (Some(Action::Repair(pairs)), format!("{groups:?}"))
    }

    fn partition_oneway(
        &mut self,
        sim: &mut dyn SimControl,
        from: &[Member],
        to: &[Member],
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let from = self.resolve_set(from, view);
        let to = self.resolve_set(to, view);
        let mut pairs = Vec::new();
        for a in &from {
            for b in &to {
                sim.partition_oneway(a, b);
                self.cut_oneway.insert((a.clone(), b.clone()));
                pairs.push((a.clone(), b.clone()));
            }
        }
        (
            Some(Action::RepairOneway(pairs)),
            format!("{from:?} -> {to:?}"),
        )
    }

    fn hold(
        &mut self,
        sim: &mut dyn SimControl,
        between: &[Vec<Member>; 2],
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let pairs = self.pairs(between, view);
        for (a, b) in &pairs {
            sim.hold(a, b);
            self.held.insert((a.clone(), b.clone()));
        }
        let detail = format!("{} links", pairs.len());
        (Some(Action::Release(pairs)), detail)
    }

    fn loss(
        &mut self,
        sim: &mut dyn SimControl,
        between: &[Vec<Member>; 2],
        rate: f64,
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let pairs = self.pairs(between, view);
        for (a, b) in &pairs {
            sim.set_link_fail_rate(a, b, rate);
            self.lossy.insert((a.clone(), b.clone()));
        }
        let detail = format!("rate {rate} on {} links", pairs.len());
        (Some(Action::RestoreFailRate(pairs)), detail)
    }

    fn latency(
        &mut self,
        sim: &mut dyn SimControl,
        between: &[Vec<Member>; 2],
        latency_ms: MillisRange,
        view: &SharedView,
    ) -> (Option<Action>, String) {
        let pairs = self.pairs(between, view);
        for (a, b) in &pairs {
            sim.set_link_max_latency(a, b, latency_ms.max());
            self.slow.insert((a.clone(), b.clone()));
        }
        let detail = format!("max {} ms on {} links", latency_ms.max_ms, pairs.len());
        (Some(Action::RestoreLatency(pairs)), detail)
    }

    /// Undoes every link fault; lossy links get `lossy_rate`.
    fn undo_links(&mut self, sim: &mut dyn SimControl, lossy_rate: f64) {
        for (a, b) in std::mem::take(&mut self.cut) {
            sim.repair(&a, &b);
        }
        for (a, b) in std::mem::take(&mut self.cut_oneway) {
            sim.repair_oneway(&a, &b);
        }
        for (a, b) in std::mem::take(&mut self.held) {
            sim.release(&a, &b);
        }
        for (a, b) in std::mem::take(&mut self.lossy) {
            sim.set_link_fail_rate(&a, &b, lossy_rate);
        }
        for (a, b) in std::mem::take(&mut self.slow) {
            let base = self.network.link_latency(&a, &b).max();
            sim.set_link_max_latency(&a, &b, base);
        }
    }

    fn restart_crashed(&mut self, sim: &mut dyn SimControl) {
        for id in std::mem::take(&mut self.crashed) {
            sim.bounce(&broker_host(id));
        }
    }

    fn record(&mut self, now: Duration, kind: AppliedKind, detail: String, trace: &SharedTrace) {
        let at_ms = now.as_millis() as u64;
        trace
            .borrow_mut()
            .note(now.as_nanos() as u64, format!("fault {kind}: {detail}"));
        self.applied.push(AppliedFault {
            at_ms,
            kind,
            detail,
        });
    }

    fn resolve(&mut self, target: &Target, view: &SharedView) -> NodeId {
        match target {
            Target::Broker(id) => *id,
            Target::LeaderOf { topic, partition } => {
                let tp = TopicPartition::new(topic.clone(), *partition);
                view.borrow()
                    .leaders
                    .get(&tp)
                    .map(|&(_, id)| id)
                    // No leader known yet: the partition's first replica is its preferred one.
                    .unwrap_or(self.brokers[(*partition as usize) % self.brokers.len()])
            }
            Target::Random => {
                self.brokers[self.rng.range_u64(0, self.brokers.len() as u64 - 1) as usize]
            }
            Target::CoordinatorOf { group } => {
                let partition = coordinator_partition(group, self.offsets_partitions);
                let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
                view.borrow()
                    .leaders
                    .get(&tp)
                    .map(|&(_, id)| id)
                    .unwrap_or(self.brokers[(partition as usize) % self.brokers.len()])
            }
        }
    }

    fn resolve_member(&mut self, m: &Member, view: &SharedView) -> Vec<String> {
        match m {
            Member::Broker(t) => vec![broker_host(self.resolve(t, view))],
            Member::Client(name) => vec![self
                .client_hosts
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.clone())],
            Member::AllBrokers => self.brokers.iter().map(|&id| broker_host(id)).collect(),
            Member::AllClients => {
                let hosts: BTreeSet<String> = self.client_hosts.values().cloned().collect();
                hosts.into_iter().collect()
            }
        }
    }

    fn resolve_set(&mut self, members: &[Member], view: &SharedView) -> Vec<String> {
        let mut out = BTreeSet::new();
        for m in members {
            out.extend(self.resolve_member(m, view));
        }
        out.into_iter().collect()
    }

    /// Partition groups, where `brokers` / `clients` mean those not named in another group.
    fn resolve_groups(&mut self, groups: &[Vec<Member>], view: &SharedView) -> Vec<Vec<String>> {
        let explicit: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let named: Vec<Member> = g
                    .iter()
                    .filter(|m| !matches!(m, Member::AllBrokers | Member::AllClients))
                    .cloned()
                    .collect();
                self.resolve_set(&named, view)
            })
            .collect();
        let named: BTreeSet<String> = explicit.iter().flatten().cloned().collect();
        let mut out = Vec::new();
        for (g, mut hosts) in groups.iter().zip(explicit) {
            for m in g {
                if matches!(m, Member::AllBrokers | Member::AllClients) {
                    for h in self.resolve_member(m, view) {
                        if !named.contains(&h) {
                            hosts.push(h);
                        }
                    }
                }
            }
            hosts.sort();
            hosts.dedup();
            out.push(hosts);
        }
        out
    }

    fn pairs(&mut self, between: &[Vec<Member>; 2], view: &SharedView) -> Vec<(String, String)> {
        let a = self.resolve_set(&between[0], view);
        let b = self.resolve_set(&between[1], view);
        let mut out = Vec::new();
        for x in &a {
            for y in &b {
                if x != y {
                    out.push((x.clone(), y.clone()));
                }
            }
        }
        out
    }
}

/// Closes one of `id`'s open windows; true when it was the last (the fault ends now).
fn close_window(open: &mut BTreeMap<NodeId, u32>, id: NodeId) -> bool {
    let Some(n) = open.get_mut(&id) else {
        return false; // healed already
    };
    *n -= 1;
    if *n > 0 {
        return false;
    }
    open.remove(&id);
    true
}
