//! From text to a checked [`Scenario`]: serde with located errors, then the semantic checks.
//!
//! Checks stop at the first problem: later ones often follow from it, and one precise message
//! with a line number is what fixing a file needs.

use std::collections::{BTreeMap, BTreeSet};

use fathom_queue::client::{ConsumerConfig, ProducerConfig};
use fathom_queue::config::{ConfigError, FsyncPolicy};
use fathom_queue::group::classic::GroupLimits;
use fathom_queue::ids::OFFSETS_TOPIC;
use fathom_queue::share::{ShareMode, ShareSettings, ORDERING_KEYS_MAX, RECORD_LOCKS_RANGE};
use fathom_workload::spec::ConsumerProtocol;
use serde::Deserialize;

use crate::swarm::{Swarm, SwarmKind, SwarmSpec};
use fathom_history::Anomaly;

/// Pull's poll interval, at most: a minute between polls is already no consumer at all.
const POLL_INTERVAL_MS_MAX: u64 = 60_000;
/// A push credit window, at most: a million records in flight to one consumer partition.
const PUSH_CREDITS_MAX: u32 = 1_000_000;
/// A consumer's receive buffer, at most: 1 GiB, far beyond what the simulator should hold.
const RECEIVE_BUFFER_BYTES_MAX_LIMIT: u64 = 1 << 30;

use super::source_map::{line_column, path_near_line, SourceMap};
use super::{
    broker_host, is_broker_host, is_valid_process_name, Acks, ClusterSpec, CommitMode,
    ConsumerSpec, DiskSpec, Expect, Fault, FaultKind, FaultTag, Member, MillisRange, NetworkSpec,
    PartitionSelection, ProducerMode, ProducerSpec, ResourceSpec, Scenario, ScenarioError, Target,
};

/// The file as serde reads it; only the faults differ from [`Scenario`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_seed")]
    seed: u64,
    duration_s: f64,
    #[serde(default = "default_settle_s")]
    settle_s: f64,
    #[serde(default = "default_liveness_s")]
    liveness_s: f64,
    #[serde(default = "default_tick_ms")]
    tick_ms: u64,
    cluster: ClusterSpec,
    #[serde(default)]
    network: NetworkSpec,
    #[serde(default)]
    disk: DiskSpec,
    resources: Option<ResourceSpec>,
    #[serde(default)]
    producers: Vec<ProducerSpec>,
    #[serde(default)]
    consumers: Vec<ConsumerSpec>,
    #[serde(default)]
    faults: Vec<RawFault>,
    #[serde(default)]
    expect: Expect,
    swarm: Option<SwarmSpec>,
}

/// The most faults one seed of a `[swarm]` may draw.
const SWARM_FAULTS_MAX: u32 = 64;

fn default_seed() -> u64 {
    1
}

fn default_settle_s() -> f64 {
    5.0
}

/// Ten seconds: several election timeouts and reconnect backoffs, well above what a healed
/// cluster needs, well below the final read's own time-out.
fn default_liveness_s() -> f64 {
    10.0
}

fn default_tick_ms() -> u64 {
    1
}

/// A `[[faults]]` table: one flat set of fields for every kind, so that a field the kind does not
/// take is reported by name rather than lost in an untagged enum's generic error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_s: f64,
    kind: FaultTag,
    target: Option<Target>,
    restart_after_s: Option<f64>,
    groups: Option<Vec<Vec<Member>>>,
    heal_after_s: Option<f64>,
    from: Option<Vec<Member>>,
    to: Option<Vec<Member>>,
    between: Option<Vec<Vec<Member>>>,
    release_after_s: Option<f64>,
    rate: Option<f64>,
    latency_ms: Option<MillisRange>,
    until_s: Option<f64>,
    consumer: Option<String>,
    process: Option<String>,
    pause_s: Option<f64>,
    gap_s: Option<f64>,
    clock_rate: Option<f64>,
    jump_s: Option<f64>,
}

impl RawFault {
    /// The optional fields present in the table, in declaration order.
    fn present_fields(&self) -> Vec<&'static str> {
        let present = [
            ("target", self.target.is_some()),
            ("restart_after_s", self.restart_after_s.is_some()),
            ("groups", self.groups.is_some()),
            ("heal_after_s", self.heal_after_s.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("between", self.between.is_some()),
            ("release_after_s", self.release_after_s.is_some()),
            ("rate", self.rate.is_some()),
            ("latency_ms", self.latency_ms.is_some()),
            ("until_s", self.until_s.is_some()),
            ("consumer", self.consumer.is_some()),
            ("process", self.process.is_some()),
            ("pause_s", self.pause_s.is_some()),
            ("gap_s", self.gap_s.is_some()),
            ("clock_rate", self.clock_rate.is_some()),
            ("jump_s", self.jump_s.is_some()),
        ];
        present
            .into_iter()
            .filter_map(|(name, is)| is.then_some(name))
            .collect()
    }
}

/// The second reading of a scenario: the client settings in its `[[producers]]` and
/// `[[consumers]]` tables, which are the state machines' own configuration types (see
/// [`ProducerSpec`] and [`ConsumerSpec`]).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ClientSettings {
    producers: Vec<ProducerConfig>,
    consumers: Vec<ConsumerConfig>,
}

/// The third reading: a share group's settings, from the same `[[consumers]]` tables.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ShareReading {
    consumers: Vec<ShareSettings>,
}

