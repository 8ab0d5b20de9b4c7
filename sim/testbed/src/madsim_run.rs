//! One seeded run of a scenario on madsim (built with `--cfg madsim`): the same brokers, client
//! processes, fault schedule and judging as the turmoil run in [`crate::run`], on madsim's
//! event-driven runtime, where simulated time jumps to the next event instead of ticking.
//!
//! The driver's `tokio` is madsim's here (madsim-tokio), so its timers, its TCP (`Net` =
//! madsim's `TcpStream`) and its clock are simulated; the disk is [`crate::model_disk`]. Each
//! broker and client process is a madsim node with its own address; a crash is `kill` plus a
//! [`DiskState::crash`], a restart `restart`, a partition clogs links.
//!
//! Per-link loss and latency, which madsim lacks, are added by [`crate::madsim_net`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fathom_queue::rng::Rng;
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};

use crate::faults::FaultPlan;
use crate::harness::SimControl;
use crate::liveness::LeaderDeadline;
use crate::madsim_net::{Links, MadsimNet};
use crate::model_disk::{DiskState, ModelDisk, SharedDisk};
use crate::resources::World;
use crate::run::{
    conclude, data_partitions, sim_now_ns, Hosts, RunEnd, RunError, RunLimits, RunOutcome,
    StorageSupervisor, FINAL_READ_TIMEOUT, SNAPSHOT_WAIT,
};
use crate::scenario::{broker_host, Scenario};
use crate::view::{ClusterView, SharedView};
use fathom_workload::trace::{SharedTrace, Trace};

/// How often the run loop looks at the cluster (leaders, the phases) when no fault is due.
/// The turmoil run looks every tick; here a look costs an event, so it is rarer.
const CONTROL_INTERVAL: Duration = Duration::from_millis(10);
/// The seed of each broker's disk faults is the run's seed with this salt and the broker id.
const DISK_SEED_SALT: u64 = 0xD15C_0000;

/// What a node runs; a broker's is called again on every restart.
type Software = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// The run's hosts, for the node factories (madsim wants `Send` factories, the software holds
/// `Rc`s: the factory names its host and finds the software here, on the run's one thread) and
/// for the resource model's address lookups.
#[derive(Default)]
struct Registry {
    software: BTreeMap<String, Software>,
    names: BTreeMap<IpAddr, String>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Simulated time since the run started (zero outside one).
pub fn sim_elapsed() -> Duration {
    madsim::time::TimeHandle::try_current()
        .map(|t| t.elapsed())
        .unwrap_or_default()
}

/// The host name behind a simulated address.
pub fn host_name(ip: IpAddr) -> Option<String> {
    REGISTRY.with(|r| r.borrow().names.get(&ip).cloned())
}

/// Runs `scenario` once with `seed` on madsim (a `[swarm]` scenario is drawn by the caller).
pub fn run(scenario: &Scenario, seed: u64, limits: RunLimits) -> Result<RunOutcome, RunError> {
    let abandon = AtomicBool::new(false);
    // A fresh thread per run: madsim seeds std's `RandomState` keys from the run's seed only on
    // a thread that has not made one yet, so an earlier run (or the CLI's start-up) cannot leak
    // into this one. The registry is per thread too. This thread keeps the real clock (madsim
    // answers every clock with simulated time inside the run), so it enforces the wall limit.
    std::thread::scope(|s| {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let abandon = &abandon;
        let run = s.spawn(move || {
            Links::reset(&scenario.network);
            let runtime = Runtime::with_seed_and_config(seed, config(scenario));
            let outcome = runtime.block_on(Run::new(scenario, seed, abandon).go());
            let _ = done.send(());
            (outcome, fathom_driver::stats::frames_delivered())
        });
        if let Some(wall) = limits.wall {
            if finished.recv_timeout(wall).is_err() {
                abandon.store(true, Ordering::Relaxed);
            }
        }
        let outcome = match run.join() {
            Ok((outcome, frames)) => {
                // Counted on the run's thread; the benchmark reads the caller's.
                fathom_driver::stats::add_frames_delivered(frames);
                outcome
            }
            Err(_) => Err(RunError::Sim("the madsim run panicked".into())),
        };
        match (outcome, limits.wall) {
            (Err(RunError::WallTime { simulated, .. }), Some(limit)) => {
                Err(RunError::WallTime { limit, simulated })
            }
            (outcome, _) => outcome,
        }
    })
}

fn config(scenario: &Scenario) -> madsim::Config {
    let mut config = madsim::Config::default();
    let latency = &scenario.network.latency_ms;
    // Data goes through `madsim_net`'s pipes, which draw each link's latency as turmoil does;
    // madsim's own packets (connection set-up) take the minimum. A half-open range: an empty
    // one would make madsim panic.
    config.net.send_latency = latency.min()..latency.min() + Duration::from_micros(1);
    // Loss is turmoil's kind (a lost segment stalls the stream), applied by `Links`: madsim's
    // own would resend.
    config.net.packet_loss_rate = 0.0;
    config
}

/// One run's state, owned by the controller task (madsim's main node).
struct Run<'a> {
    scenario: &'a Scenario,
    seed: u64,
    trace: SharedTrace,
    view: SharedView,
    world: Option<Rc<RefCell<World>>>,
    control: MadsimControl,
    /// Client processes still running (the final read included once started).
    clients_running: Rc<Cell<usize>>,
    producers_running: Rc<Cell<usize>>,
    /// A host's software failed outside the system under test (a harness error).
    failure: Rc<RefCell<Option<String>>>,
    /// Set from outside when the run is over its wall-time limit.
    abandon: &'a AtomicBool,
    next_ip: u32,
}

