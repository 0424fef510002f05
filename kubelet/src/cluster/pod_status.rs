//! The status manager: reports each API pod's status (and each static pod's, on its
//! mirror pod) to `pods/{name}/status`, and deletes pods whose deletion the node has
//! carried out, as upstream's status manager does.
//!
//! It wakes when a pod's state may have changed (the pod observer's revision) or the API
//! view did, waits [`COALESCE`] so a burst of changes makes one patch per pod, and
//! resyncs every [`RESYNC`] to retry what failed. A status is sent only when it differs
//! from what was last sent and from what the API shows. Each patch carries the pod's UID
//! (`metadata.uid`), so it cannot land on a newer pod of the same name. The decisions are
//! pure ([`plan`]); [`StatusManager`] carries them out.
//!
//! Deletion: once a pod with `deletionTimestamp` is no longer run by the node (its worker
//! finished: containers stopped, sandbox gone), its final status is sent, then the
//! object is deleted with grace 0 and the UID as precondition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::Value;

use super::diff::{pod_status_merge_key, two_way};
use super::mirror::MirrorPods;
use super::pods::{ApiPods, Local, PodRunner, View};
use crate::source::full_name;
use crate::source::identity::{uid, CONFIG_HASH, CONFIG_SOURCE, FILE_SOURCE};

/// Changes within this window after the first make one round of patches.
pub const COALESCE: Duration = Duration::from_millis(100);
/// Everything is compared again this often, to retry failed writes.
pub const RESYNC: Duration = Duration::from_secs(10);

/// One write to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Patch `pods/{name}/status` of the pod with this UID.
    Status {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The UID the patch is for (its precondition).
        uid: String,
        /// The whole status.
        status: Box<PodStatus>,
        /// The patch body: the UID precondition and what differs from the API's status.
        patch: Value,
    },
    /// Delete the pod with this UID, grace 0.
    Delete {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The UID precondition.
        uid: String,
    },
}

/// What the status manager has sent, by pod UID.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// The last status sent (as JSON, at the API's precision).
    pub statuses: HashMap<String, Value>,
    /// Pods deleted (or found gone).
    pub deleted: HashSet<String>,
}

impl Sent {
    /// Forget pods that are no longer in the API view.
    pub fn retain(&mut self, view: &View) {
        let live: HashSet<&str> = view
            .pods
            .values()
            .map(|t| uid(&t.pod))
            .chain(view.mirrors.values().map(uid))
            .collect();
        self.statuses.retain(|u, _| live.contains(u.as_str()));
        self.deleted.retain(|u| live.contains(u.as_str()));
    }
}

/// The writes that bring the API in line with the node: `view` is the API's side,
/// `local` the pods the node runs (with status), `finals` the final pods of finished
/// workers by UID, `sent` what was sent before.
pub fn plan(view: &View, local: &[Pod], finals: &BTreeMap<String, Pod>, sent: &Sent) -> Vec<Write> {
    let local: HashMap<String, &Pod> = local.iter().map(|p| (full_name(p), p)).collect();
    let mut writes = Vec::new();
    for (key, tracked) in &view.pods {
        let api = &tracked.pod;
        let id = uid(api);
        let running = local.get(key).filter(|p| uid(p) == id);
        let desired = match (&tracked.local, running) {
            (_, Some(pod)) => pod.status.clone(),
            (Local::Running, None) => finals
                .get(id)
                .and_then(|p| p.status.clone())
                .map(terminal_phase),
            (Local::Rejected(status), None) => Some(PodStatus::clone(status)),
            (Local::NotRun, None) => None,
        };
        if let Some(status) = desired {
            if let Some(write) = status_write(api, status, sent) {
                writes.push(write);
            }
        }
        if api.metadata.deletion_timestamp.is_some()
            && running.is_none()
            && !sent.deleted.contains(id)
        {
            writes.push(Write::Delete {
                namespace: api.metadata.namespace.clone().unwrap_or_default(),
                name: api.metadata.name.clone().unwrap_or_default(),
                uid: id.to_string(),
            });
        }
    }
    for pod in local.values() {
        let Some(mirror) = mirror_of(view, pod) else {
            continue;
        };
        if let Some(write) = pod
            .status
            .clone()
            .and_then(|status| status_write(mirror, status, sent))
        {
            writes.push(write);
        }
    }
    writes
}

/// The API's mirror of static pod `pod`, if it has one for this version (same hash).
fn mirror_of<'a>(view: &'a View, pod: &Pod) -> Option<&'a Pod> {
    let annotations = pod.metadata.annotations.as_ref()?;
    if annotations.get(CONFIG_SOURCE).map(String::as_str) != Some(FILE_SOURCE) {
        return None;
    }
    let hash = annotations.get(CONFIG_HASH)?;
    let mirror = view.mirrors.get(&full_name(pod))?;
    let mirror_hash = mirror
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(super::pods::CONFIG_MIRROR));
    (mirror_hash == Some(hash) && mirror.metadata.deletion_timestamp.is_none()).then_some(mirror)
}

