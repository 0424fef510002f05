//! Who is asking, as the upstream kubelet authenticates requests to its API: a client
//! certificate verified against `--client-ca-file` (user = CN, groups = O), else a bearer
//! token reviewed by the API server (TokenReview), else anonymous when it is enabled.
//!
//! A bearer token that the review rejects is refused even when anonymous access is on,
//! as upstream does: a client that sent credentials wants them checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache::Cache;
use super::review::{ReviewError, Reviewer, User};

/// How long a token's successful review is trusted (upstream's webhook cache TTL).
const AUTHENTICATED_TTL: Duration = Duration::from_secs(120);
/// How long a rejected token stays rejected without asking again.
const UNAUTHENTICATED_TTL: Duration = Duration::from_secs(10);

/// The anonymous user's name and group.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group of every unauthenticated request.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group every authenticated user is given.
pub const AUTHENTICATED: &str = "system:authenticated";

/// The identity of a TLS connection's verified client certificate, if it showed one.
#[derive(Debug, Clone, Default)]
pub struct ClientCert(pub Option<User>);

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// No credentials, anonymous access off; or a bearer token nobody knows.
    #[error("Unauthorized")]
    Unauthorized,
    /// The token could not be reviewed.
    #[error("{0}")]
    Review(#[from] ReviewError),
}

/// Authenticates requests (see the module documentation).
pub struct Authenticator {
    /// Reviews bearer tokens; None: tokens are not accepted (webhook authentication off).
    reviewer: Option<Arc<dyn Reviewer>>,
    /// Whether a request without credentials is served as `system:anonymous`.
    anonymous: bool,
    /// Token reviews by the token's SHA-256 (tokens themselves are not kept).
    tokens: Cache<[u8; 32], Option<User>>,
}

impl Authenticator {
    /// An authenticator that reviews tokens with `reviewer` (if any).
    pub fn new(reviewer: Option<Arc<dyn Reviewer>>, anonymous: bool) -> Authenticator {
        Authenticator {
            reviewer,
            anonymous,
            tokens: Cache::new(),
        }
    }

    /// The user behind a request: its verified certificate's, its bearer token's (from the
    /// `Authorization` header), or anonymous.
    pub async fn authenticate(
        &self,
        cert: Option<&User>,
        authorization: Option<&str>,
    ) -> Result<User, AuthnError> {
        if let Some(user) = cert {
            return Ok(with_authenticated_group(user.clone()));
        }
        if let Some(token) = authorization.and_then(bearer_token) {
            return match &self.reviewer {
                Some(reviewer) => self
                    .review_token(reviewer.as_ref(), token)
                    .await?
                    .map(with_authenticated_group)
                    .ok_or(AuthnError::Unauthorized),
                None => Err(AuthnError::Unauthorized),
            };
        }
        if self.anonymous {
            return Ok(User::named(ANONYMOUS, &[UNAUTHENTICATED]));
        }
        Err(AuthnError::Unauthorized)
    }

    async fn review_token(
        &self,
        reviewer: &dyn Reviewer,
        token: &str,
    ) -> Result<Option<User>, ReviewError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.tokens.get(&key, Instant::now()) {
            return Ok(known);
        }
        let user = reviewer.authenticate_token(token).await?;
        let ttl = if user.is_some() {
            AUTHENTICATED_TTL
        } else {
            UNAUTHENTICATED_TTL
        };
        self.tokens.put(key, user.clone(), Instant::now(), ttl);
        Ok(user)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case); None for
/// other schemes or an empty token.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticated users are in `system:authenticated`, as the API server's authenticators
/// add it.
fn with_authenticated_group(mut user: User) -> User {
    if !user.groups.iter().any(|g| g == AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.into());
    }
    user
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::review::MemoryReviewer;

    fn reviewer() -> Arc<MemoryReviewer> {
        let reviewer = Arc::new(MemoryReviewer::new());
        reviewer.add_token("good", User::named("alice", &["devs"]));
        reviewer
    }

    #[tokio::test]
    async fn a_certificate_wins_over_a_token() {
        let authn = Authenticator::new(Some(reviewer()), false);
        let cert = User::named("kube-apiserver-kubelet-client", &["system:masters"]);
        let user = authn
            .authenticate(Some(&cert), Some("Bearer good"))
            .await
            .unwrap();
        assert_eq!(user.name, "kube-apiserver-kubelet-client");
        assert_eq!(user.groups, ["system:masters", AUTHENTICATED]);
    }

    #[tokio::test]
    async fn tokens_are_reviewed_once_and_bad_ones_refused() {
        let reviewer = reviewer();
        let authn = Authenticator::new(Some(reviewer.clone()), true);
        let user = authn.authenticate(None, Some("Bearer good")).await.unwrap();
        assert_eq!((user.name.as_str(), user.groups.len()), ("alice", 2));
        authn.authenticate(None, Some("bearer good")).await.unwrap();
        assert_eq!(
            reviewer.reviews(),
            1,
            "the second review came from the cache"
        );
        // Anonymous access does not rescue a token the API server rejects.
        assert!(matches!(
            authn.authenticate(None, Some("Bearer bad")).await,
            Err(AuthnError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn no_credentials_are_anonymous_only_when_enabled() {
        let closed = Authenticator::new(Some(reviewer()), false);
        assert!(matches!(
            closed.authenticate(None, None).await,
            Err(AuthnError::Unauthorized)
        ));
        assert!(matches!(
            closed.authenticate(None, Some("Basic dTpw")).await,
            Err(AuthnError::Unauthorized)
        ));
        let open = Authenticator::new(None, true);
        let user = open.authenticate(None, None).await.unwrap();
        assert_eq!(user, User::named(ANONYMOUS, &[UNAUTHENTICATED]));
        // Without webhook authentication a token is not accepted.
        assert!(open.authenticate(None, Some("Bearer good")).await.is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
    }
}
