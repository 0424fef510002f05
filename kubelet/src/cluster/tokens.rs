//! Service account tokens for projected `serviceAccountToken` volume sources, requested
//! from the API server (TokenRequest, bound to the pod) and renewed before they expire as
//! upstream's token manager does: once 80 % of the token's lifetime has passed, or it is
//! older than 24 hours.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};
use tokio::runtime::Handle;

use super::objects::wait;

/// A token's lifetime when the projection sets no `expirationSeconds` (one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime the API accepts (ten minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Tokens older than this are renewed whatever their lifetime.
const MAX_AGE: Duration = Duration::hours(24);

/// What a token is for: the same key asks for the same token (as upstream's cache key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's service account.
    pub service_account: String,
    /// The audience the projection asks for (empty: the API server's own).
    pub audience: String,
    /// The lifetime asked for.
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// The pod's UID.
    pub pod_uid: String,
}

impl TokenKey {
    /// The key of `projection` in `pod`, or why the projection cannot have a token.
    pub fn of(pod: &Pod, projection: &ServiceAccountTokenProjection) -> Result<TokenKey, String> {
        let expiration_seconds = projection
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        if expiration_seconds < MIN_EXPIRATION_SECONDS {
            return Err(format!(
                "serviceAccountToken {:?}: expirationSeconds {expiration_seconds} is below \
                 the minimum of {MIN_EXPIRATION_SECONDS}",
                projection.path
            ));
        }
        let spec = pod.spec.as_ref();
        let service_account = spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        Ok(TokenKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            service_account,
            audience: projection.audience.clone().unwrap_or_default(),
            expiration_seconds,
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        })
    }

    /// The TokenRequest asking for this token, bound to the pod.
    pub fn request(&self) -> TokenRequest {
        // No audience: the API server's own, as upstream asks.
        let audiences = (!self.audience.is_empty()).then(|| vec![self.audience.clone()]);
        TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences,
                expiration_seconds: Some(self.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.pod_name.clone()),
                    uid: Some(self.pod_uid.clone()),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        }
    }
}

/// A token the API server issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token itself (a JWT).
    pub token: String,
    /// When it stops being valid.
    pub expires: DateTime<Utc>,
    /// The lifetime it was asked with (the issue time is `expires - ttl`).
    pub ttl: Duration,
}

impl Token {
    /// The token in a TokenRequest's answer, or what is missing from it.
    pub fn from_answer(answer: &TokenRequest, ttl_seconds: i64) -> Result<Token, String> {
        let status = answer
            .status
            .as_ref()
            .ok_or("the TokenRequest answer has no status")?;
        let token = status
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or("the TokenRequest answer has no status.token")?;
        let at = status
            .expiration_timestamp
            .as_ref()
            .ok_or("the TokenRequest answer has no status.expirationTimestamp")?
            .0;
        let expires =
            DateTime::from_timestamp(at.as_second(), at.subsec_nanosecond().max(0) as u32)
                .ok_or("the TokenRequest answer's status.expirationTimestamp is out of range")?;
        Ok(Token {
            token,
            expires,
            ttl: Duration::seconds(ttl_seconds),
        })
    }

    /// When the token was issued (as upstream reckons it from the expiry).
    pub fn issued(&self) -> DateTime<Utc> {
        self.expires - self.ttl
    }

    /// When the token should be renewed: 80 % into its lifetime, or at 24 hours of age.
    pub fn refresh_at(&self) -> DateTime<Utc> {
        let issued = self.issued();
        (issued + self.ttl * 4 / 5).min(issued + MAX_AGE)
    }

    /// Whether the token must be renewed at `now` (also when it has expired).
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        now >= self.refresh_at() || now >= self.expires
    }
}

/// The node's tokens, by what they are for.
pub struct Tokens {
    client: kube::Client,
    runtime: Handle,
    cache: Mutex<HashMap<TokenKey, Token>>,
}

