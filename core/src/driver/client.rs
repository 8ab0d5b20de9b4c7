//! Runs client state machines (producer, consumer) over a [`Net`].

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::{read_frames, write_frames, ReadEvent};
use super::{pay, Clock, Net, SharedResources, Unmetered, CONN_WRITE_QUEUE_MAX, EVENT_QUEUE_MAX};
use crate::client::{Consumer, Producer, Transmit};
use crate::config::BrokerAddr;
use crate::ids::NodeId;
use crate::protocol::{frame, Message, Peer, PROTOCOL_VERSION};
use crate::time::Instant;

/// Steps at one instant without the clock moving before the driver declares the machine stuck.
/// A machine whose `poll_timeout` stays due after `handle_timeout` would otherwise freeze
/// simulated time, which only advances when every task waits.
pub const STEPS_AT_ONE_INSTANT_MAX: u32 = 100_000;

/// The sans-IO surface every client state machine offers its driver.
pub trait ClientMachine: std::fmt::Debug {
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Message);
    fn handle_disconnected(&mut self, now: Instant, broker: NodeId);
    fn poll_transmit(&mut self) -> Option<Transmit>;
}

macro_rules! client_machine {
    ($t:ty) => {
        impl ClientMachine for $t {
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
client_machine!(Producer);
client_machine!(Consumer);

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
    links: BTreeMap<NodeId, Link>,
    next_generation: u64,
    events_tx: mpsc::Sender<((NodeId, u64), ReadEvent)>,
    events: mpsc::Receiver<((NodeId, u64), ReadEvent)>,
    last_step: (Instant, u32),
    resources: SharedResources,
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
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Sends whatever the machine has queued.
    pub fn flush<M: ClientMachine>(&mut self, m: &mut M) {
        while let Some(Transmit { to, msg }) = m.poll_transmit() {
            let frame = frame::encode(&msg);
            let link = match self.links.get(&to) {
                Some(l) => l,
                None => match self.open(to) {
                    Some(l) => l,
                    None => {
                        m.handle_disconnected(self.clock.now(), to);
                        continue;
                    }
                },
            };
            if link.frames.try_send(frame).is_err() {
                // The broker is not keeping up; start over on a fresh connection.
                self.links.remove(&to);
                m.handle_disconnected(self.clock.now(), to);
            }
        }
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
        let deadline = [m.poll_timeout(), until]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Instant::FAR_FUTURE);
        let sleep_until = self.clock.to_tokio(deadline);
        tokio::select! {
            biased;
            Some(((broker, generation), event)) = self.events.recv() => {
                self.on_event(m, broker, generation, event);
            }
            _ = tokio::time::sleep_until(sleep_until) => {
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
        broker: NodeId,
        generation: u64,
        event: ReadEvent,
    ) {
        if self.links.get(&broker).map(|l| l.generation) != Some(generation) {
            return;
        }
        let now = self.clock.now();
        match event {
            ReadEvent::Frame(Message::HelloOk { .. } | Message::Ping | Message::Pong, _) => {}
            ReadEvent::Frame(Message::ProtocolError { message }, _) => {
                tracing::warn!(client = %self.name, broker, %message, "broker refused us");
                self.links.remove(&broker);
                m.handle_disconnected(now, broker);
            }
            ReadEvent::Frame(msg, _) => m.handle_message(now, broker, msg),
            ReadEvent::Malformed(_) | ReadEvent::Closed => {
                self.links.remove(&broker);
                m.handle_disconnected(now, broker);
            }
        }
    }

    fn open(&mut self, broker: NodeId) -> Option<&Link> {
        let addr = self.addrs.get(&broker)?.clone();
        let generation = self.next_generation;
        self.next_generation += 1;
        let (frames_tx, frames_rx) = mpsc::channel(CONN_WRITE_QUEUE_MAX);
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
            match N::connect(&addr).await {
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
                    read_frames::<N, (NodeId, u64)>(
                        reader,
                        events,
                        (broker, generation),
                        resources,
                        peer,
                    )
                    .await;
                }
                Err(e) => {
                    tracing::debug!(broker, error = %e, "connect failed");
                    let _ = events.send(((broker, generation), ReadEvent::Closed)).await;
                }
            }
        });
        self.links.insert(
            broker,
            Link {
                generation,
                frames: frames_tx,
            },
        );
        self.links.get(&broker)
    }
}