pub(super) fn parse(text: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
    let checker = Checker {
        text,
        source_name,
        map: SourceMap::parse(text),
    };
    let (mut raw, workload_unread) = checker.read::<RawScenario>()?;
    let (clients, client_unread) = checker.read::<ClientSettings>()?;
    let (shares, share_unread) = checker.read::<ShareReading>()?;
    // A key that no reading took is unknown. RawScenario refuses unknown keys itself everywhere
    // but in the tables it shares with the other readings, so its unread keys are the
    // candidates; a reading that skipped a whole table skipped every key in it.
    let unknown = workload_unread
        .iter()
        .find(|path| unread(&client_unread, path) && unread(&share_unread, path));
    if let Some(path) = unknown {
        let key = path.rsplit('.').next().unwrap_or(path);
        return Err(checker.error(path, format!("unknown field `{key}`")));
    }
    for (spec, client) in raw.producers.iter_mut().zip(clients.producers) {
        spec.client = client;
    }
    let consumers = clients.consumers.into_iter().zip(shares.consumers);
    for (spec, (client, share)) in raw.consumers.iter_mut().zip(consumers) {
        spec.client = client;
        spec.share = share;
    }
    checker.scenario(raw)
}

/// Whether a reading whose unread paths are `unread` skipped `path`: the key itself or a table
/// around it.
fn unread(unread: &BTreeSet<String>, path: &str) -> bool {
    let ends = path.match_indices(['.', '[']).map(|(at, _)| at);
    unread.contains(path) || ends.into_iter().any(|end| unread.contains(&path[..end]))
}

/// The dotted path (`producers[0].acks`) of a key serde did not read.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => match dotted(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// Turns paths into located errors and runs the semantic checks.
struct Checker<'a> {
    text: &'a str,
    source_name: &'a str,
    map: SourceMap,
}

type Check<T = ()> = Result<T, ScenarioError>;

