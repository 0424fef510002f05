//! The HTTP side: paths (`/api/v1/namespaces/{ns}/pods/{name}/status`...) resolved to a
//! resource, namespace, name and subresource, and each verb answered from the store,
//! the review policy or the kubelet proxy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, Response, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use super::discovery;
use super::patch::{self, PatchKind};
use super::proxy::{self, KubeletClient};
use super::query::Query;
use super::resources::{self, Resource};
use super::reviews::Policy;
use super::selectors::Selector;
use super::status::{ApiError, ApiResult};
use super::store::{by_plural, DeleteOptions, Store, Target};
use super::table;
use super::watch::{self, WatchRequest};

/// Largest request body read (objects are small; this only bounds a broken client).
const MAX_BODY: usize = 16 << 20;

/// What every request handler shares, across restarts.
pub struct Shared {
    /// The objects.
    pub store: Arc<Mutex<Store>>,
    /// Tokens and authorisation rules.
    pub policy: Mutex<Policy>,
    /// The TLS client to kubelets.
    pub kubelet: KubeletClient,
    /// How often watches that allow bookmarks get one.
    pub bookmark_every: Duration,
    /// Every request received, oldest first.
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Whether requests need a known bearer token (else 401), rather than any.
    pub require_auth: AtomicBool,
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `PATCH`...
    pub method: String,
    /// The path.
    pub path: String,
    /// The raw query.
    pub query: String,
    /// The user its bearer token authenticates as (`system:anonymous` if none is known).
    pub user: String,
    /// The `Content-Type` (which patch format).
    pub content_type: String,
}

impl Shared {
    /// The store, even if a panicking request poisoned its lock.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy, even if a panicking request poisoned its lock.
    pub fn policy(&self) -> MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct Context {
    shared: Arc<Shared>,
    address: String,
}

/// The router answering every path, for the server at `address` (`host:port`).
pub fn router(shared: Arc<Shared>, address: String) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Context { shared, address })
}

/// An object location parsed from a path.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The resource type.
    pub resource: &'static Resource,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, if any.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<String>,
}

