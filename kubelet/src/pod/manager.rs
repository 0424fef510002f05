//! The pod manager: one [`Worker`] per pod, fed by the pod source's events, and the
//! node's view of its pods for the local API ([`Node`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, Pod};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::{ContainerRef, Node, NodeError, RuntimeRef};
use crate::source::{full_name, SourceEvent};

use super::cri::{sandbox_name, Cri};
use super::state::{lock, Current, PodState};
use super::status;
use super::worker::{Command, Worker};

/// A pod's worker and what it reports.
struct Entry {
    uid: String,
    state: Arc<Mutex<PodState>>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// The node's pods.
pub struct PodManager {
    cri: Arc<Cri>,
    manifests_dir: PathBuf,
    /// Pods by `namespace/name`; a pod being replaced or removed stays until its worker
    /// is done, so `peapod get pods` shows it Terminating.
    pods: Mutex<BTreeMap<String, Entry>>,
    /// Workers taking down pods that another pod of the same name replaces.
    replaced: Mutex<Vec<Entry>>,
    /// Pod sources that have not announced their first full listing yet: orphaned
    /// sandboxes are removed only once every source has (the folder is one).
    unsynced: AtomicUsize,
    /// Pods whose workers finished since the last [`PodManager::take_terminated`], with
    /// their final status, for the API server's status manager (bounded).
    terminated: Mutex<Vec<Pod>>,
}

/// The most finished pods kept for a status manager that does not collect them.
const MAX_TERMINATED: usize = 256;

impl PodManager {
    /// A manager running pods with `cri`; `manifests_dir` is what apply/delete write to.
    pub fn new(cri: Cri, manifests_dir: PathBuf) -> Arc<PodManager> {
        Arc::new(PodManager {
            cri: Arc::new(cri),
            manifests_dir,
            pods: Mutex::new(BTreeMap::new()),
            replaced: Mutex::new(Vec::new()),
            unsynced: AtomicUsize::new(1),
            terminated: Mutex::new(Vec::new()),
        })
    }

    /// Announce one more pod source (beside the manifests folder) whose
    /// [`SourceEvent::Synced`] the orphan clean-up must wait for. Call it before the
    /// sources start.
    pub fn add_source(&self) {
        self.unsynced.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether every pod source has announced its first full listing.
    pub fn synced(&self) -> bool {
        self.unsynced.load(Ordering::SeqCst) == 0
    }

    /// A pod already running under the same UID changed in its metadata or spec (e.g. new
    /// labels from the API server): keep it running and show the new object. A pod the
    /// manager does not run under that UID is left alone.
    pub fn refresh(&self, pod: Pod) {
        let key = full_name(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(state) = self
            .lock_pods()
            .get(&key)
            .filter(|e| e.uid == uid)
            .map(|e| e.state.clone())
        else {
            return;
        };
        let mut state = lock(&state);
        let metadata = &mut state.pod.metadata;
        metadata.labels = pod.metadata.labels;
        metadata.annotations = pod.metadata.annotations;
        metadata.deletion_timestamp = pod.metadata.deletion_timestamp;
        metadata.deletion_grace_period_seconds = pod.metadata.deletion_grace_period_seconds;
        metadata.resource_version = pod.metadata.resource_version;
        let pod = state.pod.clone();
        drop(state);
        self.cri.observer().changed();
        // New labels and annotations reach the pod's downwardAPI volumes.
        let cri = self.cri.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cri.refresh_volumes(&pod) {
                tracing::warn!(pod = %full_name(&pod), "refreshing the pod's volumes: {e}");
            }
        });
    }

    /// The pods whose workers finished since the last call, each with its final status.
    pub fn take_terminated(&self) -> Vec<Pod> {
        std::mem::take(&mut *lock(&self.terminated))
    }

    /// Where pod state changes and events are announced, for reporters to the API server.
    pub fn observer(&self) -> Arc<super::observer::Observer> {
        self.cri.observer().clone()
    }

    /// The node's container operations (the API data source refreshes volumes with it).
    pub fn cri(&self) -> Arc<Cri> {
        self.cri.clone()
    }

    /// Apply the source's events until it ends.
    pub async fn run(self: Arc<Self>, mut events: mpsc::Receiver<SourceEvent>) {
        while let Some(event) = events.recv().await {
            self.handle(event);
        }
    }