/// A finished pod's final status has a terminal phase, as upstream reports it since
/// 1.27 (so controllers see the pod end even under `restartPolicy: Always`): Succeeded
/// if every container exited 0, else Failed.
pub fn terminal_phase(mut status: PodStatus) -> PodStatus {
    if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return status;
    }
    let containers = status.container_statuses.iter().flatten();
    let exits: Vec<Option<i32>> = containers
        .map(|c| {
            let state = c.state.as_ref()?;
            state.terminated.as_ref().map(|t| t.exit_code)
        })
        .collect();
    let succeeded = !exits.is_empty() && exits.iter().all(|code| *code == Some(0));
    status.phase = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    status
}

/// The pod conditions the kubelet owns; the others (`PodScheduled` from the scheduler,
/// `DisruptionTarget`, readiness gates) are kept as the API has them, as upstream does.
const KUBELET_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// The node's status with the conditions it does not own taken from the API's status.
pub fn merge_foreign_conditions(mut ours: PodStatus, api: Option<&PodStatus>) -> PodStatus {
    let foreign = api
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()));
    for condition in foreign {
        let conditions = ours.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(mine) => *mine = condition.clone(),
            None => conditions.push(condition.clone()),
        }
    }
    ours
}

/// A status patch for `api` unless it shows `status` already or it was sent.
fn status_write(api: &Pod, status: PodStatus, sent: &Sent) -> Option<Write> {
    let status = merge_foreign_conditions(status, api.status.as_ref());
    let id = uid(api);
    let wanted = serde_json::to_value(&status).ok()?;
    let shown = api
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    if sent.statuses.get(id) == Some(&wanted) || shown.as_ref() == Some(&wanted) {
        return None;
    }
    Some(Write::Status {
        namespace: api.metadata.namespace.clone().unwrap_or_default(),
        name: api.metadata.name.clone().unwrap_or_default(),
        uid: id.to_string(),
        patch: status_patch(id, &wanted, shown.as_ref()),
        status: Box::new(status),
    })
}

/// The body of a status patch: the UID as precondition (the API server refuses a patch
/// that would change it), and the change from the status the API shows (`shown`) to
/// `status`, removed fields as nulls.
pub fn status_patch(uid: &str, status: &Value, shown: Option<&Value>) -> Value {
    let change = match shown {
        Some(shown) => two_way(shown, status, "status", &pod_status_merge_key),
        None => status.clone(),
    };
    serde_json::json!({"metadata": {"uid": uid}, "status": change})
}

/// The delete options for a pod whose deletion the node has carried out.
pub fn final_delete(uid: &str) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Whether an API error means the object under that UID is gone (404) or is another
/// object now (409: the UID precondition failed): nothing to retry.
pub fn settled(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_not_found() || status.is_conflict())
}

/// Delete the pod `namespace/name` with UID `uid` for good (grace 0); whether it is gone
/// now (deleted, or found gone). Other errors are logged, for a retry.
pub async fn delete_pod(client: &kube::Client, namespace: &str, name: &str, uid: &str) -> bool {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &final_delete(uid)).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{namespace}/{name}"), %uid, "pod deleted from the API server");
            true
        }
        Err(e) if settled(&e) => true,
        Err(e) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), "deleting the pod (will retry): {e}");
            false
        }
    }
}

/// Carries out [`plan`] against the API server.
pub struct StatusManager {
    client: kube::Client,
    runner: Arc<dyn PodRunner>,
    pods: Arc<ApiPods>,
    sent: Sent,
    finals: BTreeMap<String, Pod>,
    mirrors: MirrorPods,
}

impl StatusManager {
    /// A status manager for the pods `runner` runs and the API pods in `pods`, keeping
    /// the mirror pods of `node_name`'s static pods too.
    pub fn new(
        client: kube::Client,
        runner: Arc<dyn PodRunner>,
        pods: Arc<ApiPods>,
        node_name: &str,
    ) -> Self {
        StatusManager {
            mirrors: MirrorPods::new(client.clone(), node_name),
            client,
            runner,
            pods,
            sent: Sent::default(),
            finals: BTreeMap::new(),
        }
    }

    /// Report until the task is dropped.
    pub async fn run(mut self) {
        let mut local = self.runner.subscribe();
        let mut api = self.pods.subscribe();
        loop {
            tokio::select! {
                Ok(()) = local.changed() => {}
                Ok(()) = api.changed() => {}
                () = tokio::time::sleep(RESYNC) => {}
            }
            tokio::time::sleep(COALESCE).await;
            local.borrow_and_update();
            api.borrow_and_update();
            self.sync().await;
        }
    }

