//! The node's registration and status reports, as upstream's `registerWithAPIServer`
//! and `updateNodeStatus`: create the Node (or take over the one registered before and
//! reconcile it), then every `nodeStatusUpdateFrequency` compute the status and patch
//! `nodes/<name>/status` when it changed or `nodeStatusReportFrequency` has passed.
//!
//! The decisions are pure functions ([`reconcile_existing`], [`apply_status`],
//! [`report_due`], [`status_patch`]); the host is read through [`NodeProbe`]. A failure
//! never ends the loop: registration retries with a growing pause, a failed report is
//! retried at the next tick, and a Node deleted by an admin is registered again. Under
//! the node authorizer a node may create, get and patch only its own Node, all this does.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{SubsecRound as _, Utc};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::client::bounded;
use crate::node::capacity::{EvictionThresholds, Pids};
use crate::node::conditions::Conditions;
use crate::node::config::NodeConfig;
use crate::node::host::{self, HostFacts, HostPaths};
use crate::node::status::{node, node_status, status_changed};

/// The longest pause between registration attempts (upstream's).
const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(7);
/// The first pause between registration attempts.
const FIRST_REGISTER_BACKOFF: Duration = Duration::from_millis(100);
/// The annotation saying the attach/detach controller manages the node's volumes.
const ATTACH_DETACH_ANNOTATION: &str = "volumes.kubernetes.io/controller-managed-attach-detach";
/// The labels the kubelet keeps right on a Node registered before (upstream's default
/// labels); the operator's other labels are set at creation only, as upstream.
const DEFAULT_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// How the node registers and reports.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's name, labels, taints, max pods, kubelet port, provider id.
    pub node: NodeConfig,
    /// `--register-node`: create the Node when absent. Without it, only an existing Node's
    /// status is reported.
    pub register: bool,
    /// `--node-status-update-frequency`: how often the status is computed.
    pub update_frequency: Duration,
    /// `nodeStatusReportFrequency`: the longest time between reports of an unchanged
    /// status.
    pub report_frequency: Duration,
    /// The hard eviction thresholds (allocatable and pressure).
    pub thresholds: EvictionThresholds,
}

/// What one look at the host finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// CPUs, memory, filesystems, kernel, OS, machine ids.
    pub host: HostFacts,
    /// Process ids in use, when readable.
    pub pids: Option<Pids>,
    /// The node's InternalIP addresses.
    pub node_ips: Vec<IpAddr>,
    /// Why the node is not ready (empty: it is).
    pub not_ready: Vec<String>,
}

/// The OS side of a status computation: looks at the host (blocking).
pub trait NodeProbe: Send + Sync + 'static {
    /// The host now.
    fn observe(&self) -> anyhow::Result<Observation>;
}

/// The real host: facts from `paths`, addresses from `--node-ip` or the interface of the
/// default route, readiness from the runtime's binaries being in place.
#[derive(Debug, Clone)]
pub struct HostProbe {
    /// Where the host's facts are read.
    pub paths: HostPaths,
    /// `--node-ip`; empty: the default route's interface's addresses.
    pub node_ips: Vec<IpAddr>,
    /// The binaries pods need (`peapod-runtime`, `peapod-shim`): one missing means the
    /// container runtime is down.
    pub runtime_binaries: Vec<PathBuf>,
}

impl NodeProbe for HostProbe {
    fn observe(&self) -> anyhow::Result<Observation> {
        let host = HostFacts::read(&self.paths).context("reading the host's facts")?;
        let node_ips = if self.node_ips.is_empty() {
            // This blocking thread is in the kubelet's own network namespace: the node's.
            crate::network::node_addresses()
        } else {
            self.node_ips.clone()
        };
        let not_ready = self
            .runtime_binaries
            .iter()
            .filter(|path| !path.exists())
            .map(|path| format!("container runtime is down: {} is missing", path.display()))
            .collect();
        Ok(Observation {
            host,
            pids: host::pids(&self.paths).ok(),
            node_ips,
            not_ready,
        })
    }
}

