//! The pods the API server binds to this node (`spec.nodeName=<node>`), as a second pod
//! source beside the manifests folder: a list + watch (kube-runtime's watcher: it
//! relists on `410 Gone` and reconnects with back-off) whose events become manager
//! actions.
//!
//! The source keeps what it last saw of each pod ([`View`]), so that a relist changes
//! nothing for pods that are still there (no restart), pods missing from it are stopped,
//! and each event is judged against the pod's previous version ([`on_apply`], pure):
//!
//! - a new pod is admitted ([`super::admission`]) and run, or rejected and never run;
//! - the same UID with new labels, annotations or spec keeps running (the new object is
//!   shown; container changes are not applied, as upstream does not apply them either);
//! - a new UID under the same name replaces the old pod;
//! - `deletionTimestamp` stops the pod with `deletionGracePeriodSeconds`; the status
//!   manager deletes the object once it is down;
//! - the object gone (a DELETE event, or absent from a relist) stops the pod;
//! - mirror pods (`kubernetes.io/config.mirror`) are never run: they are the API's
//!   copies of static pods, kept in the view for [`super::mirror`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod, PodStatus};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;

use super::admission::{self, Rejection, Resources};
use crate::pod::events::{self, Kind};
use crate::pod::state::lock;
use crate::pod::PodManager;
use crate::source::identity::uid;
use crate::source::{full_name, SourceEvent};

/// The annotation that makes a pod a mirror pod; its value is the static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// What the node does with its pods, as the API sources need it: the [`PodManager`],
/// or a recording fake in tests.
pub trait PodRunner: Send + Sync + 'static {
    /// Run a new pod.
    fn run(&self, pod: Pod);
    /// Stop the pod running under this pod's name, then run this one.
    fn replace(&self, pod: Pod);
    /// Show the new version of a running pod (same UID) without restarting it.
    fn refresh(&self, pod: Pod);
    /// Stop the pod `namespace/name` within `grace` seconds (None: its own).
    fn stop(&self, key: &str, grace: Option<i64>);
    /// The API source announced its first full listing.
    fn synced(&self);
    /// Whether every pod source (the folder too) announced its first full listing.
    fn all_synced(&self) -> bool;
    /// Every pod the node runs or is stopping, static ones included, with its status.
    fn pods(&self) -> Vec<Pod>;
    /// Pods whose workers finished since the last call, with their final status.
    fn take_terminated(&self) -> Vec<Pod>;
    /// Wakes when some pod's state may have changed (coalescing).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Record an event about a pod (posted to the API server by the event reporter).
    fn event(&self, event: &Event);
}

impl PodRunner for Arc<PodManager> {
    fn run(&self, pod: Pod) {
        self.handle(SourceEvent::Add(pod));
    }

    fn replace(&self, pod: Pod) {
        self.handle(SourceEvent::Update(pod));
    }

    fn refresh(&self, pod: Pod) {
        PodManager::refresh(self, pod);
    }

    fn stop(&self, key: &str, grace: Option<i64>) {
        PodManager::stop(self, key, grace);
    }

    fn synced(&self) {
        self.handle(SourceEvent::Synced);
    }

    fn all_synced(&self) -> bool {
        PodManager::synced(self)
    }

    fn pods(&self) -> Vec<Pod> {
        crate::api::Node::pods(self.as_ref())
    }

    fn take_terminated(&self) -> Vec<Pod> {
        PodManager::take_terminated(self)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.observer().subscribe()
    }

    fn event(&self, event: &Event) {
        self.observer().event(event);
    }
}

/// Take the pods the API server binds to `node_name` on, report their status and the
/// static pods' mirror pods, on tasks of their own (dropping the handles does not stop
/// them). Call it before the manifests folder is watched: it registers the API as a pod
/// source whose first listing the clean-up of orphaned sandboxes waits for. Pods are
/// admitted against `allocatable` (the Node's, `crate::node::capacity::allocatable`).
pub fn start(
    client: kube::Client,
    manager: Arc<PodManager>,
    node_name: &str,
    allocatable: Resources,
) -> Vec<tokio::task::JoinHandle<()>> {
    manager.add_source();
    let runner: Arc<dyn PodRunner> = Arc::new(manager);
    let pods = Arc::new(ApiPods::default());
    let source = Source::new(runner.clone(), pods.clone(), node_name, allocatable);
    let status = super::pod_status::StatusManager::new(client.clone(), runner, pods, node_name);
    vec![tokio::spawn(source.run(client)), tokio::spawn(status.run())]
}

/// What the node does with one API pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// Handed to the manager to run (it may be stopping by now).
    Running,
    /// Refused by admission: this status is reported, nothing runs.
    Rejected(Box<PodStatus>),
    /// Not run: it had ended, or was being deleted, when first seen.
    NotRun,
}

