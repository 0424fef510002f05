//! Image references, normalised as Docker and containerd do (`nginx` → `docker.io/library/nginx:latest`).
//!
//! The grammar is the distribution project's reference grammar:
//! `[registry/]path[:tag][@algorithm:hex]`, where the registry is a host name,
//! IPv4 address or bracketed IPv6 address with an optional port, the path is
//! `/`-separated lowercase components (`[a-z0-9]+` joined by `.`, `_`, `__` or
//! runs of `-`), and a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use super::{Error, Result};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The registry short names resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The tag used when a name has neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";

/// The namespace of Docker Hub's official images (`nginx` → `library/nginx`).
const OFFICIAL_NAMESPACE: &str = "library";

/// Longest repository name (registry included) the grammar allows.
const MAX_NAME_LEN: usize = 255;

/// Longest tag the grammar allows.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host and optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/nginx`, `team/app`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The digest, `sha256:…`, when given with `@`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `input`, e.g. `nginx`, `nginx:1.25`,
    /// `127.0.0.1:5000/team/app:1`, `repo@sha256:…`.
    pub fn parse(input: &str) -> Result<Reference> {
        let invalid = |reason: String| Error::InvalidReference {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("the name is empty".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(format!("it contains {c:?}")));
        }

        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(invalid)?)),
            None => (input, None),
        };
        // A `:` after the last `/` starts the tag; one before it is a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                let tag = &name_and_tag[colon + 1..];
                check_tag(tag).map_err(invalid)?;
                (&name_and_tag[..colon], Some(tag.to_string()))
            }
            None => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(invalid("the repository name is empty".into()));
        }

        let (registry, repository) = split_registry(name);
        let registry = match registry {
            Some(host) => {
                check_registry(host).map_err(invalid)?;
                normalise_registry(host)
            }
            None => DEFAULT_REGISTRY.to_string(),
        };
        check_repository(repository).map_err(invalid)?;
        if registry == DEFAULT_REGISTRY && repository.len() == 64 && is_lower_hex(repository) {
            return Err(invalid(
                "a 64-digit hexadecimal string is an image id, not a name".into(),
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{repository}")
        } else {
            repository.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }

        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether the registry is on a loopback address (`localhost`, 127.0.0.0/8, `[::1]`),
    /// where plain HTTP is allowed as Docker allows it.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as Docker shows it: `nginx` for `docker.io/library/nginx`,
    /// `user/app` for `docker.io/user/app`, the full name elsewhere.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        match self.repository.strip_prefix("library/") {
            Some(official) if !official.contains('/') => official.to_string(),
            _ => self.repository.clone(),
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised name: `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

/// Whether `registry` (`host[:port]`) names this machine over loopback.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The host part of `host[:port]`, brackets of an IPv6 address kept.
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        };
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Splits off the registry the way Docker does: the first component names a
/// registry only if it has a `.` or `:`, is `localhost`, or has uppercase
/// letters (which a repository path cannot have).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Docker Hub's aliases all become `docker.io`.
fn normalise_registry(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        other => other.to_string(),
    }
}

/// Checks `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_registry(registry: &str) -> std::result::Result<(), String> {
    let host = host_of(registry);
    let port = &registry[host.len()..];
    if let Some(port) = port.strip_prefix(':') {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "registry {registry:?}: the port {port:?} is not a number"
            ));
        }
    } else if !port.is_empty() {
        return Err(format!(
            "registry {registry:?}: unexpected {port:?} after the host"
        ));
    }
    if let Some(v6) = host.strip_prefix('[') {
        let v6 = v6
            .strip_suffix(']')
            .ok_or_else(|| format!("registry {registry:?}: the IPv6 address has no closing ']'"))?;
        return v6
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("registry {registry:?}: {v6:?} is not an IPv6 address"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "registry {registry:?}: {label:?} is not a valid host name label \
                 (letters, digits and inner '-')"
            ));
        }
    }
    Ok(())
}

/// Checks the repository path: `/`-separated components of lowercase
/// alphanumerics joined by one `.`, one or two `_`, or any number of `-`.
fn check_repository(repository: &str) -> std::result::Result<(), String> {
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository {repository:?} must be lowercase"));
    }
    for component in repository.split('/') {
        check_path_component(component)
            .map_err(|why| format!("repository path component {component:?} {why}"))?;
    }
    Ok(())
}

