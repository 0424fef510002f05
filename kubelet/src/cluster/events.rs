//! The events pod workers record, posted to the API server as core/v1 Events in the pod's
//! namespace, as client-go's event recorder posts them: a repeat of an event within ten
//! minutes raises the existing Event's `count` instead of creating another; each object
//! may burst 25 events, then one per five minutes; posting is rate-limited overall and
//! best effort (a few retries, then dropped), and never holds up a pod worker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::broadcast;

use crate::pod::status::time;

/// A repeat within this window raises the count of the Event already posted.
const REPEAT_WINDOW: chrono::Duration = chrono::Duration::minutes(10);
/// Events per object before the spam filter holds them back.
const SPAM_BURST: f64 = 25.0;
/// Then one event per object per this many seconds.
const SPAM_REFILL_SECONDS: f64 = 300.0;
/// Events posted per second overall, and the burst (upstream's `eventRecordQPS` and
/// `eventBurst` defaults).
const POST_QPS: f64 = 50.0;
const POST_BURST: f64 = 100.0;
/// Repeats remembered; older ones are forgotten first beyond this.
const MAX_REMEMBERED: usize = 4096;
/// Tries per event before it is dropped.
const ATTEMPTS: u32 = 3;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(burst: f64, per_second: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            burst,
            per_second,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
    }

    /// Take a token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take a token, returning how long to wait until it is really there.
    pub fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// What to send for an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new Event.
    Create(Event),
    /// A repeat: raise the count, last time and message of the Event named in it (created
    /// anew should it be gone).
    Patch(Event),
    /// Held back by the spam filter.
    Skip,
}

/// An Event already posted, for its repeats.
#[derive(Debug, Clone)]
struct Posted {
    name: String,
    count: i32,
    first: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    last: DateTime<Utc>,
}

/// Repeats and spam, as client-go's event correlator judges them.
#[derive(Debug, Default)]
pub struct Correlator {
    posted: HashMap<String, Posted>,
    spam: HashMap<String, Bucket>,
}

/// What makes two events the same: source, object (with field path), type, reason and
/// message.
pub fn repeat_key(event: &Event) -> String {
    let o = &event.involved_object;
    [
        Some(spam_key(event).as_str()),
        o.field_path.as_deref(),
        event.type_.as_deref(),
        event.reason.as_deref(),
        event.message.as_deref(),
    ]
    .map(Option::unwrap_or_default)
    .join("\u{0}")
}

/// Whose spam budget an event spends: its source and object.
pub fn spam_key(event: &Event) -> String {
    let source = event.source.clone().unwrap_or_default();
    let o = &event.involved_object;
    [
        source.component.as_deref(),
        source.host.as_deref(),
        o.kind.as_deref(),
        o.namespace.as_deref(),
        o.name.as_deref(),
        o.uid.as_deref(),
        o.api_version.as_deref(),
    ]
    .map(Option::unwrap_or_default)
    .join("\u{0}")
}

impl Correlator {
    /// Judge `event`, recorded at `now` (`instant` on the monotonic clock). Repeats are
    /// counted even when the spam filter holds them back, so the next post tells the
    /// true count, as upstream does.
    pub fn observe(&mut self, mut event: Event, now: DateTime<Utc>, instant: Instant) -> Action {
        let key = repeat_key(&event);
        let repeat = self
            .posted
            .get_mut(&key)
            .filter(|p| now.signed_duration_since(p.last) < REPEAT_WINDOW);
        let patch = match repeat {
            Some(posted) => {
                posted.count += 1;
                posted.last = now;
                event.metadata.name = Some(posted.name.clone());
                event.count = Some(posted.count);
                event.first_timestamp = posted.first.clone();
                event.last_timestamp = Some(time(now));
                true
            }
            None => {
                self.remember(
                    key,
                    Posted {
                        name: event.metadata.name.clone().unwrap_or_default(),
                        count: 1,
                        first: event.first_timestamp.clone(),
                        last: now,
                    },
                );
                event.count = Some(1);
                false
            }
        };
        let budget = self
            .spam
            .entry(spam_key(&event))
            .or_insert_with(|| Bucket::new(SPAM_BURST, 1.0 / SPAM_REFILL_SECONDS, instant));
        if !budget.try_take(instant) {
            return Action::Skip;
        }
        if patch {
            Action::Patch(event)
        } else {
            Action::Create(event)
        }
    }

