//! Runs client state machines (producer, consumer) over a [`Net`].

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::{read_frames, write_frames, ReadEvent};
use super::{Clock, Net, CONN_WRITE_QUEUE_MAX, EVENT_QUEUE_MAX};
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
            _net: std::marker::PhantomData,
        }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Sends whatever the machine has queued.
    pub fn flush<M: ClientMachine>(&mut self, m: &mut M) {
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
            if link.frames.try_send(frame).is_err() {
                // The broker is not keeping up; start over on a fresh connection.
                self.links.remove(&(to, lane));
                m.handle_lane_disconnected(self.clock.now(), to, lane);
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
            Some(((link, generation), event)) = self.events.recv() => {
                self.on_event(m, link, generation, event);
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
            ReadEvent::Frame(Message::HelloOk { .. } | Message::Ping | Message::Pong) => {}
            ReadEvent::Frame(Message::ProtocolError { message }) => {
                tracing::warn!(client = %self.name, broker, %message, "broker refused us");
                self.links.remove(&link);
                m.handle_lane_disconnected(now, broker, lane);
            }
            ReadEvent::Frame(msg) => m.handle_message(now, broker, msg),
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
        let (frames_tx, frames_rx) = mpsc::channel(CONN_WRITE_QUEUE_MAX);
        let hello = frame::encode(&Message::Hello {
            version: PROTOCOL_VERSION,
            peer: Peer::Client(self.name.clone()),
        });
        frames_tx
            .try_send(hello)
            .expect("a new queue has room for the hello");
        let events = self.events_tx.clone();
        tokio::task::spawn_local(async move {
            match N::connect(&addr).await {
                Ok(stream) => {
                    let (reader, writer) = tokio::io::split(stream);
                    tokio::task::spawn_local(write_frames::<N>(writer, frames_rx));
                    read_frames::<N, (LinkId, u64)>(reader, events, (link, generation)).await;
                }
                Err(_) => {
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