/// One API pod as last seen, and what the node does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// The latest object from the API server.
    pub pod: Pod,
    /// What the node does with it.
    pub local: Local,
}

/// The API's view of this node's pods, shared by the source (the one writer), the status
/// manager and the mirror pods.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// API pods (mirror pods aside) by `namespace/name`.
    pub pods: BTreeMap<String, Tracked>,
    /// Mirror pods by `namespace/name`.
    pub mirrors: BTreeMap<String, Pod>,
    /// The first full listing has been seen.
    pub synced: bool,
}

/// The [`View`] and a revision that moves on every change of it.
#[derive(Debug)]
pub struct ApiPods {
    view: Mutex<View>,
    revision: watch::Sender<u64>,
}

impl Default for ApiPods {
    fn default() -> ApiPods {
        ApiPods {
            view: Mutex::new(View::default()),
            revision: watch::Sender::new(0),
        }
    }
}

impl ApiPods {
    /// A copy of the view.
    pub fn view(&self) -> View {
        lock(&self.view).clone()
    }

    /// Wakes when the view changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Change the view and announce it.
    pub fn update<T>(&self, change: impl FnOnce(&mut View) -> T) -> T {
        let result = change(&mut lock(&self.view));
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
        result
    }
}

/// A manager action for an API pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run a new pod.
    Run(Pod),
    /// Stop the pod of that name, run this one.
    Replace(Pod),
    /// Same pod, new metadata or spec: show it, keep running.
    Refresh(Pod),
    /// Stop the pod `namespace/name` within `grace` seconds (None: its own).
    Stop {
        /// `namespace/name`.
        key: String,
        /// `deletionGracePeriodSeconds`, if the API gave one.
        grace: Option<i64>,
    },
    /// Admission refused the pod: tell its owner (a Warning event with the reason).
    Reject(Box<Pod>, Rejection),
}

/// Whether a pod is a mirror pod (the API's copy of a static pod).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// What to do when the API shows `pod` (added or modified, or listed), given what was
/// known of its name before; the second value is what is known afterwards. `admit`
/// decides whether a pod seen for the first time may run.
pub fn on_apply(
    known: Option<&Tracked>,
    pod: Pod,
    admit: impl FnOnce(&Pod) -> Result<(), Rejection>,
) -> (Vec<Action>, Tracked) {
    let key = full_name(&pod);
    let Some(known) = known else {
        return first_sight(pod, admit);
    };
    if uid(&known.pod) != uid(&pod) {
        let (actions, tracked) = first_sight(pod, admit);
        if known.local != Local::Running {
            return (actions, tracked);
        }
        let actions = match actions.as_slice() {
            [Action::Run(new)] => vec![Action::Replace(new.clone())],
            _ => std::iter::once(Action::Stop {
                key,
                grace: known.pod.metadata.deletion_grace_period_seconds,
            })
            .chain(actions)
            .collect(),
        };
        return (actions, tracked);
    }
    let mut actions = Vec::new();
    if known.local == Local::Running {
        if changed(&known.pod, &pod) {
            if images(&known.pod) != images(&pod) {
                tracing::info!(pod = %key, "container images changed in the API; a running pod keeps its own (not applied)");
            }
            actions.push(Action::Refresh(pod.clone()));
        }
        if pod.metadata.deletion_timestamp.is_some()
            && known.pod.metadata.deletion_timestamp.is_none()
        {
            actions.push(Action::Stop {
                key,
                grace: pod.metadata.deletion_grace_period_seconds,
            });
        }
    }
    let local = known.local.clone();
    (actions, Tracked { pod, local })
}

/// What to do when the API no longer has the pod `known` (deleted, or absent from a
/// relist).
pub fn on_gone(key: &str, known: &Tracked) -> Vec<Action> {
    match known.local {
        Local::Running => vec![Action::Stop {
            key: key.to_string(),
            grace: known.pod.metadata.deletion_grace_period_seconds,
        }],
        _ => Vec::new(),
    }
}

/// A pod not known under its name before: run it if it has not ended, is not being
/// deleted, and fits.
fn first_sight(
    pod: Pod,
    admit: impl FnOnce(&Pod) -> Result<(), Rejection>,
) -> (Vec<Action>, Tracked) {
    if admission::terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
        return (
            Vec::new(),
            Tracked {
                pod,
                local: Local::NotRun,
            },
        );
    }
    match admit(&pod) {
        Ok(()) => (
            vec![Action::Run(pod.clone())],
            Tracked {
                pod,
                local: Local::Running,
            },
        ),
        Err(rejection) => {
            tracing::warn!(pod = %full_name(&pod), reason = %rejection.reason, "pod rejected: {}", rejection.message);
            let status = admission::rejected_status(&pod, &rejection);
            (
                vec![Action::Reject(Box::new(pod.clone()), rejection)],
                Tracked {
                    pod,
                    local: Local::Rejected(Box::new(status)),
                },
            )
        }
    }
}

