//! May this user do this, as the upstream kubelet authorises requests to its API: the
//! request becomes `verb` on `nodes/<subresource>` of this node, asked of the API server
//! (SubjectAccessReview); with `--authorization-mode=AlwaysAllow` everything is allowed.
//!
//! Paths map to subresources as upstream maps them, fine-grained authorisation included
//! (on by default since Kubernetes 1.33): `/pods` and `/healthz` try `pods` and `healthz`
//! first and fall back to `proxy`; `/stats`, `/metrics`, `/logs` and `/checkpoint` are
//! `stats`, `metrics`, `log` and `checkpoint`; everything else (exec, attach,
//! port-forward, container logs, run) is `proxy`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::Cache;
use super::review::{Access, ReviewError, Reviewer, User};

/// How long an allowed access is trusted (upstream's `cacheAuthorizedTTL`).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied access stays denied without asking again (`cacheUnauthorizedTTL`).
const DENIED_TTL: Duration = Duration::from_secs(30);

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every authenticated request is allowed.
    AlwaysAllow,
    /// Each request is reviewed by the API server (SubjectAccessReview).
    #[default]
    Webhook,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "AlwaysAllow" => Ok(Mode::AlwaysAllow),
            "Webhook" => Ok(Mode::Webhook),
            _ => Err(format!(
                "unknown authorization mode {text:?}: expected AlwaysAllow or Webhook"
            )),
        }
    }
}

/// What a request asks for: the verb and the subresources tried, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The API verb of the HTTP method.
    pub verb: &'static str,
    /// The subresources of `nodes` that would allow it; any one suffices.
    pub subresources: Vec<&'static str>,
}

/// The verb of an HTTP method, as upstream maps it (upgrades keep their method's verb);
/// methods it does not map get an empty verb, which no rule allows.
pub fn verb(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// The attributes of a request for `path` with `method`.
pub fn attributes(method: &str, path: &str) -> Attributes {
    let mut subresources = Vec::new();
    if under(path, "/pods") || under(path, "/runningpods") {
        subresources.push("pods");
    } else if under(path, "/healthz") {
        subresources.push("healthz");
    } else if under(path, "/configz") {
        subresources.push("configz");
    } else if under(path, "/statusz") {
        subresources.push("statusz");
    }
    subresources.push(if under(path, "/stats") {
        "stats"
    } else if under(path, "/metrics") {
        "metrics"
    } else if under(path, "/logs") {
        "log"
    } else if under(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    Attributes {
        verb: verb(method),
        subresources,
    }
}

/// Whether `path` is `prefix` or below it (`/stats` covers `/stats/summary`, not
/// `/statsfoo`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why a request is not allowed.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// The reviews said no (403; upstream's message).
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{}])", subresources.join(" "))]
    Forbidden {
        /// Who asked.
        user: String,
        /// The verb asked for.
        verb: String,
        /// The subresources tried.
        subresources: Vec<String>,
    },
    /// The access could not be reviewed (500).
    #[error("Authorization error (user={user}, verb={verb}, resource=nodes, subresource(s)=[{}]): {source}", subresources.join(" "))]
    Review {
        /// Who asked.
        user: String,
        /// The verb asked for.
        verb: String,
        /// The subresources tried.
        subresources: Vec<String>,
        /// The failed review.
        source: ReviewError,
    },
}

/// Authorises requests (see the module documentation).
pub struct Authorizer {
    mode: Mode,
    node: String,
    reviewer: Option<Arc<dyn Reviewer>>,
    decisions: Cache<Access, bool>,
}

impl Authorizer {
    /// An authoriser for the node `node`; `reviewer` answers in `Webhook` mode (without
    /// one, every request there is denied).
    pub fn new(mode: Mode, node: &str, reviewer: Option<Arc<dyn Reviewer>>) -> Authorizer {
        Authorizer {
            mode,
            node: node.into(),
            reviewer,
            decisions: Cache::new(),
        }
    }

