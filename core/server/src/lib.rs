//! The production home: one broker on real TCP and real files, and client commands that speak
//! to a real cluster and record the same history the simulator records.
//!
//! The broker runs the same core and the same driver as under simulation, with `tokio::net`
//! and `std::fs` plugged into the driver's seams.

use std::cell::RefCell;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use fathom_driver::production::{StdDisk, TokioNet};
use fathom_driver::{run_broker, ClientIo, Clock, NoObserver, Unmetered};
use fathom_history::HistoryWriter;
use fathom_queue::broker::BrokerLimits;
use fathom_queue::client::{Consumer, ConsumerConfig, ProducerConfig};
use fathom_queue::config::ClusterConfig;
use fathom_queue::ids::{NodeId, TopicPartition};
use fathom_queue::rng::Rng;

use fathom_history::command::{EXIT_BAD_INPUT, EXIT_OK, EXIT_VIOLATED};
use fathom_queue::protocol::Acks;
use fathom_workload::clients::{ConsumerProcess, FinalRead, ProducerProcess};
use fathom_workload::spec::{
    CommitMode, ConsumerProtocol, ConsumerSpec, MemberAction, ProducerMode, ProducerSpec,
};
use fathom_workload::trace::{SharedTrace, Trace};

#[derive(Subcommand)]
pub enum Command {
    /// Run one broker of a cluster on real sockets and files.
    Broker {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// This broker's id in the config.
        #[arg(long)]
        id: NodeId,
        /// Data directory (default: data/broker-<id>).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Print who leads each partition, as JSON.
    Metadata {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Send messages to a topic and record each send's fate in a history file.
    Produce {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value = "1000")]
        count: NonZeroU64,
        #[arg(long, default_value = "all", value_parser = acks_parser())]
        acks: Acks,
        #[arg(long, default_value_t = 200.0)]
        rate_per_s: f64,
        #[arg(long, default_value = "sync", value_parser = mode_parser())]
        mode: ProducerMode,
        /// The process name in the history and the prefix of message ids.
        #[arg(long, default_value = "producer")]
        name: String,
        #[arg(long)]
        history: PathBuf,
    },
    /// Read every partition of a topic from its start to its high watermark, recording polls;
    /// with `--group`, consume as a member of that consumer group instead.
    Consume {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long)]
        topic: String,
        /// The process name in the history (a group member's is `NAME-0`).
        #[arg(long, default_value = "consumer")]
        name: String,
        /// Without `--group`: give up after this many seconds. With it: consume for this many
        /// seconds, then leave the group cleanly.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Join this consumer group with the broker-side protocol (KIP-848): the group's
        /// coordinator assigns the partitions, the member processes each poll result and
        /// commits after processing, and a later member of the group starts where it stopped.
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        history: PathBuf,
    },
}

#[derive(Args)]
pub struct ClusterArgs {
    /// The cluster config: TOML with `[[brokers]]` (id, addr) and `[[topics]]`.
    #[arg(long)]
    config: PathBuf,
}

impl ClusterArgs {
    fn load(&self) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| format!("cannot read {}: {e}", self.config.display()))?;
        let config: ClusterConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", self.config.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", self.config.display()))?;
        if config.replication.buggify {
            return Err(format!(
                "{}: replication.buggify perturbs timing on purpose and is for the simulator only",
                self.config.display()
            ));
        }
        Ok(config)
    }
}

fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs `f` on a single-threaded runtime inside a `LocalSet`, as the driver expects.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

pub fn main(command: Command) -> u8 {
    let result = match command {
        Command::Broker { cluster, id, data } => broker(&cluster, id, data),
        Command::Metadata { cluster } => metadata(&cluster),
        Command::Produce {
            cluster,
            topic,
            count,
            acks,
            rate_per_s,
            mode,
            name,
            history,
        } => produce(
            &cluster, topic, count, acks, rate_per_s, mode, name, &history,
        ),
        Command::Consume {
            cluster,
            topic,
            name,
            timeout_s,
            group: None,
            history,
        } => consume(&cluster, &topic, name, timeout_s, &history),
        Command::Consume {
            cluster,
            topic,
            name,
            timeout_s,
            group: Some(group),
            history,
        } => consume_in_group(&cluster, topic, name, group, timeout_s, &history),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        }
    }
}

