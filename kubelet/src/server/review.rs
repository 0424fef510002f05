//! The API server's reviews the kubelet API relies on: TokenReview (who holds a bearer
//! token) and SubjectAccessReview (may this user do this), behind [`Reviewer`].
//!
//! [`KubeReviewer`] asks the API server through the kube client; [`MemoryReviewer`] answers
//! from tables a test fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// An authenticated user, as the API server's user info names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// The user name (a client certificate's CN, a token's user).
    pub name: String,
    /// The user's UID, when the authenticator knows one.
    pub uid: Option<String>,
    /// The user's groups (a client certificate's O values).
    pub groups: Vec<String>,
    /// Extra attributes from the token's review.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user with a name and groups only.
    pub fn named(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            ..User::default()
        }
    }
}

/// One question to the authorizer: may `user` do `verb` on `nodes/<subresource>` of `node`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    /// Who asks.
    pub user: String,
    /// Their UID.
    pub uid: Option<String>,
    /// Their groups.
    pub groups: Vec<String>,
    /// Their extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
    /// The API verb (`get`, `create`, ...).
    pub verb: String,
    /// The node's name.
    pub node: String,
    /// The subresource of `nodes` (`proxy`, `stats`, `log`, ...).
    pub subresource: String,
}

/// Why a review could not be made (the API server is away or refused the review itself).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{review}: {message}")]
pub struct ReviewError {
    /// Which review failed (`TokenReview`, `SubjectAccessReview`).
    pub review: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Who reviews tokens and access for the kubelet API.
pub trait Reviewer: Send + Sync + 'static {
    /// The user a bearer token belongs to; None when the API server does not know it.
    fn authenticate_token(&self, token: &str) -> BoxFuture<'_, Result<Option<User>, ReviewError>>;
    /// Whether the access is allowed.
    fn authorize(&self, access: &Access) -> BoxFuture<'_, Result<bool, ReviewError>>;
}

/// The reviews made by the API server (authentication.k8s.io/v1 TokenReview and
/// authorization.k8s.io/v1 SubjectAccessReview).
pub struct KubeReviewer {
    client: kube::Client,
}

impl KubeReviewer {
    /// Reviews through `client` (the node's credential may create both reviews).
    pub fn new(client: kube::Client) -> KubeReviewer {
        KubeReviewer { client }
    }
}

impl Reviewer for KubeReviewer {
    fn authenticate_token(&self, token: &str) -> BoxFuture<'_, Result<Option<User>, ReviewError>> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| ReviewError {
                    review: "TokenReview",
                    message: e.to_string(),
                })?;
            let status = answer.status.unwrap_or_default();
            if let Some(error) = status.error.filter(|e| !e.is_empty()) {
                return Err(ReviewError {
                    review: "TokenReview",
                    message: error,
                });
            }
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let info = status.user.unwrap_or_default();
            Ok(Some(User {
                name: info.username.unwrap_or_default(),
                uid: info.uid,
                groups: info.groups.unwrap_or_default(),
                extra: info.extra.unwrap_or_default(),
            }))
        })
    }

    fn authorize(&self, access: &Access) -> BoxFuture<'_, Result<bool, ReviewError>> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(access.user.clone()),
                uid: access.uid.clone(),
                groups: Some(access.groups.clone()),
                extra: (!access.extra.is_empty()).then(|| access.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.clone()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(access.subresource.clone()),
                    name: Some(access.node.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        Box::pin(async move {
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| ReviewError {
                    review: "SubjectAccessReview",
                    message: e.to_string(),
                })?;
            Ok(answer.status.is_some_and(|s| s.allowed))
        })
    }
}

/// Reviews answered from tables: known tokens, and grants of `(user, subresource)` where
/// `*` grants every subresource. Counts the reviews it answers (to test caching).
#[derive(Default)]
pub struct MemoryReviewer {
    tokens: Mutex<BTreeMap<String, User>>,
    grants: Mutex<BTreeSet<(String, String)>>,
    reviews: AtomicUsize,
}

