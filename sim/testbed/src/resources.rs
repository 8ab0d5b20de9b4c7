//! The resource model: what the network, CPUs and disks cost in simulated time.
//!
//! turmoil gives every link a latency and nothing else: bandwidth is infinite, CPUs and disks
//! are free. This module books finite resources for every frame, request and fsync and tells
//! the driver (through [`Resources`]) how long to wait. Each resource is a queue served in
//! arrival order, so load turns into queueing delay and a saturated resource caps throughput.
//!
//! - A NIC direction, a network path and a disk are each one [`Fifo`] server: a job of `b` bytes
//!   occupies it for `b / bandwidth` after the jobs before it.
//! - A host's CPU is [`Cores`]: a job takes the core that frees first.
//! - A frame sent from A to B occupies A's transmit NIC, then the A→B path; turmoil adds the
//!   link latency; B's receive NIC and a core of B follow before B's state machine sees it.
//! - A write lands in the page cache at once and is written back at the disk's bandwidth; an
//!   fsync waits for the writeback queue and then pays the device's flush latency. A writer
//!   with more than `disk_dirty_bytes_max` waiting for writeback is throttled.
//! - Connecting costs the round trip turmoil's TCP does not charge (its SYN-ACK is free) and,
//!   with TLS, the handshake's round trips and CPU; TLS also costs CPU per byte both ways.
//!
//! Simulated time advances in ticks (1 ms by default) and tokio's timers have that resolution
//! too. The queues keep exact nanosecond accounts, and every wait is rounded *down* to whole
//! ticks: the caller wakes no later than its resource frees, books its next job from the exact
//! account, and so throughput limits hold exactly over time. The price is latency resolution: a
//! lone cost below one tick does not show until load queues it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

use fathom_driver::{Resources, SharedResources, Unmetered};
use fathom_queue::log::StorageOp;
use serde::{Deserialize, Serialize};

use crate::scenario::{FsyncMean, NetworkSpec};
use fathom_queue::rng::Rng;

/// The costs of a scenario's hardware. Absent from a scenario, nothing costs anything (the
/// model of the foundation scenarios). The defaults describe a plausible cloud deployment; the
/// README gives their sources. Any single cost set to 0 is free, not its default, so that an
/// experiment can measure what that cost alone does (an ablation).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceSpec {
    /// CPU cores per broker.
    pub broker_cores: u32,
    /// CPU time a broker spends on each frame it handles (parsing, dispatch, bookkeeping).
    pub broker_request_cpu_us: f64,
    /// CPU time per byte a broker handles (copying, CRC32C).
    pub broker_byte_cpu_ns: f64,
    /// Each direction of a broker's NIC; 0 = unlimited.
    pub broker_nic_mbit_s: f64,
    /// CPU cores per client process.
    pub client_cores: u32,
    /// Each direction of a client's NIC; 0 = unlimited.
    pub client_nic_mbit_s: f64,
    /// CPU time a client spends per byte it receives (decoding).
    pub client_byte_cpu_ns: f64,
    /// CPU time a producer spends on each message it sends (serializing, partitioning,
    /// appending to a batch).
    pub producer_message_cpu_us: f64,
    /// Each direction of the network path between two hosts; 0 = unlimited (the NICs bound).
    pub path_mbit_s: f64,
    /// Sustained write bandwidth of a broker's disk; 0 = unlimited (writeback is free).
    pub disk_write_mbyte_s: f64,
    /// How long the device takes to flush its cache once the data has been written.
    pub disk_fsync_us: f64,
    /// Bytes a broker may have waiting for writeback before its appends are throttled.
    pub disk_dirty_bytes_max: u64,
    /// Connections are encrypted.
    pub tls: bool,
    /// Round trips of the TLS handshake (2 for TLS 1.2, 1 for TLS 1.3).
    pub tls_handshake_round_trips: u32,
    /// CPU time of the handshake's key exchange and signature, on each side.
    pub tls_handshake_cpu_us: f64,
    /// CPU time per byte to encrypt or decrypt (AES-GCM with hardware support).
    pub tls_byte_cpu_ns: f64,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec {
            broker_cores: 4,
            broker_request_cpu_us: 20.0,
            broker_byte_cpu_ns: 0.5,
            broker_nic_mbit_s: 10_000.0,
            client_cores: 2,
            client_nic_mbit_s: 10_000.0,
            client_byte_cpu_ns: 0.5,
            producer_message_cpu_us: 2.0,
            path_mbit_s: 0.0,
            disk_write_mbyte_s: 500.0,
            disk_fsync_us: 1_000.0,
            disk_dirty_bytes_max: 256 * 1024 * 1024,
            tls: false,
            tls_handshake_round_trips: 2,
            tls_handshake_cpu_us: 1_000.0,
            tls_byte_cpu_ns: 0.5,
        }
    }
}