/// Register the node and report its status, forever, on a task of its own. The receiver
/// gives the Node's uid once registered (None again while it is being re-registered),
/// for the Lease's owner reference and whoever else needs to know.
pub fn spawn(
    client: kube::Client,
    settings: NodeSettings,
    probe: Arc<dyn NodeProbe>,
) -> watch::Receiver<Option<String>> {
    let (uid, uid_rx) = watch::channel(None);
    let reporter = Reporter {
        api: Api::all(client),
        settings,
        probe,
        conditions: Conditions::default(),
        server: None,
        last_report: None,
        uid,
    };
    tokio::spawn(reporter.run());
    uid_rx
}

/// The metadata patch (a JSON merge patch) that brings a Node registered before in line
/// with the one this kubelet would create (`initial`), as upstream reconciles: the
/// default labels it sets and the attach/detach annotation. Taints, the operator's other
/// labels and the spec are left as the cluster has them. None: nothing to change.
pub fn reconcile_existing(existing: &Node, initial: &Node) -> Option<Value> {
    let existing_labels = existing.metadata.labels.clone().unwrap_or_default();
    let initial_labels = initial.metadata.labels.clone().unwrap_or_default();
    let mut labels = Map::new();
    for key in DEFAULT_LABELS {
        let Some(want) = initial_labels.get(*key) else {
            continue;
        };
        if existing_labels.get(*key) != Some(want) {
            // An empty value is not set but removed, as upstream does.
            let value = if want.is_empty() {
                Value::Null
            } else {
                Value::String(want.clone())
            };
            labels.insert(key.to_string(), value);
        }
    }
    let annotation = |n: &Node| {
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ATTACH_DETACH_ANNOTATION).cloned())
    };
    let mut metadata = Map::new();
    if !labels.is_empty() {
        metadata.insert("labels".to_string(), Value::Object(labels));
    }
    let want = annotation(initial);
    if annotation(existing) != want {
        metadata.insert(
            "annotations".to_string(),
            json!({ ATTACH_DETACH_ANNOTATION: want }),
        );
    }
    (!metadata.is_empty()).then(|| json!({ "metadata": metadata }))
}

/// The Node's status once this kubelet's part (`ours`) is set on what the API server has
/// (`server`): addresses, daemon endpoints and nodeInfo replaced; capacity and
/// allocatable entries set, others (extended resources) kept; conditions replaced by
/// type, others' (e.g. NetworkUnavailable) kept; the rest as the server has it.
pub fn apply_status(server: &NodeStatus, ours: &NodeStatus) -> NodeStatus {
    let mut status = server.clone();
    status.addresses = ours.addresses.clone();
    status.daemon_endpoints = ours.daemon_endpoints.clone();
    status.node_info = ours.node_info.clone();
    for (target, source) in [
        (&mut status.capacity, &ours.capacity),
        (&mut status.allocatable, &ours.allocatable),
    ] {
        let map = target.get_or_insert_with(Default::default);
        map.extend(source.clone().unwrap_or_default());
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for condition in ours.conditions.iter().flatten() {
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(slot) => *slot = condition.clone(),
            None => conditions.push(condition.clone()),
        }
    }
    status
}

/// Whether to report now: on a change, and otherwise once `frequency` has passed since
/// the last report (at once when none was made).
pub fn report_due(
    changed: bool,
    last_report: Option<Instant>,
    now: Instant,
    frequency: Duration,
) -> bool {
    changed || last_report.is_none_or(|at| now.duration_since(at) >= frequency)
}

