//! Parsing `/proc/<pid>/mountinfo` (proc(5)) into mount records.

use std::path::PathBuf;

/// One line of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the filesystem that forms this mount's root (field 4).
    pub root: PathBuf,
    /// Where the mount sits, relative to the reading process's root (field 5).
    pub mount_point: PathBuf,
    /// Per-mount options, e.g. `rw,nosuid,relatime` (field 6).
    pub mount_options: String,
    /// Optional fields, e.g. `shared:1 master:2`.
    pub optional: Vec<String>,
    /// Filesystem type, e.g. `cgroup2`.
    pub fstype: String,
    /// Mount source, e.g. `/dev/vda` or `tmpfs`.
    pub source: String,
    /// Per-superblock options, e.g. `rw,memory` (for cgroup v1, the controllers).
    pub super_options: String,
}

impl MountInfo {
    /// Whether `option` is among the per-superblock options (`"memory"`, `"name=systemd"`).
    pub fn has_super_option(&self, option: &str) -> bool {
        self.super_options.split(',').any(|o| o == option)
    }

    /// Whether `option` is among the per-mount options (`"ro"`, `"nosuid"`).
    #[cfg(test)]
    pub fn has_mount_option(&self, option: &str) -> bool {
        self.mount_options.split(',').any(|o| o == option)
    }
}

/// Parses a whole mountinfo file; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (head, tail) = line.split_once(" - ")?;
    let mut fields = head.split(' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let _dev = fields.next()?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let mount_options = fields.next()?.to_string();
    let optional = fields.map(str::to_string).collect();
    let mut tail = tail.split(' ');
    let fstype = unescape(tail.next()?);
    let source = unescape(tail.next()?);
    let super_options = tail.next().unwrap_or_default().to_string();
    Some(MountInfo {
        root: root.into(),
        mount_point: mount_point.into(),
        mount_options,
        optional,
        fstype,
        source,
        super_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,relatime master:7 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 /sub/dir /mnt/with\\040space ro - cgroup2 cgroup2 rw
garbage line
";

    #[test]
    fn parses_fields() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/"));
        assert_eq!(mounts[0].optional, vec!["shared:1".to_string()]);
        assert_eq!(mounts[0].fstype, "ext4");
        assert_eq!(mounts[0].source, "/dev/vda");
        assert!(mounts[2].has_super_option("memory"));
        assert!(!mounts[2].has_super_option("mem"));
        assert!(mounts[2].has_mount_option("nosuid"));
        assert_eq!(mounts[2].optional, vec!["master:7".to_string()]);
        assert!(mounts[3].has_super_option("cpuacct"));
        assert!(mounts[3].optional.is_empty());
    }

    #[test]
    fn unescapes_paths() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[4].root, PathBuf::from("/sub/dir"));
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