    /// Apply one source event.
    pub fn handle(self: &Arc<Self>, event: SourceEvent) {
        match event {
            SourceEvent::Add(pod) => self.add(pod),
            SourceEvent::Update(pod) => {
                let key = full_name(&pod);
                if let Some(old) = self.lock_pods().remove(&key) {
                    tracing::info!(pod = %key, "manifest changed: restarting the pod");
                    let _ = old.commands.try_send(Command::Stop(None));
                    if !old.task.is_finished() {
                        self.lock_replaced().push(old);
                    }
                }
                self.add(pod);
            }
            SourceEvent::Remove(pod) => {
                let key = full_name(&pod);
                self.stop(&key, None);
            }
            SourceEvent::Error { file, message } => {
                tracing::error!(file = %file.display(), "{message}");
            }
            SourceEvent::Synced => {
                let before = self
                    .unsynced
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                if before != Ok(1) {
                    return;
                }
                let me = self.clone();
                tokio::spawn(async move { me.remove_orphans().await });
            }
        }
    }

    /// Start a worker for a new pod. A pod replacing one of the same name starts once
    /// the old one is down (they may share ports or files).
    fn add(self: &Arc<Self>, mut pod: Pod) {
        let key = full_name(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node_name = self.cri.config().node_name.clone();
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name.get_or_insert(node_name);
        }
        // The kubelet takes the pod on now: that is its creation, as far as this node
        // knows (the API server stamps it for pods that come from there).
        pod.metadata
            .creation_timestamp
            .get_or_insert_with(|| status::time(Utc::now()));
        let state = Arc::new(Mutex::new(PodState::new(pod.clone(), Utc::now())));
        let (commands, receiver) = mpsc::channel(4);
        let worker = Worker::new(self.cri.clone(), pod, state.clone());
        let before = self.take_replaced_tasks(&key);
        let task = tokio::spawn(async move {
            for old in before {
                let _ = old.await;
            }
            worker.run(receiver).await;
        });
        tracing::info!(pod = %key, %uid, "pod added");
        let old = self.lock_pods().insert(
            key,
            Entry {
                uid,
                state,
                commands,
                task,
            },
        );
        if let Some(old) = old {
            let _ = old.commands.try_send(Command::Stop(None));
        }
    }

    /// The tasks of replaced workers for `key` that a new worker must wait for.
    fn take_replaced_tasks(&self, key: &str) -> Vec<JoinHandle<()>> {
        let (same, others): (Vec<Entry>, Vec<Entry>) = self
            .lock_replaced()
            .drain(..)
            .partition(|entry| full_name(&lock(&entry.state).pod) == key);
        *self.lock_replaced() = others;
        same.into_iter().map(|entry| entry.task).collect()
    }

    /// Stop a pod and forget it once its worker is done.
    pub fn stop(self: &Arc<Self>, key: &str, grace: Option<i64>) {
        let pods = self.lock_pods();
        let Some(entry) = pods.get(key) else {
            return;
        };
        let _ = entry.commands.try_send(Command::Stop(grace));
        let uid = entry.uid.clone();
        drop(pods);
        let me = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let mut announced = false;
            loop {
                let finished = me
                    .lock_pods()
                    .get(&key)
                    .filter(|e| e.uid == uid)
                    .is_none_or(|e| e.task.is_finished());
                if finished {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                // The worker marks the pod as deleting when it begins to stop it; say so
                // once, so reporters (mirror pods, status) need not wait for the end.
                if !announced {
                    announced = true;
                    me.cri.observer().changed();
                }
            }
            let mut pods = me.lock_pods();
            if pods.get(&key).is_some_and(|e| e.uid == uid) {
                if let Some(entry) = pods.remove(&key) {
                    me.record_terminated(with_status(&mut lock(&entry.state)));
                }
                tracing::info!(pod = %key, "pod removed");
            }
            drop(pods);
            me.cri.observer().changed();
        });
    }

    /// Stop every pod and wait for the workers (the kubelet's shutdown is not this:
    /// pods outlive the kubelet; this is for tests and `--remove-pods-on-exit`).
    pub async fn stop_all(self: &Arc<Self>) {
        let keys: Vec<String> = self.lock_pods().keys().cloned().collect();
        for key in keys {
            self.stop(&key, None);
        }
        while !self.lock_pods().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Take down sandboxes no pod claims (left by a previous run whose pods are gone).
    async fn remove_orphans(&self) {
        let claimed: HashSet<String> = self
            .lock_pods()
            .values()
            .map(|e| sandbox_name(&lock(&e.state).pod))
            .collect();
        let cri = self.cri.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for sandbox in cri.sandboxes() {
                if claimed.contains(sandbox.name()) {
                    continue;
                }
                tracing::info!("removing orphaned sandbox {}", sandbox.name());
                for instance in cri.instances(&sandbox) {
                    cri.kill(&instance.id, Signal::SIGKILL);
                    cri.remove_container(&sandbox, &instance.id);
                }
                if let Err(e) = cri.tear_down(&sandbox) {
                    tracing::error!("removing orphaned sandbox {}: {e}", sandbox.name());
                }
            }
        })
        .await;
    }

    fn record_terminated(&self, pod: Pod) {
        let mut terminated = lock(&self.terminated);
        if terminated.len() >= MAX_TERMINATED {
            terminated.remove(0);
        }
        terminated.push(pod);
    }

    fn lock_pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        lock(&self.pods)
    }

    fn lock_replaced(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        lock(&self.replaced)
    }

    fn state_of(&self, namespace: &str, name: &str) -> Option<Arc<Mutex<PodState>>> {
        self.lock_pods()
            .get(&format!("{namespace}/{name}"))
            .map(|e| e.state.clone())
    }
}

