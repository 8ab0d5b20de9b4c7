//! A real three-broker cluster on 127.0.0.1: produce with `acks=all` while the leader of a
//! partition is killed with SIGKILL and restarted, read everything back, and judge the merged
//! history with the simulator's checker. Nothing acknowledged may be lost.
#![cfg(feature = "production")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fathom_history::{self as history, Anomaly};

const FATHOM: &str = env!("CARGO_BIN_EXE_fathom");

/// Ports the OS reports free right now; the brokers bind them a moment later.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    brokers: Vec<Option<Child>>,
}

impl Cluster {
    fn start(dir: PathBuf) -> Cluster {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = String::new();
        for (i, port) in free_ports(3).into_iter().enumerate() {
            config.push_str(&format!(
                "[[brokers]]\nid = {}\naddr = \"127.0.0.1:{port}\"\n",
                i + 1
            ));
        }
        config.push_str("[[topics]]\nname = \"orders\"\npartitions = 2\nreplication_factor = 3\n");
        let path = dir.join("cluster.toml");
        std::fs::write(&path, config).unwrap();
        let mut cluster = Cluster {
            dir,
            config: path,
            brokers: vec![None, None, None],
        };
        for id in 1..=3 {
            cluster.start_broker(id);
        }
        cluster
    }

    fn start_broker(&mut self, id: u32) {
        let log = std::fs::File::create(self.dir.join(format!("broker-{id}.log"))).unwrap();
        let child = Command::new(FATHOM)
            .args(["broker", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string(), "--data"])
            .arg(self.dir.join(format!("data-{id}")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.brokers[id as usize - 1] = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    fn kill_broker(&mut self, id: u32) {
        if let Some(mut child) = self.brokers[id as usize - 1].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn leader_of(&self, partition: &str) -> Option<u32> {
        let out = Command::new(FATHOM)
            .args(["metadata", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        json.get(partition)?.as_u64().map(|id| id as u32)
    }

    fn client(&self, args: &[&str], history: &Path) -> Command {
        let mut cmd = Command::new(FATHOM);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--history")
            .arg(history);
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=3 {
            self.kill_broker(id);
        }
    }
}

#[test]
fn sigkill_of_the_leader_loses_no_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("fathom-production-{}", std::process::id()));
    let mut cluster = Cluster::start(dir.clone());

    let started = Instant::now();
    let leader = loop {
        if let Some(l) = cluster.leader_of("orders-0") {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader elected"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let produced = dir.join("produce.jsonl");
    let mut producer = cluster
        .client(
            &[
                "produce",
                "--topic",
                "orders",
                "--count",
                "600",
                "--rate-per-s",
                "150",
                "--acks",
                "all",
                "--mode",
                "sync",
                "--name",
                "p",
            ],
            &produced,
        )
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill_broker(leader);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.start_broker(leader);

    let status = producer.wait().unwrap();
    assert!(status.success(), "producer failed: {status}");

    let consumed = dir.join("consume.jsonl");
    let status = cluster
        .client(
            &[
                "consume",
                "--topic",
                "orders",
                "--name",
                "reader",
                "--timeout-s",
                "60",
            ],
            &consumed,
        )
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the reader did not reach the high watermark"
    );

    let mut text = std::fs::read_to_string(&produced).unwrap();
    text.push_str(&std::fs::read_to_string(&consumed).unwrap());
    let mut events = history::read_jsonl(&text).unwrap();
    events.sort_by_key(|e| e.time_ns);
    let report = history::check(&events);
    assert!(
        report.acked >= 300,
        "too little was acknowledged: {}",
        report.acked
    );
    assert_eq!(
        report.anomalies[Anomaly::Lost],
        0,
        "lost acknowledged writes: {:?}",
        report.examples
    );
    assert_eq!(
        report.anomalies[Anomaly::InconsistentOffsets],
        0,
        "{:?}",
        report.examples
    );
    assert_eq!(
        report.anomalies[Anomaly::AbortedRead],
        0,
        "{:?}",
        report.examples
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Garbage on one connection gets a `ProtocolError` frame and a close; the broker goes on
/// serving everyone else.
#[test]
fn malformed_frames_get_an_error_and_the_broker_keeps_serving() {
    use std::io::{Read, Write};

    let dir = std::env::temp_dir().join(format!("fathom-malformed-{}", std::process::id()));
    let cluster = Cluster::start(dir.clone());
    let addr = {
        let text = std::fs::read_to_string(&cluster.config).unwrap();
        let line = text.lines().find(|l| l.starts_with("addr")).unwrap();
        line.split('"').nth(1).unwrap().to_string()
    };
    let started = Instant::now();
    let mut stream = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("cannot reach {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A 5-byte frame whose body is no message at all.
    stream
        .write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.len() > 4, "no reply before the close: {reply:?}");
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    let msg: fathom_queue::protocol::Message = postcard::from_bytes(&reply[4..4 + len]).unwrap();
    assert!(
        matches!(msg, fathom_queue::protocol::Message::ProtocolError { .. }),
        "{msg:?}"
    );

    let produced = dir.join("after.jsonl");
    let status = cluster
        .client(
            &[
                "produce", "--topic", "orders", "--count", "20", "--name", "q",
            ],
            &produced,
        )
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&produced).unwrap();
    let report = history::check(&history::read_jsonl(&text).unwrap());
    assert_eq!(
        report.acked, 20,
        "the broker stopped serving after the bad frame"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fathom consume --group` (issue 8, claim C4's safe policy on real sockets): a member of a
/// broker-protocol (KIP-848) group processes every acknowledged message and commits after
/// processing; a second member of the same group, started later, resumes from those commits
/// and processes nothing twice.
#[test]
fn a_group_member_processes_everything_and_the_next_one_resumes_from_its_commits() {
    let dir = std::env::temp_dir().join(format!("fathom-group-{}", std::process::id()));
    let cluster = Cluster::start(dir.clone());
    let started = Instant::now();
    while cluster.leader_of("orders-0").is_none() || cluster.leader_of("orders-1").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader elected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let produced = dir.join("produce.jsonl");
    let args = [
        "produce",
        "--topic",
        "orders",
        "--count",
        "200",
        "--rate-per-s",
        "200",
        "--name",
        "p",
    ];
    let status = cluster.client(&args, &produced).status().unwrap();
    assert!(status.success(), "producer failed: {status}");

    let member = |name: &str, seconds: &str| {
        let history = dir.join(format!("{name}.jsonl"));
        let args = [
            "consume",
            "--topic",
            "orders",
            "--group",
            "g1",
            "--name",
            name,
            "--timeout-s",
            seconds,
        ];
        let status = cluster.client(&args, &history).status().unwrap();
        assert!(status.success(), "{name} failed: {status}");
        let text = std::fs::read_to_string(&history).unwrap();
        history::read_jsonl(&text).unwrap()
    };
    let first = member("m1", "10");
    let second = member("m2", "5");

    let processed = |events: &[history::Event]| -> Vec<String> {
        let mut ids: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.op {
                history::Op::Process { records, .. } => Some(records.clone()),
                _ => None,
            })
            .flatten()
            .map(|(_, id)| id)
            .collect();
        ids.sort();
        ids
    };
    let mut events = history::read_jsonl(&std::fs::read_to_string(&produced).unwrap()).unwrap();
    let acked: Vec<String> = {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|e| e.kind == history::EventType::Ok)
            .filter_map(|e| match &e.op {
                history::Op::Send { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        ids.sort();
        ids
    };
    assert!(
        acked.len() >= 150,
        "too little acknowledged: {}",
        acked.len()
    );
    assert_eq!(
        processed(&first),
        acked,
        "m1 processes every acknowledged message once"
    );
    assert!(
        first
            .iter()
            .any(|e| matches!(e.op, history::Op::Commit { .. })
                && e.kind == history::EventType::Ok
                && e.group.as_ref().is_some_and(|g| g.group == "g1")),
        "m1 commits as a member of g1"
    );
    assert!(
        second
            .iter()
            .any(|e| matches!(e.op, history::Op::Assign { .. })),
        "m2 is assigned the partitions"
    );
    assert_eq!(
        processed(&second),
        Vec::<String>::new(),
        "m2 resumes past m1's commits"
    );

    events.extend(first);
    events.extend(second);
    events.sort_by_key(|e| e.time_ns);
    let report = history::check(&events);
    for class in [
        Anomaly::Lost,
        Anomaly::Unprocessed,
        Anomaly::Reprocessed,
        Anomaly::SplitOwnership,
        Anomaly::PollSkip,
    ] {
        assert_eq!(report.anomalies[class], 0, "{class}: {:?}", report.examples);
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// BUGGIFY perturbs timing on purpose; a real broker must refuse a configuration that asks for
/// it, with a clear error, before it binds or touches its data directory.
#[test]
fn the_production_broker_refuses_buggify() {
    let dir = std::env::temp_dir().join(format!("fathom-buggify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_ports(1)[0];
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[[brokers]]\nid = 1\naddr = \"127.0.0.1:{port}\"\n[replication]\nbuggify = true\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(FATHOM)
        .args(["broker", "--config"])
        .arg(&config)
        .args(["--id", "1", "--data"])
        .arg(dir.join("data-1"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a broker configured with buggify started and kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("buggify"), "{stderr}");
    assert!(!dir.join("data-1").exists(), "touched its data directory");
    let _ = std::fs::remove_dir_all(&dir);
}