    /// Allow `user`'s `method` on `path`, or say why not.
    pub async fn authorize(&self, user: &User, method: &str, path: &str) -> Result<(), AuthzError> {
        if self.mode == Mode::AlwaysAllow {
            return Ok(());
        }
        let attributes = attributes(method, path);
        let failure = |source: Option<ReviewError>| {
            let (user, verb) = (user.name.clone(), attributes.verb.to_string());
            let subresources = attributes
                .subresources
                .iter()
                .map(|s| s.to_string())
                .collect();
            match source {
                Some(source) => AuthzError::Review {
                    user,
                    verb,
                    subresources,
                    source,
                },
                None => AuthzError::Forbidden {
                    user,
                    verb,
                    subresources,
                },
            }
        };
        let Some(reviewer) = &self.reviewer else {
            return Err(failure(None));
        };
        for subresource in &attributes.subresources {
            let access = Access {
                user: user.name.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                verb: attributes.verb.into(),
                node: self.node.clone(),
                subresource: (*subresource).into(),
            };
            if self
                .allowed(reviewer.as_ref(), access)
                .await
                .map_err(|e| failure(Some(e)))?
            {
                return Ok(());
            }
        }
        Err(failure(None))
    }

    async fn allowed(&self, reviewer: &dyn Reviewer, access: Access) -> Result<bool, ReviewError> {
        if let Some(known) = self.decisions.get(&access, Instant::now()) {
            return Ok(known);
        }
        let allowed = reviewer.authorize(&access).await?;
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        self.decisions.put(access, allowed, Instant::now(), ttl);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::review::MemoryReviewer;

    #[test]
    fn paths_map_to_subresources_as_upstream() {
        let cases = [
            ("GET", "/stats/summary", "get", vec!["stats"]),
            ("GET", "/stats", "get", vec!["stats"]),
            ("GET", "/statsfoo", "get", vec!["proxy"]),
            ("GET", "/metrics", "get", vec!["metrics"]),
            ("GET", "/metrics/resource", "get", vec!["metrics"]),
            ("GET", "/logs/syslog", "get", vec!["log"]),
            ("POST", "/checkpoint/ns/p/c", "create", vec!["checkpoint"]),
            ("GET", "/pods", "get", vec!["pods", "proxy"]),
            ("GET", "/runningpods/", "get", vec!["pods", "proxy"]),
            ("GET", "/healthz", "get", vec!["healthz", "proxy"]),
            ("GET", "/containerLogs/ns/p/c", "get", vec!["proxy"]),
            ("POST", "/exec/ns/p/c", "create", vec!["proxy"]),
            ("GET", "/exec/ns/p/c", "get", vec!["proxy"]),
            ("POST", "/attach/ns/p/c", "create", vec!["proxy"]),
            ("POST", "/portForward/ns/p", "create", vec!["proxy"]),
            ("POST", "/run/ns/p/c", "create", vec!["proxy"]),
            ("HEAD", "/spec", "get", vec!["proxy"]),
            ("PUT", "/x", "update", vec!["proxy"]),
            ("PATCH", "/x", "patch", vec!["proxy"]),
            ("DELETE", "/x", "delete", vec!["proxy"]),
        ];
        for (method, path, verb, subresources) in cases {
            assert_eq!(
                attributes(method, path),
                Attributes { verb, subresources },
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn reviews_decide_and_are_cached() {
        let reviewer = Arc::new(MemoryReviewer::new());
        reviewer.grant("metrics-server", "stats");
        reviewer.grant("viewer", "proxy");
        let authz = Authorizer::new(Mode::Webhook, "node-a", Some(reviewer.clone()));
        let scraper = User::named("metrics-server", &[]);
        authz
            .authorize(&scraper, "GET", "/stats/summary")
            .await
            .unwrap();
        authz
            .authorize(&scraper, "GET", "/stats/summary")
            .await
            .unwrap();
        assert_eq!(reviewer.reviews(), 1);
        let denied = authz
            .authorize(&scraper, "POST", "/exec/ns/p/c")
            .await
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "Forbidden (user=metrics-server, verb=create, resource=nodes, subresource(s)=[proxy])"
        );
        // `/pods` falls back from `pods` to `proxy`.
        let viewer = User::named("viewer", &[]);
        authz.authorize(&viewer, "GET", "/pods").await.unwrap();
        let denied = authz.authorize(&scraper, "GET", "/pods").await.unwrap_err();
        assert!(
            denied.to_string().ends_with("subresource(s)=[pods proxy])"),
            "{denied}"
        );
    }

    #[tokio::test]
    async fn always_allow_asks_nobody() {
        let authz = Authorizer::new(Mode::AlwaysAllow, "node-a", None);
        authz
            .authorize(&User::named("anyone", &[]), "POST", "/exec/a/b/c")
            .await
            .unwrap();
        let closed = Authorizer::new(Mode::Webhook, "node-a", None);
        assert!(closed
            .authorize(&User::named("anyone", &[]), "GET", "/healthz")
            .await
            .is_err());
    }
}