/// The strategic merge patch of `nodes/<name>/status` from `server` to `new`: the
/// fields that differ, conditions by type (each carries its fresh heartbeat). Addresses
/// are merged by type, which cannot tell two InternalIPs apart, so a changed list
/// replaces the old one whole, as upstream patches it.
pub fn status_patch(server: &NodeStatus, new: &NodeStatus) -> Value {
    let old = serde_json::to_value(server).unwrap_or_default();
    let new_value = serde_json::to_value(new).unwrap_or_default();
    let mut patch = Map::new();
    for (key, value) in new_value.as_object().into_iter().flatten() {
        let before = old.get(key);
        if before == Some(value) {
            continue;
        }
        let value = match (key.as_str(), value) {
            ("conditions", Value::Array(conditions)) => {
                let before = before.and_then(Value::as_array);
                let changed: Vec<Value> = conditions
                    .iter()
                    .filter(|c| !before.is_some_and(|b| b.contains(c)))
                    .cloned()
                    .collect();
                Value::Array(changed)
            }
            ("addresses", Value::Array(addresses))
                if before
                    .and_then(Value::as_array)
                    .is_some_and(|b| !b.is_empty()) =>
            {
                let mut replaced = addresses.clone();
                replaced.push(json!({ "$patch": "replace" }));
                Value::Array(replaced)
            }
            _ => value.clone(),
        };
        patch.insert(key.clone(), value);
    }
    json!({ "status": patch })
}

/// The registration and status loop's state.
struct Reporter {
    api: Api<Node>,
    settings: NodeSettings,
    probe: Arc<dyn NodeProbe>,
    /// The conditions' transition times.
    conditions: Conditions,
    /// The Node as the API server last returned it; None: (re-)register first.
    server: Option<Node>,
    last_report: Option<Instant>,
    uid: watch::Sender<Option<String>>,
}

impl Reporter {
    /// How long one request may take: the update period, at least 10 s.
    fn request_timeout(&self) -> Duration {
        self.settings.update_frequency.max(Duration::from_secs(10))
    }