/// Checks one path component; the error completes "component X …".
fn check_path_component(component: &str) -> std::result::Result<(), String> {
    if component.is_empty() {
        return Err("is empty (two '/' in a row, or a leading or trailing '/')".into());
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(format!(
                "has {separator:?}: only lowercase letters, digits and the separators \
                 '.', '_', '__' or '-' are allowed"
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag is longer than {MAX_TAG_LEN} characters"));
    }
    if !tag.starts_with(word) {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if let Some(c) = tag.chars().find(|&c| !(word(c) || c == '.' || c == '-')) {
        return Err(format!(
            "tag {tag:?} has {c:?}: only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks `algorithm:hex` and returns it; sha256 (64 hex) and sha512 (128 hex)
/// are the algorithms registries use.
fn parse_digest(digest: &str) -> std::result::Result<String, String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} is not algorithm:hex (e.g. sha256:…)"))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Err(format!(
                "digest algorithm {other:?} is not supported (sha256, sha512)"
            ))
        }
    };
    if hex.len() != want || !is_lower_hex(hex) {
        return Err(format!(
            "digest {digest:?}: {algorithm} needs {want} lowercase hex digits, got {:?}",
            hex
        ));
    }
    Ok(digest.to_string())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(input: &str) -> String {
        Reference::parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .to_string()
    }

    fn reason(input: &str) -> String {
        match Reference::parse(input) {
            Err(Error::InvalidReference { reason, .. }) => reason,
            other => panic!("{input}: expected an invalid reference, got {other:?}"),
        }
    }

    #[test]
    fn short_names_go_to_docker_hub() {
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(full("user/team/app:v1"), "docker.io/user/team/app:v1");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            full("docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
    }

    #[test]
    fn docker_hub_aliases_normalise() {
        assert_eq!(
            full("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            full("registry-1.docker.io/user/app:2"),
            "docker.io/user/app:2"
        );
    }

    #[test]
    fn first_component_is_a_registry_only_when_it_looks_like_one() {
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "app")
        );
        let r = Reference::parse("localhost:5000/team/app:1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("1"));
        let r = Reference::parse("quay.io/coreos/etcd").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("quay.io", "coreos/etcd")
        );
        let r = Reference::parse("myhost:80/app").unwrap();
        assert_eq!(r.registry, "myhost:80");
        // No dot, colon or localhost: a Docker Hub user.
        let r = Reference::parse("myhost/app").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "myhost/app")
        );
        // Uppercase cannot be a repository, so Docker takes it as a host.
        assert_eq!(Reference::parse("MyHost/app").unwrap().registry, "MyHost");
    }

    #[test]
    fn ip_registries_with_ports() {
        assert_eq!(
            full("127.0.0.1:5000/team/app:1"),
            "127.0.0.1:5000/team/app:1"
        );
        let r = Reference::parse("[::1]:5000/app").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.to_string(), "[::1]:5000/app:latest");
        assert_eq!(
            Reference::parse("[fe80::1]/app").unwrap().registry,
            "[fe80::1]"
        );
    }

    #[test]
    fn digests_with_and_without_tags() {
        let digest = format!("sha256:{HEX}");
        let r = Reference::parse(&format!("nginx@{digest}")).unwrap();
        assert_eq!(r.tag, None, "no default tag when a digest is given");
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{digest}"));

        let r = Reference::parse(&format!("127.0.0.1:5000/app:1.0@{digest}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/app:1.0@{digest}"));
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "docker.io/library/nginx:latest",
            "127.0.0.1:5000/a/b/c:tag_1.x-y",
            "[::1]:5000/app:1",
            &format!("quay.io/x/y@sha256:{HEX}"),
        ] {
            assert_eq!(full(input), input);
            assert_eq!(full(&full(input)), input);
        }
    }

    #[test]
    fn separators_in_path_components() {
        for ok in [
            "a.b", "a_b", "a__b", "a-b", "a---b", "a.b_c-d", "0", "a1/b2",
        ] {
            Reference::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "a..b", "a___b", "a_.b", "-a", "a-", ".a", "a.", "_a", "a$b", "a/-b",
        ] {
            let why = reason(bad);
            assert!(why.contains("path component"), "{bad}: {why}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(reason("").contains("empty"));
        assert!(reason("Nginx").contains("lowercase"));
        assert!(reason("user/App").contains("must be lowercase"));
        assert!(reason("a//b").contains("empty"));
        assert!(reason("app/").contains("empty"));
        assert!(reason("nginx:").contains("tag after ':' is empty"));
        assert!(reason("nginx:-x").contains("must start with"));
        assert!(reason("nginx:a+b").contains("'+'"));
        assert!(reason(&format!("nginx:{}", "a".repeat(129))).contains("longer than 128"));
        assert!(reason("nginx@sha256:abc").contains("64 lowercase hex"));
        assert!(reason(&format!("nginx@sha256:{}", HEX.to_uppercase())).contains("hex"));
        assert!(reason(&format!("nginx@md5:{HEX}")).contains("not supported"));
        assert!(reason("nginx@latest").contains("algorithm:hex"));
        assert!(reason("host:port/app").contains("not a number"));
        assert!(reason("ho_st.io/app").contains("host name label"));
        assert!(reason("[::1/app").contains("closing"));
        assert!(reason("[zz::1]:5000/app").contains("not an IPv6 address"));
        assert!(reason("my app").contains("' '"));
        assert!(reason(HEX).contains("image id"));
        assert!(reason(&format!("x.io/{}", "a".repeat(260))).contains("longer than 255"));
    }

    #[test]
    fn loopback_registries() {
        let loopback = |s: &str| Reference::parse(s).unwrap().is_loopback();
        assert!(loopback("localhost/app"));
        assert!(loopback("localhost:5000/app"));
        assert!(loopback("127.0.0.1:5000/app"));
        assert!(loopback("127.8.9.10/app:1"));
        assert!(loopback("[::1]:5000/app"));
        assert!(loopback("[::1]/app"));
        assert!(!loopback("nginx"));
        assert!(!loopback("128.0.0.1:5000/app"));
        assert!(!loopback("10.0.0.1:5000/app"));
        assert!(!loopback("localhost.example.com/app"));
        assert!(!loopback("[fe80::1]:5000/app"));
    }

    #[test]
    fn familiar_names() {
        let familiar = |s: &str| Reference::parse(s).unwrap().familiar_name();
        assert_eq!(familiar("nginx"), "nginx");
        assert_eq!(familiar("user/app"), "user/app");
        assert_eq!(familiar("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(familiar("docker.io/library/a/b"), "library/a/b");
    }
}
