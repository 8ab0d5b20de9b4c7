//! A deterministic in-memory cluster for tests: N nodes (one partition's [`Replica`]s, or whole
//! [`Broker`]s) over a virtual clock, an in-memory disk per node and a seeded network.
//!
//! The harness is itself sans-IO, str0m-style: [`Cluster::step`] advances the clock to the
//! earliest pending thing (a packet arriving, a sync completing, a node's `poll_timeout`) and
//! handles exactly that one, then drains the node's outputs. Storage ops are applied to the
//! node's [`MemDisk`] at once; a `Sync` completes after the node's [`SyncMode`] says, and only
//! then does the synced file become durable. [`Cluster::crash`] throws away the node and
//! everything on its disk that was not durable; [`Cluster::restart`] rebuilds the node from its
//! durable files with `recover`. Every random choice (drops, delays, the nodes' own seeds) comes
//! from the seed, and every collection is ordered, so a seed replays the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;

use crate::broker::{Broker, BrokerLimits, ConnId, Dest, Output};
use crate::config::{BrokerAddr, ClusterConfig, LogConfig, ReplicationConfig, TopicConfig};
use crate::ids::{NodeId, TopicPartition};
use crate::log::batch::{self, NewRecord};
use crate::log::{StorageOp, SyncToken};
use crate::protocol::{Message, Peer, PROTOCOL_VERSION};
use crate::replication::{RaftEnvelope, Replica, ReplicaEvent};
use crate::rng::Rng;
use crate::time::Instant;

/// Steps at one instant before the harness calls it a livelock (a node whose `poll_timeout`
/// stays in the past however often it is handled, or a message storm).
pub const STEPS_PER_INSTANT_MAX: u64 = 1_000_000;
/// Entries [`Cluster::sent`] keeps when recording is on.
pub const SENT_LOG_MAX: usize = 100_000;

// --- disk ------------------------------------------------------------------------------------

/// One node's disk: what the node wrote (`files`, the page cache) and what survives a crash
/// (`durable`). Paths are relative to the node's data dir, `dir/name`.
///
/// A `Sync` of a file makes that file's current contents durable and, as the directory fsync
/// that goes with it, every removal in its directory. A file created and never synced is lost
/// in a crash; so is a truncation or removal not yet covered by a sync.
#[derive(Debug, Default, Clone)]
pub struct MemDisk {
    pub files: BTreeMap<String, Vec<u8>>,
    pub durable: BTreeMap<String, Vec<u8>>,
}

impl MemDisk {
    pub fn apply(&mut self, op: &StorageOp) {
        match op {
            StorageOp::Append { path, bytes } => {
                self.files
                    .entry(path.clone())
                    .or_default()
                    .extend_from_slice(bytes);
            }
            StorageOp::Truncate { path, len } => {
                let file = self
                    .files
                    .get_mut(path)
                    .unwrap_or_else(|| panic!("Truncate of missing file {path}"));
                assert!(
                    *len as usize <= file.len(),
                    "Truncate of {path} to {len} bytes would extend it from {}",
                    file.len()
                );
                file.truncate(*len as usize);
            }
            StorageOp::Remove { path } => {
                self.files.remove(path);
            }
            // Durable only when the sync completes: see `complete_sync`.
            StorageOp::Sync { .. } => {}
        }
    }

    /// A `Sync` of `path` finished.
    pub fn complete_sync(&mut self, path: &str) {
        match self.files.get(path) {
            Some(bytes) => {
                self.durable.insert(path.to_string(), bytes.clone());
            }
            None => {
                self.durable.remove(path);
            }
        }
        let dir = parent(path);
        let files = &self.files;
        self.durable
            .retain(|p, _| parent(p) != dir || files.contains_key(p));
    }

    /// Power loss: the page cache is gone.
    pub fn crash(&mut self) {
        self.files = self.durable.clone();
    }