impl ResourceSpec {
    /// Checks every figure; returns the dotted field (under `resources.`) and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        // Every cost may be 0, which makes it free (a bandwidth of 0 is unlimited), so that an
        // experiment can ablate any one of them.
        let non_negative = [
            ("broker_nic_mbit_s", self.broker_nic_mbit_s),
            ("client_nic_mbit_s", self.client_nic_mbit_s),
            ("disk_write_mbyte_s", self.disk_write_mbyte_s),
            ("broker_request_cpu_us", self.broker_request_cpu_us),
            ("broker_byte_cpu_ns", self.broker_byte_cpu_ns),
            ("client_byte_cpu_ns", self.client_byte_cpu_ns),
            ("producer_message_cpu_us", self.producer_message_cpu_us),
            ("path_mbit_s", self.path_mbit_s),
            ("disk_fsync_us", self.disk_fsync_us),
            ("tls_handshake_cpu_us", self.tls_handshake_cpu_us),
            ("tls_byte_cpu_ns", self.tls_byte_cpu_ns),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err((field, format!("must be 0 or more, got {v}")));
            }
        }
        if self.broker_cores == 0 || self.broker_cores > CORES_MAX {
            return Err((
                "broker_cores",
                format!("must be 1 ..= {CORES_MAX}, got {}", self.broker_cores),
            ));
        }
        if self.client_cores == 0 || self.client_cores > CORES_MAX {
            return Err((
                "client_cores",
                format!("must be 1 ..= {CORES_MAX}, got {}", self.client_cores),
            ));
        }
        if self.tls_handshake_round_trips > 4 {
            return Err((
                "tls_handshake_round_trips",
                format!("must be 0 ..= 4, got {}", self.tls_handshake_round_trips),
            ));
        }
        Ok(())
    }
}

/// Cores a host may have.
pub const CORES_MAX: u32 = 256;

/// The time a transfer of `bytes` takes at `mbit_s`; nothing at 0 (unlimited, for ablations).
fn transfer(bytes: usize, mbit_s: f64) -> Duration {
    if mbit_s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((bytes as f64 * 8_000.0 / mbit_s).round() as u64)
}

fn per_byte(bytes: usize, ns: f64) -> Duration {
    Duration::from_nanos((bytes as f64 * ns).round() as u64)
}

fn micros(us: f64) -> Duration {
    Duration::from_nanos((us * 1_000.0).round() as u64)
}

/// One booked job: when its service started and when it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub start: Duration,
    pub done: Duration,
}

/// A server that takes one job at a time, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Fifo {
    busy_until: Duration,
}

impl Fifo {
    /// Books `work` starting no earlier than `at`; returns when it is done.
    pub fn book(&mut self, at: Duration, work: Duration) -> Duration {
        self.serve(at, work).done
    }

    /// Books `work` starting no earlier than `at`.
    pub fn serve(&mut self, at: Duration, work: Duration) -> Job {
        let start = self.busy_until.max(at);
        self.busy_until = start + work;
        Job {
            start,
            done: self.busy_until,
        }
    }

    /// Work still queued at `at`.
    pub fn backlog(&self, at: Duration) -> Duration {
        self.busy_until.saturating_sub(at)
    }
}

/// Identical cores; a job runs on the one that frees first (the lowest index on a tie).
#[derive(Debug, Clone)]
pub struct Cores {
    free_at: Vec<Duration>,
}

impl Cores {
    pub fn new(n: u32) -> Cores {
        Cores {
            free_at: vec![Duration::ZERO; n.max(1) as usize],
        }
    }

    pub fn book(&mut self, at: Duration, work: Duration) -> Duration {
        self.serve(at, work).done
    }

    pub fn serve(&mut self, at: Duration, work: Duration) -> Job {
        let (i, _) = self
            .free_at
            .iter()
            .enumerate()
            .min_by_key(|(i, t)| (**t, *i))
            .expect("at least one core");
        let start = self.free_at[i].max(at);
        self.free_at[i] = start + work;
        Job {
            start,
            done: self.free_at[i],
        }
    }

    pub fn count(&self) -> u32 {
        self.free_at.len() as u32
    }
}

/// Busy time and queue waits of one resource, kept per [`USAGE_BIN`] of simulated time so
/// that any window can be measured after the run.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    busy_ns: Vec<u64>,
    /// The longest wait before service of the jobs queued in each bin.
    wait_max_ns: Vec<u64>,
}

/// The width of a [`Usage`] bin. A window's busy time prorates the bins at its edges, so a
/// figure over a window of `w` is exact to within `2 * USAGE_BIN / w` of the window.
pub const USAGE_BIN: Duration = Duration::from_millis(100);
/// Bins kept per resource: one simulated hour. Later work is not counted.
pub const USAGE_BINS_MAX: usize = 36_000;

impl Usage {
    /// A job queued at `queued` and served as `job`. Returns when it is done.
    fn record(&mut self, queued: Duration, job: Job) -> Duration {
        let bin = USAGE_BIN.as_nanos() as u64;
        let queued_ns = queued.as_nanos() as u64;
        let (mut t, end) = (job.start.as_nanos() as u64, job.done.as_nanos() as u64);
        if let Some(i) = self.bin(queued_ns) {
            let wait = t.saturating_sub(queued_ns);
            self.wait_max_ns[i] = self.wait_max_ns[i].max(wait);
        }
        while t < end {
            let Some(i) = self.bin(t) else { break };
            let upto = end.min((i as u64 + 1) * bin);
            self.busy_ns[i] += upto - t;
            t = upto;
        }
        job.done
    }

    /// The bin holding `t_ns`, grown into existence; `None` beyond [`USAGE_BINS_MAX`].
    fn bin(&mut self, t_ns: u64) -> Option<usize> {
        let i = (t_ns / USAGE_BIN.as_nanos() as u64) as usize;
        if i >= USAGE_BINS_MAX {
            return None;
        }
        if self.busy_ns.len() <= i {
            self.busy_ns.resize(i + 1, 0);
            self.wait_max_ns.resize(i + 1, 0);
        }
        Some(i)
    }