impl<'a> Run<'a> {
    fn new(scenario: &'a Scenario, seed: u64, abandon: &'a AtomicBool) -> Run<'a> {
        Run {
            scenario,
            seed,
            trace: Rc::new(RefCell::new(Trace::with_clock(sim_now_ns))),
            view: Rc::new(RefCell::new(ClusterView::default())),
            world: scenario
                .resources
                .clone()
                .map(|spec| World::new(spec, scenario.network.clone(), scenario.tick())),
            control: MadsimControl::default(),
            clients_running: Rc::new(Cell::new(0)),
            producers_running: Rc::new(Cell::new(0)),
            failure: Rc::new(RefCell::new(None)),
            abandon,
            next_ip: 1,
        }
    }

    async fn go(mut self) -> Result<RunOutcome, RunError> {
        let cluster = self.scenario.cluster_config();
        let workload_end = self.scenario.duration();
        let settle_end = workload_end + self.scenario.settle();
        let stuck_at = settle_end + FINAL_READ_TIMEOUT * 2 + SNAPSHOT_WAIT;
        let trace = self.trace.clone();
        let hosts = Hosts {
            scenario: self.scenario,
            cluster: &cluster,
            seed: self.seed,
            trace: &trace,
            world: self.world.clone(),
        };
        self.add_brokers(&hosts);
        self.add_clients(&hosts, workload_end, settle_end);

        let mut plan = FaultPlan::new(self.scenario, &cluster, Rng::new(self.seed ^ 0xFA17));
        let mut supervisor = StorageSupervisor::default();
        let mut healed = false;
        let mut final_read_start = None;
        let mut leaders = LeaderDeadline::new(data_partitions(&cluster));
        let mut stuck = false;
        let incomplete = Rc::new(RefCell::new(Vec::new()));
        loop {
            let now = sim_elapsed();
            let (view, trace) = (&self.view, &self.trace);
            plan.apply_due(&mut self.control, now, view, trace);
            supervisor.step(&mut self.control, now, view, trace);
            if !healed && now >= workload_end {
                healed = true;
                plan.heal_all(&mut self.control, now, view, trace);
                leaders.healed(now, self.scenario.liveness());
            }
            let producers_done =
                self.producers_running.get() == 0 || now >= settle_end + FINAL_READ_TIMEOUT;
            if final_read_start.is_none() && now >= settle_end && producers_done {
                final_read_start = Some(now);
                let reader = hosts.final_read(now, &incomplete);
                let name = fathom_workload::clients::FINAL_READ_PROCESS;
                self.add_client(name, reader.run::<MadsimNet>(), None);
            }
            if now >= stuck_at {
                stuck = true;
                break;
            }
            if let Some(e) = self.failure.borrow_mut().take() {
                return Err(RunError::Sim(e));
            }
            if self.abandon.load(Ordering::Relaxed) {
                // The caller puts its limit in.
                return Err(RunError::WallTime {
                    limit: Duration::ZERO,
                    simulated: now,
                });
            }
            let finished = self.clients_running.get() == 0;
            if finished && final_read_start.is_some() {
                break;
            }
            let wake = [plan.next_due(), supervisor.next_due()]
                .into_iter()
                .flatten()
                .chain([now + CONTROL_INTERVAL, workload_end, settle_end])
                .filter(|&t| t > now)
                .min()
                .unwrap_or(now + CONTROL_INTERVAL);
            madsim::time::sleep(wake - now).await;
            // After the step, so that brokers restarted by the heal have started.
            let control = &self.control;
            leaders.sample(now, &self.view.borrow(), |id| {
                !control.down.contains(&broker_host(id))
            });
        }
        self.view.borrow_mut().snapshot_wanted = true;
        madsim::time::sleep(SNAPSHOT_WAIT).await;
        drop(hosts);
        drop(trace);

        let trace = std::mem::replace(&mut *self.trace.borrow_mut(), Trace::with_clock(sim_now_ns));
        let end = RunEnd {
            plan: &plan,
            supervisor,
            leaders: &leaders,
            final_read_start,
            incomplete: incomplete.borrow().clone(),
            stuck_at,
            stuck,
        };
        let (scenario, seed, world) = (self.scenario, self.seed, self.world.clone());
        Ok(conclude(scenario, seed, trace, &self.view, world, end))
    }

    fn add_brokers(&mut self, hosts: &Hosts<'_>) {
        for id in hosts.cluster.broker_ids() {
            let host = broker_host(id);
            let disk = DiskState::new(
                self.scenario.disk.clone(),
                Rng::new(self.seed ^ DISK_SEED_SALT ^ u64::from(id)),
            );
            self.control.disks.insert(host.clone(), disk.clone());
            let software = hosts.broker_software(id, &self.view);
            let failure = self.failure.clone();
            let run: Software = Rc::new(move || {
                let (software, disk, failure) = (software.clone(), disk.clone(), failure.clone());
                Box::pin(async move {
                    let disk = move || Ok(ModelDisk::new(disk, sim_elapsed));
                    if let Err(e) = software.run::<MadsimNet, _>(disk).await {
                        failure.borrow_mut().get_or_insert(e.to_string());
                    }
                })
            });
            self.add_node(&host, run);
        }
    }

    fn add_clients(&mut self, hosts: &Hosts<'_>, workload_end: Duration, settle_end: Duration) {
        for process in hosts.producers(workload_end) {
            let name = process.name.clone();
            let producers = self.producers_running.clone();
            self.add_client(&name, process.run::<MadsimNet>(), Some(producers));
        }
        for (host, process) in hosts.consumers(workload_end, settle_end) {
            self.add_client(&host, process.run::<MadsimNet>(), None);
        }
    }

    /// A client process: runs once; counted in `clients_running` (and `also`) until it ends.
    fn add_client<E: std::fmt::Display + 'static>(
        &mut self,
        host: &str,
        process: impl Future<Output = Result<(), E>> + 'static,
        also: Option<Rc<Cell<usize>>>,
    ) {
        let counters: Vec<Rc<Cell<usize>>> = [Some(self.clients_running.clone()), also]
            .into_iter()
            .flatten()
            .collect();
        for c in &counters {
            c.set(c.get() + 1);
        }
        let failure = self.failure.clone();
        let once = RefCell::new(Some(process));
        let run: Software = Rc::new(move || {
            let process = once.borrow_mut().take();
            let (counters, failure) = (counters.clone(), failure.clone());
            Box::pin(async move {
                let Some(process) = process else { return };
                if let Err(e) = process.await {
                    failure.borrow_mut().get_or_insert(e.to_string());
                }
                for c in &counters {
                    c.set(c.get() - 1);
                }
            })
        });
        self.add_node(host, run);
    }

    /// Creates the madsim node `host` with the next address, running `software`.
    fn add_node(&mut self, host: &str, software: Software) {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + self.next_ip));
        self.next_ip += 1;
        REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            r.software.insert(host.to_string(), software);
            r.names.insert(ip, host.to_string());
        });
        NetSim::current().add_dns_record(host, ip);
        let name = host.to_string();
        let node = Handle::current()
            .create_node()
            .name(host)
            .ip(ip)
            .init(move || {
                let software = REGISTRY.with(|r| r.borrow().software.get(&name).cloned());
                async move {
                    if let Some(software) = software {
                        software().await;
                    }
                }
            })
            .build();
        self.control.nodes.insert(host.to_string(), node.id());
    }
}