    fn remember(&mut self, key: String, posted: Posted) {
        if self.posted.len() >= MAX_REMEMBERED {
            let cutoff = posted.last - REPEAT_WINDOW;
            self.posted.retain(|_, p| p.last >= cutoff);
            if self.posted.len() >= MAX_REMEMBERED {
                self.posted.clear();
            }
            // Spam budgets of objects quiet for long are full again anyway.
            self.spam.clear();
        }
        self.posted.insert(key, posted);
    }
}

/// `event` as the node posts it: from the kubelet on `node`, in its object's namespace,
/// without `eventTime` (a legacy core/v1 Event, as client-go's recorder posts them; an
/// eventTime would oblige the newer fields the API server then validates).
pub fn prepare(mut event: Event, node: &str) -> Event {
    let namespace = event
        .involved_object
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    event.metadata.namespace = Some(namespace);
    event.metadata.resource_version = None;
    event.source = Some(EventSource {
        component: Some("kubelet".into()),
        host: Some(node.to_string()),
    });
    event.reporting_component = Some("kubelet".into());
    event.reporting_instance = Some(node.to_string());
    event.event_time = None;
    event
}

/// Post the events read from `events` through `client`, as the kubelet on `node`, until
/// the sender goes away. Spawn it; it never blocks the workers that record events (a
/// slow API server makes it skip the oldest ones).
pub async fn post(client: kube::Client, mut events: broadcast::Receiver<Event>, node: String) {
    let mut correlator = Correlator::default();
    let mut limit = Bucket::new(POST_BURST, POST_QPS, Instant::now());
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "events dropped: the API server is too slow");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let action = correlator.observe(prepare(event, &node), Utc::now(), Instant::now());
        if action == Action::Skip {
            continue;
        }
        tokio::time::sleep(limit.take(Instant::now())).await;
        send(&client, action).await;
    }
}