impl MemoryReviewer {
    /// A reviewer that knows no token and grants nothing.
    pub fn new() -> MemoryReviewer {
        MemoryReviewer::default()
    }

    /// `token` authenticates as `user`.
    pub fn add_token(&self, token: &str, user: User) {
        lock(&self.tokens).insert(token.into(), user);
    }

    /// `user` may use `nodes/<subresource>` (`*`: all of them), with any verb.
    pub fn grant(&self, user: &str, subresource: &str) {
        lock(&self.grants).insert((user.into(), subresource.into()));
    }

    /// How many reviews were answered.
    pub fn reviews(&self) -> usize {
        self.reviews.load(Ordering::SeqCst)
    }
}

impl Reviewer for MemoryReviewer {
    fn authenticate_token(&self, token: &str) -> BoxFuture<'_, Result<Option<User>, ReviewError>> {
        self.reviews.fetch_add(1, Ordering::SeqCst);
        let user = lock(&self.tokens).get(token).cloned();
        Box::pin(async move { Ok(user) })
    }

    fn authorize(&self, access: &Access) -> BoxFuture<'_, Result<bool, ReviewError>> {
        self.reviews.fetch_add(1, Ordering::SeqCst);
        let grants = lock(&self.grants);
        let allowed = grants.contains(&(access.user.clone(), access.subresource.clone()))
            || grants.contains(&(access.user.clone(), "*".into()));
        Box::pin(async move { Ok(allowed) })
    }
}

/// The guard of a table; a poisoned one is still a consistent table.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::Json;
    use serde_json::{json, Value};

    /// A kube client for a loopback HTTP server answering both reviews as the API server
    /// does: the token `good` is alice's, and only alice may use `nodes/proxy`.
    async fn client() -> kube::Client {
        let app = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(|Json(review): Json<Value>| async move {
                    let good = review["spec"]["token"] == "good";
                    let user = json!({"username": "alice", "uid": "u-1", "groups": ["devs"],
                        "extra": {"scopes": ["a"]}});
                    Json(
                        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "status": if good { json!({"authenticated": true, "user": user}) }
                                  else { json!({"authenticated": false}) }}),
                    )
                }),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(|Json(review): Json<Value>| async move {
                    let spec = &review["spec"];
                    let attrs = &spec["resourceAttributes"];
                    let allowed = spec["user"] == "alice"
                        && spec["groups"] == json!(["devs"])
                        && attrs["resource"] == "nodes"
                        && attrs["subresource"] == "proxy"
                        && attrs["name"] == "node-a"
                        && attrs["verb"] == "create";
                    Json(json!({"apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview", "status": {"allowed": allowed}}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn the_api_server_reviews_tokens_and_access() {
        let reviewer = KubeReviewer::new(client().await);
        let alice = reviewer.authenticate_token("good").await.unwrap().unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid.as_deref(), Some("u-1"));
        assert_eq!(alice.extra["scopes"], ["a"]);
        assert_eq!(reviewer.authenticate_token("bad").await.unwrap(), None);
        let mut access = Access {
            user: "alice".into(),
            uid: alice.uid.clone(),
            groups: vec!["devs".into()],
            extra: BTreeMap::new(),
            verb: "create".into(),
            node: "node-a".into(),
            subresource: "proxy".into(),
        };
        assert!(reviewer.authorize(&access).await.unwrap());
        access.subresource = "stats".into();
        assert!(!reviewer.authorize(&access).await.unwrap());
    }

    #[tokio::test]
    async fn an_absent_api_server_is_a_review_error() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let reviewer = KubeReviewer::new(kube::Client::try_from(config).unwrap());
        let err = reviewer.authenticate_token("good").await.unwrap_err();
        assert_eq!(err.review, "TokenReview");
    }
}
