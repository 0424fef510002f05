//! configMaps, secrets and service account tokens from the API server for pod volumes and
//! env, with upstream's default "Watch" strategy: the first use of an object starts a
//! watch on that one object and caches it; later reads come from the cache; a change
//! rewrites the volumes of the pods that mount it (env is read once, as upstream); the
//! watches of objects no pod uses any more are dropped.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccountTokenProjection};
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::tokens::{self, Tokens};
use crate::api::Node as _;
use crate::pod::volume::source::Kind;
use crate::pod::volume::ObjectSource;
use crate::pod::{Cri, PodManager};

/// How long a read waits for the API server before the volume or container fails (and
/// the pod worker tries again later).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often unused watches are dropped and tokens due for renewal are renewed.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// A watch stays this long after its last read even if no pod lists the object yet (the
/// pod that read it may not be known to the manager's listing for a moment).
const GRACE: Duration = Duration::from_secs(60);

/// One watched object: `configmap prod/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// ConfigMap or Secret.
    pub kind: Kind,
    /// The object's namespace (the pod's).
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl Key {
    fn new(kind: Kind, namespace: &str, name: &str) -> Key {
        Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn kind_word(&self) -> &'static str {
        match self.kind {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }
}

/// A cached object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A configMap.
    ConfigMap(ConfigMap),
    /// A secret.
    Secret(Secret),
}

impl Object {
    fn resource_version(&self) -> Option<&str> {
        match self {
            Object::ConfigMap(o) => o.metadata.resource_version.as_deref(),
            Object::Secret(o) => o.metadata.resource_version.as_deref(),
        }
    }
}

/// What the watch knows of an object: nothing yet (`None`), why it could not list it,
/// or the object (`Ok(None)`: it does not exist).
pub type State = Option<Result<Option<Object>, String>>;

/// Whether going from `before` to `after` must rewrite the volumes of the pods that mount
/// the object: only once a first listing was served (the first one is what set-up
/// reads) and the object changed (by resourceVersion; appearing and vanishing count).
pub fn changes_volumes(before: &State, after: &Option<Object>) -> bool {
    match before {
        Some(Ok(old)) => {
            old.as_ref().map(Object::resource_version)
                != after.as_ref().map(Object::resource_version)
        }
        _ => false,
    }
}

/// The objects `pod` uses: those its volumes mount (`mounted`) and those its env reads.
pub fn references(pod: &Pod, mounted_only: bool) -> HashSet<Key> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = HashSet::new();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let mut add = |kind, name: &str| {
        if !name.is_empty() {
            out.insert(Key::new(kind, namespace, name));
        }
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            add(Kind::ConfigMap, &cm.name);
        }
        if let Some(secret) = &volume.secret {
            add(
                Kind::Secret,
                secret.secret_name.as_deref().unwrap_or_default(),
            );
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(cm) = &source.config_map {
                add(Kind::ConfigMap, &cm.name);
            }
            if let Some(secret) = &source.secret {
                add(Kind::Secret, &secret.name);
            }
        }
    }
    if mounted_only {
        return out;
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                add(Kind::ConfigMap, &r.name);
            }
            if let Some(r) = &from.secret_key_ref {
                add(Kind::Secret, &r.name);
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                add(Kind::ConfigMap, &r.name);
            }
            if let Some(r) = &from.secret_ref {
                add(Kind::Secret, &r.name);
            }
        }
    }
    out
}

