//! [`Store`]: the objects, the global resourceVersion counter and the bounded event log
//! that watches replay from, with the registry semantics of kube-apiserver: create with
//! uid/creationTimestamp/generateName, optimistic concurrency on update, the `status`
//! subresource, graceful pod deletion, finalizers and preconditions.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::admission;
use super::resources::{self, Resource};
use super::selectors::Selector;
use super::status::{ApiError, ApiResult};

/// How many changes the event log keeps for watches that start in the past.
pub const LOG_CAPACITY: usize = 1000;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated (including a graceful deletion starting).
    Modified,
    /// Removed.
    Deleted,
}

/// One entry of the event log.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// The resource type of the object.
    pub resource: &'static Resource,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (before it, for a deletion, with the new rv).
    pub object: Value,
    /// The object before the change (modifications), so that selector watches can
    /// tell an object entering or leaving their set.
    pub old: Option<Value>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The main resource: everything but `.status` for resources with a status subresource.
    Main,
    /// The `status` subresource: `.status` only.
    Status,
}

/// DeleteOptions that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`; the pod's `terminationGracePeriodSeconds` when absent.
    pub grace: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

type Key = (&'static str, &'static str, String, String);

/// A receiver of every change after it subscribed.
pub type Changes = broadcast::Receiver<Arc<Change>>;

fn key(resource: &'static Resource, namespace: &str, name: &str) -> Key {
    (
        resource.group,
        resource.plural,
        namespace.to_string(),
        name.to_string(),
    )
}

/// The object store.
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Arc<Change>>,
    /// The highest rv whose change the log no longer holds: watches must start at or after it.
    compacted: u64,
    changes: broadcast::Sender<Arc<Change>>,
    /// The cluster CA every namespace's `kube-root-ca.crt` publishes.
    root_ca: String,
    /// Whether pods get the `kube-api-access-*` projected volume (ServiceAccount admission).
    pub inject_service_account_token: bool,
}

impl Store {
    /// A store holding the namespaces a fresh cluster has, each with its `default`
    /// ServiceAccount and `kube-root-ca.crt` ConfigMap publishing `root_ca`.
    pub fn new(root_ca: &str) -> Store {
        let (changes, _) = broadcast::channel(4 * LOG_CAPACITY);
        let mut store = Store {
            rv: 0,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            compacted: 0,
            changes,
            root_ca: root_ca.to_string(),
            inject_service_account_token: true,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // A fresh store has no such namespace: creation cannot fail.
            let _ = store.create(by_plural("namespaces"), None, namespace);
        }
        store
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Drops the event log: watches from any earlier resourceVersion get 410 Expired.
    pub fn compact(&mut self) {
        self.log.clear();
        self.compacted = self.rv;
    }

    /// Changes after `rv` from the log and a receiver of every later one, taken together
    /// so that none is missed; 410 when the log no longer reaches back to `rv`.
    pub fn watch_from(&self, rv: u64) -> ApiResult<(Vec<Arc<Change>>, Changes)> {
        if rv < self.compacted {
            return Err(ApiError::expired(rv, self.compacted + 1));
        }
        let replay = self.log.iter().filter(|c| c.rv > rv).cloned().collect();
        Ok((replay, self.changes.subscribe()))
    }

    /// A receiver of every later change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// The object, if it exists.
    pub fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        self.objects
            .get(&key(resource, namespace.unwrap_or(""), name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Objects of `resource` (in `namespace`, or all) matching both selectors, by name.
    pub fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((group, plural, ns, _), _)| {
                *group == resource.group
                    && *plural == resource.plural
                    && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, object)| object)
            .filter(|object| labels.matches(object) && fields.matches(object))
            .cloned()
            .collect()
    }

    /// Creates `object` (in `namespace` for namespaced resources).
    pub fn create(
        &mut self,
        resource: &'static Resource,
        namespace: Option<&str>,
        mut object: Value,
    ) -> ApiResult<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        let namespace = self.scope(resource, namespace, &object)?;
        let meta = &mut object["metadata"];
        if !meta.is_object() {
            *meta = json!({});
        }
        if meta["name"].as_str().unwrap_or("").is_empty() {
            match meta["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => {
                    meta["name"] = json!(format!("{prefix}{}", random_suffix()))
                }
                _ => {
                    return Err(ApiError::invalid(
                        resource,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            }
        }
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        if let Some(ns) = &namespace {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(new_uid());
        meta["creationTimestamp"] = json!(timestamp(0));
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let k = key(resource, namespace.as_deref().unwrap_or(""), &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(resource, &name));
        }
        admission::on_create(resource, &mut object, self.inject_service_account_token)?;
        let created = self.commit(resource, k, ChangeKind::Added, object, None);
        if resource.plural == "namespaces" {
            self.populate_namespace(&name);
        }
        Ok(created)
    }

    /// The controllers' part of a new namespace: the `default` ServiceAccount and the
    /// `kube-root-ca.crt` ConfigMap.
    fn populate_namespace(&mut self, ns: &str) {
        let account = json!({"metadata": {"name": "default"}});
        let ca =
            json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": self.root_ca}});
        // Both are new in a new namespace.
        let _ = self.create(by_plural("serviceaccounts"), Some(ns), account);
        let _ = self.create(by_plural("configmaps"), Some(ns), ca);
    }

    /// The namespace an object of `resource` goes to, checked against the object's own.
    fn scope(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        object: &Value,
    ) -> ApiResult<Option<String>> {
        if !resource.namespaced {
            return Ok(None);
        }
        let own = object["metadata"]["namespace"].as_str().unwrap_or("");
        let ns = match namespace {
            Some(ns) if !own.is_empty() && own != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            Some(ns) => ns,
            None if own.is_empty() => "default",
            None => own,
        };
        if self.get(by_plural("namespaces"), None, ns).is_err() {
            return Err(ApiError::not_found(by_plural("namespaces"), ns));
        }
        Ok(Some(ns.to_string()))
    }

    /// Replaces object `name` with `new` (PUT), honouring its resourceVersion as a
    /// precondition and keeping what `target` may not change.
    pub fn update(
        &mut self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        mut new: Value,
        target: Target,
    ) -> ApiResult<Value> {
        let old = self.get(resource, namespace, name)?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body is not a JSON object"));
        }
        let body_name = new["metadata"]["name"].as_str().unwrap_or(name);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match new["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
                return Err(ApiError::conflict(
                    resource,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ))
            }
            _ => {}
        }
        match new["metadata"]["uid"].as_str() {
            // A uid in the body is a precondition (the kubelet's status patches carry one).
            Some(uid) if !uid.is_empty() && Some(uid) != old["metadata"]["uid"].as_str() => {
                let why = format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old["metadata"]["uid"].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict(resource, name, &why));
            }
            _ => {}
        }
        if target == Target::Status {
            let status = new["status"].take();
            new = old.clone();
            new["status"] = status;
        } else if resource.has_status() {
            new["status"] = old["status"].clone();
        }
        if new["status"].is_null() {
            if let Some(map) = new.as_object_mut() {
                map.remove("status");
            }
        }
        // System fields no client may change.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = new["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(resource.kind);
        if new == old {
            // No-op updates write nothing and bump nothing, as the real registry.
            return Ok(old);
        }
        let k = key(resource, namespace.unwrap_or(""), name);
        let finalized = new["metadata"]["deletionTimestamp"].is_string()
            && finalizers_empty(&new)
            && new["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0);
        if finalized {
            return Ok(self.remove(resource, k, new));
        }
        Ok(self.commit(resource, k, ChangeKind::Modified, new, Some(old)))
    }

