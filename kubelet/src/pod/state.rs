//! What a pod worker observed of its pod: the sandbox, each container's current and last
//! instance, the events. Plain data; `status` turns it into a v1 `PodStatus`.

use std::net::IpAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, Pod};

/// Lock a pod's state; a worker that panicked holding it leaves it readable.
pub fn lock<T>(state: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The most events kept per pod (upstream's event store ages them out instead).
const MAX_EVENTS: usize = 100;

/// The sandbox a pod runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// `<namespace>_<name>_<uid>`.
    pub name: String,
    /// The pinned network namespace.
    pub netns: PathBuf,
    /// The pod's IPs from CNI, first the primary one.
    pub ips: Vec<IpAddr>,
}

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    /// Exit code (128 + signal for a signal).
    pub exit_code: i32,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Completed, Error, OOMKilled, or why it could not run (`StartError`, `ContainerStatusUnknown`).
    pub reason: String,
    /// A message for the reason, if any.
    pub message: Option<String>,
    /// When it started (None if it never did).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The runtime's id of the instance.
    pub container_id: Option<String>,
}

/// A container's current state, as `ContainerStatus.state` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Not running: why (`ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`,
    /// `ErrImagePull`, `CreateContainerConfigError`, ...).
    Waiting {
        /// The reason.
        reason: String,
        /// A message for it.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// Ended, and not (yet) restarted.
    Terminated(Terminated),
}

/// One container of the pod (init or app).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// The container's name in the pod.
    pub name: String,
    /// The image as the pod names it.
    pub image: String,
    /// The image's id once resolved (`<name>@sha256:...` of the config).
    pub image_id: Option<String>,
    /// The runtime id of the current (or last) instance.
    pub id: Option<String>,
    /// The shim supervising the current instance.
    pub shim_pid: Option<i32>,
    /// How often it was restarted.
    pub restart_count: i32,
    /// What it does now.
    pub current: Current,
    /// How its previous instance ended.
    pub last: Option<Terminated>,
    /// The current instance's CRI log.
    pub log_path: Option<PathBuf>,
    /// The previous instance's CRI log.
    pub previous_log_path: Option<PathBuf>,
    /// The current instance's exit record.
    pub exit_file: Option<PathBuf>,
    /// Running and past its startup probe (if it has one): `ContainerStatus.started`.
    pub started: bool,
    /// Running and passing its readiness probe (if it has one): `ContainerStatus.ready`.
    pub ready: bool,
}

impl ContainerState {
    /// A container that has not been created yet.
    pub fn new(name: &str, image: &str, reason: &str) -> ContainerState {
        ContainerState {
            name: name.to_string(),
            image: image.to_string(),
            image_id: None,
            id: None,
            shim_pid: None,
            restart_count: 0,
            current: Current::Waiting {
                reason: reason.to_string(),
                message: None,
            },
            last: None,
            log_path: None,
            previous_log_path: None,
            exit_file: None,
            started: false,
            ready: false,
        }
    }

    /// Whether the current instance runs.
    pub fn running(&self) -> bool {
        matches!(self.current, Current::Running { .. })
    }

    /// How the latest instance ended, if it has: the current state when terminated, else
    /// the last state while waiting to restart.
    pub fn ended(&self) -> Option<&Terminated> {
        match &self.current {
            Current::Terminated(t) => Some(t),
            Current::Waiting { .. } => self.last.as_ref(),
            Current::Running { .. } => None,
        }
    }

    /// Put the container in a waiting state (the last termination stays as it was).
    pub fn wait(&mut self, reason: &str, message: Option<String>) {
        if let Current::Terminated(t) = &self.current {
            self.last = Some(t.clone());
        }
        self.current = Current::Waiting {
            reason: reason.to_string(),
            message,
        };
    }
}

/// Everything known about one pod.
#[derive(Debug, Clone)]
pub struct PodState {
    /// The pod as desired (spec, metadata).
    pub pod: Pod,
    /// Its sandbox, once made.
    pub sandbox: Option<SandboxInfo>,
    /// Init containers, in spec order.
    pub init: Vec<ContainerState>,
    /// App containers, in spec order.
    pub containers: Vec<ContainerState>,
    /// When the kubelet took the pod on (`status.startTime`).
    pub start_time: DateTime<Utc>,
    /// Set once the pod is being stopped (shown as `metadata.deletionTimestamp`).
    pub deleting_since: Option<DateTime<Utc>>,
    /// When the pod became Ready, Initialized, ... (condition transition times).
    pub transitions: Transitions,
    /// Events about the pod, oldest first.
    pub events: Vec<Event>,
    /// Why the pod failed for good, if it did (`status.reason`, `status.message`), e.g.
    /// `DeadlineExceeded`.
    pub failure: Option<(String, String)>,
}

/// When each pod condition last changed, kept so `lastTransitionTime` is stable.
#[derive(Debug, Clone, Default)]
pub struct Transitions {
    /// (condition type, status, since)
    pub seen: Vec<(String, bool, DateTime<Utc>)>,
}

impl Transitions {
    /// The time condition `kind` has had `status`, recording `now` on a change.
    pub fn observe(&mut self, kind: &str, status: bool, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.seen.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, s, since)) if *s == status => *since,
            Some(entry) => {
                entry.1 = status;
                entry.2 = now;
                now
            }
            None => {
                self.seen.push((kind.to_string(), status, now));
                now
            }
        }
    }
}

impl PodState {
    /// A pod just taken on: every container waiting.
    pub fn new(pod: Pod, now: DateTime<Utc>) -> PodState {
        let spec = pod.spec.clone().unwrap_or_default();
        let waiting = |c: &k8s_openapi::api::core::v1::Container, reason: &str| {
            ContainerState::new(&c.name, c.image.as_deref().unwrap_or_default(), reason)
        };
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        let app_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        PodState {
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| waiting(c, "PodInitializing"))
                .collect(),
            containers: spec
                .containers
                .iter()
                .map(|c| waiting(c, app_reason))
                .collect(),
            pod,
            sandbox: None,
            start_time: now,
            deleting_since: None,
            transitions: Transitions::default(),
            events: Vec::new(),
            failure: None,
        }
    }

    /// A container by name, init containers first.
    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.init
            .iter()
            .chain(&self.containers)
            .find(|c| c.name == name)
    }

    /// A container by name, for changing it.
    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.init
            .iter_mut()
            .chain(self.containers.iter_mut())
            .find(|c| c.name == name)
    }

    /// Record an event, dropping the oldest beyond [`MAX_EVENTS`]; a repeat of the last
    /// event of the same reason and message only bumps its count, as the event recorder does.
    pub fn record(&mut self, event: Event) {
        if let Some(last) = self
            .events
            .iter_mut()
            .rev()
            .find(|e| e.reason == event.reason && e.message == event.message)
        {
            last.count = Some(last.count.unwrap_or(1) + 1);
            last.last_timestamp = event.last_timestamp;
            return;
        }
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(event);
    }
}
