//! TokenReview, SubjectAccessReview and TokenRequest, answered from a [`Policy`] the test
//! sets: known tokens and their users, denied users and allow rules. By default users in
//! `system:masters` and the API server's kubelet-client identity may do everything.

use std::collections::HashMap;

use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};

use super::status::{ApiError, ApiResult};
use super::store::{new_uid, timestamp};
use crate::pki::{KUBELET_CLIENT_CN, MASTERS_GROUP};

/// A user as authentication tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// UID (service accounts).
    pub uid: String,
    /// Bound pod (tokens from TokenRequest), as `extra`.
    pub extra: HashMap<String, Vec<String>>,
}

/// One allow rule; `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The user.
    pub user: String,
    /// The verb (`get`, `create`...).
    pub verb: Option<String>,
    /// The resource (`nodes`, `pods`...).
    pub resource: Option<String>,
    /// The subresource (`proxy`, `log`...).
    pub subresource: Option<String>,
}

/// What authenticates and what is allowed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    tokens: HashMap<String, (UserInfo, Option<i64>)>,
    denied: Vec<String>,
    rules: Vec<Rule>,
}

/// The audience (and issuer) of the fake's service account tokens.
const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// How long issued tokens live at least (the real server refuses shorter requests).
const MIN_EXPIRATION: i64 = 600;
/// How long they live when the request does not say.
const DEFAULT_EXPIRATION: i64 = 3600;

impl Policy {
    /// `token` authenticates as `user` in `groups` (and `system:authenticated`).
    pub fn add_token(&mut self, token: &str, user: &str, groups: &[&str]) {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        let info = UserInfo {
            name: user.into(),
            groups,
            uid: String::new(),
            extra: HashMap::new(),
        };
        self.tokens.insert(token.into(), (info, None));
    }

    /// Every SubjectAccessReview of `user` is denied (even a master's).
    pub fn deny(&mut self, user: &str) {
        self.denied.push(user.into());
    }