/// The fault schedule's controls on madsim.
#[derive(Default)]
struct MadsimControl {
    nodes: BTreeMap<String, madsim::task::NodeId>,
    disks: BTreeMap<String, SharedDisk>,
    /// Hosts crashed and not yet restarted.
    down: BTreeSet<String>,
}

impl MadsimControl {
    fn node(&self, host: &str) -> Option<madsim::task::NodeId> {
        self.nodes.get(host).copied()
    }

    fn crash_disk(&self, host: &str) {
        if let Some(disk) = self.disks.get(host) {
            disk.borrow_mut().crash();
        }
    }

    /// madsim's clog refuses connections across the link; [`Links`] holds the data of the
    /// connections already open.
    fn clog(&self, from: &str, to: &str, clogged: bool) {
        Links::set_clogged(from, to, clogged);
        let (Some(a), Some(b)) = (self.node(from), self.node(to)) else {
            return;
        };
        let net = NetSim::current();
        if clogged {
            net.clog_link(a, b);
        } else {
            net.unclog_link(a, b);
        }
    }
}

impl SimControl for MadsimControl {
    fn is_running(&mut self, host: &str) -> bool {
        self.nodes.contains_key(host) && !self.down.contains(host)
    }

    fn crash(&mut self, host: &str) {
        let Some(node) = self.node(host) else { return };
        Handle::current().kill(node);
        self.crash_disk(host);
        self.down.insert(host.to_string());
    }

