//! [`TokenServer`]: a Docker-style bearer-token server on a loopback port, for a registry run with `auth.token`.
//!
//! A registry configured with `auth.token` answers a request without a token
//! with `401` and `WWW-Authenticate: Bearer realm="<this server>/token",
//! service="…",scope="…"`. The client then asks
//! `GET /token?service=…&scope=repository:<repo>:pull[,push]` here, with
//! Basic credentials. With the right ones this server answers
//! `{"token": JWT, "access_token": JWT, …}`; without them, or with wrong ones,
//! `401`. The JWT is RS256, signed by an RSA key whose self-signed
//! certificate is both the registry's `rootcertbundle` and the token's `x5c`
//! header (that is how distribution 2.8 finds the key), and grants the
//! requested `pull`/`push` actions on the requested repository.
//!
//! Every request is recorded as a [`TokenRequest`], so a test can check that
//! a client really went through the token endpoint, with which credentials and
//! for which scope.
//!
//! The `openssl` CLI (Debian package openssl) makes the key and certificate
//! and signs each token (`openssl dgst -sha256 -sign`, PKCS#1 v1.5, which is
//! what RS256 is). Dropping the server stops its thread; its key files live in
//! a directory the caller owns and removes.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::registry::Credentials;

/// The `service` the registry names in its challenge and tokens are issued for (`aud`).
pub const SERVICE: &str = "peapod-test-registry";
/// The `iss` of every token; the registry accepts only this issuer.
pub const ISSUER: &str = "peapod-test-token-issuer";
/// How long a token is valid, in seconds.
const TOKEN_LIFETIME: u64 = 300;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read; token requests are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// The actions this server grants (when asked for them); `delete` and `*` never.
const GRANTABLE: [&str; 2] = ["pull", "push"];

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The user name of the request's Basic credentials, if it had any.
    pub username: Option<String>,
    /// Whether those credentials were the right ones (a token was issued).
    pub authenticated: bool,
    /// The `service` query parameter.
    pub service: Option<String>,
    /// The `scope` query parameters, decoded, in order (e.g. `repository:team/app:pull`).
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// A token server on `127.0.0.1:<port>`, answering on a thread of its own.
pub struct TokenServer {
    port: u16,
    issuer: Arc<Issuer>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes an RSA key and a self-signed certificate under `dir` and starts
    /// serving tokens to holders of `credentials` on a free loopback port.
    #[track_caller]
    pub fn start(dir: &Path, credentials: Credentials) -> TokenServer {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        make_key_and_cert(&key, &cert);
        let issuer = Arc::new(Issuer {
            x5c: pem_body(&cert),
            key,
            cert,
            credentials,
        });
        // Binding port 0 and keeping the listener leaves no window for another
        // test to take the port.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (issuer, requests, stop) = (issuer.clone(), requests.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("token-server-{port}"))
                .spawn(move || serve(listener, &issuer, &requests, &stop))
                .expect("spawn the token server thread")
        };
        TokenServer {
            port,
            issuer,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate that signs tokens, the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.issuer.cert
    }

    /// The credentials it issues tokens for.
    pub fn credentials(&self) -> &Credentials {
        &self.issuer.credentials
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("token request log").clone()
    }