/// The watched objects to drop: no pod uses them and none was read within the grace.
pub fn unused<'a>(
    watched: impl Iterator<Item = (&'a Key, Instant)>,
    in_use: &HashSet<Key>,
    now: Instant,
) -> Vec<Key> {
    watched
        .filter(|(key, last_read)| {
            !in_use.contains(*key) && now.saturating_duration_since(*last_read) >= GRACE
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// A watched object in the cache.
struct Entry {
    state: watch::Sender<State>,
    task: AbortHandle,
    last_read: Instant,
}

/// The API server as the node's [`ObjectSource`].
pub struct ApiObjects {
    client: kube::Client,
    runtime: Handle,
    cache: Mutex<HashMap<Key, Entry>>,
    changes: mpsc::UnboundedSender<Key>,
    tokens: Tokens,
}

impl ApiObjects {
    /// A source reading through `client`; call it within the kubelet's async runtime. The
    /// receiver yields the objects whose change must rewrite the volumes that mount them.
    pub fn new(client: kube::Client) -> (Arc<ApiObjects>, mpsc::UnboundedReceiver<Key>) {
        let runtime = Handle::current();
        let (changes, changed) = mpsc::unbounded_channel();
        let objects = ApiObjects {
            tokens: Tokens::new(client.clone(), runtime.clone()),
            client,
            runtime,
            cache: Mutex::new(HashMap::new()),
            changes,
        };
        (Arc::new(objects), changed)
    }

    /// The node's service account tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The objects being watched.
    pub fn watched(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Stop watching the objects that no pod uses (`in_use`) and nobody read lately.
    pub fn drop_unused(&self, in_use: &HashSet<Key>) {
        let mut cache = self.lock();
        let gone = unused(
            cache.iter().map(|(k, e)| (k, e.last_read)),
            in_use,
            Instant::now(),
        );
        for key in gone {
            if let Some(entry) = cache.remove(&key) {
                entry.task.abort();
                tracing::debug!(object = ?key, "stopped watching an object no pod uses");
            }
        }
    }

    /// The object `key`, from the cache, starting its watch on first use and waiting for
    /// its first listing.
    pub fn get(&self, key: Key) -> Result<Option<Object>, String> {
        let mut state = {
            let mut cache = self.lock();
            let entry = match cache.get_mut(&key) {
                Some(entry) => entry,
                None => {
                    let entry = self.start_watch(key.clone());
                    cache.entry(key.clone()).or_insert(entry)
                }
            };
            entry.last_read = Instant::now();
            entry.state.subscribe()
        };
        let known = state.borrow_and_update().clone();
        let result = match known {
            Some(known) => known,
            None => wait(&self.runtime, async move {
                match state.wait_for(Option::is_some).await {
                    Ok(known) => known.clone().unwrap_or(Ok(None)),
                    Err(_) => Err("the watch stopped".to_string()),
                }
            }),
        };
        let kind = key.kind_word();
        result.map_err(|e| format!("failed to sync {kind} cache: {e}"))
    }

    fn start_watch(&self, key: Key) -> Entry {
        let (state, _) = watch::channel(None);
        let task = match key.kind {
            Kind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.namespace);
                self.runtime.spawn(follow(
                    api,
                    key,
                    state.clone(),
                    self.changes.clone(),
                    Object::ConfigMap,
                ))
            }
            Kind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
                self.runtime.spawn(follow(
                    api,
                    key,
                    state.clone(),
                    self.changes.clone(),
                    Object::Secret,
                ))
            }
        };
        Entry {
            state,
            task: task.abort_handle(),
            last_read: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ApiObjects {
    fn drop(&mut self) {
        for entry in self.lock().values() {
            entry.task.abort();
        }
    }
}

impl ObjectSource for ApiObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        match self.get(Key::new(Kind::ConfigMap, namespace, name))? {
            Some(Object::ConfigMap(o)) => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        match self.get(Key::new(Kind::Secret, namespace, name))? {
            Some(Object::Secret(o)) => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    fn service_account_token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        self.tokens.get(pod, projection)
    }
}

/// Watch the one object `key` names (list + watch on `metadata.name`, relisting after
/// errors with back-off) and publish what is known of it.
async fn follow<K>(
    api: Api<K>,
    key: Key,
    state: watch::Sender<State>,
    changes: mpsc::UnboundedSender<Key>,
    wrap: fn(K) -> Object,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut listed = None;
    let publish = |now: Option<Object>| {
        let before = state.borrow().clone();
        if changes_volumes(&before, &now) {
            let _ = changes.send(key.clone());
        }
        state.send_replace(Some(Ok(now)));
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listed = None,
            Ok(Event::InitApply(o)) => listed = Some(wrap(o)),
            Ok(Event::InitDone) => publish(listed.take()),
            Ok(Event::Apply(o)) => publish(Some(wrap(o))),
            Ok(Event::Delete(_)) => publish(None),
            Err(e) => {
                // Before the first listing readers learn why; after it they keep the
                // last object seen while the watch relists, as upstream's cache does.
                tracing::warn!(object = ?key, error = %e, "watching an object failed; retrying");
                state.send_if_modified(|s| match s {
                    Some(Ok(_)) => false,
                    _ => {
                        *s = Some(Err(e.to_string()));
                        true
                    }
                });
            }
        }
    }
}

/// Run `work` on `runtime` and wait for it from synchronous code, for at most
/// [`FETCH_TIMEOUT`]. Volume set-up calls in from blocking threads; should a runtime
/// worker thread call in, it hands its other tasks over first rather than stall them.
pub fn wait<T, F>(runtime: &Handle, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let result = tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err("timed out waiting for the condition".to_string()));
        let _ = tx.send(result);
    });
    let receive = || {
        rx.recv_timeout(FETCH_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|_| Err("timed out waiting for the condition".to_string()))
    };
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(receive)
        }
        _ => receive(),
    }
}

/// Serve the node's configMaps, secrets and tokens from the API server through `client`:
/// install the source in the manager's `Cri`, rewrite the volumes of pods whose objects
/// change, renew tokens before they expire and drop what gone pods used. Call it within
/// the kubelet's async runtime; the tasks run as long as the runtime does.
pub fn serve(client: kube::Client, manager: &Arc<PodManager>) -> Arc<ApiObjects> {
    let (objects, changed) = ApiObjects::new(client);
    manager.cri().set_object_source(objects.clone());
    tokio::spawn(refresh_changed(manager.clone(), changed));
    tokio::spawn(sweep(objects.clone(), manager.clone()));
    objects
}

