//! Watches: newline-delimited `{"type": ..., "object": ...}` events from a
//! resourceVersion on (replayed from the store's log, then live), selector-aware
//! (an object leaving the selected set is DELETED), with periodic BOOKMARKs, the
//! `sendInitialEvents` streaming list, `timeoutSeconds`, and a 410 ERROR event when the
//! log no longer reaches back far enough.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::resources::Resource;
use super::selectors::Selector;
use super::status::ApiError;
use super::store::{Change, ChangeKind, Store};
use super::table;

/// What a watch request asks for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The resource type watched.
    pub resource: &'static Resource,
    /// Only objects in this namespace, if set.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
    /// `resourceVersion`; `None` for unset or `"0"` (start with the current state).
    pub resource_version: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`: the current state as ADDED events, then a bookmark
    /// annotated `k8s.io/initial-events-end`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Objects as one-row Tables (`kubectl get -w`), carrying the object as this
    /// `includeObject` says.
    pub table: Option<String>,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event this watch sends for `change`, if any: an object entering the
    /// selected set is ADDED, one leaving it DELETED.
    pub fn event_for(&self, change: &Change) -> Option<Value> {
        if change.resource != self.resource {
            return None;
        }
        let now = self.selects(&change.object);
        let kind = match change.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Deleted if now => "DELETED",
            ChangeKind::Modified => {
                let before = change.old.as_ref().is_some_and(|o| self.selects(o));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(json!({"type": kind, "object": change.object}))
    }

    /// `event` as sent: with a Table for its object when one was asked for, the column
    /// definitions only in the first (as the real server sends them).
    fn render(&self, mut event: Value, columns_sent: &mut bool) -> Value {
        let Some(include) = &self.table else {
            return event;
        };
        if !matches!(
            event["type"].as_str(),
            Some("ADDED" | "MODIFIED" | "DELETED")
        ) {
            return event;
        }
        let object = event["object"].take();
        let rv = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rendered = table::table(self.resource, &[object], rv, include);
        if *columns_sent {
            rendered["columnDefinitions"] = json!([]);
        }
        *columns_sent = true;
        event["object"] = rendered;
        event
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}
        });
        if initial_end {
            object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": object})
    }
}

fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The response body of a watch: events as they happen until the client goes away,
/// the timeout passes or the server stops.
pub fn stream(store: &Arc<Mutex<Store>>, request: WatchRequest, bookmark_every: Duration) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let start = {
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        match request.resource_version {
            Some(rv) if !request.send_initial_events => {
                store.watch_from(rv).map(|(replay, changes)| {
                    let events = replay.iter().filter_map(|c| request.event_for(c)).collect();
                    (events, changes, rv.max(store.resource_version()), false)
                })
            }
            _ => {
                let current: Vec<Value> = store
                    .list(
                        request.resource,
                        request.namespace.as_deref(),
                        &request.labels,
                        &request.fields,
                    )
                    .into_iter()
                    .map(|o| json!({"type": "ADDED", "object": o}))
                    .collect();
                Ok((
                    current,
                    store.subscribe(),
                    store.resource_version(),
                    request.send_initial_events,
                ))
            }
        }
    };
    tokio::spawn(async move {
        match start {
            Err(expired) => {
                let _ = tx
                    .send(line(
                        &json!({"type": "ERROR", "object": expired.to_status()}),
                    ))
                    .await;
            }
            Ok((initial, changes, rv, initial_end)) => {
                let mut columns_sent = false;
                for event in initial {
                    let event = request.render(event, &mut columns_sent);
                    if tx.send(line(&event)).await.is_err() {
                        return;
                    }
                }
                if initial_end {
                    let _ = tx.send(line(&request.bookmark(rv, true))).await;
                }
                follow(tx, changes, request, rv, bookmark_every, columns_sent).await;
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    Body::from_stream(body)
}

async fn follow(
    tx: mpsc::Sender<Bytes>,
    mut changes: broadcast::Receiver<Arc<Change>>,
    request: WatchRequest,
    mut rv: u64,
    bookmark_every: Duration,
    mut columns_sent: bool,
) {
    let deadline = tokio::time::sleep(request.timeout.unwrap_or(Duration::from_secs(86_400)));
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(bookmark_every);
    ticker.reset();
    loop {
        let event = tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if request.bookmarks => Some(request.bookmark(rv, false)),
            change = changes.recv() => match change {
                Ok(change) if change.rv <= rv => None,
                Ok(change) => {
                    rv = change.rv;
                    request.event_for(&change)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // This watcher fell behind the log: it must relist, as after a compaction.
                    let expired = ApiError::expired(rv, rv + 1).to_status();
                    let _ = tx.send(line(&json!({"type": "ERROR", "object": expired}))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Some(event) = event {
            let event = request.render(event, &mut columns_sent);
            if tx.send(line(&event)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::store::by_plural;

    fn change(kind: ChangeKind, node: &str, old_node: Option<&str>) -> Change {
        let pod = |n: &str| json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": n}});
        Change {
            rv: 7,
            resource: by_plural("pods"),
            kind,
            object: pod(node),
            old: old_node.map(pod),
        }
    }

    #[test]
    fn selector_watches_see_objects_enter_and_leave() {
        let request = WatchRequest {
            resource: by_plural("pods"),
            namespace: None,
            labels: Selector::default(),
            fields: Selector::fields("spec.nodeName=n1").unwrap(),
            resource_version: None,
            bookmarks: false,
            send_initial_events: false,
            timeout: None,
            table: None,
        };
        let kind = |c: Change| {
            request
                .event_for(&c)
                .map(|e| e["type"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(
            kind(change(ChangeKind::Added, "n1", None)).as_deref(),
            Some("ADDED")
        );
        assert_eq!(kind(change(ChangeKind::Added, "n2", None)), None);
        assert_eq!(
            kind(change(ChangeKind::Modified, "n1", Some("n1"))).as_deref(),
            Some("MODIFIED")
        );
        assert_eq!(
            kind(change(ChangeKind::Modified, "n1", Some(""))).as_deref(),
            Some("ADDED")
        );
        assert_eq!(
            kind(change(ChangeKind::Modified, "n2", Some("n1"))).as_deref(),
            Some("DELETED")
        );
        assert_eq!(
            kind(change(ChangeKind::Deleted, "n1", None)).as_deref(),
            Some("DELETED")
        );
        let mut other = change(ChangeKind::Added, "n1", None);
        other.resource = by_plural("configmaps");
        assert_eq!(kind(other), None);
    }
}
