//! [`Registry`]: a private Debian `docker-registry` on a free loopback port, with its storage in a temp dir.
//!
//! The registry gets a config file of its own (never the package's default,
//! which listens on every interface): `http.addr 127.0.0.1:<port>`,
//! filesystem storage in the temp dir, deletes enabled, log level `warn`,
//! and optionally auth: htpasswd (Basic), or bearer tokens from a
//! [`TokenServer`] the registry trusts. Dropping the guard kills the process
//! by its PID, waits for it, stops the token server and removes the temp dir.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::host::require_root;
use crate::token::{self, TokenServer};

/// How long the registry may take to answer `/v2/` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many ports are tried when the first free one is taken before the
/// registry binds it (another test may grab it in between).
const START_ATTEMPTS: usize = 3;

/// User name and password of a registry that requires them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// `username`/`password`, owned.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `user:pass`, as `--creds` and skopeo's `--dest-creds` take them.
    pub fn joined(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }
}

/// A running `docker-registry serve <config>` on `127.0.0.1:<port>`.
pub struct Registry {
    child: Option<Child>,
    dir: Option<TempDir>,
    port: u16,
    credentials: Option<Credentials>,
    /// Set for a token-auth registry; dropped before `dir`, which holds its key.
    token_server: Option<TokenServer>,
}

/// How clients must authenticate.
enum Auth {
    Anonymous,
    /// `auth.htpasswd`: Basic credentials on every request.
    Htpasswd(Credentials),
    /// `auth.token`: bearer tokens a [`TokenServer`] issues for these credentials.
    Token(Credentials),
}

impl Registry {
    /// An anonymous registry.
    #[track_caller]
    pub fn start() -> Registry {
        Registry::start_with(Auth::Anonymous)
    }

    /// A registry requiring `username`/`password` (htpasswd, bcrypt).
    #[track_caller]
    pub fn with_auth(username: &str, password: &str) -> Registry {
        Registry::start_with(Auth::Htpasswd(Credentials::new(username, password)))
    }

    /// A registry requiring bearer tokens (`auth.token`), which its
    /// [`TokenServer`] issues to `username`/`password`.
    #[track_caller]
    pub fn with_token_auth(username: &str, password: &str) -> Registry {
        Registry::start_with(Auth::Token(Credentials::new(username, password)))
    }

    #[track_caller]
    fn start_with(auth: Auth) -> Registry {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("pp-registry-")
            .tempdir()
            .expect("a registry directory");
        let (config, credentials, token_server) = match auth {
            Auth::Anonymous => (AuthConfig::None, None, None),
            Auth::Htpasswd(creds) => {
                let path = dir.path().join("htpasswd");
                write_htpasswd(&path, &creds);
                (AuthConfig::Htpasswd(path), Some(creds), None)
            }
            Auth::Token(creds) => {
                let server = TokenServer::start(&dir.path().join("token"), creds.clone());
                let config = AuthConfig::Token {
                    realm: server.realm(),
                    rootcertbundle: server.cert_path().to_path_buf(),
                };
                (config, Some(creds), Some(server))
            }
        };
        let mut registry = Registry {
            child: None,
            dir: Some(dir),
            port: 0,
            credentials,
            token_server,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            registry.port = free_port();
            match registry.spawn(&config) {
                Ok(()) => return registry,
                Err(err) => failures.push(err),
            }
        }
        panic!(
            "docker-registry did not start on a loopback port:\n{}",
            failures.join("\n")
        );
    }

    /// Writes the config, starts the registry and waits until `/v2/` answers.
    fn spawn(&mut self, auth: &AuthConfig) -> Result<(), String> {
        let dir = self.dir().to_path_buf();
        let config = dir.join("config.yml");
        fs::write(&config, config_yml(self.port, &dir.join("data"), auth))
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log_path = dir.join("registry.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("registry log: {e}"))?;
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // `REGISTRY_*` variables override the config file (e.g. the address).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().map_err(|e| {
            format!("cannot run docker-registry (Debian package docker-registry): {e}")
        })?;
        self.child = Some(child);
        let want = if self.credentials.is_some() { 401 } else { 200 };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(status) = self.get_status("/v2/") {
                if status == want {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.kill();
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "port {}: {} (registry log:\n{log})",
                    self.port,
                    match exited {
                        Some(status) => format!("exited with {status}"),
                        None => format!("/v2/ did not answer {want} within {START_TIMEOUT:?}"),
                    }
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The credentials it requires (directly or for a token), if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The token server of a [`Registry::with_token_auth`] registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The temp dir holding config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the registry's dir").path()
    }

    /// The filesystem storage root (`rootdirectory` in the config).
    pub fn storage(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Where the registry keeps blob `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips bytes of stored blob `digest` in place, keeping its size, so the
    /// registry serves content that no longer hashes to its digest.
    #[track_caller]
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_path(digest);
        let mut bytes =
            fs::read(&path).unwrap_or_else(|e| panic!("read blob {}: {e}", path.display()));
        assert!(!bytes.is_empty(), "blob {digest} is empty");
        let middle = bytes.len() / 2;
        let end = (middle + 16).min(bytes.len());
        for byte in &mut bytes[middle..end] {
            *byte ^= 0xff;
        }
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The registry's log (warnings and errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("registry.log")).unwrap_or_default()
    }

    /// Stops the registry (its files stay until drop), e.g. to test an
    /// unreachable registry.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// The HTTP status of a GET of `path`, without credentials.
    pub fn get_status(&self, path: &str) -> std::io::Result<u16> {
        http_status(self.port, path, None)
    }

    /// The HTTP status of a GET of `path` with `Authorization: Bearer <token>`.
    pub fn get_status_with_token(&self, path: &str, token: &str) -> std::io::Result<u16> {
        http_status(self.port, path, Some(token))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only this registry's own process, by its PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        // Joins its thread; its key files go with the dir below.
        drop(self.token_server.take());
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(err) = dir.close() {
                eprintln!("cannot remove registry dir {}: {err}", path.display());
            }
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// The `auth` section of a registry config.
enum AuthConfig {
    None,
    Htpasswd(PathBuf),
    Token {
        realm: String,
        rootcertbundle: PathBuf,
    },
}

/// The registry config: loopback only, storage under `data`, no cache (so a
/// blob corrupted on disk is served as it is), optional auth.
fn config_yml(port: u16, data: &Path, auth: &AuthConfig) -> String {
    let mut config = format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
",
        data = data.display()
    );
    match auth {
        AuthConfig::None => {}
        AuthConfig::Htpasswd(path) => config.push_str(&format!(
            "auth:
  htpasswd:
    realm: peapod-test
    path: {}
",
            path.display()
        )),
        AuthConfig::Token {
            realm,
            rootcertbundle,
        } => config.push_str(&format!(
            "auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {bundle}
",
            service = token::SERVICE,
            issuer = token::ISSUER,
            bundle = rootcertbundle.display()
        )),
    }
    config
}

/// Writes a bcrypt htpasswd file with `htpasswd -Bbn` (Debian: apache2-utils).
fn write_htpasswd(path: &Path, creds: &Credentials) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", &creds.username, &creds.password])
        .output()
        .unwrap_or_else(|e| panic!("cannot run htpasswd (Debian package apache2-utils): {e}"));
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(path, out.stdout).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The status code of `GET path` on `127.0.0.1:port` (HTTP/1.0, no body
/// read), with a bearer token if one is given.
fn http_status(port: u16, path: &str, bearer: Option<&str>) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}