impl Tokens {
    /// Tokens requested with `client` on `runtime` (the kubelet's async runtime).
    pub fn new(client: kube::Client, runtime: Handle) -> Tokens {
        Tokens {
            client,
            runtime,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token for `projection` in `pod`: the cached one unless it is due for renewal,
    /// else a new one. Blocks (from a blocking thread) for up to the request timeout. A
    /// failed renewal keeps a token that is still valid, as upstream does.
    pub fn get(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = TokenKey::of(pod, projection)?;
        let now = Utc::now();
        let cached = self.lock().get(&key).cloned();
        if let Some(token) = &cached {
            if !token.needs_refresh(now) {
                return Ok(token.token.clone());
            }
        }
        match self.request(&key) {
            Ok(token) => {
                let text = token.token.clone();
                self.lock().insert(key, token);
                Ok(text)
            }
            Err(e) => match cached {
                Some(token) if now < token.expires => {
                    tracing::warn!(pod = %key.pod_name, error = %e, "token renewal failed; the current token stays until it expires");
                    Ok(token.token)
                }
                _ => Err(format!("failed to fetch token: {e}")),
            },
        }
    }

    /// The UIDs of pods holding a token that is due for renewal at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> HashSet<String> {
        self.lock()
            .iter()
            .filter(|(_, token)| token.needs_refresh(now))
            .map(|(key, _)| key.pod_uid.clone())
            .collect()
    }

    /// The UIDs of pods holding some token.
    pub fn holders(&self) -> HashSet<String> {
        self.lock().keys().map(|key| key.pod_uid.clone()).collect()
    }

    /// Drop the tokens of pods that are gone (`live` holds the UIDs of those that stay).
    pub fn retain_pods(&self, live: &HashSet<String>) {
        self.lock().retain(|key, _| live.contains(&key.pod_uid));
    }

    fn request(&self, key: &TokenKey) -> Result<Token, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let name = key.service_account.clone();
        let request = key.request();
        let answer = wait(&self.runtime, async move {
            api.create_token_request(&name, &PostParams::default(), &request)
                .await
                .map_err(|e| e.to_string())
        })?;
        Token::from_answer(&answer, key.expiration_seconds).map_err(|e| {
            format!(
                "serviceaccounts {:?} token in {:?}: {e}",
                key.service_account, key.namespace
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Token>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `pod`'s volumes must be rewritten for its tokens: a token it holds is `due`,
/// or it has a token volume but holds no token (the kubelet restarted while the pod ran,
/// so the token in its volume is of unknown age and is renewed at once).
pub fn wants_renewal(pod: &Pod, due: &HashSet<String>, holders: &HashSet<String>) -> bool {
    let Some(uid) = pod.metadata.uid.as_ref() else {
        return false;
    };
    has_token_volume(pod) && (due.contains(uid) || !holders.contains(uid))
}

/// Whether `pod` has a projected `serviceAccountToken` volume source.
pub fn has_token_volume(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .any(|s| s.service_account_token.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::TokenRequestStatus;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(service_account: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u-1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: service_account.map(Into::into),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn projection(seconds: Option<i64>, audience: Option<&str>) -> ServiceAccountTokenProjection {
        ServiceAccountTokenProjection {
            audience: audience.map(Into::into),
            expiration_seconds: seconds,
            path: "token".into(),
            user: None,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn keys_default_the_lifetime_and_service_account_and_bind_the_pod() {
        let key = TokenKey::of(&pod(None), &projection(None, None)).expect("a key");
        assert_eq!(key.expiration_seconds, 3600);
        assert_eq!(key.service_account, "default");
        let spec = key.request().spec.expect("a spec");
        assert_eq!(spec.audiences, None);
        let bound = spec.bound_object_ref.expect("bound to the pod");
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.name.as_deref(), Some("web"));
        assert_eq!(bound.uid.as_deref(), Some("u-1"));

        let key = TokenKey::of(&pod(Some("robot")), &projection(Some(7200), Some("vault")))
            .expect("a key");
        assert_eq!(key.service_account, "robot");
        let spec = key.request().spec.expect("a spec");
        assert_eq!(spec.audiences, Some(vec!["vault".to_string()]));
        assert_eq!(spec.expiration_seconds, Some(7200));
    }

    #[test]
    fn lifetimes_below_ten_minutes_are_refused() {
        let err = TokenKey::of(&pod(None), &projection(Some(599), None)).expect_err("too short");
        assert!(err.contains("expirationSeconds 599"), "{err}");
        assert!(TokenKey::of(&pod(None), &projection(Some(600), None)).is_ok());
    }

    #[test]
    fn tokens_renew_at_eighty_percent_of_their_lifetime() {
        let token = Token {
            token: "t".into(),
            expires: at(3600),
            ttl: Duration::seconds(3600),
        };
        assert_eq!(token.issued(), at(0));
        assert_eq!(token.refresh_at(), at(2880));
        assert!(!token.needs_refresh(at(2879)));
        assert!(token.needs_refresh(at(2880)));
        assert!(token.needs_refresh(at(4000)), "expired");
    }

    #[test]
    fn long_lived_tokens_renew_after_a_day() {
        let week = 7 * 24 * 3600;
        let token = Token {
            token: "t".into(),
            expires: at(week),
            ttl: Duration::seconds(week),
        };
        assert_eq!(token.refresh_at(), at(24 * 3600));
        assert!(!token.needs_refresh(at(24 * 3600 - 1)));
        assert!(token.needs_refresh(at(24 * 3600)));
    }

    #[test]
    fn pods_renew_due_or_unknown_tokens() {
        let mut with_token = pod(None);
        with_token.spec.as_mut().expect("a spec").volumes =
            Some(vec![k8s_openapi::api::core::v1::Volume {
                name: "kube-api-access".into(),
                projected: Some(k8s_openapi::api::core::v1::ProjectedVolumeSource {
                    sources: Some(vec![k8s_openapi::api::core::v1::VolumeProjection {
                        service_account_token: Some(projection(None, None)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        let uid = HashSet::from(["u-1".to_string()]);
        let none = HashSet::new();
        assert!(!wants_renewal(&pod(None), &uid, &none), "no token volume");
        assert!(wants_renewal(&with_token, &uid, &uid), "due");
        assert!(!wants_renewal(&with_token, &none, &uid), "held and fresh");
        assert!(
            wants_renewal(&with_token, &none, &none),
            "unknown after a restart"
        );
    }

    #[test]
    fn answers_without_a_token_are_errors() {
        let mut answer = TokenRequest::default();
        assert!(Token::from_answer(&answer, 3600).is_err());
        let expires = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_003_600).expect("t"));
        answer.status = Some(TokenRequestStatus {
            token: Some(String::new()),
            expiration_timestamp: Some(expires.clone()),
        });
        assert!(Token::from_answer(&answer, 3600).is_err());
        answer.status = Some(TokenRequestStatus {
            token: Some("jwt".into()),
            expiration_timestamp: Some(expires),
        });
        let token = Token::from_answer(&answer, 3600).expect("a token");
        assert_eq!(token.expires, at(3600));
        assert_eq!(token.issued(), at(0));
    }
}
