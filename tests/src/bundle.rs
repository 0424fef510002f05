//! [`Bundle`]: an OCI bundle in a temp dir, with a busybox rootfs and a
//! `config.json` that tests edit as JSON before the container is made.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::host::require_root;
use crate::spec::default_spec;

/// Where busybox is looked for; Debian's busybox-static installs `/bin/busybox`.
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Users in the rootfs: root, an ordinary user 1000 and nobody.
const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

/// Groups in the rootfs; `users` (100) and `tty` (5) serve as extra groups.
const GROUP: &str = "\
root:x:0:
tty:x:5:
users:x:100:user
user:x:1000:
nogroup:x:65534:
";

/// An OCI bundle: `<tmp>/rootfs` (busybox) and `<tmp>/config.json`.
///
/// [`Bundle::spec`] starts as the `runc spec` default with `terminal: false`
/// and is written by [`Bundle::save`] (which [`crate::Container::new`] calls).
/// The temp dir goes away on drop.
pub struct Bundle {
    dir: TempDir,
    /// The `config.json` to be written; edit it freely.
    pub spec: Value,
}

impl Bundle {
    /// A bundle with a fresh busybox rootfs and the default spec running `sh`.
    #[track_caller]
    pub fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("pp-bundle-")
            .tempdir()
            .expect("a bundle directory");
        // The runtime and the container's users must be able to reach the rootfs.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
        make_busybox_rootfs(&dir.path().join("rootfs"));
        let mut spec = default_spec();
        spec["process"]["terminal"] = json!(false);
        Bundle { dir, spec }
    }

    /// The bundle directory (what `--bundle` takes).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.spec["process"]["args"] = json!(args);
        self
    }

    /// Sets `process.args` to `sh -c <script>`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Appends `mount` to `mounts`.
    pub fn mount(&mut self, mount: Value) -> &mut Self {
        self.spec["mounts"]
            .as_array_mut()
            .expect("mounts is an array")
            .push(mount);
        self
    }

    /// Bind-mounts the host path `source` at `destination` with `options`
    /// (`bind` or `rbind` is added when absent).
    pub fn bind(&mut self, source: &Path, destination: &str, options: &[&str]) -> &mut Self {
        let mut options: Vec<&str> = options.to_vec();
        if !options.iter().any(|o| *o == "bind" || *o == "rbind") {
            options.insert(0, "rbind");
        }
        self.mount(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": options,
        }))
    }

    /// Makes a host directory inside the bundle dir (outside the rootfs) and
    /// binds it read-write at `/shared`, for files the container and the
    /// test exchange. Returns its host path.
    pub fn share(&mut self) -> PathBuf {
        let shared = self.dir.path().join("shared");
        fs::create_dir_all(&shared).expect("mkdir shared");
        // World-writable so that containers running as non-root users can write too.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod shared");
        self.bind(&shared, "/shared", &["rw"]);
        shared
    }

    /// Removes the namespace of `kind` from `linux.namespaces`, so the
    /// container shares the host's.
    pub fn without_namespace(&mut self, kind: &str) -> &mut Self {
        self.namespaces().retain(|ns| ns["type"] != kind);
        self
    }

    /// Sets (adds or replaces) the namespace of `kind`; with `path`, the
    /// container joins that namespace instead of making a new one.
    pub fn namespace(&mut self, kind: &str, path: Option<&Path>) -> &mut Self {
        self.without_namespace(kind);
        let mut ns = json!({ "type": kind });
        if let Some(path) = path {
            ns["path"] = json!(path);
        }
        self.namespaces().push(ns);
        self
    }

    fn namespaces(&mut self) -> &mut Vec<Value> {
        self.spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces is an array")
    }

    /// Writes [`Bundle::spec`] to `config.json`.
    #[track_caller]
    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.spec).expect("spec serializes");
        fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills `rootfs` with a static busybox, one symlink per applet in `/bin`,
/// `/etc/passwd`, `/etc/group` and a home for user 1000.
#[track_caller]
fn make_busybox_rootfs(rootfs: &Path) {
    let (busybox, applets) = busybox();
    for dir in [
        "bin",
        "dev",
        "etc",
        "proc",
        "sys",
        "root",
        "home/user",
        "tmp",
    ] {
        fs::create_dir_all(rootfs.join(dir)).expect("mkdir in rootfs");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    std::os::unix::fs::chown(rootfs.join("home/user"), Some(1000), Some(1000)).expect("chown home");
    fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in applets {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("applet symlink");
    }
    fs::write(rootfs.join("etc/passwd"), PASSWD).expect("write /etc/passwd");
    fs::write(rootfs.join("etc/group"), GROUP).expect("write /etc/group");
}

/// The host's busybox and its applet names (`busybox --list`, less
/// `busybox` itself), looked up once. Busybox must be statically linked to
/// run in a rootfs without a libc.
#[track_caller]
fn busybox() -> &'static (PathBuf, Vec<String>) {
    static BUSYBOX: OnceLock<(PathBuf, Vec<String>)> = OnceLock::new();
    BUSYBOX.get_or_init(|| {
        let path = BUSYBOX_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("busybox not found: install Debian's busybox-static");
        let binary = fs::read(&path).expect("read busybox");
        assert!(
            !has_interpreter(&binary),
            "{} is dynamically linked: install Debian's busybox-static",
            path.display()
        );
        let output = Command::new(&path)
            .arg("--list")
            .output()
            .expect("busybox --list");
        assert!(output.status.success(), "busybox --list failed");
        let applets = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|name| !name.is_empty() && *name != "busybox")
            .map(str::to_owned)
            .collect();
        (path, applets)
    })
}

/// Whether an ELF64 executable names a program interpreter (`PT_INTERP`),
/// i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_have_an_interpreter() {
        // The test binary itself is dynamically linked (it uses the host's libc).
        let own = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&own));
        assert!(!has_interpreter(b"not an elf"));
    }
}