    async fn run(mut self) {
        let mut interval = tokio::time::interval(self.settings.update_frequency);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = self.sync().await {
                tracing::warn!(node = %self.settings.node.name, "node status: {error:#}");
            }
        }
    }

    /// One status computation: register when needed, then report if due.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let server = match self.server.take() {
            Some(node) => node,
            None if self.settings.register => self.register().await,
            None => {
                let node = bounded(
                    self.request_timeout(),
                    self.api.get(&self.settings.node.name),
                )
                .await
                .context("reading the Node (--register-node=false: it must exist)")?;
                self.conditions.seed(
                    node.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_deref())
                        .unwrap_or_default(),
                );
                node
            }
        };
        let uid = server.metadata.uid.clone();
        self.uid.send_if_modified(|known| {
            let moved = *known != uid;
            *known = uid;
            moved
        });
        self.server = Some(server);
        let observation = self.observe().await?;
        let ours = self.status(&observation);
        let server = self
            .server
            .as_ref()
            .and_then(|n| n.status.clone())
            .unwrap_or_default();
        let merged = apply_status(&server, &ours);
        let now = Instant::now();
        let changed = status_changed(&server, &merged);
        if !report_due(
            changed,
            self.last_report,
            now,
            self.settings.report_frequency,
        ) {
            return Ok(());
        }
        let patch = status_patch(&server, &merged);
        let name = &self.settings.node.name;
        let (params, patch) = (PatchParams::default(), Patch::Strategic(patch));
        let call = self.api.patch_status(name, &params, &patch);
        match bounded(self.request_timeout(), call).await {
            Ok(node) => {
                self.server = Some(node);
                self.last_report = Some(now);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                tracing::warn!(node = %name, "the Node was deleted; registering it again");
                self.server = None;
                self.last_report = None;
                self.uid.send_replace(None);
                Ok(())
            }
            Err(error) => Err(error).with_context(|| format!("patching the status of Node {name}")),
        }
    }

    /// Look at the host on a blocking thread.
    async fn observe(&self) -> anyhow::Result<Observation> {
        let probe = self.probe.clone();
        tokio::task::spawn_blocking(move || probe.observe())
            .await
            .context("the host probe panicked")?
    }

    /// This kubelet's status for `observation`, now.
    fn status(&mut self, observation: &Observation) -> NodeStatus {
        let pressure = self
            .settings
            .thresholds
            .pressure(&observation.host, observation.pids);
        // Whole seconds: the API keeps condition times so, and a transition time held
        // finer here would differ from the server's copy at every comparison.
        let now = Utc::now().trunc_subsecs(0);
        let conditions = self
            .conditions
            .observe(pressure, &observation.not_ready, now);
        let config = NodeConfig {
            node_ips: observation.node_ips.clone(),
            ..self.settings.node.clone()
        };
        node_status(
            &config,
            &observation.host,
            &self.settings.thresholds,
            conditions,
        )
    }

    /// Create the Node, or take over and reconcile the one registered before; retried
    /// with a growing pause until it works.
    async fn register(&mut self) -> Node {
        let mut pause = FIRST_REGISTER_BACKOFF;
        loop {
            match self.try_register().await {
                Ok(node) => return node,
                Err(error) => tracing::warn!(
                    node = %self.settings.node.name,
                    "registering the node failed, retrying in {pause:?}: {error:#}"
                ),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_REGISTER_BACKOFF);
        }
    }

    async fn try_register(&mut self) -> anyhow::Result<Node> {
        let name = self.settings.node.name.clone();
        let observation = self.observe().await?;
        let status = self.status(&observation);
        let config = NodeConfig {
            node_ips: observation.node_ips.clone(),
            ..self.settings.node.clone()
        };
        let initial = node(&config, &observation.host, status);
        let limit = self.request_timeout();
        match bounded(limit, self.api.create(&PostParams::default(), &initial)).await {
            Ok(created) => {
                tracing::info!(node = %name, "registered the node");
                // It was created with its status: the next report is due on a change or
                // after the report period.
                self.last_report = Some(Instant::now());
                return Ok(created);
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() || status.code == 409 => {}
            Err(error) => return Err(error).with_context(|| format!("creating Node {name}")),
        }
        let existing = bounded(limit, self.api.get(&name))
            .await
            .with_context(|| format!("reading the existing Node {name}"))?;
        tracing::info!(node = %name, "the node was registered before; reconciling it");
        let existing_conditions = existing
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        // Keep the cluster's transition times; the conditions computed above for the
        // Node to create are recomputed at the first report.
        self.conditions = Conditions::default();
        self.conditions.seed(&existing_conditions);
        self.last_report = None;
        match reconcile_existing(&existing, &initial) {
            Some(patch) => bounded(
                limit,
                self.api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch)),
            )
            .await
            .with_context(|| format!("reconciling the labels of the existing Node {name}")),
            None => Ok(existing),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use k8s_openapi::api::core::v1::NodeCondition;

    use super::*;
    use crate::node::capacity::{binary, Pressure};
    use crate::node::config::{parse_labels, parse_taints};

    /// A Node as a real API server returns it for a kubelet registered a while ago.
    fn existing() -> Node {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node/fixtures/existing-node.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn initial() -> Node {
        let mut config = NodeConfig::new("node-a", vec!["10.0.0.5".parse().unwrap()]);
        config.labels = parse_labels("node.kubernetes.io/instance-type=big,team=web").unwrap();
        config.taints = parse_taints("dedicated=gpu:NoSchedule").unwrap();
        let host = HostFacts {
            hostname: "node-a".to_string(),
            cpus: 4,
            memory_bytes: 8 << 30,
            ..HostFacts::default()
        };
        let conditions = Conditions::default().observe(Pressure::default(), &[], Utc::now());
        let status = node_status(&config, &host, &EvictionThresholds::default(), conditions);
        node(&config, &host, status)
    }

    #[test]
    fn an_existing_node_gets_the_default_labels_only() {
        let patch = reconcile_existing(&existing(), &initial()).unwrap();
        // The fixture was registered under another hostname and without an instance
        // type; its admin-set labels and taints stay, the operator's `team` label is
        // creation-only as upstream.
        assert_eq!(
            patch,
            json!({ "metadata": { "labels": {
                "kubernetes.io/hostname": "node-a",
                "node.kubernetes.io/instance-type": "big"
            }}})
        );
        let mut same = existing();
        same.metadata.labels = initial().metadata.labels;
        assert_eq!(reconcile_existing(&same, &initial()), None);
        let mut no_annotation = same.clone();
        no_annotation.metadata.annotations = None;
        assert_eq!(
            reconcile_existing(&no_annotation, &initial()),
            Some(json!({ "metadata": { "annotations": { ATTACH_DETACH_ANNOTATION: "true" }}}))
        );
    }

    #[test]
    fn our_status_is_set_on_the_servers_keeping_what_others_set() {
        let server = existing().status.unwrap();
        let ours = initial().status.unwrap();
        let merged = apply_status(&server, &ours);
        let kinds: Vec<_> = merged
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "NetworkUnavailable",
                "MemoryPressure",
                "DiskPressure",
                "PIDPressure",
                "Ready"
            ],
            "the CNI's condition is kept, ours replaced in place"
        );
        let capacity = merged.capacity.unwrap();
        assert_eq!(
            capacity["example.com/gpu"].0, "2",
            "extended resources kept"
        );
        assert_eq!(capacity["memory"], binary(8 << 30));
        assert_eq!(merged.addresses, ours.addresses);
        assert_eq!(
            merged.images, server.images,
            "fields we do not set are kept"
        );
    }

    #[test]
    fn reports_on_change_or_when_the_period_passed() {
        let now = Instant::now();
        let period = Duration::from_secs(300);
        assert!(report_due(false, None, now, period), "never reported");
        assert!(!report_due(
            false,
            Some(now),
            now + Duration::from_secs(10),
            period
        ));
        assert!(report_due(
            true,
            Some(now),
            now + Duration::from_secs(10),
            period
        ));
        assert!(report_due(false, Some(now), now + period, period));
    }

    #[test]
    fn the_patch_carries_changes_and_fresh_heartbeats() {
        let server = existing().status.unwrap();
        let mut ours = server.clone();
        for condition in ours.conditions.iter_mut().flatten() {
            if condition.type_ == "Ready" {
                condition.last_heartbeat_time = Some(crate::pod::status::time(Utc::now()));
            }
        }
        let patch = status_patch(&server, &ours);
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["type"], "Ready");
        assert_eq!(
            conditions[0]["lastTransitionTime"],
            serde_json::to_value(&server.conditions.as_ref().unwrap()[4].last_transition_time)
                .unwrap(),
            "the transition time stays"
        );
        assert!(
            patch["status"].get("capacity").is_none(),
            "unchanged fields are left out"
        );
        ours.addresses.as_mut().unwrap()[0].address = "10.0.0.9".to_string();
        let patch = status_patch(&server, &ours);
        let addresses = patch["status"]["addresses"].as_array().unwrap();
        assert_eq!(addresses.last().unwrap(), &json!({ "$patch": "replace" }));
        assert_eq!(addresses[0]["address"], "10.0.0.9");
    }

    #[test]
    fn existing_transition_times_are_kept_across_a_restart() {
        let server = existing().status.unwrap();
        let mut conditions = Conditions::default();
        conditions.seed(server.conditions.as_deref().unwrap());
        let now = Utc::now();
        let observed: Vec<NodeCondition> = conditions.observe(Pressure::default(), &[], now);
        let ready = observed.iter().find(|c| c.type_ == "Ready").unwrap();
        let before = server
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.last_transition_time, before.last_transition_time);
        assert_eq!(
            ready.last_heartbeat_time,
            Some(crate::pod::status::time(now))
        );
    }
}
