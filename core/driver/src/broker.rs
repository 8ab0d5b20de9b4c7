//! Runs a [`Broker`] over a [`Net`] and a [`Disk`].

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::{read_frames, write_frames, ReadEvent};
use super::{pay, Clock, Disk, Net, SharedResources, CONN_WRITE_QUEUE_MAX, EVENT_QUEUE_MAX};
use fathom_queue::broker::{Broker, BrokerLimits, ConnId, Dest, Output};
use fathom_queue::config::ClusterConfig;
use fathom_queue::ids::NodeId;
use fathom_queue::log::{RecoveryReport, StorageOp};
use fathom_queue::protocol::{frame, Message, Peer, PROTOCOL_VERSION};
use fathom_queue::time::Instant;

/// Wait between attempts to reach a peer broker.
const PEER_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// Sees the broker after every input; the simulator uses it to learn who leads what and when
/// each request arrived.
pub trait BrokerObserver {
    fn observe(&mut self, now: Instant, broker: &Broker);

    /// A frame is about to be handled at `now`; it arrived from the network at `arrived` (the
    /// difference is the time spent on the NIC and waiting for and using a CPU core).
    fn input(&mut self, _now: Instant, _arrived: Instant, _msg: &Message) {}

    /// The broker recovered its logs from disk, one report per partition log.
    fn recovered(&mut self, _reports: &[RecoveryReport]) {}
}

pub struct NoObserver;

impl BrokerObserver for NoObserver {
    fn observe(&mut self, _now: Instant, _broker: &Broker) {}
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerRunError {
    #[error("broker {id} is not in the cluster config")]
    UnknownBroker { id: NodeId },
    #[error("cannot read the data directory: {0}")]
    Load(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("stopping after a storage failure: {0}")]
    Fatal(String),
}

/// Recovers broker `id` from `disk` and serves until a fatal storage error. `resources` charges
/// the costs of the NIC, CPU and disk (see [`Resources`](super::Resources)); `clock` is the
/// host's clock, which a simulator may skew.
#[allow(clippy::too_many_arguments)]
pub async fn run_broker<N: Net, D: Disk, O: BrokerObserver>(
    id: NodeId,
    config: ClusterConfig,
    limits: BrokerLimits,
    listen_addr: &str,
    mut disk: D,
    resources: SharedResources,
    clock: Clock,
    seed: u64,
    observer: &mut O,
) -> Result<(), BrokerRunError> {
    if config.addr_of(id).is_none() {
        return Err(BrokerRunError::UnknownBroker { id });
    }
    let files = disk
        .load()
        .map_err(|e| BrokerRunError::Load(e.to_string()))?;
    let (broker, reports) = Broker::recover(id, config, limits, files, seed, clock.now());
    for r in reports
        .iter()
        .filter(|r| r.truncated_bytes > 0 || r.first_error.is_some())
    {
        tracing::warn!(broker = id, report = ?r, "recovered a damaged log");
    }
    observer.recovered(&reports);
    let listener = N::bind(listen_addr)
        .await
        .map_err(|source| BrokerRunError::Bind {
            addr: listen_addr.to_string(),
            source,
        })?;
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE_MAX);
    let mut shell = Shell::<N, D> {
        broker,
        disk,
        clock,
        events_tx,
        writers: BTreeMap::new(),
        peers: BTreeMap::new(),
        next_conn: 0,
        resources,
        syncing: VecDeque::new(),
        _net: std::marker::PhantomData,
    };
    shell.flush().await?;
    shell.serve(&listener, events, observer).await
}

struct Shell<N: Net, D: Disk> {
    broker: Broker,
    disk: D,
    clock: Clock,
    events_tx: mpsc::Sender<(ConnId, ReadEvent)>,
    writers: BTreeMap<ConnId, mpsc::Sender<Bytes>>,
    peers: BTreeMap<NodeId, mpsc::Sender<Bytes>>,
    next_conn: ConnId,
    resources: SharedResources,
    /// Syncs in flight, in completion order: `(when, the sync)`. A sync reaches the disk only
    /// when it completes, so a crash while it is in flight loses what it had not yet made
    /// durable (as a power cut during a real fsync does). Under
    /// [`Unmetered`](super::Unmetered) resources a sync completes at once and this stays empty.
    syncing: VecDeque<(tokio::time::Instant, StorageOp)>,
    _net: std::marker::PhantomData<N>,
}

