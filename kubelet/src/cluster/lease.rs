//! The node's heartbeat: its Lease in `kube-node-lease`, created or renewed every quarter
//! of `nodeLeaseDurationSeconds`, as upstream's lease controller keeps it. The node
//! authorizer lets a node get, create and update only the lease named after it.
//!
//! A renewal updates (PUT) the last lease seen, with its resourceVersion; a conflict or a
//! missing lease makes it read the lease again (creating it when absent) and retry; other
//! failures retry a few times at once, then with a growing pause.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::client::bounded;
use crate::node::lease::{node_lease, LEASE_NAMESPACE};

/// Updates tried on one lease before reading it again (upstream's `maxUpdateRetries`).
const UPDATE_RETRIES: usize = 5;
/// The first pause between attempts to read or create the lease.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between attempts (upstream's `maxBackoff`).
const MAX_BACKOFF: Duration = Duration::from_secs(7);

/// The lease's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The node's name: the lease's name and holder.
    pub node_name: String,
    /// `nodeLeaseDurationSeconds`.
    pub duration_seconds: i32,
}

impl LeaseSettings {
    /// How often the lease is renewed: a quarter of its duration (10 s for 40 s).
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.duration_seconds).unwrap_or(1).max(1) * 250)
    }

    /// How long one request may take: the renewal interval, at least 5 s.
    fn request_timeout(&self) -> Duration {
        self.renew_interval().max(Duration::from_secs(5))
    }
}

/// The lease to send at a renewal: `base` (the last one seen, whose resourceVersion makes
/// the update conditional) with this node as holder, the duration, `renewTime` now and,
/// once the Node's uid is known, the Node as owner. Without a base: a new lease.
pub fn renewed(base: Option<&Lease>, settings: &LeaseSettings, node_uid: Option<&str>) -> Lease {
    let fresh = node_lease(
        &settings.node_name,
        node_uid,
        settings.duration_seconds,
        Utc::now(),
    );
    let Some(base) = base else {
        return fresh;
    };
    let mut lease = base.clone();
    let spec = lease.spec.get_or_insert_with(Default::default);
    let fresh_spec = fresh.spec.unwrap_or_default();
    spec.holder_identity = fresh_spec.holder_identity;
    spec.lease_duration_seconds = fresh_spec.lease_duration_seconds;
    spec.renew_time = fresh_spec.renew_time;
    if node_uid.is_some() {
        lease.metadata.owner_references = fresh.metadata.owner_references;
    }
    lease
}

/// What to do after a failed update of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another writer moved it, or it is gone: read it again (create it if absent).
    Reread,
    /// Try the same update again.
    Retry,
}

/// How a failed update is followed up, from its error.
pub fn after_failure(error: &kube::Error) -> AfterFailure {
    match error {
        kube::Error::Api(status) if status.is_conflict() || status.is_not_found() => {
            AfterFailure::Reread
        }
        _ => AfterFailure::Retry,
    }
}

/// The pause after `previous`: doubled, at most [`MAX_BACKOFF`].
pub fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).min(MAX_BACKOFF)
}

/// Keep the node's lease renewed, forever. `node_uid` says the registered Node's uid
/// (None until registration), which becomes the lease's owner.
pub async fn keep(
    client: kube::Client,
    settings: LeaseSettings,
    node_uid: watch::Receiver<Option<String>>,
) {
    let mut keeper = Keeper {
        api: Api::namespaced(client, LEASE_NAMESPACE),
        settings,
        node_uid,
        last: None,
    };
    let mut interval = tokio::time::interval(keeper.settings.renew_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        keeper.renew().await;
    }
}

/// The renewal state: the last lease the API server returned.
struct Keeper {
    api: Api<Lease>,
    settings: LeaseSettings,
    node_uid: watch::Receiver<Option<String>>,
    last: Option<Lease>,
}

impl Keeper {
    /// One renewal, retried until it succeeds.
    async fn renew(&mut self) {
        if let Some(base) = self.last.take() {
            if self.update(base).await {
                return;
            }
        }
        let mut pause = FIRST_BACKOFF;
        loop {
            match self.ensure().await {
                Ok(None) => return,
                Ok(Some(existing)) => {
                    if self.update(existing).await {
                        return;
                    }
                }
                Err(error) => tracing::warn!(
                    lease = %self.settings.node_name,
                    "reading or creating the node lease failed, retrying in {pause:?}: {error}"
                ),
            }
            tokio::time::sleep(pause).await;
            pause = next_backoff(pause);
        }
    }