    /// One round: mirror pods first (their status goes on them), then compare statuses
    /// and write what differs.
    pub async fn sync(&mut self) {
        for pod in self.runner.take_terminated() {
            self.finals.insert(uid(&pod).to_string(), pod);
        }
        let local = self.runner.pods();
        let view = self.pods.view();
        self.mirrors
            .sync(&view, &local, self.runner.all_synced())
            .await;
        self.sent.retain(&view);
        let live: HashSet<&str> = view.pods.values().map(|t| uid(&t.pod)).collect();
        self.finals.retain(|u, _| live.contains(u.as_str()));
        let writes = plan(&view, &local, &self.finals, &self.sent);
        let mut failed: HashSet<String> = HashSet::new();
        for write in writes {
            match write {
                Write::Status {
                    namespace,
                    name,
                    uid,
                    status,
                    patch,
                } => {
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                    let patch = Patch::Strategic(patch);
                    match api
                        .patch_status(&name, &PatchParams::default(), &patch)
                        .await
                    {
                        Ok(_) => self.remember(&uid, &status),
                        Err(e) if settled(&e) => self.remember(&uid, &status),
                        Err(e) => {
                            tracing::warn!(pod = %format!("{namespace}/{name}"), "patching the pod's status (will retry): {e}");
                            failed.insert(uid);
                        }
                    }
                }
                // The final status goes first; a pod whose final status failed waits.
                Write::Delete { uid, .. } if failed.contains(&uid) => {}
                Write::Delete {
                    namespace,
                    name,
                    uid,
                } => {
                    if delete_pod(&self.client, &namespace, &name, &uid).await {
                        self.sent.deleted.insert(uid);
                    }
                }
            }
        }
    }

    fn remember(&mut self, uid: &str, status: &PodStatus) {
        if let Ok(value) = serde_json::to_value(status) {
            self.sent.statuses.insert(uid.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::pods::Tracked;

    fn pod(uid: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": phase, "startTime": "2026-11-22T10:00:00Z"}
        }))
        .expect("a pod")
    }

    fn view_of(api: Pod, local: Local) -> View {
        let mut view = View::default();
        view.pods
            .insert(full_name(&api), Tracked { pod: api, local });
        view
    }