    fn bounce(&mut self, host: &str) {
        let Some(node) = self.node(host) else { return };
        if self.down.remove(host) {
            Handle::current().restart(node);
        } else {
            Handle::current().kill(node);
            self.crash_disk(host);
            Handle::current().restart(node);
        }
    }

    fn partition(&mut self, a: &str, b: &str) {
        self.clog(a, b, true);
        self.clog(b, a, true);
    }

    fn repair(&mut self, a: &str, b: &str) {
        self.clog(a, b, false);
        self.clog(b, a, false);
    }

    fn partition_oneway(&mut self, from: &str, to: &str) {
        self.clog(from, to, true);
    }

    fn repair_oneway(&mut self, from: &str, to: &str) {
        self.clog(from, to, false);
    }

    /// madsim's clogged link keeps what is sent until it is unclogged: a hold.
    fn hold(&mut self, a: &str, b: &str) {
        self.partition(a, b);
    }

    fn release(&mut self, a: &str, b: &str) {
        self.repair(a, b);
    }

    fn set_fail_rate(&mut self, rate: f64) {
        Links::set_base_fail_rate(rate);
    }

    fn set_link_fail_rate(&mut self, a: &str, b: &str, rate: f64) {
        Links::set_fail_rate(a, b, rate);
    }

    fn set_link_max_latency(&mut self, a: &str, b: &str, max: Duration) {
        Links::set_max_latency(a, b, max);
    }
}