    /// The load over `window` (simulated nanoseconds) of `servers` identical servers.
    pub fn load(&self, window: &Range<u64>, servers: u32) -> Load {
        let bin = USAGE_BIN.as_nanos() as u64;
        let span = window.end.saturating_sub(window.start);
        if span == 0 {
            return Load::default();
        }
        let (mut busy, mut wait_max) = (0.0, 0u64);
        for (i, (&b, &w)) in self.busy_ns.iter().zip(&self.wait_max_ns).enumerate() {
            let (from, to) = (i as u64 * bin, (i as u64 + 1) * bin);
            let overlap = to.min(window.end).saturating_sub(from.max(window.start));
            if overlap > 0 {
                busy += b as f64 * overlap as f64 / bin as f64;
                wait_max = wait_max.max(w);
            }
        }
        Load {
            busy: round4(busy / (span as f64 * f64::from(servers.max(1)))),
            wait_max_ms: (wait_max as f64 / 1e3).round() / 1e3,
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// How loaded one resource was over a window.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Load {
    /// The share of the window it was busy, 0 to 1 (for cores, the mean over the cores).
    pub busy: f64,
    /// The longest a job queued in the window waited before its service began, in ms.
    pub wait_max_ms: f64,
}

/// One host's resources over the measured window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostUtilisation {
    pub cores: u32,
    pub cpu: Load,
    pub nic_tx: Load,
    pub nic_rx: Load,
    /// Brokers only: the disk writing back the page cache, and flushing for fsyncs. Both are
    /// one device, so the disk's busy fraction is their sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_writeback: Option<Load>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_fsync: Option<Load>,
}

impl HostUtilisation {
    /// Writeback plus flush; 0 for a host without a disk.
    pub fn disk_busy(&self) -> f64 {
        let busy = |l: Option<Load>| l.map(|l| l.busy).unwrap_or(0.0);
        round4(busy(self.disk_writeback) + busy(self.disk_fsync))
    }
}

/// Every host's utilisation over the measured window (`metrics.utilisation` in summary.json).
/// Empty (no hosts) when the scenario models no resources.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Utilisation {
    /// The window, simulated seconds: the throughput window.
    pub window_s: [f64; 2],
    /// The broker that led the first data partition for most of the window.
    pub leader: Option<String>,
    /// By host name (`broker-N`, client process names).
    pub hosts: BTreeMap<String, HostUtilisation>,
}

impl Utilisation {
    /// The leader's figures (see [`Utilisation::leader`]); `None` without a resource model.
    pub fn leader_host(&self) -> Option<&HostUtilisation> {
        self.hosts.get(self.leader.as_deref()?)
    }

    /// The largest `figure` over brokers; `None` without a resource model.
    pub fn max_broker(&self, figure: impl Fn(&HostUtilisation) -> f64) -> Option<f64> {
        self.max_where(true, figure)
    }

    /// The largest `figure` over client processes; `None` without a resource model or clients.
    pub fn max_client(&self, figure: impl Fn(&HostUtilisation) -> f64) -> Option<f64> {
        self.max_where(false, figure)
    }

    fn max_where(&self, brokers: bool, figure: impl Fn(&HostUtilisation) -> f64) -> Option<f64> {
        self.hosts
            .iter()
            .filter(|(name, _)| crate::scenario::is_broker_host(name) == brokers)
            .map(|(_, h)| figure(h))
            .reduce(f64::max)
    }

    /// The leader's CPU busy fraction.
    pub fn leader_cpu_busy(&self) -> Option<f64> {
        self.leader_host().map(|h| h.cpu.busy)
    }

    pub fn max_broker_cpu_busy(&self) -> Option<f64> {
        self.max_broker(|h| h.cpu.busy)
    }

    pub fn max_broker_nic_tx_busy(&self) -> Option<f64> {
        self.max_broker(|h| h.nic_tx.busy)
    }

    pub fn max_broker_nic_rx_busy(&self) -> Option<f64> {
        self.max_broker(|h| h.nic_rx.busy)
    }

    /// The busiest broker disk (writeback plus flush).
    pub fn max_disk_busy(&self) -> Option<f64> {
        self.max_broker(HostUtilisation::disk_busy)
    }

    /// The longest fsync wait (for writeback ahead of it and earlier flushes) on any broker.
    pub fn max_fsync_wait_ms(&self) -> Option<f64> {
        self.max_broker(|h| h.disk_fsync.map(|l| l.wait_max_ms).unwrap_or(0.0))
    }

    /// The longest wait for a broker core.
    pub fn max_broker_cpu_wait_ms(&self) -> Option<f64> {
        self.max_broker(|h| h.cpu.wait_max_ms)
    }

    pub fn max_client_cpu_busy(&self) -> Option<f64> {
        self.max_client(|h| h.cpu.busy)
    }

    pub fn max_client_nic_tx_busy(&self) -> Option<f64> {
        self.max_client(|h| h.nic_tx.busy)
    }
}

/// What a host is made of, and how busy each part has been.
#[derive(Debug)]
struct Host {
    nic_mbit_s: f64,
    tx: Fifo,
    rx: Fifo,
    cores: Cores,
    /// CPU per frame received, and per byte.
    request_cpu: Duration,
    byte_cpu_ns: f64,
    /// Writeback and flushes share the device's queue.
    disk: Fifo,
    usage: HostUsage,
}

#[derive(Debug, Default)]
struct HostUsage {
    cpu: Usage,
    tx: Usage,
    rx: Usage,
    writeback: Usage,
    fsync: Usage,
}

impl Host {
    fn new(nic_mbit_s: f64, cores: u32, request_cpu: Duration, byte_cpu_ns: f64) -> Host {
        Host {
            nic_mbit_s,
            tx: Fifo::default(),
            rx: Fifo::default(),
            cores: Cores::new(cores),
            request_cpu,
            byte_cpu_ns,
            disk: Fifo::default(),
            usage: HostUsage::default(),
        }
    }