    /// A token for `subject` granting `scopes` (`repository:<repo>:<actions>`),
    /// as the server would issue it; for checking the registry directly.
    #[track_caller]
    pub fn mint(&self, subject: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.issuer
            .token(subject, &scopes)
            .unwrap_or_else(|e| panic!("minting a token: {e}"))
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The signing side: key, certificate, and whom tokens are for.
struct Issuer {
    key: PathBuf,
    cert: PathBuf,
    /// The certificate's DER, standard base64, as the `x5c` header carries it.
    x5c: String,
    credentials: Credentials,
}

impl Issuer {
    /// An RS256 JWT for `subject` granting the grantable actions of `scopes`.
    fn token(&self, subject: &str, scopes: &[String]) -> Result<String, String> {
        static JTI: AtomicUsize = AtomicUsize::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now,
            "iat": now,
            "jti": format!("{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::Relaxed)),
            "access": scopes.iter().filter_map(|s| access(s)).collect::<Vec<_>>(),
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = sign(&self.key, signed.as_bytes())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The `access` entry for scope `repository:<name>:<actions>`: the requested
/// actions this server grants. Other resource types get nothing.
fn access(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    // The name may hold a `:` (a registry host with a port); the actions come last.
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" || name.is_empty() {
        return None;
    }
    let actions: Vec<&str> = actions
        .split(',')
        .filter(|a| GRANTABLE.contains(a))
        .collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
}

/// Accepts connections until `stop` is set, answering one request on each.
fn serve(
    listener: TcpListener,
    issuer: &Issuer,
    requests: &Mutex<Vec<TokenRequest>>,
    stop: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        // A broken connection is the client's problem; the server goes on.
        if let Some(request) = answer(stream, issuer) {
            requests.lock().expect("token request log").push(request);
        }
    }
}

/// Reads one request head from `stream`, answers it and closes the connection.
/// Returns what was asked, unless nothing readable arrived.
fn answer(mut stream: TcpStream, issuer: &Issuer) -> Option<TokenRequest> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let head = read_head(&mut stream)?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let (method, target) = (request_line.next()?, request_line.next()?);
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_string());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let values = |name: &'static str| {
        params
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let provided = authorization.as_deref().and_then(basic_credentials);
    let mut request = TokenRequest {
        username: provided.as_ref().map(|c| c.username.clone()),
        authenticated: provided.as_ref() == Some(&issuer.credentials),
        service: values("service").next().map(str::to_string),
        // Clients may repeat `scope` or join several scopes with spaces.
        scopes: values("scope")
            .flat_map(|v| v.split(' '))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        status: 0,
    };
    let (status, body) = if method != "GET" || path != "/token" {
        (
            404,
            error_body("NOT_FOUND", "only GET /token is served here"),
        )
    } else if request.service.as_deref() != Some(SERVICE) {
        let message = format!("unknown service {:?}, want {SERVICE:?}", request.service);
        (400, error_body("INVALID_REQUEST", &message))
    } else if !request.authenticated {
        let message = match &request.username {
            Some(user) => format!("invalid username or password for {user:?}"),
            None => "authentication required: no credentials".to_string(),
        };
        (401, error_body("UNAUTHORIZED", &message))
    } else {
        let subject = issuer.credentials.username.clone();
        match issuer.token(&subject, &request.scopes) {
            Ok(token) => (200, token_body(&token)),
            Err(err) => (500, error_body("INTERNAL", &err)),
        }
    };
    request.status = status;
    respond(&mut stream, status, &body);
    Some(request)
}

/// The request head, up to the blank line (token requests have no body).
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let challenge = if status == 401 {
        "WWW-Authenticate: Basic realm=\"peapod-test-token\"\r\n"
    } else {
        ""
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\n{challenge}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn token_body(token: &str) -> String {
    let issued_at = humantime_utc(SystemTime::now());
    serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_LIFETIME,
        "issued_at": issued_at,
    })
    .to_string()
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// `user`/`pass` of an `Authorization: Basic …` value.
fn basic_credentials(value: &str) -> Option<Credentials> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Decodes `%XX` escapes and `+` (a space in query strings).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3339 UTC time, seconds precision (`issued_at` of a token answer).
fn humantime_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A 2048-bit RSA key and a self-signed certificate for it, valid two days.
#[track_caller]
fn make_key_and_cert(key: &Path, cert: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={ISSUER}")])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The base64 body of a one-certificate PEM file: its DER, standard base64.
#[track_caller]
fn pem_body(path: &Path) -> String {
    let pem = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect()
}

/// The RSASSA-PKCS1-v1_5 SHA-256 signature of `data` by `key`.
fn sign(key: &Path, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run openssl (Debian package openssl): {e}"))?;
    // The input is a few KB at most, far below a pipe's buffer, so writing it
    // all before reading cannot deadlock.
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(data)
        .map_err(|e| format!("write to openssl dgst: {e}"));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("openssl dgst: {e}"))?;
    written?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!(
            "openssl dgst -sign failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_access_entries_with_grantable_actions_only() {
        assert_eq!(
            access("repository:team/app:pull,push,delete"),
            Some(
                serde_json::json!({"type": "repository", "name": "team/app", "actions": ["pull", "push"]})
            )
        );
        assert_eq!(
            access("repository:127.0.0.1:5000/app:pull").unwrap()["name"],
            "127.0.0.1:5000/app"
        );
        assert_eq!(access("registry:catalog:*"), None);
        assert_eq!(access("repository::pull"), None);
        assert_eq!(access("nonsense"), None);
    }

    #[test]
    fn query_values_and_basic_credentials_decode() {
        assert_eq!(
            percent_decode("repository%3Ateam%2Fapp%3Apull+x"),
            "repository:team/app:pull x"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        let creds = basic_credentials(&format!("Basic {}", STANDARD.encode("u:p:q"))).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("u", "p:q")
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn issued_at_is_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(humantime_utc(at), "2024-02-29T12:34:56Z");
        assert_eq!(humantime_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