    /// Power loss after the page cache wrote back part of what was appended since the last
    /// sync: a file whose unsynced changes are all appends keeps its durable contents plus a
    /// random prefix of those appends, possibly ending inside a batch or record (a torn write).
    /// Unsynced creations, removals and truncations are lost, as in [`MemDisk::crash`], so the
    /// directory never shows an entry that no sync covered.
    pub fn crash_torn(&mut self, rng: &mut Rng) {
        for (path, durable) in self.durable.iter_mut() {
            let Some(written) = self.files.get(path) else {
                continue;
            };
            if written.len() > durable.len() && written.starts_with(durable) {
                let keep = rng.range_u64(durable.len() as u64, written.len() as u64) as usize;
                *durable = written[..keep].to_vec();
            }
        }
        self.crash();
    }

    /// Every file with its contents, as a driver's `Disk::load` returns them.
    pub fn load(&self) -> Vec<(String, Bytes)> {
        self.files
            .iter()
            .map(|(p, b)| (p.clone(), Bytes::copy_from_slice(b)))
            .collect()
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

// --- network ---------------------------------------------------------------------------------

/// Faults the network applies to every packet that crosses an open link.
#[derive(Debug, Clone)]
pub struct NetFaults {
    pub drop_probability: f64,
    /// Each packet's delay is drawn uniformly from this range; unequal delays reorder.
    pub delay_min: Duration,
    pub delay_max: Duration,
}

impl Default for NetFaults {
    fn default() -> Self {
        NetFaults {
            drop_probability: 0.0,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(1),
        }
    }
}

#[derive(Debug, Clone)]
struct Packet<M> {
    from: NodeId,
    to: NodeId,
    msg: M,
}

// --- nodes -----------------------------------------------------------------------------------

/// What a node hands the harness after an input.
#[derive(Debug)]
pub enum Effect<M, L> {
    Storage(StorageOp),
    Send {
        to: NodeId,
        msg: M,
    },
    /// Anything else (replica events, broker outputs to clients); the harness records it.
    Local(L),
}

/// A state machine the harness can drive.
pub trait SimNode {
    type Msg: Clone + Debug;
    type Local: Clone + Debug;
    fn deliver(&mut self, now: Instant, from: NodeId, msg: Self::Msg);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_synced(&mut self, now: Instant, token: &SyncToken);
    fn poll_effect(&mut self) -> Option<Effect<Self::Msg, Self::Local>>;
}

impl SimNode for Replica {
    type Msg = RaftEnvelope;
    type Local = ReplicaEvent;

    fn deliver(&mut self, now: Instant, _from: NodeId, msg: RaftEnvelope) {
        self.handle_message(now, msg);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Replica::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Replica::poll_timeout(self)
    }
    fn handle_synced(&mut self, now: Instant, token: &SyncToken) {
        Replica::handle_synced(self, now, token);
    }
    fn poll_effect(&mut self) -> Option<Effect<RaftEnvelope, ReplicaEvent>> {
        if let Some(op) = self.poll_storage() {
            return Some(Effect::Storage(op));
        }
        if let Some(env) = self.poll_message() {
            return Some(Effect::Send {
                to: env.to,
                msg: env,
            });
        }
        self.poll_event().map(Effect::Local)
    }
}

/// The inbound connection on which a broker hears from peer `peer`.
pub fn peer_conn(peer: NodeId) -> ConnId {
    (1 << 32) + peer as ConnId
}

fn is_peer_conn(conn: ConnId) -> bool {
    conn >= 1 << 32
}

/// A broker as a harness node. Outputs to client connections become [`Effect::Local`].
pub struct BrokerNode(pub Broker);

impl BrokerNode {
    /// Starts a broker from its files and says Hello on every peer's inbound connection.
    pub fn start(
        id: NodeId,
        config: &ClusterConfig,
        limits: &BrokerLimits,
        files: Vec<(String, Bytes)>,
        seed: u64,
        now: Instant,
    ) -> BrokerNode {
        let (mut broker, _) = Broker::recover(id, config.clone(), limits.clone(), files, seed, now);
        for peer in config.broker_ids() {
            if peer != id {
                broker.handle_message(
                    now,
                    peer_conn(peer),
                    Message::Hello {
                        version: PROTOCOL_VERSION,
                        peer: Peer::Broker(peer),
                    },
                );
            }
        }
        BrokerNode(broker)
    }
}

impl SimNode for BrokerNode {
    type Msg = Message;
    type Local = Output;

    fn deliver(&mut self, now: Instant, from: NodeId, msg: Message) {
        self.0.handle_message(now, peer_conn(from), msg);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn handle_synced(&mut self, now: Instant, token: &SyncToken) {
        self.0.handle_synced(now, token);
    }
    fn poll_effect(&mut self) -> Option<Effect<Message, Output>> {
        loop {
            return Some(match self.0.poll_output()? {
                Output::Storage(op) => Effect::Storage(op),
                Output::Transmit {
                    to: Dest::Broker(to),
                    msg,
                } => Effect::Send { to, msg },
                // Peers' HelloOk on their inbound connections: nobody listens.
                Output::Transmit {
                    to: Dest::Conn(c), ..
                } if is_peer_conn(c) => continue,
                other => Effect::Local(other),
            });
        }
    }
}

// --- cluster ---------------------------------------------------------------------------------

/// When a node's `Sync` ops complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// At the same instant, in a later step.
    Immediate,
    Delay(Duration),
    /// Not until [`Cluster::release_syncs`] (or a mode change).
    Hold,
}

#[derive(Debug, Clone)]
struct PendingSync {
    node: NodeId,
    incarnation: u64,
    path: String,
    token: SyncToken,
}

/// Rebuilds node `id` (incarnation `n`, 0 for the first start) from its files at `now`.
pub type Factory<N> = Box<dyn FnMut(NodeId, u64, Vec<(String, Bytes)>, Instant) -> N>;

/// N nodes, their disks and the network between them, on one virtual clock.
pub struct Cluster<N: SimNode> {
    now: Instant,
    ids: Vec<NodeId>,
    /// `None` while crashed.
    nodes: BTreeMap<NodeId, Option<N>>,
    incarnations: BTreeMap<NodeId, u64>,
    disks: BTreeMap<NodeId, MemDisk>,
    factory: Factory<N>,
    rng: Rng,
    seq: u64,
    steps_at_now: u64,

    /// Packets by (arrival, sequence).
    in_flight: BTreeMap<(Instant, u64), Packet<N::Msg>>,
    /// Directed links that lose everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Directed links that lose packets with their own probability instead of the global one.
    link_drop_probability: BTreeMap<(NodeId, NodeId), f64>,
    pub faults: NetFaults,
    /// Crashes keep a random prefix of unsynced appends ([`MemDisk::crash_torn`]).
    pub torn_crashes: bool,
    record_sent: bool,
    sent: Vec<(Instant, NodeId, NodeId, N::Msg)>,

    sync_modes: BTreeMap<NodeId, SyncMode>,
    /// Sync completions by (time, sequence).
    syncs: BTreeMap<(Instant, u64), PendingSync>,
    held_syncs: BTreeMap<NodeId, Vec<PendingSync>>,

    locals: BTreeMap<NodeId, Vec<(Instant, N::Local)>>,
}

impl<N: SimNode> Cluster<N> {
    pub fn new(ids: &[NodeId], seed: u64, mut factory: Factory<N>) -> Cluster<N> {
        let now = Instant::ZERO;
        let mut c = Cluster {
            now,
            ids: ids.to_vec(),
            nodes: BTreeMap::new(),
            incarnations: ids.iter().map(|&id| (id, 0)).collect(),
            disks: ids.iter().map(|&id| (id, MemDisk::default())).collect(),
            factory: Box::new(|_, _, _, _| unreachable!()),
            rng: Rng::new(seed ^ 0x7e57_c1a5),
            seq: 0,
            steps_at_now: 0,
            in_flight: BTreeMap::new(),
            blocked: BTreeSet::new(),
            link_drop_probability: BTreeMap::new(),
            faults: NetFaults::default(),
            torn_crashes: false,
            record_sent: false,
            sent: Vec::new(),
            sync_modes: ids.iter().map(|&id| (id, SyncMode::Immediate)).collect(),
            syncs: BTreeMap::new(),
            held_syncs: BTreeMap::new(),
            locals: BTreeMap::new(),
        };
        for &id in ids {
            let node = factory(id, 0, Vec::new(), now);
            c.nodes.insert(id, Some(node));
        }
        c.factory = factory;
        for &id in ids {
            c.drain(id);
        }
        c
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.is_some())
    }

    /// The live nodes.
    pub fn up(&self) -> impl Iterator<Item = (NodeId, &N)> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| n.as_ref().map(|n| (id, n)))
    }

    pub fn node(&self, id: NodeId) -> &N {
        self.nodes[&id]
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is down"))
    }

    pub fn try_node(&self, id: NodeId) -> Option<&N> {
        self.nodes.get(&id)?.as_ref()
    }

    /// Calls `f` on a live node as an input at the current instant, then drains its outputs.
    pub fn with_node<R>(&mut self, id: NodeId, f: impl FnOnce(&mut N, Instant) -> R) -> R {
        let now = self.now;
        let node = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.as_mut())
            .unwrap_or_else(|| panic!("node {id} is down"));
        let r = f(node, now);
        self.drain(id);
        r
    }

    /// Hands `msg` from `from` to `to` now, bypassing the network.
    pub fn inject(&mut self, to: NodeId, from: NodeId, msg: N::Msg) {
        self.with_node(to, |n, now| n.deliver(now, from, msg));
    }

    pub fn disk(&self, id: NodeId) -> &MemDisk {
        &self.disks[&id]
    }

    /// A node's disk, to damage what a crashed node will read when it restarts.
    pub fn disk_mut(&mut self, id: NodeId) -> &mut MemDisk {
        self.disks.get_mut(&id).expect("known node")
    }

    pub fn incarnation(&self, id: NodeId) -> u64 {
        self.incarnations[&id]
    }

    // --- faults ------------------------------------------------------------------------------

    /// Power loss on `id`: the node and whatever its disk had not made durable are gone (all of
    /// it, or with [`Cluster::torn_crashes`] all but a random prefix of unsynced appends), and so
    /// are its pending sync completions. Packets already in flight to it are still delivered if
    /// it restarts before they arrive.
    pub fn crash(&mut self, id: NodeId) {
        self.nodes.insert(id, None);
        let disk = self.disks.get_mut(&id).expect("known node");
        if self.torn_crashes {
            disk.crash_torn(&mut self.rng);
        } else {
            disk.crash();
        }
        self.syncs.retain(|_, s| s.node != id);
        self.held_syncs.remove(&id);
    }

    /// Starts a crashed node again from its durable files.
    pub fn restart(&mut self, id: NodeId) {
        assert!(!self.is_up(id), "node {id} is up");
        let incarnation = self.incarnations[&id] + 1;
        self.incarnations.insert(id, incarnation);
        let files = self.disks[&id].load();
        let node = (self.factory)(id, incarnation, files, self.now);
        self.nodes.insert(id, Some(node));
        self.drain(id);
    }

    pub fn set_sync_mode(&mut self, id: NodeId, mode: SyncMode) {
        self.sync_modes.insert(id, mode);
        if mode != SyncMode::Hold {
            self.release_syncs(id);
        }
    }

    /// Lets every sync `id` has held so far complete (now, in later steps), in issue order.
    pub fn release_syncs(&mut self, id: NodeId) {
        for s in self.held_syncs.remove(&id).unwrap_or_default() {
            self.seq += 1;
            self.syncs.insert((self.now, self.seq), s);
        }
    }

    pub fn held_sync_count(&self, id: NodeId) -> usize {
        self.held_syncs.get(&id).map_or(0, Vec::len)
    }

    /// Opens or cuts the directed link `from -> to`. A cut link also loses the packets already
    /// on it.
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        if up {
            self.blocked.remove(&(from, to));
        } else {
            self.blocked.insert((from, to));
        }
    }

    /// Makes the directed link `from -> to` lose packets with probability `p` (`None`: the
    /// global [`NetFaults::drop_probability`] again).
    pub fn set_link_drop_probability(&mut self, from: NodeId, to: NodeId, p: Option<f64>) {
        match p {
            Some(p) => self.link_drop_probability.insert((from, to), p),
            None => self.link_drop_probability.remove(&(from, to)),
        };
    }

    /// Cuts every link between the two sides, both ways.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for &a in side_a {
            for &b in side_b {
                self.set_link(a, b, false);
                self.set_link(b, a, false);
            }
        }
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.ids.iter().copied().filter(|&o| o != id).collect();
        self.partition(&[id], &others);
    }

    /// Opens every link and forgets per-link drop probabilities.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.link_drop_probability.clear();
    }

    pub fn link_is_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Starts (or stops) keeping every packet sent, delivered or not.
    pub fn record_sent(&mut self, on: bool) {
        self.record_sent = on;
    }

    pub fn sent(&self) -> &[(Instant, NodeId, NodeId, N::Msg)] {
        &self.sent
    }

    /// Draws from the harness's own generator, for tests that pick faults at random.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    // --- locals ------------------------------------------------------------------------------

    pub fn locals(&self, id: NodeId) -> &[(Instant, N::Local)] {
        self.locals.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn take_locals(&mut self, id: NodeId) -> Vec<(Instant, N::Local)> {
        self.locals.remove(&id).unwrap_or_default()
    }

    // --- running -----------------------------------------------------------------------------

    /// When the next thing happens: a packet arrives, a sync completes or a live node's timer
    /// fires.
    pub fn next_event_time(&self) -> Option<Instant> {
        let packet = self.in_flight.keys().next().map(|&(t, _)| t);
        let sync = self.syncs.keys().next().map(|&(t, _)| t);
        let timers = self.up().filter_map(|(_, n)| n.poll_timeout());
        [packet, sync].into_iter().flatten().chain(timers).min()
    }

    /// Handles the one earliest event, advancing the clock to it. False if nothing is pending.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_event_time() else {
            return false;
        };
        if t > self.now {
            self.now = t;
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        assert!(
            self.steps_at_now < STEPS_PER_INSTANT_MAX,
            "livelock: {STEPS_PER_INSTANT_MAX} steps at {:?}",
            self.now
        );
        let now = self.now;
        // Syncs first, then packets, then timers: each only if due.
        if let Some(entry) = self.syncs.first_entry() {
            if entry.key().0 <= now {
                let s = entry.remove();
                self.disks
                    .get_mut(&s.node)
                    .expect("known node")
                    .complete_sync(&s.path);
                if self.incarnations[&s.node] == s.incarnation && self.is_up(s.node) {
                    self.with_node(s.node, |n, now| n.handle_synced(now, &s.token));
                }
                return true;
            }
        }
        if let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 <= now {
                let p = entry.remove();
                // A link cut while the packet was on its way loses it too.
                if self.is_up(p.to) && !self.blocked.contains(&(p.from, p.to)) {
                    self.with_node(p.to, |n, now| n.deliver(now, p.from, p.msg));
                }
                return true;
            }
        }
        let due = self
            .up()
            .filter_map(|(id, n)| n.poll_timeout().map(|t| (t, id)))
            .min();
        if let Some((t, id)) = due {
            if t <= now {
                self.with_node(id, |n, now| n.handle_timeout(now));
            }
        }
        true
    }

    /// Runs every event up to and including `deadline`, then sets the clock to it.
    pub fn run_until(&mut self, deadline: Instant) {
        while self.next_event_time().is_some_and(|t| t <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Steps until `done` holds (checked before every step) or `max` has passed; whether it held.
    pub fn run_until_cond(&mut self, max: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + max;
        loop {
            if done(self) {
                return true;
            }
            if self.next_event_time().is_none_or(|t| t > deadline) {
                self.now = self.now.max(deadline);
                return done(self);
            }
            self.step();
        }
    }

    /// Moves a node's outputs into the disk, the sync queue, the network and its locals.
    fn drain(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id).and_then(|n| n.as_mut()) else {
                return;
            };
            let Some(effect) = node.poll_effect() else {
                return;
            };
            match effect {
                Effect::Storage(op) => {
                    self.disks.get_mut(&id).expect("known node").apply(&op);
                    if let StorageOp::Sync { path, token } = op {
                        self.schedule_sync(PendingSync {
                            node: id,
                            incarnation: self.incarnations[&id],
                            path,
                            token,
                        });
                    }
                }
                Effect::Send { to, msg } => self.send(id, to, msg),
                Effect::Local(l) => self.locals.entry(id).or_default().push((self.now, l)),
            }
        }
    }

    fn schedule_sync(&mut self, s: PendingSync) {
        let at = match self.sync_modes[&s.node] {
            SyncMode::Immediate => self.now,
            SyncMode::Delay(d) => self.now + d,
            SyncMode::Hold => {
                self.held_syncs.entry(s.node).or_default().push(s);
                return;
            }
        };
        self.seq += 1;
        self.syncs.insert((at, self.seq), s);
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: N::Msg) {
        if self.record_sent && self.sent.len() < SENT_LOG_MAX {
            self.sent.push((self.now, from, to, msg.clone()));
        }
        let drop_probability = self
            .link_drop_probability
            .get(&(from, to))
            .copied()
            .unwrap_or(self.faults.drop_probability);
        if self.blocked.contains(&(from, to)) || self.rng.chance(drop_probability) {
            return;
        }
        let delay = self
            .rng
            .duration_between(self.faults.delay_min, self.faults.delay_max);
        self.seq += 1;
        self.in_flight
            .insert((self.now + delay, self.seq), Packet { from, to, msg });
    }
}