fn broker(cluster: &ClusterArgs, id: NodeId, data: Option<PathBuf>) -> Result<u8, String> {
    let config = cluster.load()?;
    let addr = config
        .addr_of(id)
        .ok_or_else(|| format!("broker {id} is not in the config"))?
        .to_string();
    let data = data.unwrap_or_else(|| PathBuf::from(format!("data/broker-{id}")));
    let disk = StdDisk::new(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    eprintln!(
        "broker {id} listening on {addr}, data in {}",
        data.display()
    );
    let seed = wall_clock_ns();
    let result = block_on(async move {
        run_broker::<TokioNet, StdDisk, NoObserver>(
            id,
            config,
            BrokerLimits::default(),
            &addr,
            disk,
            Rc::new(Unmetered),
            Clock::start(),
            seed,
            &mut NoObserver,
        )
        .await
    });
    result.map(|()| EXIT_OK).map_err(|e| e.to_string())
}

fn metadata(cluster: &ClusterArgs) -> Result<u8, String> {
    let config = cluster.load()?;
    let leaders = block_on(async move {
        let mut consumer = Consumer::new(
            ConsumerConfig::default(),
            config.brokers.clone(),
            Rng::new(wall_clock_ns()),
        );
        let mut io = ClientIo::<TokioNet>::new("metadata", &config.brokers);
        let deadline = io.now() + Duration::from_secs(10);
        let partitions: Vec<TopicPartition> = config.placement().into_keys().collect();
        loop {
            let known: Vec<(String, Option<NodeId>)> = partitions
                .iter()
                .map(|tp| (tp.to_string(), consumer.metadata().leader(tp)))
                .collect();
            if known.iter().all(|(_, l)| l.is_some()) || io.now() >= deadline {
                return known;
            }
            consumer.refresh_metadata();
            io.step(&mut consumer, Some(io.now() + Duration::from_millis(100)))
                .await;
        }
    });
    let json: serde_json::Map<String, serde_json::Value> = leaders
        .into_iter()
        .map(|(tp, l)| (tp, l.map_or(serde_json::Value::Null, |n| n.into())))
        .collect();
    println!("{}", serde_json::Value::Object(json));
    Ok(EXIT_OK)
}

/// `--acks`: the one [`Acks`] type, its values listed in `--help` and checked by clap.
fn acks_parser() -> impl TypedValueParser<Value = Acks> {
    clap::builder::PossibleValuesParser::new(Acks::ALL.map(Acks::name))
        .try_map(|name| name.parse::<Acks>())
}

/// `--mode`: the one [`ProducerMode`] type, as `--acks`.
fn mode_parser() -> impl TypedValueParser<Value = ProducerMode> {
    clap::builder::PossibleValuesParser::new(ProducerMode::ALL.map(ProducerMode::name))
        .try_map(|name| name.parse::<ProducerMode>())
}

#[allow(clippy::too_many_arguments)]
fn produce(
    cluster: &ClusterArgs,
    topic: String,
    count: NonZeroU64,
    acks: Acks,
    rate_per_s: f64,
    mode: ProducerMode,
    name: String,
    history: &Path,
) -> Result<u8, String> {
    let config = cluster.load()?;
    let partitions = config
        .topics
        .iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions)
        .ok_or_else(|| format!("topic `{topic}` is not in the config"))?;
    if rate_per_s.is_nan() || rate_per_s <= 0.0 {
        return Err("--rate-per-s must be above 0".into());
    }
    let spec = ProducerSpec {
        name: name.clone(),
        topic,
        mode,
        rate_per_s,
        messages: count,
        client: ProducerConfig {
            acks,
            ..ProducerConfig::default()
        },
        ..ProducerSpec::default()
    };
    let trace: SharedTrace = Rc::new(RefCell::new(Trace::with_clock(wall_clock_ns)));
    let process = ProducerProcess {
        name,
        spec,
        partitions,
        cluster: config,
        seed: wall_clock_ns(),
        trace: trace.clone(),
        stop_at: Duration::from_nanos(wall_clock_ns()) + Duration::from_secs(24 * 3600),
        resources: Rc::new(Unmetered),
        message_cpu: Duration::ZERO,
    };
    block_on(process.run::<TokioNet>()).map_err(|e| e.to_string())?;
    write_history(&trace, history)?;
    let t = trace.borrow();
    let acked = t
        .events
        .iter()
        .filter(|e| e.kind == fathom_history::EventType::Ok)
        .count();
    eprintln!("produced: {acked} of {count} acknowledged");
    Ok(EXIT_OK)
}

