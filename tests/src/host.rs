//! The host side of a test: root check, process and namespace lookups, mount
//! tables, cgroup directories, and a throwaway network namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Panics unless the tests run as root.
///
/// Every runtime invocation calls this, so a run without root fails loudly
/// instead of passing on tests that checked nothing.
#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "peapod's integration tests run containers and must run as root \
         (e.g. `sudo -E cargo test -p peapod-tests`); refusing to pass without checking anything"
    );
}

/// `<pid>-<n>`: unique among the names this test process makes, and among
/// concurrently running test processes.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Polls `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` exists; panics after 20 s. Containers write such
/// marker files into a shared dir to say they got somewhere.
#[track_caller]
pub fn wait_for_file(path: &Path) {
    assert!(
        wait_until(Duration::from_secs(20), || path.exists()),
        "{} never appeared",
        path.display()
    );
}

/// Whether `pid` has exited: no such process, or only a zombie is left.
pub fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may
        // itself contain spaces and parentheses.
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X") | None
        ),
        Err(_) => true,
    }
}

/// `/proc/<pid>/cmdline` with its NUL separators turned into spaces.
pub fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

/// The namespace link of `pid` for `ns` (`net`, `pid`, ...), e.g. `net:[4026531840]`.
#[track_caller]
pub fn ns_link(pid: &str, ns: &str) -> String {
    let path = format!("/proc/{pid}/ns/{ns}");
    fs::read_link(&path)
        .unwrap_or_else(|e| panic!("readlink {path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// One line of a `/proc/<pid>/mountinfo` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the mounted filesystem that appears at the mount point.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Per-mount options (`ro`, `nosuid`, `nodev`, `noexec`, ...).
    pub options: Vec<String>,
    /// Filesystem type (`proc`, `tmpfs`, `cgroup2`, ...).
    pub fstype: String,
    /// The mount source.
    pub source: String,
    /// Per-superblock options (`size=...`, `mode=...`, cgroup v1 controllers).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether `option` is among the per-mount or per-superblock options.
    pub fn has_option(&self, option: &str) -> bool {
        self.options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == option)
    }
}

/// Parses a mountinfo table (see proc(5)); lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let head: Vec<&str> = head.split(' ').collect();
            let mut tail = tail.split(' ');
            let split = |s: &str| s.split(',').map(str::to_owned).collect();
            Some(MountInfo {
                root: unescape(head.get(3)?),
                mount_point: unescape(head.get(4)?),
                options: split(head.get(5)?),
                fstype: tail.next()?.to_owned(),
                source: unescape(tail.next()?),
                super_options: split(tail.next().unwrap_or("")),
            })
        })
        .collect()
}

/// The last mount at `mount_point` in `mounts`: the one a path lookup sees.
#[track_caller]
pub fn mount_at<'a>(mounts: &'a [MountInfo], mount_point: &str) -> &'a MountInfo {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .unwrap_or_else(|| panic!("nothing mounted at {mount_point} in {mounts:#?}"))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the host runs the unified cgroup v2 hierarchy at `/sys/fs/cgroup`
/// (false on cgroup v1 and on hybrid hosts, where resources are in v1).
pub fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A process's membership in one cgroup hierarchy, resolved to a host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// The hierarchy's controllers as `/proc/<pid>/cgroup` names them (`cpu`,
    /// `name=systemd`); empty for the v2 hierarchy.
    pub controllers: Vec<String>,
    /// The cgroup path inside the hierarchy, e.g. `/pp-test-1-0`.
    pub path: String,
    /// The directory of that cgroup on the host.
    pub dir: PathBuf,
}

/// Every cgroup `pid` belongs to, resolved through this process's mount
/// table; hierarchies that are not mounted here are left out.
#[track_caller]
pub fn cgroup_dirs(pid: i32) -> Vec<CgroupDir> {
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/cgroup: {e}"));
    let mounts =
        parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").expect("own mountinfo"));
    membership
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let controllers: Vec<String> = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let mount = mounts.iter().find(|m| {
                let hierarchy_matches = if controllers.is_empty() {
                    m.fstype == "cgroup2"
                } else {
                    m.fstype == "cgroup" && controllers.iter().all(|c| m.has_option(c))
                };
                hierarchy_matches && (m.root == "/" || path.starts_with(&m.root))
            })?;
            let inner = if mount.root == "/" {
                path
            } else {
                &path[mount.root.len()..]
            };
            let dir = Path::new(&mount.mount_point).join(inner.trim_start_matches('/'));
            Some(CgroupDir {
                controllers,
                path: path.to_owned(),
                dir,
            })
        })
        .collect()
}

/// The cgroup of `pid` that holds `controller`'s files: the v1 hierarchy of
/// that controller, or the unified hierarchy on a v2 host.
#[track_caller]
pub fn controller_cgroup(pid: i32, controller: &str) -> CgroupDir {
    let dirs = cgroup_dirs(pid);
    let v2 = is_cgroup_v2();
    dirs.iter()
        .find(|d| {
            if v2 {
                d.controllers.is_empty()
            } else {
                d.controllers.iter().any(|c| c == controller)
            }
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {controller} cgroup for pid {pid} in {dirs:#?}"))
}

/// Reads one cgroup file of `pid`'s `controller` cgroup, trimmed.
#[track_caller]
pub fn read_cgroup_file(pid: i32, controller: &str, file: &str) -> String {
    let path = controller_cgroup(pid, controller).dir.join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Runs a host command that must succeed (`ip netns add`, ...), panicking
/// with its output otherwise.
#[track_caller]
pub fn host_command(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named network namespace (`ip netns add pp-test-<pid>-<n>`), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace; panics if `ip` cannot.
    #[track_caller]
    pub fn new() -> Self {
        require_root();
        let name = format!("pp-test-{}", unique_suffix());
        host_command("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that holds it open, to join it by path.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort in drop: a failure here must not turn into a double panic.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Lazily unmounts every mount point under `dir`, innermost first.
pub fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the (empty) cgroup directories under `root` in every hierarchy, deepest first.
pub fn remove_cgroup_tree(root: &Path) {
    let sys = Path::new("/sys/fs/cgroup");
    let hierarchies = std::iter::once(sys.to_path_buf()).chain(
        fs::read_dir(sys)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for hierarchy in hierarchies {
        let mut dirs = Vec::new();
        let mut stack = vec![hierarchy.join(root.strip_prefix("/").unwrap_or(root))];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                dirs.push(dir);
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / ro,relatime - overlay overlay rw,lowerdir=/a
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
24 22 0:23 /sub /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
25 22 8:1 /x\\040y /mnt/a\\040b rw - ext4 /dev/sda1 rw";

    #[test]
    fn parses_mountinfo_fields_and_optional_tags() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 4);
        let proc = mount_at(&mounts, "/proc");
        assert_eq!(proc.fstype, "proc");
        assert!(proc.has_option("noexec"));
        assert!(!proc.has_option("ro"));
        let memory = mount_at(&mounts, "/sys/fs/cgroup/memory");
        assert_eq!(memory.root, "/sub");
        assert!(memory.has_option("memory"));
    }

    #[test]
    fn unescapes_octal_in_paths() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts[3].root, "/x y");
        assert_eq!(mounts[3].mount_point, "/mnt/a b");
    }

    #[test]
    fn process_gone_for_missing_pid() {
        assert!(process_gone(i32::MAX));
        assert!(!process_gone(std::process::id() as i32));
    }
}