/// Send one event, retrying transient failures with back-off; then give up (best effort).
async fn send(client: &kube::Client, action: Action) {
    let (mut event, mut patch) = match action {
        Action::Create(e) => (e, false),
        Action::Patch(e) => (e, true),
        Action::Skip => return,
    };
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let result = if patch {
            let name = event.metadata.name.clone().unwrap_or_default();
            let body = serde_json::json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(body))
                .await
                .map(drop)
        } else {
            api.create(&PostParams::default(), &event).await.map(drop)
        };
        let code = match &result {
            Ok(()) => return,
            Err(kube::Error::Api(status)) => Some(status.code),
            Err(_) => None,
        };
        match code {
            // The Event a repeat counts on is gone (expired): post it anew.
            Some(404) if patch => {
                patch = false;
                event.metadata.resource_version = None;
                continue;
            }
            // Already there (a retried create that had gone through), or refused for
            // good (a bad event will stay bad).
            Some(409) => return,
            Some(code) if (400..500).contains(&code) && code != 429 => {
                if let Err(e) = result {
                    tracing::warn!(reason = ?event.reason, error = %e, "the API server refused an event; dropped");
                }
                return;
            }
            _ => {}
        }
        if attempt == ATTEMPTS {
            if let Err(e) = result {
                tracing::warn!(reason = ?event.reason, error = %e, "posting an event failed; dropped");
            }
            return;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn event(name: &str, reason: &str, message: &str, uid: &str) -> Event {
        prepare(
            Event {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                involved_object: ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some("prod".into()),
                    name: Some("web".into()),
                    uid: Some(uid.into()),
                    ..ObjectReference::default()
                },
                reason: Some(reason.into()),
                message: Some(message.into()),
                type_: Some("Normal".into()),
                event_time: Some(MicroTime(time(at(0)).0)),
                ..Event::default()
            },
            "node-1",
        )
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn prepared_events_are_the_kubelets_in_the_pods_namespace() {
        let e = event("web.1", "Pulled", "done", "u");
        assert_eq!(e.metadata.namespace.as_deref(), Some("prod"));
        let source = e.source.clone().expect("a source");
        assert_eq!(source.component.as_deref(), Some("kubelet"));
        assert_eq!(source.host.as_deref(), Some("node-1"));
        assert_eq!(e.reporting_instance.as_deref(), Some("node-1"));
        assert!(e.event_time.is_none());
    }

    #[test]
    fn repeats_within_ten_minutes_patch_the_first_event() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let first = c.observe(event("web.1", "BackOff", "m", "u"), at(0), now);
        assert!(matches!(first, Action::Create(ref e) if e.count == Some(1)));
        let Action::Patch(second) = c.observe(event("web.2", "BackOff", "m", "u"), at(60), now)
        else {
            panic!("a repeat patches");
        };
        assert_eq!(second.metadata.name.as_deref(), Some("web.1"));
        assert_eq!(second.count, Some(2));
        assert_eq!(second.last_timestamp, Some(time(at(60))));
        // Another message, reason or pod is another event.
        assert!(matches!(
            c.observe(event("web.3", "BackOff", "other", "u"), at(61), now),
            Action::Create(_)
        ));
        assert!(matches!(
            c.observe(event("web.4", "BackOff", "m", "u2"), at(62), now),
            Action::Create(_)
        ));
        // Past ten minutes of quiet a repeat starts a new Event.
        let Action::Create(late) =
            c.observe(event("web.5", "BackOff", "m", "u"), at(60 + 601), now)
        else {
            panic!("a late repeat creates");
        };
        assert_eq!(late.metadata.name.as_deref(), Some("web.5"));
        assert_eq!(late.count, Some(1));
    }

    #[test]
    fn each_object_may_burst_25_events_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        let start = Instant::now();
        let mut posted = 0;
        for i in 0..40 {
            let e = event(&format!("web.{i}"), "Unhealthy", &format!("probe {i}"), "u");
            if c.observe(e, at(i), start) != Action::Skip {
                posted += 1;
            }
        }
        assert_eq!(posted, 25);
        // Another pod has its own budget.
        assert_ne!(
            c.observe(event("x.1", "Started", "s", "u2"), at(50), start),
            Action::Skip
        );
        let later = start + Duration::from_secs(301);
        assert_ne!(
            c.observe(
                event("web.41", "Unhealthy", "probe 41", "u"),
                at(400),
                later
            ),
            Action::Skip
        );
        assert_eq!(
            c.observe(
                event("web.42", "Unhealthy", "probe 42", "u"),
                at(401),
                later
            ),
            Action::Skip
        );
    }

    #[test]
    fn held_back_repeats_still_count() {
        let mut c = Correlator::default();
        let start = Instant::now();
        for i in 0..25 {
            c.observe(
                event(&format!("a.{i}"), "Unhealthy", &format!("m{i}"), "u"),
                at(0),
                start,
            );
        }
        assert_eq!(
            c.observe(event("b.1", "BackOff", "m", "u"), at(1), start),
            Action::Skip
        );
        assert_eq!(
            c.observe(event("b.2", "BackOff", "m", "u"), at(2), start),
            Action::Skip
        );
        let later = start + Duration::from_secs(300);
        let Action::Patch(e) = c.observe(event("b.3", "BackOff", "m", "u"), at(3), later) else {
            panic!("a counted repeat");
        };
        assert_eq!(e.count, Some(3));
        assert_eq!(e.metadata.name.as_deref(), Some("b.1"));
    }

    #[test]
    fn the_global_limit_spaces_posts_after_the_burst() {
        let now = Instant::now();
        let mut limit = Bucket::new(2.0, 10.0, now);
        assert_eq!(limit.take(now), Duration::ZERO);
        assert_eq!(limit.take(now), Duration::ZERO);
        assert_eq!(limit.take(now), Duration::from_millis(100));
        assert_eq!(limit.take(now), Duration::from_millis(200));
        let later = now + Duration::from_secs(1);
        assert_eq!(limit.take(later), Duration::ZERO);
    }
}
