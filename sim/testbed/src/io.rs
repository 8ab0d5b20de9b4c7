//! The simulated home of the driver's seams: turmoil's TCP and turmoil's file-system shim.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use fathom_driver::{Disk, Net};
use fathom_queue::log::StorageOp;

pub struct SimNet;

impl Net for SimNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        Ok(listener.accept().await?.0)
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }

    fn peer_ip(stream: &Self::Stream) -> Option<std::net::IpAddr> {
        stream.peer_addr().ok().map(|a| a.ip())
    }
}

fathom_driver::fs_disk!(
    /// A broker's data directory on turmoil's simulated disk: unsynced writes vanish at a crash,
    /// and the scenario's fault model can tear writes, fail them or corrupt reads.
    SimDisk,
    turmoil::fs::shim::std::fs,
    turmoil::fs::shim::std::fs::sync_dir
);

/// A [`SimDisk`] with an operating system's background writeback: whatever the broker wrote
/// reaches the disk within `writeback` of simulated time, fsync or not. Without it a broker
/// that never fsyncs would keep every write pending forever, which no real kernel does.
pub struct WritebackDisk {
    inner: SimDisk,
    writeback: Option<Duration>,
    last_writeback: Duration,
}

impl WritebackDisk {
    pub fn new(inner: SimDisk, writeback: Option<Duration>) -> WritebackDisk {
        WritebackDisk {
            inner,
            writeback,
            last_writeback: turmoil::sim_elapsed().unwrap_or_default(),
        }
    }
}

impl Disk for WritebackDisk {
    fn load(&mut self) -> io::Result<Vec<(String, Bytes)>> {
        self.inner.load()
    }

    fn apply(&mut self, op: &StorageOp) -> io::Result<()> {
        if let Some(every) = self.writeback {
            let now = turmoil::sim_elapsed().unwrap_or_default();
            if now >= self.last_writeback + every {
                self.last_writeback = now;
                self.inner.sync_everything()?;
            }
        }
        self.inner.apply(op)
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use fathom_driver::{ClientIo, ClientMachine, CONNECT_TIMEOUT};
    use fathom_queue::client::Transmit;
    use fathom_queue::config::BrokerAddr;
    use fathom_queue::ids::NodeId;
    use fathom_queue::protocol::Message;
    use fathom_queue::time::Instant;

    use super::*;

    /// Sends one ping to broker 1 and notes when the driver reports the link gone.
    #[derive(Debug, Default)]
    struct Probe {
        sent: bool,
        gone_at: Option<Instant>,
    }

    impl ClientMachine for Probe {
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn handle_message(&mut self, _: Instant, _: NodeId, _: Message) {}
        fn handle_disconnected(&mut self, now: Instant, _: NodeId) {
            self.gone_at.get_or_insert(now);
        }
        fn poll_transmit(&mut self) -> Option<Transmit> {
            (!std::mem::replace(&mut self.sent, true)).then_some(Transmit {
                to: 1,
                lane: 0,
                msg: Message::Ping,
            })
        }
    }

    /// turmoil drops a SYN to a crashed host, as a real network may: the connect must fail after
    /// `CONNECT_TIMEOUT` rather than wait for the host to come back.
    #[test]
    fn a_connect_to_a_crashed_broker_fails_after_the_connect_timeout() {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(30))
            .build();
        sim.host("b1", || async {
            let listener = turmoil::net::TcpListener::bind("0.0.0.0:9092").await?;
            loop {
                listener.accept().await?;
            }
        });
        sim.step().expect("first step");
        sim.crash("b1");
        let gone_at = Rc::new(Cell::new(None));
        let seen = gone_at.clone();
        sim.client("c", async move {
            let brokers = [BrokerAddr {
                id: 1,
                addr: "b1:9092".into(),
            }];
            let mut io = ClientIo::<SimNet>::new("c", &brokers);
            let mut probe = Probe::default();
            let give_up = Instant::from_nanos(20_000_000_000);
            while probe.gone_at.is_none() && io.now() < give_up {
                io.step(&mut probe, Some(give_up)).await;
            }
            seen.set(probe.gone_at);
            Ok(())
        });
        sim.run().expect("runs");
        let gone_at = gone_at.get().expect("the driver reports the link gone");
        let waited = Duration::from_nanos(gone_at.as_nanos());
        assert!(
            waited >= CONNECT_TIMEOUT && waited < CONNECT_TIMEOUT + Duration::from_millis(50),
            "link reported gone after {waited:?}"
        );
    }
}