/// Resolves a resource path (`/api/v1/...` or `/apis/<group>/<version>/...`).
pub fn locate(path: &str) -> Option<Location> {
    let segments: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            (Some(ns.to_string()), [&[*plural][..], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let resource = resources::find(group, version, rest.first()?)?;
    let subresource = rest.get(2);
    if rest.len() > 3 || subresource.is_some_and(|s| !resource.subresources.contains(s)) {
        return None;
    }
    Some(Location {
        resource,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: subresource.map(|s| s.to_string()),
    })
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

/// The record of `request`, and whether its bearer token is known.
fn received(shared: &Shared, request: &Request) -> (RequestRecord, bool) {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let bearer = header(header::AUTHORIZATION);
    let user = bearer
        .strip_prefix("Bearer ")
        .and_then(|t| shared.policy().authenticate(t).map(|u| u.name.clone()));
    let record = RequestRecord {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or("").to_string(),
        user: user.clone().unwrap_or_else(|| "system:anonymous".into()),
        content_type: header(header::CONTENT_TYPE),
    };
    (record, user.is_some())
}

async fn handle(State(context): State<Context>, request: Request) -> Response<Body> {
    let shared = &context.shared;
    let (record, known) = received(shared, &request);
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);
    if !known && shared.require_auth.load(Ordering::Relaxed) {
        return error_response(&ApiError::unauthorized());
    }
    match route(&context, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn route(context: &Context, request: Request) -> ApiResult<Response<Body>> {
    let path = request.uri().path().to_string();
    let ok =
        |value: Value| -> ApiResult<Response<Body>> { Ok(json_response(StatusCode::OK, &value)) };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => return ok(discovery::version()),
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Ok(Response::new(Body::from("ok")));
        }
        ["api"] => return ok(discovery::core_versions(&context.address)),
        ["apis"] => return ok(discovery::groups()),
        ["apis", group] => {
            return discovery::group_doc(group).map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["api", version] => {
            return discovery::resource_list("", version)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["apis", group, version] => {
            return discovery::resource_list(group, version)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        _ => {}
    }
    let location = locate(&path).ok_or_else(|| ApiError::no_route(&path))?;
    let query = Query::parse(request.uri().query().unwrap_or(""));
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if content_type.starts_with("application/vnd.kubernetes.protobuf")
        || content_type.starts_with("application/cbor")
    {
        // JSON and YAML only; clients that can fall back do so on 415.
        return Err(ApiError::unsupported_body(&content_type));
    }
    let shared = &context.shared;
    let loc = &location;
    let ns = loc.namespace.as_deref();
    let method = request.method().clone();
    match (&method, loc.name.as_deref(), loc.subresource.as_deref()) {
        (_, Some(_), Some("log" | "exec" | "attach" | "portforward"))
            if loc.resource.plural == "pods" =>
        {
            proxy::pod_stream(shared, loc, &query, request).await
        }
        (&Method::GET, None, None) if query.flag("watch") => {
            let mut watch = watch_request(loc, &query)?;
            if table::wants_table(&accept) {
                watch.table = Some(query.get("includeObject").unwrap_or("Metadata").to_string());
            }
            let mut response =
                Response::new(watch::stream(&shared.store, watch, shared.bookmark_every));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        (&Method::GET, None, None) => {
            let labels = Selector::labels(query.get("labelSelector").unwrap_or(""))?;
            let fields = Selector::fields(query.get("fieldSelector").unwrap_or(""))?;
            let store = shared.store();
            let items = store.list(loc.resource, ns, &labels, &fields);
            let rv = store.resource_version();
            drop(store);
            if table::wants_table(&accept) {
                let include = query.get("includeObject").unwrap_or("Metadata");
                return ok(table::table(loc.resource, &items, rv, include));
            }
            ok(list(loc.resource, items, rv))
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            let object = shared.store().get(loc.resource, ns, name)?;
            if table::wants_table(&accept) {
                let rv = shared.store().resource_version();
                let include = query.get("includeObject").unwrap_or("Metadata");
                return ok(table::table(loc.resource, &[object], rv, include));
            }
            ok(object)
        }
        (&Method::POST, None, None) => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let body = read_body(request).await?;
            create(shared, loc, token.as_deref(), body)
        }
        (&Method::POST, Some(name), Some("token")) if loc.resource.plural == "serviceaccounts" => {
            let body = parse_object(&read_body(request).await?)?;
            let account = shared.store().get(loc.resource, ns, name)?;
            let answer = shared
                .policy()
                .token_request(ns.unwrap_or("default"), &account, body)?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        (&Method::POST, Some(name), Some("binding")) if loc.resource.plural == "pods" => {
            let body = parse_object(&read_body(request).await?)?;
            bind(shared, ns, name, &body)
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            let body = parse_object(&read_body(request).await?)?;
            let target = target(loc)?;
            ok(shared
                .store()
                .update(loc.resource, ns, name, body, target)?)
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let kind = PatchKind::from_content_type(&content_type)?;
            let body = read_body(request).await?;
            let patch = patch::parse_body(kind, &body)?;
            patch_object(shared, loc, name, kind, &patch)
        }
        (&Method::DELETE, Some(name), None) => {
            let body = read_body(request).await?;
            let options = delete_options(&query, &body)?;
            let mut store = shared.store();
            let last = store.delete(loc.resource, ns, name, &options)?;
            let gone = store.get(loc.resource, ns, name).is_err();
            drop(store);
            ok(deleted(loc.resource, last, gone))
        }
        (&Method::DELETE, None, None) => {
            let body = read_body(request).await?;
            let options = delete_options(&query, &body)?;
            let labels = Selector::labels(query.get("labelSelector").unwrap_or(""))?;
            let fields = Selector::fields(query.get("fieldSelector").unwrap_or(""))?;
            let mut store = shared.store();
            let items = store.list(loc.resource, ns, &labels, &fields);
            let mut deleted = Vec::new();
            for item in items {
                let name = item["metadata"]["name"].as_str().unwrap_or("");
                let item_ns = item["metadata"]["namespace"].as_str();
                deleted.push(store.delete(loc.resource, item_ns, name, &options)?);
            }
            let rv = store.resource_version();
            ok(list(loc.resource, deleted, rv))
        }
        _ => Err(ApiError::method_not_allowed(&format!("{method} {path}"))),
    }
}

/// What a DELETE answers: the object while it lingers (graceful deletion, finalizers)
/// and for the resources whose registry returns deleted objects (pods, namespaces);
/// else a `Success` Status naming it.
fn deleted(resource: &Resource, object: Value, gone: bool) -> Value {
    if !gone || matches!(resource.plural, "pods" | "namespaces") {
        return object;
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object["metadata"]["name"],
            "group": resource.group,
            "kind": resource.plural,
            "uid": object["metadata"]["uid"],
        },
    })
}

fn target(loc: &Location) -> ApiResult<Target> {
    match loc.subresource.as_deref() {
        None => Ok(Target::Main),
        Some("status") if loc.resource.has_status() => Ok(Target::Status),
        Some(other) => Err(ApiError::no_route(&format!(
            "{}/{other}",
            loc.resource.plural
        ))),
    }
}

/// A `<Kind>List` of `items` at `rv`; items leave out apiVersion and kind as the real
/// server's lists do.
fn list(resource: &Resource, items: Vec<Value>, rv: u64) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if let Some(map) = item.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect();
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

async fn read_body(request: Request) -> ApiResult<Bytes> {
    axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

/// A JSON (or YAML) object body.
fn parse_object(body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(json_error) => {
            let text = std::str::from_utf8(body).map_err(|_| {
                ApiError::bad_request(format!("the body is not JSON: {json_error}"))
            })?;
            yaml_serde::from_str(text).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body is neither JSON ({json_error}) nor YAML ({e})"
                ))
            })?
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the body is not an object"));
    }
    Ok(value)
}

fn create(
    shared: &Shared,
    loc: &Location,
    token: Option<&str>,
    body: Bytes,
) -> ApiResult<Response<Body>> {
    let object = parse_object(&body)?;
    let answer = match (loc.resource.group, loc.resource.plural) {
        ("authentication.k8s.io", "tokenreviews") => shared.policy().token_review(object),
        ("authorization.k8s.io", "subjectaccessreviews") => shared.policy().access_review(object),
        ("authorization.k8s.io", "selfsubjectaccessreviews") => {
            shared.policy().self_access_review(token, object)
        }
        _ => {
            let kind = object["kind"].as_str().unwrap_or(loc.resource.kind);
            if kind != loc.resource.kind {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({})",
                    kind, loc.resource.kind
                )));
            }
            shared
                .store()
                .create(loc.resource, loc.namespace.as_deref(), object)?
        }
    };
    Ok(json_response(StatusCode::CREATED, &answer))
}

