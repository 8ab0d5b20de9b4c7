//! Runs client state machines (producer, consumer) over a [`Net`].

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::{read_frames, write_frames, ReadEvent};
use super::{pay, Clock, Net, SharedResources, Unmetered, CLIENT_WRITE_QUEUE_MAX, EVENT_QUEUE_MAX};
use fathom_queue::client::{Consumer, Producer, ShareConsumer, Transmit};
use fathom_queue::config::BrokerAddr;
use fathom_queue::ids::NodeId;
use fathom_queue::protocol::{frame, Message, Peer, PROTOCOL_VERSION};
use fathom_queue::time::Instant;

/// Steps at one instant without the clock moving before the driver declares the machine stuck.
/// A machine whose `poll_timeout` stays due after `handle_timeout` would otherwise freeze
/// simulated time, which only advances when every task waits.
pub const STEPS_AT_ONE_INSTANT_MAX: u32 = 100_000;

/// How often [`ClientIo::drain`] looks at its queues.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// How long [`ClientIo::drain`] waits after the queues emptied.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The sans-IO surface every client state machine offers its driver.
pub trait ClientMachine: std::fmt::Debug {
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message);
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId);
    /// One of several connections to `broker` is gone; machines that use only lane 0 treat it
    /// as [`handle_disconnected`](Self::handle_disconnected).
    fn handle_lane_disconnected(&mut self, now: Instant, broker: NodeId, lane: u16) {
        let _ = lane;
        self.handle_disconnected(now, broker);
    }
    fn poll_transmit(&mut self) -> Option<Transmit>;
}

macro_rules! client_machine {
    ($t:ty $(, $extra:item)*) => {
        impl ClientMachine for $t {
            $($extra)*
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message) {
                <$t>::handle_message(self, now, from, msg)
            }
            fn handle_disconnected(&mut self, now: Instant, broker: NodeId) {
                <$t>::handle_disconnected(self, now, broker)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$t>::poll_transmit(self)
            }
        }
    };
}
client_machine!(
    Producer,
    fn handle_lane_disconnected(&mut self, now: Instant, broker: NodeId, lane: u16) {
        Producer::handle_lane_disconnected(self, now, broker, lane)
    }
);
client_machine!(Consumer);
client_machine!(ShareConsumer);

/// Which connection: a broker and the lane to it (see [`Transmit`]).
type LinkId = (NodeId, u16);

/// A link to one broker: its connection generation, so that events of a closed connection are
/// not mistaken for the new one's, and the queue of frames to write.
struct Link {
    generation: u64,
    frames: mpsc::Sender<Bytes>,
}

/// The I/O side of one client process: connections to brokers, opened on first use.
///
/// Usage: the application calls [`ClientIo::step`] in a loop, doing its own work (sending,
/// taking events from the machine) between steps; `step` returns after one input was fed to the
/// machine or at the application's own deadline.
pub struct ClientIo<N: Net> {
    name: String,
    clock: Clock,
    addrs: BTreeMap<NodeId, String>,
    links: BTreeMap<LinkId, Link>,
    next_generation: u64,
    events_tx: mpsc::Sender<((LinkId, u64), ReadEvent)>,
    events: mpsc::Receiver<((LinkId, u64), ReadEvent)>,
    last_step: (Instant, u32),
    resources: SharedResources,
    /// A frame waiting for room in its link's queue: `(link, its generation, frame)`.
    stalled: Option<(LinkId, u64, Bytes)>,
    /// The wait for the machine's deadline, kept across steps (see [`crate::LoopTimer`]).
    timer: crate::LoopTimer,
    _net: std::marker::PhantomData<N>,
}