    /// Read the lease, or create it when absent. `Ok(None)`: created, nothing more to do;
    /// `Ok(Some(lease))`: the lease to update.
    async fn ensure(&mut self) -> Result<Option<Lease>, kube::Error> {
        let limit = self.settings.request_timeout();
        match bounded(limit, self.api.get_opt(&self.settings.node_name)).await? {
            Some(lease) => Ok(Some(lease)),
            None => {
                let uid = self.node_uid.borrow().clone();
                let lease = renewed(None, &self.settings, uid.as_deref());
                let created =
                    bounded(limit, self.api.create(&PostParams::default(), &lease)).await?;
                tracing::info!(lease = %self.settings.node_name, "created the node lease");
                self.last = Some(created);
                Ok(None)
            }
        }
    }

    /// Update `base` (a few tries); false when it must be read again.
    async fn update(&mut self, base: Lease) -> bool {
        for attempt in 0..UPDATE_RETRIES {
            let uid = self.node_uid.borrow().clone();
            let lease = renewed(Some(&base), &self.settings, uid.as_deref());
            let params = PostParams::default();
            let replace = self.api.replace(&self.settings.node_name, &params, &lease);
            match bounded(self.settings.request_timeout(), replace).await {
                Ok(updated) => {
                    self.last = Some(updated);
                    return true;
                }
                Err(error) => {
                    tracing::warn!(
                        lease = %self.settings.node_name,
                        attempt,
                        "renewing the node lease failed: {error}"
                    );
                    if after_failure(&error) == AfterFailure::Reread {
                        return false;
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            node_name: "node-a".to_string(),
            duration_seconds: 40,
        }
    }

    #[test]
    fn renewal_every_quarter_of_the_duration() {
        assert_eq!(settings().renew_interval(), Duration::from_secs(10));
        let short = LeaseSettings {
            duration_seconds: 1,
            ..settings()
        };
        assert_eq!(short.renew_interval(), Duration::from_millis(250));
    }

    #[test]
    fn a_renewal_keeps_the_version_and_moves_renew_time() {
        let mut base = renewed(None, &settings(), None);
        base.metadata.resource_version = Some("42".to_string());
        base.metadata.uid = Some("lease-uid".to_string());
        let spec = base.spec.as_mut().unwrap();
        spec.holder_identity = Some("someone-else".to_string());
        spec.renew_time = None;
        let lease = renewed(Some(&base), &settings(), None);
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(lease.metadata.uid.as_deref(), Some("lease-uid"));
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(spec.renew_time.is_some());
        assert!(lease.metadata.owner_references.is_none());
        let owned = renewed(Some(&lease), &settings(), Some("node-uid"));
        let owner = &owned.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", "node-uid")
        );
        // An owner once set stays while the uid is unknown (e.g. during re-registration).
        let still = renewed(Some(&owned), &settings(), None);
        assert_eq!(
            still.metadata.owner_references,
            owned.metadata.owner_references
        );
    }

    #[test]
    fn conflicts_and_missing_leases_are_read_again() {
        let api = |code: u16, reason: &str| {
            kube::Error::Api(Box::new(Status::failure("x", reason).with_code(code)))
        };
        assert_eq!(after_failure(&api(409, "Conflict")), AfterFailure::Reread);
        assert_eq!(after_failure(&api(404, "NotFound")), AfterFailure::Reread);
        assert_eq!(
            after_failure(&api(500, "InternalError")),
            AfterFailure::Retry
        );
        assert_eq!(after_failure(&api(403, "Forbidden")), AfterFailure::Retry);
    }

    #[test]
    fn the_pause_doubles_up_to_seven_seconds() {
        let mut pause = FIRST_BACKOFF;
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(pause.as_millis());
            pause = next_backoff(pause);
        }
        assert_eq!(seen, [200, 400, 800, 1600, 3200, 6400, 7000, 7000]);
    }
}