// --- replica groups --------------------------------------------------------------------------

/// The partition every replica group of the harness replicates.
pub fn group_partition() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// A fresh group of replicas `1..=n` of [`group_partition`]. Replica `id`'s generator is
/// seeded from `seed`, its id and its incarnation.
pub fn replica_group(
    n: u32,
    seed: u64,
    log_config: LogConfig,
    config: ReplicationConfig,
) -> Cluster<Replica> {
    let voters: Vec<NodeId> = (1..=n).collect();
    let tp = group_partition();
    let dir = tp.dir();
    let vs = voters.clone();
    let factory: Factory<Replica> = Box::new(move |id, incarnation, files, now| {
        let rng = Rng::new(seed ^ (id as u64) << 32 ^ incarnation.wrapping_mul(0x9E37_79B9));
        if files.is_empty() && incarnation == 0 {
            return Replica::new(id, tp.clone(), &vs, &log_config, &config, rng, now);
        }
        let prefix = format!("{dir}/");
        let files = files
            .into_iter()
            .filter_map(|(p, b)| Some((p.strip_prefix(&prefix)?.to_string(), b)))
            .collect();
        Replica::recover(id, tp.clone(), &vs, &log_config, &config, files, rng, now).0
    });
    Cluster::new(&voters, seed, factory)
}

