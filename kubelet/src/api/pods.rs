//! `GET /pods`, `GET /pods/{ns}/{name}` and `GET /events`: what the node runs.

use axum::extract::{Path, Query, State};
use axum::Json;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::List;
use serde::Deserialize;

use super::server::Shared;
use super::status::ApiError;
use super::Node;

/// `GET /pods`: every pod as a `PodList`, like the kubelet's read-only `/pods`.
pub async fn list(State(node): State<Shared>) -> Json<List<Pod>> {
    Json(List {
        items: node.pods(),
        metadata: Default::default(),
    })
}

/// `GET /pods/{ns}/{name}`: one pod, or 404.
pub async fn get(
    State(node): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Pod>, ApiError> {
    find(node.as_ref(), &namespace, &name).map(Json)
}

/// The pod `namespace/name`, or the 404 the API answers for it.
pub fn find(node: &dyn Node, namespace: &str, name: &str) -> Result<Pod, ApiError> {
    node.pods()
        .into_iter()
        .find(|p| {
            p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                && p.metadata.name.as_deref() == Some(name)
        })
        .ok_or_else(|| ApiError::not_found(format!("pods \"{name}\" not found")))
}

/// The query of `GET /events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    namespace: Option<String>,
    name: Option<String>,
}

/// `GET /events?namespace=NS&name=POD`: the pod's events as an `EventList`.
pub async fn events(
    State(node): State<Shared>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<List<Event>>, ApiError> {
    let (Some(namespace), Some(name)) = (query.namespace, query.name) else {
        return Err(ApiError::bad_request(
            "events are listed per pod: ?namespace=NS&name=POD",
        ));
    };
    Ok(Json(List {
        items: node.events(&namespace, &name),
        metadata: Default::default(),
    }))
}
