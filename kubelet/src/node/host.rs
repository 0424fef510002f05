//! What the host is: CPUs, memory, filesystems, kernel, OS image and machine ids, read
//! from files whose paths are parameters (so tests point them at fixtures) and `statvfs`.

use std::fs;
use std::path::{Path, PathBuf};

use super::capacity::Pids;
use crate::pod::resources::meminfo_bytes;

/// Why a host fact cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file does not say what was expected.
    #[error("{path}: {expected}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected in it.
        expected: String,
    },
    /// `statvfs` of a filesystem failed.
    #[error("statvfs {path}: {source}")]
    Statvfs {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: nix::Error,
    },
}

/// Where the host's facts are read from; [`HostPaths::linux`] gives the real ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The online CPU list (`/sys/devices/system/cpu/online`).
    pub cpu_online: PathBuf,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
    /// The kernel release, as `uname -r` (`/proc/sys/kernel/osrelease`).
    pub kernel_release: PathBuf,
    /// The host name (`/proc/sys/kernel/hostname`).
    pub hostname: PathBuf,
    /// `/etc/os-release`.
    pub os_release: PathBuf,
    /// `/etc/machine-id`.
    pub machine_id: PathBuf,
    /// The DMI product UUID (`/sys/class/dmi/id/product_uuid`, root only).
    pub product_uuid: PathBuf,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: PathBuf,
    /// `kernel.pid_max` (`/proc/sys/kernel/pid_max`).
    pub pid_max: PathBuf,
    /// `/proc/loadavg`, whose fourth field counts the tasks that exist.
    pub loadavg: PathBuf,
    /// The kubelet's root directory: its filesystem is the node's `nodefs`.
    pub kubelet_root: PathBuf,
    /// Where images are stored (`imagefs`), when not under the kubelet root.
    pub image_root: Option<PathBuf>,
}

impl HostPaths {
    /// The real host's files, with the kubelet's root directory.
    pub fn linux(kubelet_root: &Path, image_root: Option<&Path>) -> HostPaths {
        HostPaths {
            cpu_online: "/sys/devices/system/cpu/online".into(),
            meminfo: "/proc/meminfo".into(),
            kernel_release: "/proc/sys/kernel/osrelease".into(),
            hostname: "/proc/sys/kernel/hostname".into(),
            os_release: "/etc/os-release".into(),
            machine_id: "/etc/machine-id".into(),
            product_uuid: "/sys/class/dmi/id/product_uuid".into(),
            boot_id: "/proc/sys/kernel/random/boot_id".into(),
            pid_max: "/proc/sys/kernel/pid_max".into(),
            loadavg: "/proc/loadavg".into(),
            kubelet_root: kubelet_root.to_path_buf(),
            image_root: image_root.map(Path::to_path_buf),
        }
    }
}

/// A filesystem's size and free space, as `statvfs` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    /// Size in bytes.
    pub capacity_bytes: i64,
    /// Bytes an unprivileged user may still use.
    pub available_bytes: i64,
    /// Inodes in all.
    pub inodes: i64,
    /// Free inodes.
    pub inodes_free: i64,
}

/// Everything the Node object says about the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// The host name, lowercased as the kubelet names nodes.
    pub hostname: String,
    /// Online CPUs.
    pub cpus: i64,
    /// `MemTotal` in bytes.
    pub memory_bytes: i64,
    /// `MemAvailable` in bytes: what `memory.available` is measured as.
    pub memory_available_bytes: i64,
    /// The kubelet root's filesystem (`nodefs`).
    pub nodefs: FsStats,
    /// The image store's filesystem (`imagefs`); the same as `nodefs` when shared.
    pub imagefs: FsStats,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of os-release (`Linux` when it has none, as upstream).
    pub os_image: String,
    /// `/etc/machine-id`, empty when unreadable.
    pub machine_id: String,
    /// The DMI product UUID, empty when unreadable (it is root-only).
    pub system_uuid: String,
    /// The boot id, empty when unreadable.
    pub boot_id: String,
}

impl HostFacts {
    /// Read the host's facts from `paths`. Machine ids are optional, as upstream's.
    pub fn read(paths: &HostPaths) -> Result<HostFacts, HostError> {
        let cpu_online = read(&paths.cpu_online)?;
        let cpus = online_cpus(&cpu_online).ok_or_else(|| HostError::Parse {
            path: paths.cpu_online.clone(),
            expected: "expected a CPU list such as 0-3,6".to_string(),
        })?;
        let meminfo = read(&paths.meminfo)?;
        let field = |name: &str| {
            meminfo_bytes(&meminfo, name).ok_or_else(|| HostError::Parse {
                path: paths.meminfo.clone(),
                expected: format!("expected a {name} line in kB"),
            })
        };
        let nodefs = fs_stats(&paths.kubelet_root)?;
        let imagefs = match &paths.image_root {
            Some(root) => fs_stats(root)?,
            None => nodefs,
        };
        Ok(HostFacts {
            hostname: read(&paths.hostname)?.trim().to_lowercase(),
            cpus,
            memory_bytes: field("MemTotal")?,
            memory_available_bytes: field("MemAvailable")?,
            nodefs,
            imagefs,
            kernel_version: read(&paths.kernel_release)?.trim().to_string(),
            os_image: pretty_name(&read(&paths.os_release)?),
            machine_id: read_optional(&paths.machine_id),
            system_uuid: read_optional(&paths.product_uuid),
            boot_id: read_optional(&paths.boot_id),
        })
    }
}