impl Cluster<Replica> {
    /// Live replicas that think they lead.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.up()
            .filter(|(_, r)| r.is_leader())
            .map(|(id, _)| id)
            .collect()
    }

    /// The live leader with the highest term that has committed an entry of its term.
    pub fn ready_leader(&self) -> Option<NodeId> {
        self.up()
            .filter(|(_, r)| r.is_ready_leader())
            .max_by_key(|(_, r)| r.term())
            .map(|(id, _)| id)
    }

    /// Runs until some replica is a ready leader; panics after `max`.
    pub fn await_ready_leader(&mut self, max: Duration) -> NodeId {
        assert!(
            self.run_until_cond(max, |c| c.ready_leader().is_some()),
            "no ready leader within {max:?} (now {:?})",
            self.now
        );
        self.ready_leader().expect("checked")
    }

    pub fn propose(
        &mut self,
        id: NodeId,
        batch: &[u8],
    ) -> Result<(u64, u64), crate::replication::ProposeError> {
        self.with_node(id, |r, now| r.propose(now, batch))
    }

    /// The stamped batches of `id`'s log up to its high watermark.
    pub fn committed_batches(&self, id: NodeId) -> Vec<Bytes> {
        let r = self.node(id);
        r.log().read(0, r.high_watermark(), usize::MAX)
    }

    /// The stamped batches of `id`'s whole log.
    pub fn log_batches(&self, id: NodeId) -> Vec<Bytes> {
        let r = self.node(id);
        r.log().read(0, r.log().end_offset(), usize::MAX)
    }
}