    /// Runs `work` on the first free core, from `at`; a job of no work does not queue, so a
    /// cost set to 0 is free.
    fn cpu(&mut self, at: Duration, work: Duration) -> Duration {
        if work.is_zero() {
            return at;
        }
        let job = self.cores.serve(at, work);
        self.usage.cpu.record(at, job)
    }

    fn transmit(&mut self, at: Duration, bytes: usize) -> Duration {
        let job = self.tx.serve(at, transfer(bytes, self.nic_mbit_s));
        self.usage.tx.record(at, job)
    }

    fn receive(&mut self, at: Duration, bytes: usize) -> Duration {
        let job = self.rx.serve(at, transfer(bytes, self.nic_mbit_s));
        self.usage.rx.record(at, job)
    }

    fn write_back(&mut self, at: Duration, work: Duration) -> Duration {
        let job = self.disk.serve(at, work);
        self.usage.writeback.record(at, job)
    }

    fn flush(&mut self, at: Duration, work: Duration) -> Duration {
        let job = self.disk.serve(at, work);
        self.usage.fsync.record(at, job)
    }

    fn utilisation(&self, window: &Range<u64>, broker: bool) -> HostUtilisation {
        let u = &self.usage;
        HostUtilisation {
            cores: self.cores.count(),
            cpu: u.cpu.load(window, self.cores.count()),
            nic_tx: u.tx.load(window, 1),
            nic_rx: u.rx.load(window, 1),
            disk_writeback: broker.then(|| u.writeback.load(window, 1)),
            disk_fsync: broker.then(|| u.fsync.load(window, 1)),
        }
    }
}

/// Every host's resources in one run, shared by the hosts' drivers (turmoil runs every host on
/// one thread).
#[derive(Debug)]
pub struct World {
    spec: ResourceSpec,
    network: NetworkSpec,
    hosts: BTreeMap<String, Host>,
    paths: BTreeMap<(String, String), Fifo>,
    names: BTreeMap<IpAddr, String>,
    /// Waits are whole multiples of this (see the module docs).
    tick: Duration,
}

pub type SharedWorld = Rc<RefCell<World>>;

impl World {
    pub fn new(spec: ResourceSpec, network: NetworkSpec, tick: Duration) -> SharedWorld {
        Rc::new(RefCell::new(World {
            spec,
            network,
            hosts: BTreeMap::new(),
            paths: BTreeMap::new(),
            names: BTreeMap::new(),
            tick: tick.max(Duration::from_micros(1)),
        }))
    }

    /// Every host's busy fractions and peak waits over `window` (simulated nanoseconds).
    pub fn utilisation(&self, window: Range<u64>) -> BTreeMap<String, HostUtilisation> {
        self.hosts
            .iter()
            .map(|(name, host)| {
                let broker = crate::scenario::is_broker_host(name);
                (name.clone(), host.utilisation(&window, broker))
            })
            .collect()
    }

    fn host(&mut self, name: &str) -> &mut Host {
        let spec = &self.spec;
        self.hosts.entry(name.to_string()).or_insert_with(|| {
            if crate::scenario::is_broker_host(name) {
                Host::new(
                    spec.broker_nic_mbit_s,
                    spec.broker_cores,
                    micros(spec.broker_request_cpu_us),
                    spec.broker_byte_cpu_ns,
                )
            } else {
                Host::new(
                    spec.client_nic_mbit_s,
                    spec.client_cores,
                    Duration::ZERO,
                    spec.client_byte_cpu_ns,
                )
            }
        })
    }

    fn name_of(&mut self, ip: Option<IpAddr>) -> Option<String> {
        let ip = ip?;
        if let Some(n) = self.names.get(&ip) {
            return Some(n.clone());
        }
        let name = crate::harness::host_name(ip)?;
        self.names.insert(ip, name.clone());
        Some(name)
    }

    fn tls_bytes(&self, bytes: usize) -> Duration {
        if self.spec.tls {
            per_byte(bytes, self.spec.tls_byte_cpu_ns)
        } else {
            Duration::ZERO
        }
    }

    fn wait(&self, now: Duration, done: Duration) -> Duration {
        let wait = done.saturating_sub(now).as_nanos();
        let tick = self.tick.as_nanos();
        Duration::from_nanos((wait - wait % tick) as u64)
    }

    fn connect(&mut self, me: &str, peer: Option<IpAddr>, now: Duration) -> Duration {
        let peer = self.name_of(peer);
        let one_way = peer
            .as_deref()
            .map(|p| self.network.link_latency(me, p).min())
            .unwrap_or_default();
        // turmoil charges the SYN's one-way trip; the SYN-ACK is instant there.
        let mut done = now + one_way;
        if self.spec.tls {
            done += 2 * one_way * self.spec.tls_handshake_round_trips;
            // Both ends do the key exchange, in parallel.
            let cpu = micros(self.spec.tls_handshake_cpu_us);
            let mine = self.host(me).cpu(done, cpu);
            let theirs = match &peer {
                Some(p) => self.host(p).cpu(done, cpu),
                None => done,
            };
            done = mine.max(theirs);
        }
        self.wait(now, done)
    }

    fn transmit(
        &mut self,
        me: &str,
        peer: Option<IpAddr>,
        bytes: usize,
        now: Duration,
    ) -> Duration {
        let peer = self.name_of(peer);
        let encrypt = self.tls_bytes(bytes);
        let path_mbit_s = self.spec.path_mbit_s;
        let host = self.host(me);
        let encrypted = host.cpu(now, encrypt);
        let mut done = host.transmit(encrypted, bytes);
        if let (Some(peer), true) = (peer, path_mbit_s > 0.0) {
            let path = self.paths.entry((me.to_string(), peer)).or_default();
            done = path.book(done, transfer(bytes, path_mbit_s));
        }
        self.wait(now, done)
    }

