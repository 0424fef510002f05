//! The pod manager: one [`Worker`] per pod, fed by the pod source's events, and the
//! node's view of its pods for the local API ([`Node`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, Pod};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::{ContainerRef, Node, NodeError, RuntimeRef};
use crate::source::{full_name, SourceEvent};

use super::cri::{sandbox_name, Cri};
use super::state::{lock, PodState};
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
}

impl PodManager {
    /// A manager running pods with `cri`; `manifests_dir` is what apply/delete write to.
    pub fn new(cri: Cri, manifests_dir: PathBuf) -> Arc<PodManager> {
        Arc::new(PodManager {
            cri: Arc::new(cri),
            manifests_dir,
            pods: Mutex::new(BTreeMap::new()),
            replaced: Mutex::new(Vec::new()),
        })
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
            }
            let mut pods = me.lock_pods();
            if pods.get(&key).is_some_and(|e| e.uid == uid) {
                pods.remove(&key);
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
}