impl Checker<'_> {
    /// An error about the field at `path`, located at its value (or its table, if absent).
    fn error(&self, path: &str, message: impl Into<String>) -> ScenarioError {
        let offset = self.map.span_of(path).map_or(0, |span| span.start);
        self.error_at(offset, path.to_string(), message.into())
    }

    fn error_at(&self, offset: usize, field: String, message: String) -> ScenarioError {
        let (line, column) = line_column(self.text, offset);
        ScenarioError::Invalid {
            source_name: self.source_name.to_string(),
            line,
            column,
            field,
            message,
        }
    }

    /// Reads the whole text as a `T`, with the paths of the keys `T` did not read.
    fn read<T: for<'de> Deserialize<'de>>(&self) -> Check<(T, BTreeSet<String>)> {
        let mut unread = BTreeSet::new();
        let value = serde_ignored::deserialize(toml::Deserializer::new(self.text), |path| {
            unread.insert(dotted(&path));
        })
        .map_err(|e| self.toml_error(&e))?;
        Ok((value, unread))
    }

    fn toml_error(&self, error: &toml::de::Error) -> ScenarioError {
        let span = error.span();
        let offset = span.as_ref().map_or(0, |span| span.start);
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = if let Some(missing) = missing {
            // serde reports a missing field at the span of its table (none for the document).
            let table = span.as_ref().and_then(|s| self.map.path_spanning(s));
            match table {
                Some(table) => format!("{table}.{missing}"),
                None => missing.to_string(),
            }
        } else if let Some(path) = self.map.path_at(offset) {
            path.to_string()
        } else if self.map.is_empty() {
            path_near_line(self.text, line_column(self.text, offset).0)
        } else {
            String::new()
        };
        self.error_at(offset, field, message)
    }

    fn scenario(&self, raw: RawScenario) -> Check<Scenario> {
        if raw.name.trim().is_empty() {
            return Err(self.error("name", "must not be empty"));
        }
        self.positive_seconds("duration_s", raw.duration_s)?;
        if !(raw.settle_s.is_finite() && raw.settle_s >= 0.0) {
            return Err(self.error(
                "settle_s",
                format!("must be a number of seconds >= 0, got {}", raw.settle_s),
            ));
        }
        self.positive_seconds("liveness_s", raw.liveness_s)?;
        if raw.tick_ms == 0 {
            return Err(self.error("tick_ms", "must be at least 1"));
        }
        self.cluster(&raw.cluster)?;
        self.network(&raw.network)?;
        self.disk(&raw.disk, raw.resources.is_some())?;
        if let Some(r) = &raw.resources {
            r.check()
                .map_err(|(field, message)| self.error(&format!("resources.{field}"), message))?;
        }
        if raw.producers.is_empty() {
            return Err(self.error(
                "producers",
                "a scenario needs at least one [[producers]] table",
            ));
        }
        for (i, p) in raw.producers.iter().enumerate() {
            self.producer(&format!("producers[{i}]"), p, &raw.cluster)?;
        }
        for (i, c) in raw.consumers.iter().enumerate() {
            self.consumer(&format!("consumers[{i}]"), c, &raw.cluster, raw.duration_s)?;
        }
        self.consumer_overlap(&raw.consumers, &raw.cluster)?;
        let key_shared_groups: BTreeSet<String> = raw
            .consumers
            .iter()
            .filter(|c| c.kind.share_mode() == Some(ShareMode::KeyShared))
            .map(|c| c.group.clone())
            .collect();
        if raw.expect.out_of_order_per_key.is_some() && key_shared_groups.is_empty() {
            return Err(self.error(
                "expect.out_of_order_per_key",
                "needs a [[consumers]] table of kind = \"key_shared\" to judge (a plain share \
                 group does not keep key order)",
            ));
        }
        let clients = self.process_names(&raw)?;
        self.zones(&raw.network, &raw.cluster, &clients)?;
        let faults = raw
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| self.fault(&format!("faults[{i}]"), f, &raw, &clients))
            .collect::<Check<Vec<Fault>>>()?;
        let swarm = self.swarm(&raw)?;
        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            duration_s: raw.duration_s,
            settle_s: raw.settle_s,
            liveness_s: raw.liveness_s,
            tick_ms: raw.tick_ms,
            cluster: raw.cluster,
            network: raw.network,
            disk: raw.disk,
            resources: raw.resources,
            producers: raw.producers,
            consumers: raw.consumers,
            faults,
            swarm,
            expect: Expect {
                key_shared_groups,
                ..raw.expect
            },
        })
    }

    /// `[swarm]`: well-formed ranges, and only draws the scenario's bounds can promise.
    fn swarm(&self, raw: &RawScenario) -> Check<Option<Swarm>> {
        let Some(spec) = &raw.swarm else {
            return Ok(None);
        };
        if spec.kinds.is_empty() {
            return Err(self.error("swarm.kinds", "must name at least one fault kind"));
        }
        let [low, high] = spec.faults;
        if low > high || high > SWARM_FAULTS_MAX {
            return Err(self.error(
                "swarm.faults",
                format!("expected [min, max] with min <= max <= {SWARM_FAULTS_MAX}, got [{low}, {high}]"),
            ));
        }
        if let Some([from, to]) = spec.window_s {
            if !(from >= 0.0 && from <= to && to <= raw.duration_s) {
                return Err(self.error(
                    "swarm.window_s",
                    format!("expected [from, to] with 0 <= from <= to <= duration_s ({}), got [{from}, {to}]", raw.duration_s),
                ));
            }
        }
        self.positive_seconds("swarm.fault_s_max", spec.fault_s_max)?;
        self.probability("swarm.rate_max", spec.rate_max)?;
        let needs = [(SwarmKind::CrashBurst, 2), (SwarmKind::PartitionBridge, 3)];
        for (i, kind) in spec.kinds.iter().enumerate() {
            if let Some((_, n)) = needs
                .iter()
                .find(|(k, n)| k == kind && raw.cluster.brokers < *n)
            {
                return Err(self.error(
                    &format!("swarm.kinds[{i}]"),
                    format!(
                        "{kind} needs at least {n} brokers, the cluster has {}",
                        raw.cluster.brokers
                    ),
                ));
            }
        }
        let members = raw.consumers.iter().any(ConsumerSpec::has_membership);
        if let Some(i) = spec.kinds.iter().position(|k| k.is_consumer()) {
            if !members {
                return Err(self.error(
                    &format!("swarm.kinds[{i}]"),
                    format!(
                        "{} needs a [[consumers]] with a group protocol or kind = \"share\" or \"key_shared\"",
                        spec.kinds[i]
                    ),
                ));
            }
        }
        self.swarm_promises(spec, raw)?;
        Ok(Some(Swarm {
            spec: spec.clone(),
            text: self.text.to_string(),
            source_name: self.source_name.to_string(),
        }))
    }

    /// Under a `lost` bound, every draw must be a configuration that promises no loss: acks=all,
    /// and fsync on every batch when every broker may lose power at once.
    fn swarm_promises(&self, spec: &SwarmSpec, raw: &RawScenario) -> Check {
        for (i, a) in spec.acks.iter().enumerate() {
            let path = format!("swarm.acks[{i}]");
            let acks = Acks::from_name(a).ok_or_else(|| {
                self.error(
                    &path,
                    format!(r#"expected one of "0", "1", "all", got "{a}""#),
                )
            })?;
            if acks != Acks::All && raw.expect.bound(Anomaly::Lost).is_some() {
                return Err(self.error(
                    &path,
                    format!(r#"acks = "{a}" loses acknowledged writes when a leader crashes, so it cannot be drawn under [expect] lost"#),
                ));
            }
            if acks != Acks::All && spec.idempotence.contains(&true) {
                return Err(self.error(
                    &path,
                    format!(r#"acks = "{a}" cannot be drawn with idempotence = true (it needs acks = "all")"#),
                ));
            }
        }
        let power_loss = spec.kinds.contains(&SwarmKind::PowerLoss);
        if power_loss && raw.expect.bound(Anomaly::Lost).is_some() {
            let policies = if spec.fsync.is_empty() {
                vec![raw.cluster.log.fsync]
            } else {
                spec.fsync.clone()
            };
            if let Some(i) = policies.iter().position(|&p| p != FsyncPolicy::EveryBatch) {
                let path = if spec.fsync.is_empty() {
                    "swarm.kinds".to_string()
                } else {
                    format!("swarm.fsync[{i}]")
                };
                return Err(self.error(
                    &path,
                    "power_loss of every broker loses acknowledged writes unless fsync = \"every_batch\", so it cannot be drawn under [expect] lost",
                ));
            }
        }
        Ok(())
    }

    fn positive_seconds(&self, path: &str, value: f64) -> Check {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(self.error(
                path,
                format!("must be a number of seconds above 0, got {value}"),
            ))
        }
    }

    fn probability(&self, path: &str, value: f64) -> Check {
        if (0.0..=1.0).contains(&value) {
            Ok(())
        } else {
            Err(self.error(
                path,
                format!("must be a probability between 0.0 and 1.0, got {value}"),
            ))
        }
    }

    fn cluster(&self, cluster: &ClusterSpec) -> Check {
        if cluster.brokers == 0 {
            return Err(self.error("cluster.brokers", "must be at least 1"));
        }
        let config = cluster.to_config();
        if let Err(e) = config.validate() {
            return Err(self.cluster_error(cluster, &e));
        }
        let log = &cluster.log;
        if log.fsync == FsyncPolicy::Interval && log.fsync_interval_ms == 0 {
            return Err(self.error(
                "cluster.log.fsync_interval_ms",
                r#"must be at least 1 with fsync = "interval""#,
            ));
        }
        for (field, value) in [
            ("segment_bytes_max", log.segment_bytes_max),
            ("index_interval_bytes", log.index_interval_bytes),
            ("batch_bytes_max", u64::from(log.batch_bytes_max)),
        ] {
            if value == 0 {
                return Err(self.error(&format!("cluster.log.{field}"), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Points a [`ConfigError`] from the core at the field it is about.
    fn cluster_error(&self, cluster: &ClusterSpec, error: &ConfigError) -> ScenarioError {
        let topic_index = |name: &str| cluster.topics.iter().rposition(|t| t.name == name);
        let path = match error {
            ConfigError::NoBrokers | ConfigError::DuplicateBroker(_) => "cluster.brokers".into(),
            ConfigError::DuplicateTopic(name) => match topic_index(name) {
                Some(i) => format!("cluster.topics[{i}].name"),
                None => "cluster.topics".into(),
            },
            ConfigError::BadTopic { topic, reason } => {
                let field = ["partitions", "replication_factor"]
                    .into_iter()
                    .find(|f| reason.starts_with(f))
                    .unwrap_or("name");
                match topic_index(topic) {
                    Some(i) => format!("cluster.topics[{i}].{field}"),
                    None => "cluster.topics".into(),
                }
            }
            ConfigError::BadReplication(reason) if reason.contains("offsets_partitions") => {
                "cluster.offsets_partitions".into()
            }
            ConfigError::BadReplication(_) => "cluster.replication".into(),
        };
        self.error(&path, error.to_string())
    }

    fn network(&self, network: &NetworkSpec) -> Check {
        self.probability("network.loss", network.loss)?;
        self.probability("network.repair", network.repair)?;
        if network.loss > 0.0 && network.repair == 0.0 {
            return Err(self.error(
                "network.repair",
                "must be above 0 when network.loss is: a broken link would never repair",
            ));
        }
        Ok(())
    }

    /// Every zone member is a broker host, a client process base name or a process name; no
    /// host sits in two zones.
    fn zones(
        &self,
        network: &NetworkSpec,
        cluster: &ClusterSpec,
        clients: &BTreeSet<String>,
    ) -> Check {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, zone) in network.zones.iter().enumerate() {
            let path = format!("network.zones[{i}]");
            if zone.name.trim().is_empty() || !names.insert(zone.name.as_str()) {
                return Err(self.error(
                    &format!("{path}.name"),
                    format!(
                        "zone names must be unique and not empty, got {:?}",
                        zone.name
                    ),
                ));
            }
            for host in &zone.hosts {
                let known = if is_broker_host(host) {
                    host["broker-".len()..]
                        .parse::<u32>()
                        .is_ok_and(|id| (1..=cluster.brokers).contains(&id))
                } else {
                    clients
                        .iter()
                        .any(|c| c == host || c.starts_with(&format!("{host}-")))
                };
                if !known {
                    return Err(self.error(
                        &format!("{path}.hosts"),
                        format!("{host:?} is neither a broker host nor a client process"),
                    ));
                }
                if let Some(other) = seen.insert(host, &zone.name) {
                    return Err(self.error(
                        &format!("{path}.hosts"),
                        format!("{host:?} is already in zone {other:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn disk(&self, disk: &DiskSpec, metered: bool) -> Check {
        if metered && disk.fsync_us.is_some() {
            return Err(self.error(
                "disk.fsync_us",
                "applies only without [resources]; set resources.disk_fsync_us instead",
            ));
        }
        self.probability("disk.io_error_probability", disk.io_error_probability)?;
        self.probability("disk.corruption_probability", disk.corruption_probability)?;
        self.probability("disk.sync_probability", disk.sync_probability)
    }

    fn topic(&self, path: &str, topic: &str, cluster: &ClusterSpec) -> Check<u32> {
        if topic.is_empty() {
            return Err(self.error(path, "missing: name a topic declared in [[cluster.topics]]"));
        }
        cluster
            .topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions)
            .ok_or_else(|| {
                let declared: Vec<&str> = cluster.topics.iter().map(|t| t.name.as_str()).collect();
                self.error(
                    path,
                    format!(
                        "topic \"{topic}\" is not declared in [[cluster.topics]] (declared: {})",
                        list_or_none(&declared)
                    ),
                )
            })
    }

    fn process_base_name(&self, path: &str, name: &str) -> Check {
        if name.is_empty() {
            return Err(self.error(path, "missing: every producer and consumer needs a name"));
        }
        if !is_valid_process_name(name) || matches!(name, "brokers" | "clients" | "random") {
            return Err(self.error(
                path,
                format!(
                    "\"{name}\" is not a usable process name: use letters, digits, '-' and '_', \
                     and not \"brokers\", \"clients\" or \"random\""
                ),
            ));
        }
        Ok(())
    }

    fn producer(&self, path: &str, p: &ProducerSpec, cluster: &ClusterSpec) -> Check {
        let field = |name: &str| format!("{path}.{name}");
        self.process_base_name(&field("name"), &p.name)?;
        self.topic(&field("topic"), &p.topic, cluster)?;
        if !(p.rate_per_s.is_finite() && p.rate_per_s > 0.0) {
            return Err(self.error(
                &field("rate_per_s"),
                format!("must be above 0, got {}", p.rate_per_s),
            ));
        }
        if let Err(invalid) = p.client.validate().and(p.client.check_useful()) {
            return Err(self.error(&field(invalid.field), invalid.reason));
        }
        if !(0.0..=1.0).contains(&p.hot_key_share) {
            return Err(self.error(
                &field("hot_key_share"),
                format!("must be within 0 ..= 1, got {}", p.hot_key_share),
            ));
        }
        if p.ordering_keys > ORDERING_KEYS_MAX {
            return Err(self.error(
                &field("ordering_keys"),
                format!(
                    "must be within 0 ..= {ORDERING_KEYS_MAX} (0: no ordering keys), got {}",
                    p.ordering_keys
                ),
            ));
        }
        let batch_bytes_max = p.client.batch_bytes_max;
        if batch_bytes_max < p.message_bytes.get() as usize {
            return Err(self.error(
                &field("batch_bytes_max"),
                format!(
                    "{batch_bytes_max} is below message_bytes ({}): no message would fit in a \
                     batch",
                    p.message_bytes
                ),
            ));
        }
        if batch_bytes_max > cluster.log.batch_bytes_max as usize {
            return Err(self.error(
                &field("batch_bytes_max"),
                format!(
                    "{batch_bytes_max} is above cluster.log.batch_bytes_max ({}), the largest \
                     batch a broker accepts",
                    cluster.log.batch_bytes_max
                ),
            ));
        }
        if p.connect_per_send && p.mode != ProducerMode::Sync {
            return Err(self.error(
                &field("connect_per_send"),
                r#"needs mode = "sync": closing connections would cut off sends in flight"#,
            ));
        }
        Ok(())
    }

    fn consumer(
        &self,
        path: &str,
        c: &ConsumerSpec,
        cluster: &ClusterSpec,
        duration_s: f64,
    ) -> Check {
        let field = |name: &str| format!("{path}.{name}");
        self.process_base_name(&field("name"), &c.name)?;
        let partitions = self.topic(&field("topic"), &c.topic, cluster)?;
        if c.group.is_empty() {
            return Err(self.error(
                &field("group"),
                "missing: name the consumer group whose offsets this consumer commits",
            ));
        }
        if let PartitionSelection::List(list) = &c.partitions {
            if list.is_empty() {
                return Err(self.error(&field("partitions"), "must list at least one partition"));
            }
            let mut seen = BTreeSet::new();
            for (k, &p) in list.iter().enumerate() {
                let at = format!("{path}.partitions[{k}]");
                if p >= partitions {
                    return Err(self.error(
                        &at,
                        format!(
                            "partition {p} is out of range: topic \"{}\" has {partitions} (0 to {})",
                            c.topic,
                            partitions - 1
                        ),
                    ));
                }
                if !seen.insert(p) {
                    return Err(self.error(&at, format!("partition {p} is listed twice")));
                }
            }
        }
        // A share group's members all read every selected partition: more members than
        // partitions is what it is for (KIP-932).
        let selected = c.selected_partitions(partitions).len();
        if !c.kind.is_share() && c.instances.get() as usize > selected {
            return Err(self.error(
                &field("instances"),
                format!(
                    "{} instances for {selected} selected partitions: an instance would read \
                     nothing",
                    c.instances
                ),
            ));
        }
        if c.commit != CommitMode::Never && c.commit_interval_ms == 0 {
            return Err(self.error(&field("commit_interval_ms"), "must be at least 1"));
        }
        if let Err(invalid) = c.client.validate() {
            return Err(self.error(&field(invalid.field), invalid.reason));
        }
        let mut previous = 0.0;
        for (k, &t) in c.restart_at_s.iter().enumerate() {
            let at = format!("{path}.restart_at_s[{k}]");
            if !(t.is_finite() && t > previous && t < duration_s) {
                return Err(self.error(
                    &at,
                    format!(
                        "{t} must be after {previous} (the previous restart or the start) and \
                         before duration_s ({duration_s})"
                    ),
                ));
            }
            previous = t;
        }
        self.consumer_delivery_fields(path, c)?;
        self.consumer_share_fields(path, c)?;
        if let Some(dlq) = &c.dead_letter_topic {
            let at = format!("{path}.dead_letter_topic");
            if !c.kind.is_share() {
                return Err(self.error(&at, "needs kind = \"share\" or \"key_shared\""));
            }
            self.topic(&at, dlq, cluster)?;
            if *dlq == c.topic {
                return Err(self.error(&at, "must differ from the topic the group reads"));
            }
        }
        self.consumer_group_fields(path, c)
    }

    /// A share group's fields (issue 9): in the broker's accepted ranges, and only on a share
    /// consumer; a share group has no partition assignment to choose.
    fn consumer_share_fields(&self, path: &str, c: &ConsumerSpec) -> Check {
        let field = |name: &str| format!("{path}.{name}");
        if !c.kind.is_share() {
            if !c.poison_ids.is_empty() {
                return Err(self.error(
                    &field("poison_ids"),
                    "needs kind = \"share\" or \"key_shared\"",
                ));
            }
            return Ok(());
        }
        if c.protocol != ConsumerProtocol::Manual {
            return Err(self.error(
                &field("protocol"),
                "a share group's members all read every partition: leave `protocol` out",
            ));
        }
        if matches!(c.partitions, PartitionSelection::List(_)) {
            return Err(self.error(
                &field("partitions"),
                "a share group reads every partition: leave `partitions` out",
            ));
        }
        if let Some((name, range)) = c.share.out_of_range() {
            return Err(self.error(&field(name), format!("must be in {range}")));
        }
        let records_max = *RECORD_LOCKS_RANGE.end();
        if !(1..=records_max).contains(&c.max_records) {
            return Err(self.error(
                &field("max_records"),
                format!("must be in 1..={records_max}"),
            ));
        }
        Ok(())
    }

    /// The delivery model's settings (claim C1), each in its range.
    fn consumer_delivery_fields(&self, path: &str, c: &ConsumerSpec) -> Check {
        let field = |name: &str| format!("{path}.{name}");
        if !(1..=POLL_INTERVAL_MS_MAX).contains(&c.poll_interval_ms) {
            return Err(self.error(
                &field("poll_interval_ms"),
                format!("must be from 1 to {POLL_INTERVAL_MS_MAX}"),
            ));
        }
        if c.push_credits > PUSH_CREDITS_MAX {
            return Err(self.error(
                &field("push_credits"),
                format!("must be at most {PUSH_CREDITS_MAX} records (0 turns flow control off)"),
            ));
        }
        if !(1..=RECEIVE_BUFFER_BYTES_MAX_LIMIT).contains(&c.client.receive_buffer_bytes_max) {
            return Err(self.error(
                &field("receive_buffer_bytes_max"),
                format!("must be from 1 to {RECEIVE_BUFFER_BYTES_MAX_LIMIT} bytes"),
            ));
        }
        Ok(())
    }

    /// The group fields (issue 8): each only where its protocol reads it, and in range.
    fn consumer_group_fields(&self, path: &str, c: &ConsumerSpec) -> Check {
        let field = |name: &str| format!("{path}.{name}");
        let protocol = c.protocol;
        let name = protocol.name();
        if protocol.is_group() && matches!(c.partitions, PartitionSelection::List(_)) {
            return Err(self.error(
                &field("partitions"),
                format!(
                    "protocol = \"{name}\" lets the group assign partitions: leave \
                     `partitions` out (allowed: \"all\") or use protocol = \"manual\""
                ),
            ));
        }
        if c.instance_id.is_some() && !protocol.takes_instance_id() {
            return Err(self.error(
                &field("instance_id"),
                format!(
                    "instance_id needs protocol = \"static\" or \"broker\" (this consumer's is \
                     \"{name}\")"
                ),
            ));
        }
        if !c.instance_process_ms.is_empty()
            && c.instance_process_ms.len() != c.instances.get() as usize
        {
            return Err(self.error(
                &field("instance_process_ms"),
                format!(
                    "lists {} values for {} instances: one per instance",
                    c.instance_process_ms.len(),
                    c.instances
                ),
            ));
        }
        if !protocol.is_group() {
            return Ok(());
        }
        let limits = GroupLimits::default();
        let (min, max) = (
            limits.session_timeout_min.as_millis(),
            limits.session_timeout_max.as_millis(),
        );
        let session = u128::from(c.session_timeout_ms);
        if session < min || session > max {
            return Err(self.error(
                &field("session_timeout_ms"),
                format!("must be from {min} to {max} (the coordinator's allowed range)"),
            ));
        }
        if c.heartbeat_interval_ms == 0 || c.heartbeat_interval_ms >= c.session_timeout_ms {
            return Err(self.error(
                &field("heartbeat_interval_ms"),
                format!(
                    "must be at least 1 and below session_timeout_ms ({})",
                    c.session_timeout_ms
                ),
            ));
        }
        for (value, key) in [
            (c.max_poll_interval_ms, "max_poll_interval_ms"),
            (c.rebalance_interval_ms, "rebalance_interval_ms"),
        ] {
            if value == 0 {
                return Err(self.error(&field(key), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Two consumer specs in one group must not both read a partition: they would overwrite each
    /// other's committed offsets, which the checker would report as anomalies of the system.
    fn consumer_overlap(&self, consumers: &[ConsumerSpec], cluster: &ClusterSpec) -> Check {
        let mut owners: BTreeMap<(&str, &str, u32), usize> = BTreeMap::new();
        for (i, c) in consumers.iter().enumerate() {
            let partitions = cluster
                .topics
                .iter()
                .find(|t| t.name == c.topic)
                .map_or(0, |t| t.partitions);
            for p in c.selected_partitions(partitions) {
                if let Some(other) = owners.insert((&c.group, &c.topic, p), i) {
                    return Err(self.error(
                        &format!("consumers[{i}].partitions"),
                        format!(
                            "partition {}/{p} is also read by consumers[{other}] in group \"{}\"",
                            c.topic, c.group
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every client process name, checked for collisions with each other and with brokers.
    fn process_names(&self, raw: &RawScenario) -> Check<BTreeSet<String>> {
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let specs = raw
            .producers
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("producers[{i}]"), p.process_names()))
            .chain(
                raw.consumers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("consumers[{i}]"), c.process_names())),
            );
        for (path, names) in specs {
            for name in names {
                if is_broker_host(&name) {
                    return Err(self.error(
                        &format!("{path}.name"),
                        format!("process name \"{name}\" looks like a broker host name"),
                    ));
                }
                if let Some(other) = owners.insert(name.clone(), path.clone()) {
                    return Err(self.error(
                        &format!("{path}.name"),
                        format!("process name \"{name}\" is also used by {other}"),
                    ));
                }
            }
        }
        Ok(owners.into_keys().collect())
    }

    fn fault(
        &self,
        path: &str,
        f: &RawFault,
        raw: &RawScenario,
        clients: &BTreeSet<String>,
    ) -> Check<Fault> {
        if !(f.at_s.is_finite() && f.at_s >= 0.0 && f.at_s <= raw.duration_s) {
            return Err(self.error(
                &format!("{path}.at_s"),
                format!(
                    "{} is outside the workload phase: must be between 0 and duration_s ({})",
                    f.at_s, raw.duration_s
                ),
            ));
        }
        self.fault_fields(path, f)?;
        let (kind, until_s) = self.fault_kind(path, f, raw, clients)?;
        Ok(Fault {
            at_s: f.at_s,
            until_s,
            kind,
        })
    }

    /// Every field present is one the fault's kind takes.
    fn fault_fields(&self, path: &str, f: &RawFault) -> Check {
        let allowed = f.kind.fields();
        match f
            .present_fields()
            .into_iter()
            .find(|n| !allowed.contains(n))
        {
            Some(extra) => Err(self.error(
                &format!("{path}.{extra}"),
                format!(
                    "not used by kind = \"{}\" (it takes at_s, kind{}{})",
                    f.kind,
                    if allowed.is_empty() { "" } else { ", " },
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The typed fault and its absolute end, if any, from the flat table.
    fn fault_kind(
        &self,
        path: &str,
        f: &RawFault,
        raw: &RawScenario,
        clients: &BTreeSet<String>,
    ) -> Check<(FaultKind, Option<f64>)> {
        let field = |name: &str| format!("{path}.{name}");
        Ok(match f.kind {
            FaultTag::Crash => {
                let target: Target = self.required(path, f, "target", f.target.clone())?;
                self.target(&field("target"), &target, raw)?;
                (
                    FaultKind::Crash { target },
                    self.relative_end(path, f, "restart_after_s", f.restart_after_s)?,
                )
            }
            FaultTag::PowerLoss => (
                FaultKind::PowerLoss,
                self.relative_end(path, f, "restart_after_s", f.restart_after_s)?,
            ),
            FaultTag::Partition => {
                let groups: Vec<Vec<Member>> =
                    self.required(path, f, "groups", f.groups.clone())?;
                self.groups(&field("groups"), &groups, raw, clients)?;
                (
                    FaultKind::Partition { groups },
                    self.relative_end(path, f, "heal_after_s", f.heal_after_s)?,
                )
            }
            FaultTag::PartitionOneway => {
                let from: Vec<Member> = self.required(path, f, "from", f.from.clone())?;
                let to: Vec<Member> = self.required(path, f, "to", f.to.clone())?;
                self.members(&field("from"), &from, raw, clients)?;
                self.members(&field("to"), &to, raw, clients)?;
                (
                    FaultKind::PartitionOneway { from, to },
                    self.relative_end(path, f, "heal_after_s", f.heal_after_s)?,
                )
            }
            FaultTag::Hold => (
                FaultKind::Hold {
                    between: self.host_set_pair(path, f, raw, clients)?,
                },
                self.relative_end(path, f, "release_after_s", f.release_after_s)?,
            ),
            FaultTag::Loss => {
                let between = self.host_set_pair(path, f, raw, clients)?;
                let rate: f64 = self.required(path, f, "rate", f.rate)?;
                self.probability(&field("rate"), rate)?;
                let until_s = self.until(&field("until_s"), f)?;
                (FaultKind::Loss { between, rate }, until_s)
            }
            FaultTag::Latency => {
                let between = self.host_set_pair(path, f, raw, clients)?;
                let latency_ms: MillisRange = self.required(path, f, "latency_ms", f.latency_ms)?;
                let until_s = self.until(&field("until_s"), f)?;
                (
                    FaultKind::Latency {
                        between,
                        latency_ms,
                    },
                    until_s,
                )
            }
            FaultTag::Heal => (FaultKind::Heal, None),
            FaultTag::Join => {
                let consumer: String = self.required(path, f, "consumer", f.consumer.clone())?;
                self.group_consumer(&field("consumer"), &consumer, raw)?;
                (FaultKind::Join { consumer }, None)
            }
            FaultTag::Leave => {
                let process = self.group_instance(path, f, raw)?;
                (FaultKind::Leave { process }, None)
            }
            FaultTag::ConsumerCrash => {
                let process = self.group_instance(path, f, raw)?;
                (
                    FaultKind::ConsumerCrash { process },
                    self.relative_end(path, f, "restart_after_s", f.restart_after_s)?,
                )
            }
            FaultTag::Pause => {
                let process = self.group_instance(path, f, raw)?;
                let pause_s: f64 = self.required(path, f, "pause_s", f.pause_s)?;
                self.positive_seconds(&field("pause_s"), pause_s)?;
                (
                    FaultKind::Pause { process, pause_s },
                    Some(f.at_s + pause_s),
                )
            }
            FaultTag::RollingRestart => {
                let consumer: String = self.required(path, f, "consumer", f.consumer.clone())?;
                self.group_consumer(&field("consumer"), &consumer, raw)?;
                let gap_s: f64 = self.required(path, f, "gap_s", f.gap_s)?;
                self.positive_seconds(&field("gap_s"), gap_s)?;
                (FaultKind::RollingRestart { consumer, gap_s }, None)
            }
            FaultTag::Clock => {
                let target: Target = self.required(path, f, "target", f.target.clone())?;
                self.target(&field("target"), &target, raw)?;
                let (clock_rate, jump_s) = self.clock(path, f)?;
                let until_s = self.until(&field("until_s"), f)?;
                (
                    FaultKind::Clock {
                        target,
                        clock_rate,
                        jump_s,
                    },
                    until_s,
                )
            }
            FaultTag::DiskFull => {
                let target: Target = self.required(path, f, "target", f.target.clone())?;
                self.target(&field("target"), &target, raw)?;
                let until_s = self.until(&field("until_s"), f)?;
                (FaultKind::DiskFull { target }, until_s)
            }
            FaultTag::DiskEio => {
                let target: Target = self.required(path, f, "target", f.target.clone())?;
                self.target(&field("target"), &target, raw)?;
                let rate: f64 = self.required(path, f, "rate", f.rate)?;
                self.probability(&field("rate"), rate)?;
                let until_s = self.until(&field("until_s"), f)?;
                (FaultKind::DiskEio { target, rate }, until_s)
            }
        })
    }

    /// A clock fault's rate (default 1) and forward jump (default 0); one must change the clock.
    fn clock(&self, path: &str, f: &RawFault) -> Check<(f64, f64)> {
        let (min, max) = fathom_driver::Skew::RATE_RANGE;
        let rate = f.clock_rate.unwrap_or(1.0);
        if !(min..=max).contains(&rate) {
            return Err(self.error(
                &format!("{path}.clock_rate"),
                format!("must be within [{min}, {max}] (times true speed), got {rate}"),
            ));
        }
        let jump_s = f.jump_s.unwrap_or(0.0);
        if !(0.0..=3_600.0).contains(&jump_s) {
            return Err(self.error(
                &format!("{path}.jump_s"),
                format!(
                    "must be within [0, 3600] seconds (clocks only leap forward), got {jump_s}"
                ),
            ));
        }
        if rate == 1.0 && jump_s == 0.0 {
            return Err(self.error(
                &format!("{path}.clock_rate"),
                "a clock fault needs clock_rate other than 1 or a jump_s above 0",
            ));
        }
        Ok((rate, jump_s))
    }

    /// The `[[consumers]]` table called `name`, which must use a group protocol: membership
    /// faults mean nothing under manual assignment.
    fn group_consumer<'r>(
        &self,
        path: &str,
        name: &str,
        raw: &'r RawScenario,
    ) -> Check<&'r ConsumerSpec> {
        let Some((i, c)) = raw
            .consumers
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
        else {
            let names: Vec<String> = raw
                .consumers
                .iter()
                .map(|c| format!("\"{}\"", c.name))
                .collect();
            return Err(self.error(
                path,
                format!(
                    "no [[consumers]] named \"{name}\" (consumers: {})",
                    names.join(", ")
                ),
            ));
        };
        if !c.has_membership() {
            return Err(self.error(
                path,
                format!(
                    "membership faults need a group protocol or kind = \"share\", and consumers[{i}] has protocol = \
                     \"manual\" (allowed: \"eager\", \"cooperative\", \"static\", \"broker\", \
                     \"client_periodic\")"
                ),
            ));
        }
        Ok(c)
    }

    /// `process`: the first process name of an instance of a group consumer, `{name}-{i}`.
    fn group_instance(&self, path: &str, f: &RawFault, raw: &RawScenario) -> Check<String> {
        let at = format!("{path}.process");
        let process: String = self.required(path, f, "process", f.process.clone())?;
        let instance = process
            .rsplit_once('-')
            .and_then(|(base, i)| Some((base, i.parse::<u32>().ok()?)));
        let Some((base, i)) = instance else {
            return Err(self.error(
                &at,
                format!("expected a consumer instance such as \"c-0\", got \"{process}\""),
            ));
        };
        let c = self.group_consumer(&at, base, raw)?;
        if i >= c.instances.get() {
            return Err(self.error(
                &at,
                format!(
                    "consumer \"{base}\" has instances {base}-0 ..= {base}-{}",
                    c.instances.get() - 1
                ),
            ));
        }
        Ok(process)
    }

    /// The value of field `name`, which the fault's kind needs.
    fn required<T>(&self, path: &str, f: &RawFault, name: &str, value: Option<T>) -> Check<T> {
        value.ok_or_else(|| self.missing(path, f, name))
    }

    fn missing(&self, path: &str, f: &RawFault, name: &str) -> ScenarioError {
        self.error(
            &format!("{path}.{name}"),
            format!("missing: kind = \"{}\" needs {name}", f.kind),
        )
    }

    /// `at_s` plus a relative duration such as `heal_after_s`, which must be above 0.
    fn relative_end(
        &self,
        path: &str,
        f: &RawFault,
        name: &str,
        after: Option<f64>,
    ) -> Check<Option<f64>> {
        match after {
            None => Ok(None),
            Some(a) => {
                self.positive_seconds(&format!("{path}.{name}"), a)?;
                Ok(Some(f.at_s + a))
            }
        }
    }

    /// `between`: exactly two host sets, each checked.
    fn host_set_pair(
        &self,
        path: &str,
        f: &RawFault,
        raw: &RawScenario,
        clients: &BTreeSet<String>,
    ) -> Check<[Vec<Member>; 2]> {
        let name = "between";
        let value = f
            .between
            .as_ref()
            .ok_or_else(|| self.missing(path, f, name))?;
        match &value[..] {
            [a, b] => {
                self.members(&format!("{path}.{name}[0]"), a, raw, clients)?;
                self.members(&format!("{path}.{name}[1]"), b, raw, clients)?;
                Ok([a.clone(), b.clone()])
            }
            _ => Err(self.error(
                &format!("{path}.{name}"),
                format!("expected two host sets [[...], [...]], got {}", value.len()),
            )),
        }
    }

    fn until(&self, path: &str, f: &RawFault) -> Check<Option<f64>> {
        match f.until_s {
            Some(u) if !(u.is_finite() && u > f.at_s) => Err(self.error(
                path,
                format!(
                    "{u} must be after at_s ({}); until_s is an absolute time",
                    f.at_s
                ),
            )),
            until => Ok(until),
        }
    }

    fn target(&self, path: &str, target: &Target, raw: &RawScenario) -> Check {
        match target {
            Target::Broker(id) if *id == 0 || *id > raw.cluster.brokers => Err(self.error(
                path,
                format!(
                    "there is no {}: the cluster has brokers broker-1 ..= broker-{}",
                    broker_host(*id),
                    raw.cluster.brokers
                ),
            )),
            Target::CoordinatorOf { group } => {
                if raw.consumers.iter().any(|c| &c.group == group) {
                    return Ok(());
                }
                let groups: Vec<String> = raw
                    .consumers
                    .iter()
                    .map(|c| format!("\"{}\"", c.group))
                    .collect();
                Err(self.error(
                    path,
                    format!(
                        "no consumer group \"{group}\" (groups: {})",
                        groups.join(", ")
                    ),
                ))
            }
            Target::LeaderOf { topic, partition } => {
                let partitions = if topic == OFFSETS_TOPIC {
                    raw.cluster.offsets_partitions
                } else {
                    self.topic(path, topic, &raw.cluster)?
                };
                if *partition >= partitions {
                    return Err(self.error(
                        path,
                        format!(
                            "partition {partition} is out of range: topic \"{topic}\" has \
                             {partitions} (0 to {})",
                            partitions - 1
                        ),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn members(
        &self,
        path: &str,
        members: &[Member],
        raw: &RawScenario,
        clients: &BTreeSet<String>,
    ) -> Check {
        if members.is_empty() {
            return Err(self.error(path, "a host set must not be empty"));
        }
        for (k, member) in members.iter().enumerate() {
            let at = format!("{path}[{k}]");
            match member {
                Member::Broker(target) => self.target(&at, target, raw)?,
                Member::Client(name) if !clients.contains(name) => {
                    let known: Vec<&str> = clients.iter().map(String::as_str).collect();
                    return Err(self.error(
                        &at,
                        format!(
                            "no client process is named \"{name}\" (clients: {})",
                            list_or_none(&known)
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn groups(
        &self,
        path: &str,
        groups: &[Vec<Member>],
        raw: &RawScenario,
        clients: &BTreeSet<String>,
    ) -> Check {
        if groups.len() < 2 {
            return Err(self.error(
                path,
                format!(
                    "a partition needs at least two groups, got {}",
                    groups.len()
                ),
            ));
        }
        let mut seen: BTreeMap<&Member, usize> = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            self.members(&format!("{path}[{g}]"), group, raw, clients)?;
            for (k, member) in group.iter().enumerate() {
                if matches!(member, Member::Broker(Target::Random)) {
                    continue;
                }
                if let Some(other) = seen.insert(member, g) {
                    return Err(self.error(
                        &format!("{path}[{g}][{k}]"),
                        format!("\"{member}\" is already in group {other}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