    fn receive(&mut self, me: &str, bytes: usize, now: Duration) -> Duration {
        let decrypt = self.tls_bytes(bytes);
        let host = self.host(me);
        let arrived = host.receive(now, bytes);
        let cpu = host.request_cpu + per_byte(bytes, host.byte_cpu_ns) + decrypt;
        let done = host.cpu(arrived, cpu);
        self.wait(now, done)
    }

    fn compute(&mut self, me: &str, work: Duration, now: Duration) -> Duration {
        let done = self.host(me).cpu(now, work);
        self.wait(now, done)
    }

    fn storage(&mut self, me: &str, op: &StorageOp, now: Duration) -> Duration {
        let bandwidth = self.spec.disk_write_mbyte_s * 8.0;
        let fsync = micros(self.spec.disk_fsync_us);
        let dirty_max = transfer(self.spec.disk_dirty_bytes_max as usize, bandwidth);
        let host = self.host(me);
        let done = match op {
            StorageOp::Append { bytes, .. } => {
                host.write_back(now, transfer(bytes.len(), bandwidth));
                // Throttled only for the writeback beyond the dirty limit.
                now + host.disk.backlog(now).saturating_sub(dirty_max)
            }
            StorageOp::Sync { .. } => host.flush(now, fsync),
            StorageOp::Truncate { .. } | StorageOp::Remove { .. } => now,
        };
        self.wait(now, done)
    }
}

/// One host's view of the [`World`].
pub struct HostResources {
    name: String,
    world: SharedWorld,
}

impl HostResources {
    pub fn shared(world: &SharedWorld, name: &str) -> SharedResources {
        Rc::new(HostResources {
            name: name.to_string(),
            world: world.clone(),
        })
    }

    fn now() -> Duration {
        crate::harness::sim_elapsed()
    }
}

impl Resources for HostResources {
    fn connect(&self, peer: Option<IpAddr>) -> Duration {
        self.world
            .borrow_mut()
            .connect(&self.name, peer, Self::now())
    }

    fn transmit(&self, peer: Option<IpAddr>, bytes: usize) -> Duration {
        self.world
            .borrow_mut()
            .transmit(&self.name, peer, bytes, Self::now())
    }

    fn receive(&self, _peer: Option<IpAddr>, bytes: usize) -> Duration {
        self.world
            .borrow_mut()
            .receive(&self.name, bytes, Self::now())
    }

    fn compute(&self, work: Duration) -> Duration {
        self.world
            .borrow_mut()
            .compute(&self.name, work, Self::now())
    }

    fn storage(&self, op: &StorageOp) -> Duration {
        self.world.borrow_mut().storage(&self.name, op, Self::now())
    }
}

/// A broker's resources: the world's, or without one free resources whose syncs still take
/// time (see [`SyncLatency`]).
pub fn for_broker(
    world: Option<&SharedWorld>,
    name: &str,
    fsync: FsyncMean,
    seed: u64,
    id: u64,
) -> SharedResources {
    match (world, fsync) {
        (None, FsyncMean::Fixed(mean)) if mean.is_zero() => Rc::new(Unmetered),
        (None, fsync) => Rc::new(SyncLatency::new(fsync, seed, id)),
        (Some(_), _) => for_host(world, name),
    }
}

/// Free resources except that a sync takes time: each draws uniformly from
/// `[mean / 2, 3 * mean / 2]`. The driver holds a sync in flight that long before its bytes
/// are durable, so even a scenario without a resource model has the window in which a crash
/// catches acknowledged-but-unsynced data (an acknowledgement sent before the sync completes
/// is then visibly lost).
pub struct SyncLatency {
    mean: Duration,
    rng: RefCell<Rng>,
}

impl SyncLatency {
    /// Salt for the per-broker generator, so these draws do not shift any other component's.
    const SALT: u64 = 0x5359_4e43; // "SYNC"

    pub fn new(fsync: FsyncMean, seed: u64, id: u64) -> SyncLatency {
        let mut rng = Rng::new(seed ^ Self::SALT).fork(id);
        let mean = match fsync {
            FsyncMean::Fixed(mean) => mean,
            FsyncMean::Drawn { min, max } => log_uniform(&mut rng, min, max),
        };
        SyncLatency {
            mean,
            rng: RefCell::new(rng),
        }
    }

    /// The broker's mean sync time.
    pub fn mean(&self) -> Duration {
        self.mean
    }
}

/// A duration whose logarithm is uniform in `[ln min, ln max]`: each factor of ten of the
/// range is as likely as any other.
fn log_uniform(rng: &mut Rng, min: Duration, max: Duration) -> Duration {
    const STEPS: u64 = 1 << 20;
    let (lo, hi) = (min.as_secs_f64().max(1e-9), max.as_secs_f64().max(1e-9));
    let u = rng.range_u64(0, STEPS) as f64 / STEPS as f64;
    Duration::from_secs_f64(lo * (hi / lo).powf(u))
}