/// The pod with its status, as the API shows it.
fn with_status(state: &mut PodState) -> Pod {
    let now = Utc::now();
    let mut pod = state.pod.clone();
    let host_ip = state.host_ip.map(|ip| ip.to_string());
    pod.status = Some(status::pod_status(state, host_ip.as_deref(), now));
    if let Some(since) = state.deleting_since {
        pod.metadata.deletion_timestamp = Some(status::time(since));
        pod.metadata.deletion_grace_period_seconds = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
    }
    pod
}

/// Where a pod with a sandbox, and its running containers, are counted: the pod cgroup as
/// the sandbox made it (QoS parent, `pod<uid>`) and the runtime's id below it.
fn cgroups_of(state: &PodState, cgroup_root: &std::path::Path) -> Option<crate::api::PodCgroups> {
    state.sandbox.as_ref()?;
    let uid = state.pod.metadata.uid.clone()?;
    let qos = match status::qos_class(&state.pod) {
        "Guaranteed" => runtime::sandbox::Qos::Guaranteed,
        "Burstable" => runtime::sandbox::Qos::Burstable,
        _ => runtime::sandbox::Qos::BestEffort,
    };
    let cgroup = runtime::sandbox::pod_path(cgroup_root, qos, &uid);
    let containers = state
        .containers
        .iter()
        .filter_map(|c| match (&c.id, &c.current) {
            (Some(id), Current::Running { started_at }) => Some(crate::api::ContainerCgroup {
                name: c.name.clone(),
                start_time: *started_at,
                cgroup: cgroup.join(id),
                log_path: c.log_path.clone(),
            }),
            _ => None,
        })
        .collect();
    Some(crate::api::PodCgroups {
        namespace: state
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: state.pod.metadata.name.clone().unwrap_or_default(),
        uid,
        start_time: state.start_time,
        cgroup,
        containers,
    })
}

impl Node for PodManager {
    fn node_name(&self) -> String {
        self.cri.config().node_name.clone()
    }

    fn pods(&self) -> Vec<Pod> {
        let states: Vec<Arc<Mutex<PodState>>> =
            self.lock_pods().values().map(|e| e.state.clone()).collect();
        states.iter().map(|s| with_status(&mut lock(s))).collect()
    }

    fn events(&self, namespace: &str, name: &str) -> Vec<Event> {
        self.state_of(namespace, name)
            .map(|s| lock(&s).events.clone())
            .unwrap_or_default()
    }

    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerRef, NodeError> {
        let state = self
            .state_of(namespace, pod)
            .ok_or_else(|| NodeError::PodNotFound { name: pod.into() })?;
        let state = lock(&state);
        let c = state
            .container(container)
            .ok_or_else(|| NodeError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            })?;
        Ok(ContainerRef {
            id: c.id.clone(),
            running: c.running(),
            log_path: c.log_path.clone(),
            previous_log_path: c.previous_log_path.clone(),
            exit_file: c.exit_file.clone(),
        })
    }

    fn runtime(&self) -> RuntimeRef {
        self.cri.runtime()
    }

    fn netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, NodeError> {
        let state = self
            .state_of(namespace, pod)
            .ok_or_else(|| NodeError::PodNotFound { name: pod.into() })?;
        let state = lock(&state);
        state
            .sandbox
            .as_ref()
            .map(|s| s.netns.clone())
            .ok_or_else(|| NodeError::BadRequest(format!("pod {pod} has no network namespace yet")))
    }

    fn manifests_dir(&self) -> PathBuf {
        self.manifests_dir.clone()
    }

    fn manifest_file(&self, namespace: &str, name: &str) -> Option<PathBuf> {
        crate::source::folder::defining_file(
            &self.manifests_dir,
            &self.node_name(),
            namespace,
            name,
        )
    }

    fn pod_cgroups(&self) -> Vec<crate::api::PodCgroups> {
        let cgroup_root = self.cri.config().sandbox.cgroup_root.clone();
        let states: Vec<Arc<Mutex<PodState>>> =
            self.lock_pods().values().map(|e| e.state.clone()).collect();
        states
            .iter()
            .filter_map(|s| cgroups_of(&lock(s), &cgroup_root))
            .collect()
    }
}