    /// Reviews matching `rule` are allowed.
    pub fn allow(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// The user a bearer token authenticates as, if any and not expired.
    pub fn authenticate(&self, token: &str) -> Option<&UserInfo> {
        let (info, expires) = self.tokens.get(token)?;
        match expires {
            Some(at) if *at <= Utc::now().timestamp() => None,
            _ => Some(info),
        }
    }

    /// Whether `user` in `groups` may `verb` the `resource`/`subresource`.
    pub fn allowed(
        &self,
        user: &str,
        groups: &[String],
        verb: &str,
        resource: &str,
        subresource: &str,
    ) -> bool {
        if self.denied.iter().any(|d| d == user) {
            return false;
        }
        if user == KUBELET_CLIENT_CN || groups.iter().any(|g| g == MASTERS_GROUP) {
            return true;
        }
        let fits = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.rules.iter().any(|r| {
            r.user == user
                && fits(&r.verb, verb)
                && fits(&r.resource, resource)
                && fits(&r.subresource, subresource)
        })
    }

    /// Answers a TokenReview: `status.authenticated` and `status.user`.
    pub fn token_review(&self, mut review: Value) -> Value {
        let token = review["spec"]["token"].as_str().unwrap_or("");
        review["status"] = match self.authenticate(token) {
            Some(user) => json!({
                "authenticated": true,
                "user": {"username": user.name, "uid": user.uid, "groups": user.groups, "extra": user.extra},
                "audiences": review["spec"]["audiences"].as_array().cloned().unwrap_or_default(),
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        review["apiVersion"] = json!("authentication.k8s.io/v1");
        review["kind"] = json!("TokenReview");
        review
    }

    /// Answers a SubjectAccessReview: `status.allowed` (and `denied` when refused).
    pub fn access_review(&self, mut review: Value) -> Value {
        let spec = &review["spec"];
        let groups: Vec<String> = spec["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
        let user = spec["user"].as_str().unwrap_or("");
        let attrs = &spec["resourceAttributes"];
        let (verb, resource, sub) = if attrs.is_object() {
            (
                attrs["verb"].as_str().unwrap_or(""),
                attrs["resource"].as_str().unwrap_or(""),
                attrs["subresource"].as_str().unwrap_or(""),
            )
        } else {
            (
                spec["nonResourceAttributes"]["verb"].as_str().unwrap_or(""),
                "",
                "",
            )
        };
        let allowed = self.allowed(user, &groups, verb, resource, sub);
        review["status"] = if allowed {
            json!({"allowed": true, "reason": "allowed by the fake API server's policy"})
        } else {
            json!({"allowed": false, "denied": true, "reason": format!("{user} may not {verb} {resource}/{sub}")})
        };
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SubjectAccessReview");
        review
    }

    /// Answers a SelfSubjectAccessReview for the holder of bearer `token` (anonymous if
    /// unknown), as `kubectl auth can-i` sends.
    pub fn self_access_review(&self, token: Option<&str>, mut review: Value) -> Value {
        let (user, groups) = match token.and_then(|t| self.authenticate(t)) {
            Some(user) => (user.name.clone(), user.groups.clone()),
            None => (
                "system:anonymous".into(),
                vec!["system:unauthenticated".into()],
            ),
        };
        review["spec"]["user"] = json!(user);
        review["spec"]["groups"] = json!(groups);
        let mut answer = self.access_review(review);
        if let Some(spec) = answer["spec"].as_object_mut() {
            spec.remove("user");
            spec.remove("groups");
        }
        answer["kind"] = json!("SelfSubjectAccessReview");
        answer
    }

    /// Answers a TokenRequest for ServiceAccount `account` (the stored object) in `ns`:
    /// a JWT-shaped token (unsigned: only this fake's TokenReview knows it) that
    /// authenticates as the service account until `expirationTimestamp`.
    pub fn token_request(
        &mut self,
        ns: &str,
        account: &Value,
        mut request: Value,
    ) -> ApiResult<Value> {
        let name = account["metadata"]["name"].as_str().unwrap_or("");
        let seconds = request["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION);
        if seconds < MIN_EXPIRATION {
            return Err(ApiError::bad_request(format!(
                "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes"
            )));
        }
        let now = Utc::now().timestamp();
        let subject = format!("system:serviceaccount:{ns}:{name}");
        // No audiences means the API server's own, as the real one fills in.
        let audiences = match request["spec"]["audiences"].as_array() {
            Some(list) if !list.is_empty() => list.clone(),
            _ => vec![json!(API_AUDIENCE)],
        };
        request["spec"]["audiences"] = json!(audiences);
        let bound = &request["spec"]["boundObjectRef"];
        let mut claims = json!({
            "iss": API_AUDIENCE,
            "sub": subject,
            "aud": audiences,
            "iat": now, "nbf": now, "exp": now + seconds,
            "jti": new_uid(),
            "kubernetes.io": {"namespace": ns,
                "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]}},
        });
        let mut extra = HashMap::new();
        if bound["kind"] == json!("Pod") {
            claims["kubernetes.io"]["pod"] = json!({"name": bound["name"], "uid": bound["uid"]});
            let pod = bound["name"].as_str().unwrap_or("").to_string();
            extra.insert("authentication.kubernetes.io/pod-name".into(), vec![pod]);
        }
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(b"peapod-fake-apiserver")
        );
        let info = UserInfo {
            name: subject,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            uid: account["metadata"]["uid"].as_str().unwrap_or("").into(),
            extra,
        };
        self.tokens
            .insert(token.clone(), (info, Some(now + seconds)));
        request["apiVersion"] = json!("authentication.k8s.io/v1");
        request["kind"] = json!("TokenRequest");
        request["metadata"]["name"] = json!(name);
        request["metadata"]["namespace"] = json!(ns);
        request["metadata"]["creationTimestamp"] = json!(timestamp(0));
        request["spec"]["expirationSeconds"] = json!(seconds);
        request["status"] = json!({"token": token, "expirationTimestamp": timestamp(seconds)});
        Ok(request)
    }
}