/// Everything but a sync costs what [`Unmetered`] says: nothing.
impl Resources for SyncLatency {
    fn connect(&self, peer: Option<IpAddr>) -> Duration {
        Unmetered.connect(peer)
    }
    fn transmit(&self, peer: Option<IpAddr>, bytes: usize) -> Duration {
        Unmetered.transmit(peer, bytes)
    }
    fn receive(&self, peer: Option<IpAddr>, bytes: usize) -> Duration {
        Unmetered.receive(peer, bytes)
    }
    fn compute(&self, work: Duration) -> Duration {
        Unmetered.compute(work)
    }
    fn storage(&self, op: &StorageOp) -> Duration {
        if !matches!(op, StorageOp::Sync { .. }) {
            return Unmetered.storage(op);
        }
        let mean = u64::try_from(self.mean.as_nanos()).unwrap_or(u64::MAX / 2);
        let ns = self.rng.borrow_mut().range_u64(mean / 2, mean + mean / 2);
        Duration::from_nanos(ns)
    }
}

/// The resources of host `name`: its share of `world`, or free resources when the scenario
/// models none.
pub fn for_host(world: Option<&SharedWorld>, name: &str) -> SharedResources {
    match world {
        Some(w) => HostResources::shared(w, name),
        None => Rc::new(Unmetered),
    }
}