/// Rewrite the volumes of the pods that mount each changed object.
async fn refresh_changed(manager: Arc<PodManager>, mut changed: mpsc::UnboundedReceiver<Key>) {
    while let Some(key) = changed.recv().await {
        let pods = manager.pods();
        let mounting = pods
            .into_iter()
            .filter(|p| references(p, true).contains(&key))
            .collect();
        refresh(manager.cri(), mounting).await;
    }
}

/// Every [`SWEEP_EVERY`]: renew due tokens (by rewriting their pods' volumes), forget
/// the tokens of gone pods and stop the watches no pod needs.
async fn sweep(objects: Arc<ApiObjects>, manager: Arc<PodManager>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let pods = manager.pods();
        let live = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        objects.tokens().retain_pods(&live);
        let due = objects.tokens().due(chrono::Utc::now());
        let holders = objects.tokens().holders();
        let in_use = pods.iter().flat_map(|p| references(p, false)).collect();
        objects.drop_unused(&in_use);
        let renew = pods
            .into_iter()
            .filter(|p| tokens::wants_renewal(p, &due, &holders))
            .collect();
        refresh(manager.cri(), renew).await;
    }
}

/// Rewrite the API-data volumes of `pods` off the async threads (file writes).
async fn refresh(cri: Arc<Cri>, pods: Vec<Pod>) {
    if pods.is_empty() {
        return;
    }
    let done = tokio::task::spawn_blocking(move || {
        for pod in &pods {
            if let Err(e) = cri.refresh_volumes(pod) {
                tracing::warn!(pod = ?pod.metadata.name, error = %e, "refreshing volumes failed");
            }
        }
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "the volume refresh task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, EnvVarSource, PodSpec,
        ProjectedVolumeSource, SecretKeySelector, SecretProjection, Volume, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn config_map(version: &str) -> Object {
        Object::ConfigMap(ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        })
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("prod".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "a".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "settings".into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "b".into(),
                        projected: Some(ProjectedVolumeSource {
                            sources: Some(vec![VolumeProjection {
                                secret: Some(SecretProjection {
                                    name: "keys".into(),
                                    ..SecretProjection::default()
                                }),
                                ..VolumeProjection::default()
                            }]),
                            ..ProjectedVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                ]),
                containers: vec![Container {
                    name: "web".into(),
                    env: Some(vec![EnvVar {
                        name: "PASSWORD".into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(SecretKeySelector {
                                name: "db".into(),
                                key: "password".into(),
                                ..SecretKeySelector::default()
                            }),
                            ..EnvVarSource::default()
                        }),
                        ..EnvVar::default()
                    }]),
                    env_from: Some(vec![EnvFromSource {
                        config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                            name: "flags".into(),
                            ..Default::default()
                        }),
                        ..EnvFromSource::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn volumes_change_only_after_a_first_listing_and_a_new_version() {
        assert!(
            !changes_volumes(&None, &Some(config_map("1"))),
            "first listing"
        );
        let err: State = Some(Err("down".into()));
        assert!(
            !changes_volumes(&err, &Some(config_map("1"))),
            "set-up retries"
        );
        let seen: State = Some(Ok(Some(config_map("1"))));
        assert!(!changes_volumes(&seen, &Some(config_map("1"))), "a relist");
        assert!(changes_volumes(&seen, &Some(config_map("2"))));
        assert!(changes_volumes(&seen, &None), "deleted");
        assert!(
            changes_volumes(&Some(Ok(None)), &Some(config_map("3"))),
            "created"
        );
    }

    #[test]
    fn references_name_mounted_objects_and_env_sources() {
        let key = |kind, name: &str| Key::new(kind, "prod", name);
        let mounted = references(&pod(), true);
        assert_eq!(
            mounted,
            HashSet::from([key(Kind::ConfigMap, "settings"), key(Kind::Secret, "keys")])
        );
        let all = references(&pod(), false);
        assert_eq!(all.len(), 4);
        assert!(all.contains(&key(Kind::Secret, "db")));
        assert!(all.contains(&key(Kind::ConfigMap, "flags")));
    }

    #[test]
    fn unused_watches_go_after_their_grace() {
        let now = Instant::now();
        let used = Key::new(Kind::ConfigMap, "prod", "settings");
        let idle = Key::new(Kind::Secret, "prod", "old");
        let fresh = Key::new(Kind::Secret, "prod", "new");
        let long_ago = now.checked_sub(GRACE * 2).unwrap_or(now);
        let watched = [(&used, long_ago), (&idle, long_ago), (&fresh, now)];
        let in_use = HashSet::from([used.clone()]);
        let gone = unused(watched.into_iter(), &in_use, now);
        if long_ago < now {
            assert_eq!(gone, vec![idle]);
        }
    }
}