impl<N: Net> ClientIo<N> {
    pub fn new(name: impl Into<String>, brokers: &[BrokerAddr]) -> ClientIo<N> {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE_MAX);
        ClientIo {
            name: name.into(),
            clock: Clock::start(),
            addrs: brokers.iter().map(|b| (b.id, b.addr.clone())).collect(),
            links: BTreeMap::new(),
            next_generation: 0,
            events_tx,
            events,
            last_step: (Instant::ZERO, 0),
            resources: std::rc::Rc::new(Unmetered),
            stalled: None,
            timer: crate::LoopTimer::new(),
            _net: std::marker::PhantomData,
        }
    }

    /// Charges this process's network and CPU costs to `resources` (the default is
    /// [`Unmetered`]).
    pub fn with_resources(mut self, resources: SharedResources) -> ClientIo<N> {
        self.resources = resources;
        self
    }

    pub fn resources(&self) -> &SharedResources {
        &self.resources
    }

    /// Closes every connection, as a client that connects per request does after each answer.
    /// The next frame to a broker opens a new connection. Only for a machine with nothing in
    /// flight: it is not told, so that it keeps its metadata as a reconnecting client would.
    pub fn close_idle(&mut self) {
        self.links.clear();
        self.stalled = None;
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Sends whatever the machine has queued.
    ///
    /// A link whose queue is full stalls the flush: nothing more is taken from the machine until
    /// the stalled frame is queued. A producer's records then stay in its buffer, which fills
    /// and blocks `send`, as in Kafka, where a request counts as sent once written to the
    /// socket. A peer that stops reading altogether is cut off by the idle timeout.
    pub fn flush<M: ClientMachine>(&mut self, m: &mut M) {
        if !self.unstall() {
            return;
        }
        while let Some(Transmit { to, lane, msg }) = m.poll_transmit() {
            let frame = frame::encode(&msg);
            let link = match self.links.get(&(to, lane)) {
                Some(l) => l,
                None => match self.open((to, lane)) {
                    Some(l) => l,
                    None => {
                        m.handle_lane_disconnected(self.clock.now(), to, lane);
                        continue;
                    }
                },
            };
            match link.frames.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(frame)) => {
                    self.stalled = Some(((to, lane), link.generation, frame));
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.links.remove(&(to, lane));
                    m.handle_lane_disconnected(self.clock.now(), to, lane);
                }
            }
        }
    }

    /// Waits until every queued frame has been handed to its connection, or until `until`, as
    /// a client's `close` does before it exits; then gives the writers [`DRAIN_GRACE`] to put
    /// the last frames on the wire.
    pub async fn drain<M: ClientMachine>(&mut self, m: &mut M, until: Instant) {
        loop {
            self.flush(m);
            let busy = self.stalled.is_some()
                || self
                    .links
                    .values()
                    .any(|l| l.frames.capacity() < l.frames.max_capacity());
            let now = self.clock.now();
            if !busy || now >= until {
                break;
            }
            self.step(m, Some((now + DRAIN_POLL).min(until))).await;
        }
        let grace = (self.clock.now() + DRAIN_GRACE).min(until);
        while self.clock.now() < grace {
            self.step(m, Some(grace)).await;
        }
    }

    /// Queues the stalled frame if its link has room; returns whether the flush may go on. A
    /// stalled frame whose link closed is dropped: the machine learns of the close from the
    /// link's reader.
    fn unstall(&mut self) -> bool {
        let Some((to, generation, frame)) = self.stalled.take() else {
            return true;
        };
        match self.links.get(&to) {
            Some(l) if l.generation == generation => match l.frames.try_send(frame) {
                Err(mpsc::error::TrySendError::Full(frame)) => {
                    self.stalled = Some((to, generation, frame));
                    false
                }
                _ => true,
            },
            _ => true,
        }
    }

    /// The queue of the stalled frame's link, to wait for room in.
    fn stalled_link(&self) -> Option<mpsc::Sender<Bytes>> {
        let (to, generation, _) = self.stalled.as_ref()?;
        self.links
            .get(to)
            .filter(|l| l.generation == *generation)
            .map(|l| l.frames.clone())
    }

    /// Waits for one input or for `until`, feeds the machine, and flushes its output.
    pub async fn step<M: ClientMachine>(&mut self, m: &mut M, until: Option<Instant>) {
        let now = self.clock.now();
        if self.last_step.0 == now {
            self.last_step.1 += 1;
            assert!(
                self.last_step.1 < STEPS_AT_ONE_INSTANT_MAX,
                "client {} is stuck at {now:?}: until {until:?}, machine wants {:?}\n{m:#?}",
                self.name,
                m.poll_timeout()
            );
        } else {
            self.last_step = (now, 0);
        }
        self.flush(m);
        // While stalled, a machine timer already due only wants to transmit: it waits for room
        // rather than spinning at this instant.
        let machine = m
            .poll_timeout()
            .filter(|t| self.stalled.is_none() || *t > now);
        let deadline = [machine, until]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Instant::FAR_FUTURE);
        let sleep_until = self.clock.to_tokio(deadline);
        let stalled = self.stalled_link();
        let room = async {
            match &stalled {
                // The permit is dropped at once; the flush below takes the slot.
                Some(tx) => drop(tx.reserve().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(((link, generation), event)) = self.events.recv() => {
                self.on_event(m, link, generation, event);
            }
            _ = room => {}
            _ = self.timer.until(sleep_until) => {
                let now = self.clock.now();
                if m.poll_timeout().is_some_and(|t| t <= now) {
                    m.handle_timeout(now);
                }
            }
        }
        self.flush(m);
    }

    fn on_event<M: ClientMachine>(
        &mut self,
        m: &mut M,
        link: LinkId,
        generation: u64,
        event: ReadEvent,
    ) {
        if self.links.get(&link).map(|l| l.generation) != Some(generation) {
            return;
        }
        let (broker, lane) = link;
        let now = self.clock.now();
        match event {
            ReadEvent::Frame(Message::HelloOk { .. } | Message::Ping | Message::Pong, _) => {}
            ReadEvent::Frame(Message::ProtocolError { message }, _) => {
                tracing::warn!(client = %self.name, broker, %message, "broker refused us");
                self.links.remove(&link);
                m.handle_lane_disconnected(now, broker, lane);
            }
            ReadEvent::Frame(msg, _) => m.handle_message(now, broker, msg),
            ReadEvent::Malformed(_) | ReadEvent::Closed => {
                self.links.remove(&link);
                m.handle_lane_disconnected(now, broker, lane);
            }
        }
    }

    fn open(&mut self, link: LinkId) -> Option<&Link> {
        let addr = self.addrs.get(&link.0)?.clone();
        let generation = self.next_generation;
        self.next_generation += 1;
        let (frames_tx, frames_rx) = mpsc::channel(CLIENT_WRITE_QUEUE_MAX);
        let hello = frame::encode(&Message::Hello {
            version: PROTOCOL_VERSION,
            peer: Peer::Client(self.name.clone()),
        });
        frames_tx
            .try_send(hello)
            .expect("a new queue has room for the hello");
        let events = self.events_tx.clone();
        let resources = self.resources.clone();
        tokio::task::spawn_local(async move {
            match crate::connect::<N>(&addr).await {
                Ok(stream) => {
                    let peer = N::peer_ip(&stream);
                    pay(resources.connect(peer)).await;
                    let (reader, writer) = tokio::io::split(stream);
                    tokio::task::spawn_local(write_frames::<N>(
                        writer,
                        frames_rx,
                        resources.clone(),
                        peer,
                    ));
                    read_frames::<N, (LinkId, u64)>(
                        reader,
                        events,
                        (link, generation),
                        resources,
                        peer,
                    )
                    .await;
                }
                Err(e) => {
                    tracing::debug!(broker = link.0, error = %e, "connect failed");
                    let _ = events.send(((link, generation), ReadEvent::Closed)).await;
                }
            }
        });
        self.links.insert(
            link,
            Link {
                generation,
                frames: frames_tx,
            },
        );
        self.links.get(&link)
    }
}