    fn statuses(writes: &[Write]) -> Vec<&str> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Status { status, .. } => status.phase.as_deref(),
                Write::Delete { .. } => Some("DELETE"),
            })
            .collect()
    }

    #[test]
    fn a_changed_status_is_patched_once() {
        let view = view_of(pod("u1", "Pending"), Local::Running);
        let local = [pod("u1", "Running")];
        let mut sent = Sent::default();
        let writes = plan(&view, &local, &BTreeMap::new(), &sent);
        assert_eq!(statuses(&writes), ["Running"]);
        let Write::Status { uid, status, .. } = &writes[0] else {
            panic!("a status write");
        };
        assert_eq!(uid, "u1");
        sent.statuses
            .insert(uid.clone(), serde_json::to_value(status).expect("json"));
        assert!(plan(&view, &local, &BTreeMap::new(), &sent).is_empty());
    }

    #[test]
    fn a_finished_pod_ends_succeeded_only_if_every_container_exited_zero() {
        let status = |codes: &[i32]| -> PodStatus {
            let containers: Vec<Value> = codes
                .iter()
                .map(|code| {
                    serde_json::json!({"name": "c", "image": "i", "imageID": "", "ready": false,
                                       "restartCount": 0,
                                       "state": {"terminated": {"exitCode": code}}})
                })
                .collect();
            serde_json::from_value(serde_json::json!({
                "phase": "Running", "containerStatuses": containers
            }))
            .expect("a status")
        };
        assert_eq!(
            terminal_phase(status(&[0, 0])).phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            terminal_phase(status(&[0, 137])).phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(terminal_phase(status(&[])).phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn the_schedulers_condition_is_kept_as_the_api_has_it() {
        let api: PodStatus = serde_json::from_value(serde_json::json!({
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T09:00:00Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-22T09:00:00Z"}
            ]
        }))
        .expect("a status");
        let ours: PodStatus = serde_json::from_value(serde_json::json!({
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T10:00:00Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T10:00:00Z"}
            ]
        }))
        .expect("a status");
        let merged =
            serde_json::to_value(merge_foreign_conditions(ours, Some(&api))).expect("json");
        assert_eq!(
            merged["conditions"][0]["lastTransitionTime"],
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(merged["conditions"][0]["status"], "True");
        assert_eq!(
            merged["conditions"][1]["lastTransitionTime"],
            "2026-11-22T09:00:00Z"
        );
    }

    #[test]
    fn nothing_is_sent_for_what_the_api_shows_or_for_another_uid_under_the_name() {
        // The API shows the status already; the API's pod is another one (u2).
        for api in [pod("u1", "Running"), pod("u2", "Pending")] {
            let view = view_of(api, Local::Running);
            let local = [pod("u1", "Running")];
            assert!(plan(&view, &local, &BTreeMap::new(), &Sent::default()).is_empty());
        }
    }

    #[test]
    fn the_patch_carries_the_uid_precondition() {
        let status = pod("u1", "Running").status.expect("status");
        let status = serde_json::to_value(status).expect("JSON");
        let body = status_patch("u1", &status, None);
        assert_eq!(body["metadata"]["uid"], "u1");
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(body["status"]["startTime"], "2026-11-22T10:00:00Z");
    }

    #[test]
    fn a_deleted_pod_is_removed_after_its_final_status() {
        let mut deleting = pod("u1", "Running");
        deleting.metadata.deletion_timestamp =
            deleting.status.as_ref().and_then(|s| s.start_time.clone());
        let view = view_of(deleting, Local::Running);
        let mut stopping = pod("u1", "Running");
        stopping.status.as_mut().expect("status").message = Some("stopping".into());
        // Still stopping: status only.
        let writes = plan(&view, &[stopping], &BTreeMap::new(), &Sent::default());
        assert_eq!(statuses(&writes), ["Running"]);
        // Done: the final status, then the delete with the UID.
        let finals = BTreeMap::from([("u1".to_string(), pod("u1", "Succeeded"))]);
        let writes = plan(&view, &[], &finals, &Sent::default());
        assert_eq!(statuses(&writes), ["Succeeded", "DELETE"]);
        assert_eq!(
            writes[1],
            Write::Delete {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u1".into()
            }
        );
        let options = serde_json::to_value(final_delete("u1")).expect("json");
        assert_eq!(options["gracePeriodSeconds"], 0);
        assert_eq!(options["preconditions"]["uid"], "u1");
        // Deleted once.
        let mut sent = Sent::default();
        sent.deleted.insert("u1".into());
        sent.statuses.insert(
            "u1".into(),
            serde_json::to_value(pod("u1", "Succeeded").status).expect("json"),
        );
        assert!(plan(&view, &[], &finals, &sent).is_empty());
    }

    #[test]
    fn rejected_pods_report_their_rejection_and_deleting_unrun_pods_go_at_once() {
        let rejected = PodStatus {
            phase: Some("Failed".into()),
            reason: Some("OutOfcpu".into()),
            ..PodStatus::default()
        };
        let view = view_of(pod("u1", "Pending"), Local::Rejected(Box::new(rejected)));
        assert_eq!(
            statuses(&plan(&view, &[], &BTreeMap::new(), &Sent::default())),
            ["Failed"]
        );
        let mut deleting = pod("u2", "Succeeded");
        deleting.metadata.deletion_timestamp =
            deleting.status.as_ref().and_then(|s| s.start_time.clone());
        let view = view_of(deleting, Local::NotRun);
        assert_eq!(
            statuses(&plan(&view, &[], &BTreeMap::new(), &Sent::default())),
            ["DELETE"]
        );
    }

    #[test]
    fn static_pods_report_on_their_mirror_of_the_same_hash() {
        let mut static_pod = pod("s1", "Running");
        static_pod.metadata.annotations = Some(BTreeMap::from([
            (CONFIG_SOURCE.to_string(), FILE_SOURCE.to_string()),
            (CONFIG_HASH.to_string(), "s1".to_string()),
        ]));
        let mut mirror = pod("m1", "Pending");
        mirror.metadata.annotations = Some(BTreeMap::from([(
            super::super::pods::CONFIG_MIRROR.to_string(),
            "s1".to_string(),
        )]));
        let mut view = View::default();
        view.mirrors.insert(full_name(&mirror), mirror.clone());
        let writes = plan(
            &view,
            &[static_pod.clone()],
            &BTreeMap::new(),
            &Sent::default(),
        );
        assert_eq!(statuses(&writes), ["Running"]);
        assert!(matches!(&writes[0], Write::Status { uid, .. } if uid == "m1"));
        // A mirror of an older version gets nothing (it is being replaced).
        if let Some(a) = view
            .mirrors
            .values_mut()
            .next()
            .and_then(|m| m.metadata.annotations.as_mut())
        {
            a.insert(
                super::super::pods::CONFIG_MIRROR.to_string(),
                "old".to_string(),
            );
        }
        assert!(plan(&view, &[static_pod], &BTreeMap::new(), &Sent::default()).is_empty());
    }
}