/// Process ids in use against `kernel.pid_max`, for `pid.available`.
pub fn pids(paths: &HostPaths) -> Result<Pids, HostError> {
    let max = read(&paths.pid_max)?
        .trim()
        .parse()
        .map_err(|_| HostError::Parse {
            path: paths.pid_max.clone(),
            expected: "expected a number".to_string(),
        })?;
    // `0.10 0.20 0.30 2/345 6789`: 345 tasks exist.
    let running = read(&paths.loadavg)?
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, total)| total.parse().ok())
        .ok_or_else(|| HostError::Parse {
            path: paths.loadavg.clone(),
            expected: "expected a fourth field running/total".to_string(),
        })?;
    Ok(Pids { max, running })
}

fn read(path: &Path) -> Result<String, HostError> {
    fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A file's trimmed text, or empty when it cannot be read (upstream leaves these blank).
fn read_optional(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// The size and free space of the filesystem holding `dir`.
pub fn fs_stats(dir: &Path) -> Result<FsStats, HostError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|source| HostError::Statvfs {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes =
        |blocks: u64, size: u64| i64::try_from(blocks.saturating_mul(size)).unwrap_or(i64::MAX);
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    #[allow(clippy::useless_conversion)] // the field types differ between libcs
    Ok(FsStats {
        capacity_bytes: bytes(stat.blocks().into(), stat.fragment_size().into()),
        available_bytes: bytes(stat.blocks_available().into(), stat.fragment_size().into()),
        inodes: count(stat.files().into()),
        inodes_free: count(stat.files_free().into()),
    })
}

/// The number of CPUs in a kernel CPU list (`0-3,6,8-9` → 7); None when malformed.
pub fn online_cpus(list: &str) -> Option<i64> {
    let mut count = 0i64;
    for range in list.trim().split(',') {
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
            None => {
                let cpu = range.parse::<i64>().ok()?;
                (cpu, cpu)
            }
        };
        if last < first {
            return None;
        }
        count += last - first + 1;
    }
    Some(count)
}

/// os-release's `PRETTY_NAME`, unquoted; `Linux` when absent, as upstream defaults.
pub fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .map(|v| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            unquoted.replace("\\\"", "\"")
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".to_string())
}

/// The architecture as Go names it (`GOARCH`), which the API's labels and nodeInfo use.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The fixture host: 4 CPUs, 16 GiB, the fixture files of `node/fixtures`.
    pub(crate) fn fixture_paths(dir: &Path) -> HostPaths {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node/fixtures");
        let mut paths = HostPaths::linux(dir, None);
        paths.cpu_online = fixtures.join("cpu-online");
        paths.meminfo = fixtures.join("meminfo");
        paths.kernel_release = fixtures.join("osrelease");
        paths.hostname = fixtures.join("hostname");
        paths.os_release = fixtures.join("os-release");
        paths.machine_id = fixtures.join("machine-id");
        paths.product_uuid = fixtures.join("no-such-file");
        paths.boot_id = fixtures.join("boot_id");
        paths.pid_max = fixtures.join("pid_max");
        paths.loadavg = fixtures.join("loadavg");
        paths
    }

    #[test]
    fn cpu_lists_count_online_cpus() {
        assert_eq!(online_cpus("0-3\n"), Some(4));
        assert_eq!(online_cpus("0"), Some(1));
        assert_eq!(online_cpus("0-3,6,8-9"), Some(7));
        assert_eq!(online_cpus(""), None);
        assert_eq!(online_cpus("3-1"), None);
        assert_eq!(online_cpus("a-b"), None);
    }

    #[test]
    fn os_image_is_the_pretty_name() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node/fixtures");
        let text = fs::read_to_string(fixtures.join("os-release")).unwrap();
        assert_eq!(pretty_name(&text), "Debian GNU/Linux 13 (trixie)");
        assert_eq!(
            pretty_name("PRETTY_NAME='Alpine Linux v3.20'"),
            "Alpine Linux v3.20"
        );
        assert_eq!(pretty_name("PRETTY_NAME=Plain"), "Plain");
        assert_eq!(pretty_name("NAME=x\n"), "Linux");
    }

    #[test]
    fn host_facts_come_from_the_given_files() {
        let dir = tempfile::tempdir().unwrap();
        let facts = HostFacts::read(&fixture_paths(dir.path())).unwrap();
        assert_eq!(facts.hostname, "node-a");
        assert_eq!(facts.cpus, 4);
        assert_eq!(facts.memory_bytes, 16_318_460 * 1024);
        assert_eq!(facts.memory_available_bytes, 12_000_000 * 1024);
        assert_eq!(facts.kernel_version, "6.12.48+deb13-amd64");
        assert_eq!(facts.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(
            facts.system_uuid, "",
            "an unreadable product_uuid is left blank"
        );
        assert_eq!(facts.boot_id, "d3b07384-d9a0-4c9b-8a3e-0d1e2f3a4b5c");
        assert!(facts.nodefs.capacity_bytes > 0);
        assert_eq!(facts.imagefs, facts.nodefs);
    }

    #[test]
    fn a_missing_or_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = fixture_paths(dir.path());
        paths.meminfo = paths.os_release.clone();
        let error = HostFacts::read(&paths).unwrap_err().to_string();
        assert!(
            error.contains("os-release") && error.contains("MemTotal"),
            "{error}"
        );
        paths.cpu_online = dir.path().join("absent");
        let error = HostFacts::read(&paths).unwrap_err().to_string();
        assert!(error.contains("absent"), "{error}");
    }

    #[test]
    fn pids_in_use_come_from_loadavg() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = fixture_paths(dir.path());
        assert_eq!(
            pids(&paths).unwrap(),
            Pids {
                max: 4_194_304,
                running: 345
            }
        );
        paths.loadavg = paths.pid_max.clone();
        let error = pids(&paths).unwrap_err().to_string();
        assert!(
            error.contains("pid_max: expected a fourth field"),
            "{error}"
        );
    }

    #[test]
    fn architectures_are_named_as_go_names_them() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }
}