impl<N: Net, D: Disk> Shell<N, D> {
    async fn serve<O: BrokerObserver>(
        &mut self,
        listener: &N::Listener,
        mut events: mpsc::Receiver<(ConnId, ReadEvent)>,
        observer: &mut O,
    ) -> Result<(), BrokerRunError> {
        let mut sync_timer = crate::LoopTimer::new();
        let mut timer = crate::LoopTimer::new();
        loop {
            let deadline = self
                .broker
                .poll_timeout()
                .map(|t| self.clock.to_tokio(t))
                .unwrap_or_else(|| self.clock.to_tokio(Instant::FAR_FUTURE));
            let synced_at = self.syncing.front().map(|s| s.0);
            tokio::select! {
                biased;
                _ = sync_timer.until(synced_at.unwrap_or(deadline)), if synced_at.is_some() => {
                    let (_, sync) = self.syncing.pop_front().expect("checked above");
                    self.complete_sync(&sync)?;
                }
                Some((conn, event)) = events.recv() => self.on_conn_event(conn, event, observer),
                accepted = N::accept(listener) => {
                    if let Ok(stream) = accepted {
                        self.accept(stream);
                    }
                }
                _ = timer.until(deadline) => {
                    let now = self.clock.now();
                    self.broker.handle_timeout(now);
                }
            }
            self.flush().await?;
            observer.observe(self.clock.now(), &self.broker);
        }
    }

    fn accept(&mut self, stream: N::Stream) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let peer = N::peer_ip(&stream);
        let (reader, writer) = tokio::io::split(stream);
        let (frames_tx, frames_rx) = mpsc::channel(CONN_WRITE_QUEUE_MAX);
        let resources = self.resources.clone();
        tokio::task::spawn_local(write_frames::<N>(
            writer,
            frames_rx,
            resources.clone(),
            peer,
        ));
        tokio::task::spawn_local(read_frames::<N, ConnId>(
            reader,
            self.events_tx.clone(),
            conn,
            resources,
            peer,
        ));
        self.writers.insert(conn, frames_tx);
    }

    fn on_conn_event<O: BrokerObserver>(
        &mut self,
        conn: ConnId,
        event: ReadEvent,
        observer: &mut O,
    ) {
        if !self.writers.contains_key(&conn) {
            return;
        }
        let now = self.clock.now();
        match event {
            ReadEvent::Frame(msg, arrived) => {
                observer.input(now, self.clock.from_tokio(arrived), &msg);
                self.broker.handle_message(now, conn, msg)
            }
            ReadEvent::Malformed(e) => {
                tracing::debug!(conn, error = %e, "malformed frame; closing the connection");
                let reply = Message::ProtocolError {
                    message: e.to_string(),
                };
                if let Some(w) = self.writers.remove(&conn) {
                    let _ = w.try_send(frame::encode(&reply));
                }
                self.broker.handle_disconnected(now, conn);
            }
            ReadEvent::Closed => {
                self.writers.remove(&conn);
                self.broker.handle_disconnected(now, conn);
            }
        }
    }

    /// Carries out everything the broker asked for, including what completed syncs trigger.
    async fn flush(&mut self) -> Result<(), BrokerRunError> {
        while let Some(out) = self.broker.poll_output() {
            let now = self.clock.now();
            match out {
                Output::Transmit {
                    to: Dest::Conn(conn),
                    msg,
                } => {
                    let Some(w) = self.writers.get(&conn) else {
                        continue;
                    };
                    // A client that does not read its responses is cut off rather than allowed
                    // to pin the broker's memory.
                    if w.try_send(frame::encode(&msg)).is_err() {
                        self.writers.remove(&conn);
                        self.broker.handle_disconnected(now, conn);
                    }
                }
                Output::Transmit {
                    to: Dest::Broker(peer),
                    msg,
                } => {
                    // Replication tolerates loss, so a full link drops rather than blocks.
                    let _ = self.peer(peer).try_send(frame::encode(&msg));
                }
                Output::Close { conn } => {
                    self.writers.remove(&conn);
                }
                Output::Storage(op) => self.storage(op).await?,
            }
        }
        Ok(())
    }

    /// Starts one storage operation. An append, truncation or removal reaches the disk (its
    /// page cache) at once; a sync that takes time is held in flight until it completes.
    async fn storage(&mut self, op: StorageOp) -> Result<(), BrokerRunError> {
        let wait = self.resources.storage(&op);
        if matches!(op, StorageOp::Sync { .. }) {
            // The disk is one queue: a sync never overtakes an earlier one.
            if wait.is_zero() && self.syncing.is_empty() {
                return self.complete_sync(&op);
            }
            let mut at = self.clock.true_now() + wait;
            if let Some(&(last, _)) = self.syncing.back() {
                at = at.max(last);
            }
            self.syncing.push_back((at, op));
            return Ok(());
        }
        self.apply(&op)?;
        // An append waits while writeback is too far behind, as a kernel throttles a writer
        // with too many dirty pages.
        pay(wait).await;
        Ok(())
    }

    /// Makes a sync's bytes durable and tells the broker, which may release acknowledgements.
    fn complete_sync(&mut self, sync: &StorageOp) -> Result<(), BrokerRunError> {
        self.apply(sync)?;
        if let StorageOp::Sync { token, .. } = sync {
            self.broker.handle_synced(self.clock.now(), token);
        }
        Ok(())
    }

    /// A failed operation stops the broker at once: running the ops queued behind it (a later
    /// append after a failed one) would leave a hole in the log on disk.
    fn apply(&mut self, op: &StorageOp) -> Result<(), BrokerRunError> {
        self.disk
            .apply(op)
            .map_err(|e| BrokerRunError::Fatal(format!("storage error on {}: {e}", op.path())))
    }

    fn peer(&mut self, peer: NodeId) -> &mpsc::Sender<Bytes> {
        let me = self.broker.id();
        let addr = self
            .broker
            .config()
            .addr_of(peer)
            .unwrap_or_default()
            .to_string();
        self.peers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(CONN_WRITE_QUEUE_MAX);
            tokio::task::spawn_local(peer_link::<N>(me, addr, rx, self.resources.clone()));
            tx
        })
    }
}