fn consume(
    cluster: &ClusterArgs,
    topic: &str,
    name: String,
    timeout_s: u64,
    history: &Path,
) -> Result<u8, String> {
    let config = cluster.load()?;
    let partitions: Vec<TopicPartition> = config
        .placement()
        .into_keys()
        .filter(|tp| tp.topic == topic)
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic `{topic}` is not in the config"));
    }
    let trace: SharedTrace = Rc::new(RefCell::new(Trace::with_clock(wall_clock_ns)));
    let incomplete = Rc::new(RefCell::new(Vec::new()));
    let reader = FinalRead {
        process: name,
        partitions,
        cluster: config,
        seed: wall_clock_ns(),
        trace: trace.clone(),
        give_up_at: Duration::from_nanos(wall_clock_ns()) + Duration::from_secs(timeout_s),
        incomplete: incomplete.clone(),
    };
    block_on(reader.run::<TokioNet>()).map_err(|e| e.to_string())?;
    write_history(&trace, history)?;
    if incomplete.borrow().is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "gave up before the high watermark of {}",
            incomplete.borrow().join(", ")
        );
        Ok(EXIT_VIOLATED)
    }
}

/// How long a group member has, after its leave is due, to commit and leave before the
/// process stops regardless.
const GROUP_LEAVE_GRACE: Duration = Duration::from_secs(5);

/// One member of `group` (KIP-848 protocol) for `duration_s`: the workload's group consumer, the
/// one the simulator runs, on real sockets. It commits after processing and leaves cleanly.
fn consume_in_group(
    cluster: &ClusterArgs,
    topic: String,
    name: String,
    group: String,
    duration_s: u64,
    history: &Path,
) -> Result<u8, String> {
    let config = cluster.load()?;
    fathom_queue::group::check_group_name(&group).map_err(|e| format!("--group {group:?}: {e}"))?;
    let partitions = config
        .placement()
        .into_keys()
        .filter(|tp| tp.topic == topic)
        .count();
    if partitions == 0 {
        return Err(format!("topic `{topic}` is not in the config"));
    }
    let partitions = u32::try_from(partitions).map_err(|_| "too many partitions".to_string())?;
    let spec = ConsumerSpec {
        name,
        topic,
        group,
        protocol: ConsumerProtocol::Broker,
        commit: CommitMode::AfterProcess,
        ..ConsumerSpec::default()
    };
    let trace: SharedTrace = Rc::new(RefCell::new(Trace::with_clock(wall_clock_ns)));
    let leave_at = Duration::from_nanos(wall_clock_ns()) + Duration::from_secs(duration_s);
    let member = ConsumerProcess {
        spec,
        instance: 0,
        partitions,
        cluster: config,
        seed: wall_clock_ns(),
        trace: trace.clone(),
        stop_at: leave_at + GROUP_LEAVE_GRACE,
        resources: Rc::new(Unmetered),
        start_at: Duration::ZERO,
        actions: vec![(leave_at, MemberAction::Leave)],
        // The delivery counters' cut-off: the whole life of the member.
        workload_end: leave_at + GROUP_LEAVE_GRACE,
    };
    block_on(member.run::<TokioNet>()).map_err(|e| e.to_string())?;
    write_history(&trace, history)?;
    Ok(EXIT_OK)
}

fn write_history(trace: &SharedTrace, path: &Path) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = HistoryWriter::new(std::io::BufWriter::new(file));
    for e in &trace.borrow().events {
        writer.write(e).map_err(|e| e.to_string())?;
    }
    writer.flush().map_err(|e| e.to_string())
}