    /// Deletes object `name`: at once, or gracefully for a pod bound to a node (it gets
    /// `deletionTimestamp` and stays until a delete with grace 0), or once its
    /// finalizers are gone. Returns the object as it is after the call.
    pub fn delete(
        &mut self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let old = self.get(resource, namespace, name)?;
        let meta = &old["metadata"];
        if let Some(uid) = &options.uid {
            if meta["uid"].as_str() != Some(uid) {
                let why = format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta["uid"].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict(resource, name, &why));
            }
        }
        if let Some(rv) = &options.resource_version {
            if meta["resourceVersion"].as_str() != Some(rv) {
                let why = format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta["resourceVersion"].as_str().unwrap_or("")
                );
                return Err(ApiError::conflict(resource, name, &why));
            }
        }
        let grace = if resource.plural == "pods" {
            pod_grace(&old, options.grace)
        } else {
            0
        };
        let k = key(resource, namespace.unwrap_or(""), name);
        if grace == 0 && finalizers_empty(&old) {
            return Ok(self.remove(resource, k, old));
        }
        if let Some(current) = meta["deletionGracePeriodSeconds"].as_i64() {
            if meta["deletionTimestamp"].is_string() && current <= grace {
                // Already terminating at least as fast.
                return Ok(old);
            }
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!(timestamp(grace));
        new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        Ok(self.commit(resource, k, ChangeKind::Modified, new, Some(old)))
    }

    /// Removes an object (and a namespace's contents), logging DELETED with a new rv.
    fn remove(&mut self, resource: &'static Resource, k: Key, object: Value) -> Value {
        if resource.plural == "namespaces" {
            let ns = k.3.clone();
            let inside: Vec<Key> = self.objects.keys().filter(|o| o.2 == ns).cloned().collect();
            for inner in inside {
                if let (Some(object), Some(r)) = (
                    self.objects.get(&inner).cloned(),
                    resources::find(inner.0, "v1", inner.1),
                ) {
                    self.remove(r, inner, object);
                }
            }
        }
        self.objects.remove(&k);
        self.record(resource, ChangeKind::Deleted, object, None)
    }

    /// Stores an object with the next resourceVersion and logs the change.
    fn commit(
        &mut self,
        resource: &'static Resource,
        k: Key,
        kind: ChangeKind,
        object: Value,
        old: Option<Value>,
    ) -> Value {
        let stored = self.record(resource, kind, object, old);
        self.objects.insert(k, stored.clone());
        stored
    }

    fn record(
        &mut self,
        resource: &'static Resource,
        kind: ChangeKind,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let change = Arc::new(Change {
            rv: self.rv,
            resource,
            kind,
            object: object.clone(),
            old,
        });
        if self.log.len() >= LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.log.push_back(change.clone());
        // No receiver is not an error: nobody watches yet.
        let _ = self.changes.send(change);
        object
    }
}