/// Whether what the node shows of a pod changed (its status is the node's own).
fn changed(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || old.spec != new.spec
}

fn images(pod: &Pod) -> Vec<Option<&str>> {
    let spec = pod.spec.iter();
    spec.flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| c.image.as_deref())
        .collect()
}

/// The API pod source of one node.
pub struct Source {
    runner: Arc<dyn PodRunner>,
    pods: Arc<ApiPods>,
    node_name: String,
    allocatable: Resources,
}

impl Source {
    /// A source handing `node_name`'s pods to `runner`, admitting them against
    /// `allocatable`, recording what it sees in `pods`.
    pub fn new(
        runner: Arc<dyn PodRunner>,
        pods: Arc<ApiPods>,
        node_name: &str,
        allocatable: Resources,
    ) -> Source {
        Source {
            runner,
            pods,
            node_name: node_name.to_string(),
            allocatable,
        }
    }

    /// Watch the node's pods until the task is dropped. API errors are logged and retried
    /// with back-off; a relist after `410 Gone` or a reconnect changes only what changed.
    pub async fn run(self, client: kube::Client) {
        let api: Api<Pod> = Api::all(client);
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        let mut listed: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Err(e) => {
                    tracing::warn!(node = %self.node_name, "watching the node's pods (retrying): {e}")
                }
                Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    listed
                        .get_or_insert_with(HashSet::new)
                        .insert(full_name(&pod));
                    self.apply(pod);
                }
                Ok(watcher::Event::InitDone) => self.relisted(&listed.take().unwrap_or_default()),
                Ok(watcher::Event::Apply(pod)) => self.apply(pod),
                Ok(watcher::Event::Delete(pod)) => self.deleted(&pod),
            }
        }
    }

    /// The API shows `pod`.
    pub fn apply(&self, pod: Pod) {
        let key = full_name(&pod);
        if is_mirror(&pod) {
            self.pods.update(|view| view.mirrors.insert(key, pod));
            return;
        }
        let known = self.pods.view().pods.get(&key).cloned();
        let (actions, tracked) = on_apply(known.as_ref(), pod, |pod| {
            admission::admit(pod, &self.runner.pods(), &self.allocatable, &self.node_name)
        });
        self.act(actions);
        self.pods.update(|view| view.pods.insert(key, tracked));
    }

    /// The API deleted `pod` (a DELETE event: it is gone, whatever its state).
    pub fn deleted(&self, pod: &Pod) {
        let key = full_name(pod);
        let gone = self.pods.update(|view| {
            if view.mirrors.get(&key).is_some_and(|m| uid(m) == uid(pod)) {
                view.mirrors.remove(&key);
            }
            match view.pods.get(&key) {
                Some(t) if uid(&t.pod) == uid(pod) => view.pods.remove(&key),
                _ => None,
            }
        });
        if let Some(tracked) = gone {
            self.act(on_gone(&key, &tracked));
        }
    }

    /// A full listing ended: what it did not show is gone. The first one completes the
    /// source's sync.
    pub fn relisted(&self, listed: &HashSet<String>) {
        let (gone, first) = self.pods.update(|view| {
            view.mirrors.retain(|key, _| listed.contains(key));
            let keys: Vec<String> = view
                .pods
                .keys()
                .filter(|k| !listed.contains(*k))
                .cloned()
                .collect();
            let gone: Vec<(String, Tracked)> = keys
                .into_iter()
                .filter_map(|k| view.pods.remove(&k).map(|t| (k, t)))
                .collect();
            let first = !view.synced;
            view.synced = true;
            (gone, first)
        });
        for (key, tracked) in gone {
            tracing::info!(pod = %key, "pod no longer in the API server's listing");
            self.act(on_gone(&key, &tracked));
        }
        if first {
            self.runner.synced();
        }
    }

    fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Run(pod) => self.runner.run(pod),
                Action::Replace(pod) => self.runner.replace(pod),
                Action::Refresh(pod) => self.runner.refresh(pod),
                Action::Stop { key, grace } => self.runner.stop(&key, grace),
                Action::Reject(pod, rejection) => self.runner.event(&events::event(
                    &pod,
                    Kind::Warning,
                    &rejection.reason,
                    rejection.message,
                    None,
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the API server sends it (recorded from a v1.32 cluster, trimmed).
    fn api_pod(uid: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "default", "uid": uid,
                "resourceVersion": "4211", "creationTimestamp": "2026-11-22T10:00:00Z",
                "labels": {"app": "web"}
            },
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "nginx", "image": "nginx:1.27",
                                "resources": {"requests": {"cpu": "100m"}}}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30
            },
            "status": {"phase": "Pending", "qosClass": "Burstable"}
        }))
        .expect("a pod")
    }

    fn running(pod: Pod) -> Tracked {
        Tracked {
            pod,
            local: Local::Running,
        }
    }

    fn admitted(_: &Pod) -> Result<(), Rejection> {
        Ok(())
    }

    #[test]
    fn a_new_pod_runs() {
        let (actions, tracked) = on_apply(None, api_pod("u1"), admitted);
        assert_eq!(actions, vec![Action::Run(api_pod("u1"))]);
        assert_eq!(tracked.local, Local::Running);
    }

    #[test]
    fn a_relisted_or_status_only_change_does_nothing() {
        let known = running(api_pod("u1"));
        let mut again = api_pod("u1");
        again.metadata.resource_version = Some("4300".into());
        again.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        });
        let (actions, tracked) = on_apply(Some(&known), again, |_| panic!("no admission"));
        assert!(actions.is_empty());
        assert_eq!(tracked.local, Local::Running);
    }

    #[test]
    fn new_labels_refresh_without_restart() {
        let known = running(api_pod("u1"));
        let mut relabeled = api_pod("u1");
        relabeled
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("tier".into(), "front".into());
        let (actions, _) = on_apply(Some(&known), relabeled.clone(), admitted);
        assert_eq!(actions, vec![Action::Refresh(relabeled)]);
    }

    #[test]
    fn a_new_uid_under_the_same_name_replaces() {
        let known = running(api_pod("u1"));
        let (actions, tracked) = on_apply(Some(&known), api_pod("u2"), admitted);
        assert_eq!(actions, vec![Action::Replace(api_pod("u2"))]);
        assert_eq!(uid(&tracked.pod), "u2");
    }

    #[test]
    fn a_rejected_replacement_stops_the_old_pod() {
        let known = running(api_pod("u1"));
        let reject = |_: &Pod| {
            Err(Rejection {
                reason: "OutOfcpu".into(),
                message: "no room".into(),
            })
        };
        let (actions, tracked) = on_apply(Some(&known), api_pod("u2"), reject);
        assert_eq!(
            actions,
            vec![
                Action::Stop {
                    key: "default/web".into(),
                    grace: None
                },
                Action::Reject(
                    Box::new(api_pod("u2")),
                    Rejection {
                        reason: "OutOfcpu".into(),
                        message: "no room".into()
                    }
                )
            ]
        );
        let Local::Rejected(status) = tracked.local else {
            panic!("rejected: {:?}", tracked.local);
        };
        assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    }

    #[test]
    fn a_deletion_timestamp_stops_gracefully_once() {
        let known = running(api_pod("u1"));
        let mut deleting = api_pod("u1");
        deleting.metadata.deletion_timestamp = known.pod.metadata.creation_timestamp.clone();
        deleting.metadata.deletion_grace_period_seconds = Some(5);
        let (actions, tracked) = on_apply(Some(&known), deleting.clone(), admitted);
        assert_eq!(
            actions,
            vec![Action::Stop {
                key: "default/web".into(),
                grace: Some(5)
            }]
        );
        let (again, _) = on_apply(Some(&tracked), deleting, admitted);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn ended_or_deleting_pods_seen_first_are_not_run() {
        let mut done = api_pod("u1");
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        let (actions, tracked) = on_apply(None, done, |_| panic!("no admission"));
        assert!(actions.is_empty());
        assert_eq!(tracked.local, Local::NotRun);
        let mut deleting = api_pod("u2");
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        let (actions, _) = on_apply(None, deleting, |_| panic!("no admission"));
        assert!(actions.is_empty());
    }

    #[test]
    fn a_pod_gone_from_the_api_stops_if_it_runs() {
        let actions = on_gone("default/web", &running(api_pod("u1")));
        assert_eq!(
            actions,
            vec![Action::Stop {
                key: "default/web".into(),
                grace: None
            }]
        );
        let rejected = Tracked {
            pod: api_pod("u1"),
            local: Local::NotRun,
        };
        assert!(on_gone("default/web", &rejected).is_empty());
    }

    #[test]
    fn mirror_pods_are_recognised() {
        let mut mirror = api_pod("u1");
        mirror
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CONFIG_MIRROR.into(), "abc".into());
        assert!(is_mirror(&mirror));
        assert!(!is_mirror(&api_pod("u1")));
    }
}