/// A one-record batch as a producer builds it, its key naming it.
pub fn record_batch(key: &str) -> Bytes {
    batch::build(&[NewRecord {
        timestamp_ns: 1,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
    }])
}

/// `(offset, key)` of every data record in `batches`; control batches are skipped.
pub fn keys_of(batches: &[Bytes]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let h = batch::parse(b).expect("a stored batch parses");
        if h.is_control() {
            continue;
        }
        for r in batch::records(b).expect("a stored batch decodes") {
            out.push((r.offset, String::from_utf8_lossy(&r.key).into_owned()));
        }
    }
    out
}

// --- broker clusters -------------------------------------------------------------------------

/// Brokers `1..=n` hosting `topics` (and the offsets topic, one partition).
pub fn cluster_config(n: u32, topics: Vec<TopicConfig>) -> ClusterConfig {
    ClusterConfig {
        brokers: (1..=n)
            .map(|id| BrokerAddr {
                id,
                addr: format!("broker-{id}:9092"),
            })
            .collect(),
        topics,
        log: LogConfig::default(),
        replication: ReplicationConfig::default(),
        share: Default::default(),
        offsets_partitions: 1,
    }
}

pub fn broker_cluster(
    seed: u64,
    config: ClusterConfig,
    limits: BrokerLimits,
) -> Cluster<BrokerNode> {
    config.validate().expect("a valid test cluster");
    let ids = config.broker_ids();
    let factory: Factory<BrokerNode> = Box::new(move |id, incarnation, files, now| {
        let seed = seed ^ incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        BrokerNode::start(id, &config, &limits, files, seed, now)
    });
    Cluster::new(&ids, seed, factory)
}