/// The grace period a pod deletion gets: none for a pod on no node or already finished,
/// else the request's, else the pod's `terminationGracePeriodSeconds` (30 by default).
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    );
    if !bound || finished {
        return 0;
    }
    let grace = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    // Negative grace periods mean "as soon as possible", which the server makes 1.
    if grace < 0 {
        1
    } else {
        grace
    }
}

fn finalizers_empty(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
}

/// The resource `plural` of the core group (only names from [`resources::RESOURCES`]).
pub fn by_plural(plural: &str) -> &'static Resource {
    resources::RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.group.is_empty())
        .unwrap_or(&resources::RESOURCES[0])
}

/// RFC 3339 UTC time `offset_seconds` from now, at second precision as the API writes it.
pub fn timestamp(offset_seconds: i64) -> String {
    (Utc::now() + Duration::seconds(offset_seconds)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A random version-4-shaped UUID.
pub fn new_uid() -> String {
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Five characters as generateName appends (no vowels, no look-alikes).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    fn store() -> Store {
        let mut store = Store::new("CA");
        store.inject_service_account_token = false;
        store
    }

    #[test]
    fn bound_pods_delete_gracefully_until_a_final_delete() {
        let mut s = store();
        let pods = by_plural("pods");
        let created = s.create(pods, Some("default"), pod("web", "n1")).unwrap();
        let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
        let marked = s
            .delete(pods, Some("default"), "web", &DeleteOptions::default())
            .unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(s.get(pods, Some("default"), "web").is_ok());
        let wrong = DeleteOptions {
            grace: Some(0),
            uid: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(
            s.delete(pods, Some("default"), "web", &wrong)
                .unwrap_err()
                .code,
            409
        );
        let last = DeleteOptions {
            grace: Some(0),
            uid: Some(uid),
            ..Default::default()
        };
        s.delete(pods, Some("default"), "web", &last).unwrap();
        assert_eq!(s.get(pods, Some("default"), "web").unwrap_err().code, 404);
        // Unbound pods go at once.
        s.create(pods, Some("default"), pod("loose", "")).unwrap();
        s.delete(pods, Some("default"), "loose", &DeleteOptions::default())
            .unwrap();
        assert!(s.get(pods, Some("default"), "loose").is_err());
    }

    #[test]
    fn finalizers_hold_an_object_until_removed() {
        let mut s = store();
        let cms = by_plural("configmaps");
        let cm = json!({"metadata": {"name": "x", "finalizers": ["test/hold"]}});
        s.create(cms, Some("default"), cm).unwrap();
        let held = s
            .delete(cms, Some("default"), "x", &DeleteOptions::default())
            .unwrap();
        assert!(held["metadata"]["deletionTimestamp"].is_string());
        let mut released = held.clone();
        released["metadata"]["finalizers"] = json!([]);
        s.update(cms, Some("default"), "x", released, Target::Main)
            .unwrap();
        assert!(s.get(cms, Some("default"), "x").is_err());
    }

    #[test]
    fn updates_check_versions_keep_status_and_skip_no_ops() {
        let mut s = store();
        let pods = by_plural("pods");
        let v1 = s.create(pods, Some("default"), pod("web", "n1")).unwrap();
        let rv = s.resource_version();
        assert_eq!(
            s.update(pods, Some("default"), "web", v1.clone(), Target::Main)
                .unwrap(),
            v1
        );
        assert_eq!(s.resource_version(), rv, "a no-op update writes nothing");
        let mut running = v1.clone();
        running["status"]["phase"] = json!("Running");
        let main = s
            .update(pods, Some("default"), "web", running.clone(), Target::Main)
            .unwrap();
        assert_eq!(main["status"]["phase"], "Pending");
        let status = s
            .update(pods, Some("default"), "web", running, Target::Status)
            .unwrap();
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(
            s.update(pods, Some("default"), "web", v1, Target::Main)
                .unwrap_err()
                .code,
            409
        );
    }

    #[test]
    fn watches_before_the_log_expire() {
        let mut s = store();
        let cms = by_plural("configmaps");
        s.create(cms, Some("default"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        let rv = s.resource_version();
        assert!(s.watch_from(rv - 1).is_ok());
        s.compact();
        assert_eq!(s.watch_from(rv - 1).unwrap_err().code, 410);
        assert!(s.watch_from(rv).is_ok());
    }
}