/// The producer's CPU cost of one message under `spec`.
pub fn producer_message_cpu(spec: Option<&ResourceSpec>) -> Duration {
    spec.map(|s| micros(s.producer_message_cpu_us))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sync_op() -> StorageOp {
        StorageOp::Sync {
            path: "orders-0/00000000000000000000.log".into(),
            token: fathom_queue::log::SyncToken {
                owner: fathom_queue::log::SyncOwner::ProducerIds,
                seq: 1,
            },
        }
    }

    #[test]
    fn a_drawn_sync_mean_is_per_broker_seeded_and_within_range() {
        let drawn = FsyncMean::Drawn {
            min: Duration::from_micros(100),
            max: Duration::from_millis(20),
        };
        let means: Vec<Duration> = (1..=64)
            .map(|id| SyncLatency::new(drawn, 7, id).mean())
            .collect();
        assert!(means
            .iter()
            .all(|m| (Duration::from_micros(100)..=Duration::from_millis(20)).contains(m)));
        // Log-uniform: about half the brokers below the geometric middle (~1.4 ms).
        let below = means
            .iter()
            .filter(|m| **m < Duration::from_micros(1414))
            .count();
        assert!((16..=48).contains(&below), "{below} of 64 below the middle");
        assert_eq!(SyncLatency::new(drawn, 7, 3).mean(), means[2]);
        assert_ne!(SyncLatency::new(drawn, 8, 3).mean(), means[2]);
    }

    #[test]
    fn each_sync_draws_between_half_and_one_and_a_half_means_and_nothing_else_costs() {
        let s = SyncLatency::new(FsyncMean::Fixed(10 * MS), 1, 1);
        let waits: Vec<Duration> = (0..200).map(|_| s.storage(&sync_op())).collect();
        assert!(waits.iter().all(|w| (5 * MS..=15 * MS).contains(w)));
        assert!(waits.iter().any(|w| *w < 8 * MS) && waits.iter().any(|w| *w > 12 * MS));
        let append = StorageOp::Append {
            path: "orders-0/00000000000000000000.log".into(),
            bytes: bytes::Bytes::from_static(b"x"),
        };
        assert_eq!(s.storage(&append), Duration::ZERO);
        assert_eq!(s.compute(MS), Duration::ZERO);
    }

    #[test]
    fn fifo_queues_jobs_behind_each_other() {
        let mut f = Fifo::default();
        assert_eq!(f.book(Duration::ZERO, MS), MS);
        assert_eq!(f.book(Duration::ZERO, MS), 2 * MS);
        // Idle time is not banked.
        assert_eq!(f.book(10 * MS, MS), 11 * MS);
        assert_eq!(f.backlog(10 * MS), MS);
    }

    #[test]
    fn cores_run_jobs_in_parallel_up_to_their_number() {
        let mut c = Cores::new(2);
        assert_eq!(c.book(Duration::ZERO, MS), MS);
        assert_eq!(c.book(Duration::ZERO, MS), MS);
        assert_eq!(c.book(Duration::ZERO, MS), 2 * MS);
    }

    #[test]
    fn a_gigabit_nic_moves_125_megabytes_per_second() {
        assert_eq!(transfer(125_000_000, 1_000.0), Duration::from_secs(1));
        assert_eq!(transfer(1_000, 10_000.0), Duration::from_nanos(800));
    }

    fn world() -> World {
        let spec = ResourceSpec {
            broker_nic_mbit_s: 8.0, // 1 byte per microsecond
            broker_request_cpu_us: 0.0,
            broker_byte_cpu_ns: 0.0,
            disk_write_mbyte_s: 1.0, // 1 byte per microsecond
            disk_fsync_us: 2_000.0,
            disk_dirty_bytes_max: 10_000,
            ..ResourceSpec::default()
        };
        Rc::try_unwrap(World::new(spec, NetworkSpec::default(), MS))
            .unwrap()
            .into_inner()
    }

    #[test]
    fn a_busy_nic_delays_later_frames_by_their_transfer_time() {
        let mut w = world();
        let t0 = Duration::from_secs(1);
        // 400 bytes = 0.4 ms: below a tick, not slept, but booked.
        assert_eq!(w.transmit("broker-1", None, 400, t0), Duration::ZERO);
        assert_eq!(w.transmit("broker-1", None, 400, t0), Duration::ZERO);
        // Done 1.8 ms from now: the wait rounds down to whole ticks.
        assert_eq!(w.transmit("broker-1", None, 1_000, t0), MS);
        assert_eq!(w.transmit("broker-1", None, 200, t0), 2 * MS);
        // Another host's NIC is its own.
        assert_eq!(w.transmit("broker-2", None, 400, t0), Duration::ZERO);
    }

    #[test]
    fn fsync_waits_for_writeback_then_the_flush() {
        let mut w = world();
        let t0 = Duration::from_secs(1);
        let append = StorageOp::Append {
            path: "a/0.log".into(),
            bytes: bytes::Bytes::from(vec![0u8; 3_000]),
        };
        // 3 ms of writeback, under the 10 ms dirty limit: the append is not throttled.
        assert_eq!(w.storage("broker-1", &append, t0), Duration::ZERO);
        let sync = StorageOp::Sync {
            path: "a/0.log".into(),
            token: fathom_queue::log::SyncToken {
                owner: fathom_queue::log::SyncOwner::ProducerIds,
                seq: 1,
            },
        };
        assert_eq!(w.storage("broker-1", &sync, t0), 5 * MS);
    }

    #[test]
    fn appends_beyond_the_dirty_limit_are_throttled() {
        let mut w = world();
        let t0 = Duration::from_secs(1);
        let append = StorageOp::Append {
            path: "a/0.log".into(),
            bytes: bytes::Bytes::from(vec![0u8; 6_000]),
        };
        assert_eq!(w.storage("broker-1", &append, t0), Duration::ZERO);
        // 12 ms of writeback queued; the limit is 10 ms.
        assert_eq!(w.storage("broker-1", &append, t0), 2 * MS);
    }

    /// Every cost at zero: an ablation baseline in which nothing but link latency costs time.
    fn free_spec() -> ResourceSpec {
        ResourceSpec {
            broker_cores: 1,
            broker_request_cpu_us: 0.0,
            broker_byte_cpu_ns: 0.0,
            broker_nic_mbit_s: 0.0,
            client_cores: 1,
            client_nic_mbit_s: 0.0,
            client_byte_cpu_ns: 0.0,
            producer_message_cpu_us: 0.0,
            path_mbit_s: 0.0,
            disk_write_mbyte_s: 0.0,
            disk_fsync_us: 0.0,
            disk_dirty_bytes_max: 0,
            tls: true,
            tls_handshake_round_trips: 0,
            tls_handshake_cpu_us: 0.0,
            tls_byte_cpu_ns: 0.0,
        }
    }

    const MB: usize = 1_000_000;
    const BROKER: &str = "broker-1";
    const CLIENT: &str = "p-0";
    const BROKER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 0, 1));

    /// A world of `spec` with 1 µs ticks (so every cost shows) that knows the broker's address.
    fn world_of(spec: ResourceSpec) -> World {
        let world = World::new(spec, NetworkSpec::default(), Duration::from_micros(1));
        let mut world = Rc::try_unwrap(world).unwrap().into_inner();
        world.names.insert(BROKER_IP, BROKER.to_string());
        world
    }

    fn sync_after(w: &mut World, bytes: usize) -> Duration {
        let t0 = Duration::from_secs(1);
        let append = StorageOp::Append {
            path: "a/0.log".into(),
            bytes: bytes::Bytes::from(vec![0u8; bytes]),
        };
        w.storage(BROKER, &append, t0);
        let sync = StorageOp::Sync {
            path: "a/0.log".into(),
            token: fathom_queue::log::SyncToken {
                owner: fathom_queue::log::SyncOwner::ProducerIds,
                seq: 1,
            },
        };
        w.storage(BROKER, &sync, t0)
    }

    type Setter = fn(&mut ResourceSpec);
    type Probe = fn(&mut World) -> Duration;

    /// One case per cost: the field set to a non-zero figure, and an operation that pays it.
    /// The destructuring lists every field, so a new cost does not compile until it has a case.
    fn ablation_cases() -> Vec<(&'static str, Setter, Probe)> {
        let ResourceSpec {
            broker_cores: _,
            broker_request_cpu_us: _,
            broker_byte_cpu_ns: _,
            broker_nic_mbit_s: _,
            client_cores: _,
            client_nic_mbit_s: _,
            client_byte_cpu_ns: _,
            producer_message_cpu_us: _,
            path_mbit_s: _,
            disk_write_mbyte_s: _,
            disk_fsync_us: _,
            disk_dirty_bytes_max: _,
            tls: _,
            tls_handshake_round_trips: _,
            tls_handshake_cpu_us: _,
            tls_byte_cpu_ns: _,
        } = ResourceSpec::default();
        vec![
            (
                "broker_request_cpu_us",
                |s| s.broker_request_cpu_us = 100.0,
                |w| w.receive(BROKER, 100, Duration::from_secs(1)),
            ),
            (
                "broker_byte_cpu_ns",
                |s| s.broker_byte_cpu_ns = 0.5,
                |w| w.receive(BROKER, MB, Duration::from_secs(1)),
            ),
            (
                "broker_nic_mbit_s",
                |s| s.broker_nic_mbit_s = 10_000.0,
                |w| w.transmit(BROKER, None, MB, Duration::from_secs(1)),
            ),
            (
                "client_nic_mbit_s",
                |s| s.client_nic_mbit_s = 10_000.0,
                |w| w.receive(CLIENT, MB, Duration::from_secs(1)),
            ),
            (
                "client_byte_cpu_ns",
                |s| s.client_byte_cpu_ns = 0.5,
                |w| w.receive(CLIENT, MB, Duration::from_secs(1)),
            ),
            (
                "producer_message_cpu_us",
                |s| s.producer_message_cpu_us = 2.0,
                |w| {
                    let work = producer_message_cpu(Some(&w.spec));
                    w.compute(CLIENT, work, Duration::from_secs(1))
                },
            ),
            (
                "path_mbit_s",
                |s| s.path_mbit_s = 1_000.0,
                |w| w.transmit(CLIENT, Some(BROKER_IP), MB, Duration::from_secs(1)),
            ),
            (
                "disk_write_mbyte_s",
                |s| s.disk_write_mbyte_s = 500.0,
                |w| sync_after(w, MB),
            ),
            (
                "disk_fsync_us",
                |s| s.disk_fsync_us = 1_000.0,
                |w| sync_after(w, MB),
            ),
            (
                "tls_handshake_round_trips",
                |s| s.tls_handshake_round_trips = 2,
                |w| w.connect(CLIENT, Some(BROKER_IP), Duration::from_secs(1)),
            ),
            (
                "tls_handshake_cpu_us",
                |s| s.tls_handshake_cpu_us = 1_000.0,
                |w| w.connect(CLIENT, Some(BROKER_IP), Duration::from_secs(1)),
            ),
            (
                "tls_byte_cpu_ns",
                |s| s.tls_byte_cpu_ns = 0.5,
                |w| w.transmit(CLIENT, None, MB, Duration::from_secs(1)),
            ),
        ]
    }

    #[test]
    fn a_cost_set_to_zero_is_free_and_set_above_zero_costs_time() {
        // The baseline: with every cost at zero only a connection's one-way link latency (the
        // round trip turmoil does not charge) is left.
        let one_way = NetworkSpec::default().latency_ms.min();
        for (field, set, probe) in ablation_cases() {
            let free = probe(&mut world_of(free_spec()));
            let baseline = if field.starts_with("tls_handshake") {
                one_way
            } else {
                Duration::ZERO
            };
            assert_eq!(free, baseline, "{field} = 0 still costs time");
            let mut costed = free_spec();
            set(&mut costed);
            let paid = probe(&mut world_of(costed));
            assert!(paid > free, "{field} above 0 costs nothing: {paid:?}");
        }
    }

    #[test]
    fn zero_in_a_default_spec_removes_only_that_cost() {
        // The ablation an experiment runs: the default hardware with one cost at zero. The
        // operation that pays the cost gets cheaper; that cost is not replaced by its default.
        for (field, set, probe) in ablation_cases() {
            let mut with = ResourceSpec {
                tls: true,
                path_mbit_s: 1_000.0,
                ..ResourceSpec::default()
            };
            set(&mut with);
            let paid = probe(&mut world_of(with.clone()));
            let mut without = with;
            zero(&mut without, field);
            let spared = probe(&mut world_of(without));
            assert!(spared < paid, "{field} = 0: {spared:?}, not below {paid:?}");
        }
    }

    /// Sets the cost named `field` to zero.
    fn zero(s: &mut ResourceSpec, field: &str) {
        match field {
            "broker_request_cpu_us" => s.broker_request_cpu_us = 0.0,
            "broker_byte_cpu_ns" => s.broker_byte_cpu_ns = 0.0,
            "broker_nic_mbit_s" => s.broker_nic_mbit_s = 0.0,
            "client_nic_mbit_s" => s.client_nic_mbit_s = 0.0,
            "client_byte_cpu_ns" => s.client_byte_cpu_ns = 0.0,
            "producer_message_cpu_us" => s.producer_message_cpu_us = 0.0,
            "path_mbit_s" => s.path_mbit_s = 0.0,
            "disk_write_mbyte_s" => s.disk_write_mbyte_s = 0.0,
            "disk_fsync_us" => s.disk_fsync_us = 0.0,
            "tls_handshake_round_trips" => s.tls_handshake_round_trips = 0,
            "tls_handshake_cpu_us" => s.tls_handshake_cpu_us = 0.0,
            "tls_byte_cpu_ns" => s.tls_byte_cpu_ns = 0.0,
            other => panic!("no ablation for {other}"),
        }
    }

    #[test]
    fn every_cost_may_be_zero_in_a_scenario() {
        assert_eq!(free_spec().check(), Ok(()));
    }

    #[test]
    fn utilisation_counts_busy_time_and_the_longest_wait_within_the_window() {
        let mut w = world();
        // 1 byte per µs: 50 ms of transmit from 1 s, then a frame queued behind it 10 ms in.
        let t0 = Duration::from_secs(1);
        w.transmit("broker-1", None, 50_000, t0);
        w.transmit("broker-1", None, 10_000, t0 + 10 * MS);
        let window = |a: u64, b: u64| a * 1_000_000..b * 1_000_000;
        let hosts = w.utilisation(window(1_000, 1_100));
        let tx = hosts["broker-1"].nic_tx;
        assert_eq!(tx.busy, 0.6, "60 ms of 100");
        assert_eq!(tx.wait_max_ms, 40.0, "queued at 10 ms, served from 50 ms");
        assert_eq!(hosts["broker-1"].nic_rx.busy, 0.0);
        // A window after the work sees none of it; one that halves a bin prorates it.
        assert_eq!(
            w.utilisation(window(2_000, 3_000))["broker-1"].nic_tx.busy,
            0.0
        );
        assert_eq!(
            w.utilisation(window(1_050, 1_100))["broker-1"].nic_tx.busy,
            0.6
        );
        assert!(hosts["broker-1"].disk_fsync.is_some() && hosts["broker-1"].cores == 4);
    }

    #[test]
    fn cores_busy_is_the_mean_over_cores() {
        let mut w = world();
        let t0 = Duration::from_secs(1);
        // Four cores, one 100 ms job: a quarter busy.
        w.compute("broker-1", 100 * MS, t0);
        let hosts = w.utilisation(1_000_000_000..1_100_000_000);
        assert_eq!(hosts["broker-1"].cpu.busy, 0.25);
        assert_eq!(hosts["broker-1"].cpu.wait_max_ms, 0.0);
    }
}