fn patch_object(
    shared: &Shared,
    loc: &Location,
    name: &str,
    kind: PatchKind,
    patch: &Value,
) -> ApiResult<Response<Body>> {
    let target = target(loc)?;
    let ns = loc.namespace.as_deref();
    let mut store = shared.store();
    let current = match store.get(loc.resource, ns, name) {
        Ok(current) => current,
        Err(missing) if kind == PatchKind::Apply && target == Target::Main => {
            // Server-side apply creates what does not exist.
            let mut base = json!({"metadata": {"name": name}});
            if let Some(ns) = ns {
                base["metadata"]["namespace"] = json!(ns);
            }
            let object = patch::apply(kind, &base, patch)?;
            drop(missing);
            let created = store.create(loc.resource, ns, object)?;
            return Ok(json_response(StatusCode::CREATED, &created));
        }
        Err(missing) => return Err(missing),
    };
    let patched = patch::apply(kind, &current, patch)?;
    let updated = store.update(loc.resource, ns, name, patched, target)?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn delete_options(query: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let body = parse_object(body)?;
    let grace = body["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    Ok(DeleteOptions {
        grace,
        uid: text(&body["preconditions"]["uid"]),
        resource_version: text(&body["preconditions"]["resourceVersion"]),
    })
}

fn watch_request(loc: &Location, query: &Query) -> ApiResult<WatchRequest> {
    let resource_version = match query.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {rv:?}"))
        })?),
    };
    Ok(WatchRequest {
        resource: loc.resource,
        namespace: loc.namespace.clone(),
        labels: Selector::labels(query.get("labelSelector").unwrap_or(""))?,
        fields: Selector::fields(query.get("fieldSelector").unwrap_or(""))?,
        resource_version,
        bookmarks: query.flag("allowWatchBookmarks"),
        send_initial_events: query.flag("sendInitialEvents"),
        timeout: query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_secs),
        table: None,
    })
}

/// `pods/{name}/binding`: what the scheduler posts to put a pod on a node.
fn bind(
    shared: &Shared,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
) -> ApiResult<Response<Body>> {
    let node = binding["target"]["name"].as_str().unwrap_or("");
    let pods = by_plural("pods");
    let mut store = shared.store();
    let mut pod = store.get(pods, ns, name)?;
    if pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::conflict(
            pods,
            name,
            "pod is already assigned to a node",
        ));
    }
    pod["spec"]["nodeName"] = json!(node);
    store.update(pods, ns, name, pod, Target::Main)?;
    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(json_response(StatusCode::CREATED, &success))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources_namespaces_and_subresources() {
        let pod = locate("/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(pod.resource.plural, "pods");
        assert_eq!(pod.namespace.as_deref(), Some("default"));
        assert_eq!(pod.name.as_deref(), Some("web"));
        assert_eq!(pod.subresource.as_deref(), Some("status"));
        let ns = locate("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (ns.resource.plural, ns.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let lease =
            locate("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1").unwrap();
        assert_eq!(lease.resource.kind, "Lease");
        assert!(locate("/api/v1/namespaces/default/widgets").is_none());
        let all = locate("/api/v1/pods?watch=1").unwrap();
        assert_eq!((all.namespace, all.name), (None, None));
    }
}