/// Keeps one outgoing connection to a peer broker, reconnecting forever. Frames queued while
/// the peer is unreachable are dropped.
async fn peer_link<N: Net>(
    me: NodeId,
    addr: String,
    mut frames: mpsc::Receiver<Bytes>,
    resources: SharedResources,
) {
    let hello = frame::encode(&Message::Hello {
        version: PROTOCOL_VERSION,
        peer: Peer::Broker(me),
    });
    loop {
        let stream = match crate::connect::<N>(&addr).await {
            Ok(s) => s,
            Err(_) => {
                while frames.try_recv().is_ok() {}
                crate::sleep(PEER_RECONNECT_DELAY).await;
                if frames.is_closed() {
                    return;
                }
                continue;
            }
        };
        let peer = N::peer_ip(&stream);
        pay(resources.connect(peer)).await;
        let (reader, writer) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(CONN_WRITE_QUEUE_MAX);
        tx.try_send(hello.clone())
            .expect("a new queue has room for the hello");
        let (closed_tx, mut closed_rx) = mpsc::channel::<((), ReadEvent)>(4);
        // The peer only answers HelloOk, pings and pongs on this link; watch it for silence.
        tokio::task::spawn_local(read_frames::<N, ()>(
            reader,
            closed_tx,
            (),
            resources.clone(),
            peer,
        ));
        let writer_task =
            tokio::task::spawn_local(write_frames::<N>(writer, rx, resources.clone(), peer));
        loop {
            tokio::select! {
                biased;
                ev = closed_rx.recv() => match ev {
                    Some((_, ReadEvent::Frame(..))) => continue,
                    _ => break,
                },
                frame = frames.recv() => match frame {
                    Some(f) => {
                        if tx.try_send(f).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                    None => return,
                },
            }
        }
        drop(tx);
        writer_task.abort();
        crate::sleep(PEER_RECONNECT_DELAY).await;
    }
}
