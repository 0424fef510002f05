//! What the pods do, for those outside the workers who report it elsewhere: a revision
//! that moves whenever some pod's state may have changed (the API server's status
//! patcher waits on it and coalesces), and the stream of events the workers record (the
//! API server's event poster reads it).

use k8s_openapi::api::core::v1::Event;
use tokio::sync::{broadcast, watch};

/// Events kept for a slow reader before the oldest are dropped; events are advisory.
const EVENT_BACKLOG: usize = 512;

/// The node's pod observer, shared by the manager and every worker through `Cri`.
#[derive(Debug)]
pub struct Observer {
    revision: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
}

impl Default for Observer {
    fn default() -> Observer {
        Observer {
            revision: watch::Sender::new(0),
            events: broadcast::Sender::new(EVENT_BACKLOG),
        }
    }
}

impl Observer {
    /// Some pod's state may have changed (a worker woke and acted, a pod came or went).
    pub fn changed(&self) {
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    /// Wakes on every [`Observer::changed`] after subscribing; many changes between two
    /// reads are seen as one, which is the coalescing a status reporter wants.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// A worker recorded `event` about its pod.
    pub fn event(&self, event: &Event) {
        // No receiver is no error: without an API server nobody posts events.
        let _ = self.events.send(event.clone());
    }

    /// The events recorded from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_coalesce_and_events_reach_subscribers() {
        let observer = Observer::default();
        let mut revisions = observer.subscribe();
        let mut events = observer.events();
        observer.changed();
        observer.changed();
        revisions.changed().await.expect("a change");
        assert_eq!(*revisions.borrow_and_update(), 2);
        assert!(!revisions.has_changed().expect("sender alive"));
        let event = Event {
            reason: Some("Started".into()),
            ..Event::default()
        };
        observer.event(&event);
        assert_eq!(events.recv().await.expect("an event").reason, event.reason);
    }
}