impl Cluster<BrokerNode> {
    pub fn broker(&self, id: NodeId) -> &Broker {
        &self.node(id).0
    }

    /// The live broker whose replica of `tp` is a ready leader with the highest term.
    pub fn ready_leader_of(&self, tp: &TopicPartition) -> Option<NodeId> {
        self.up()
            .filter_map(|(id, b)| Some((id, b.0.replica(tp)?)))
            .filter(|(_, r)| r.is_ready_leader())
            .max_by_key(|(_, r)| r.term())
            .map(|(id, _)| id)
    }

    pub fn await_ready_leader_of(&mut self, tp: &TopicPartition, max: Duration) -> NodeId {
        assert!(
            self.run_until_cond(max, |c| c.ready_leader_of(tp).is_some()),
            "no ready leader of {tp} within {max:?}"
        );
        self.ready_leader_of(tp).expect("checked")
    }

    /// A client frame arriving on connection `conn` of broker `id`.
    pub fn client_send(&mut self, id: NodeId, conn: ConnId, msg: Message) {
        assert!(
            !is_peer_conn(conn),
            "connection ids from 1 << 32 are the peers'"
        );
        self.with_node(id, |b, now| b.0.handle_message(now, conn, msg));
    }

    pub fn client_hello(&mut self, id: NodeId, conn: ConnId) {
        self.client_send(
            id,
            conn,
            Message::Hello {
                version: PROTOCOL_VERSION,
                peer: Peer::Client(format!("client-{conn}")),
            },
        );
    }

    /// Takes broker `id`'s outputs to clients: frames as `(conn, msg)`, and closes.
    pub fn take_client_outputs(&mut self, id: NodeId) -> (Vec<(ConnId, Message)>, Vec<ConnId>) {
        let mut frames = Vec::new();
        let mut closed = Vec::new();
        for (_, out) in self.take_locals(id) {
            match out {
                Output::Transmit {
                    to: Dest::Conn(c),
                    msg,
                } => frames.push((c, msg)),
                Output::Close { conn } => closed.push(conn),
                other => panic!("unexpected broker output {other:?}"),
            }
        }
        (frames, closed)
    }
}
