//! The seam between the local API and the pod manager: what the API asks of the node.
//!
//! The HTTP handlers only see this trait, so they are tested against an in-memory node
//! and the pod manager is tested without HTTP.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, Pod};

/// One container of a pod, as the API needs it for logs and exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime's id of the container's current instance; None before it was created.
    pub id: Option<String>,
    /// Whether that instance runs now (exec needs it to).
    pub running: bool,
    /// The current instance's CRI log (`/var/log/pods/<ns>_<pod>_<uid>/<c>/<n>.log`).
    pub log_path: Option<PathBuf>,
    /// The log of the instance before it (`--previous`); None if there was none.
    pub previous_log_path: Option<PathBuf>,
    /// The file whose existence says the current instance has ended (the shim's exit
    /// record): a followed log stops once it exists and the log is drained.
    pub exit_file: Option<PathBuf>,
}

/// How to reach into a pod: the runtime that runs its containers, and its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeRef {
    /// The `peapod-runtime` executable (exec runs `<binary> --root <root> exec ...`).
    pub binary: PathBuf,
    /// The runtime's state root.
    pub root: PathBuf,
}

/// Where a running pod's usage is counted, for `/stats/summary` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroups {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// When the node started the pod.
    pub start_time: DateTime<Utc>,
    /// The pod cgroup, from each hierarchy's root (`/kubepods/besteffort/pod<uid>`).
    pub cgroup: PathBuf,
    /// Its running containers.
    pub containers: Vec<ContainerCgroup>,
}

/// Where a running container's usage is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The container's name in the pod.
    pub name: String,
    /// When its current instance started.
    pub start_time: DateTime<Utc>,
    /// Its cgroup, from each hierarchy's root (the pod cgroup and the runtime's id).
    pub cgroup: PathBuf,
    /// Its current CRI log file.
    pub log_path: Option<PathBuf>,
}

/// Why the node cannot answer; the API turns it into a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// No such pod (404 NotFound: `pods "<name>" not found`).
    #[error("pods \"{name}\" not found")]
    PodNotFound {
        /// The pod's name.
        name: String,
    },
    /// The pod has no such container (400 BadRequest, as the kubelet answers).
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// The request cannot be served in the container's current state (400 BadRequest),
    /// e.g. exec into a container that does not run, or `--previous` with no previous.
    #[error("{0}")]
    BadRequest(String),
    /// Anything else (500 InternalError).
    #[error("{0}")]
    Internal(String),
}

/// What the local API serves. Implemented by the pod manager.
pub trait Node: Send + Sync + 'static {
    /// The node's name (pods' `spec.nodeName`).
    fn node_name(&self) -> String;
    /// Every pod the node knows of (desired or still being torn down), with its status.
    fn pods(&self) -> Vec<Pod>;
    /// Events about one pod, oldest first (`involvedObject` names it).
    fn events(&self, namespace: &str, name: &str) -> Vec<Event>;
    /// One container of a pod (an init container or an app container).
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerRef, NodeError>;
    /// The runtime that runs the node's containers.
    fn runtime(&self) -> RuntimeRef;
    /// The pinned network namespace of a pod (port-forward dials from inside it).
    fn netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, NodeError>;
    /// The manifests folder that apply/delete write into (the folder source watches it).
    fn manifests_dir(&self) -> PathBuf;
    /// The manifest file that defines a pod (by `namespace/name`), as the folder source
    /// last read it; None for a pod no file defines.
    fn manifest_file(&self, namespace: &str, name: &str) -> Option<PathBuf>;
    /// The cgroups of the pods that have a sandbox and of their running containers (for
    /// stats and metrics); none by default.
    fn pod_cgroups(&self) -> Vec<PodCgroups> {
        Vec::new()
    }
}
