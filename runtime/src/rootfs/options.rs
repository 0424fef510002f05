//! OCI mount options (`"ro"`, `"nosuid"`, `"rslave"`, `"mode=755"` ...) turned into what mount(2) takes.
//!
//! The tables follow runc's `specconv`: a flag option sets or clears an `MS_*` flag, a propagation
//! option becomes a separate mount(2) call, an `r*` attribute option becomes a recursive
//! mount_setattr(2), and anything unknown is filesystem data (`mode=755`, `newinstance`, ...).

use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// `MOUNT_ATTR_*` values of mount_setattr(2), from `<linux/mount.h>`.
pub mod attr {
    /// Mount read-only.
    pub const RDONLY: u64 = 0x0000_0001;
    /// Ignore suid and sgid bits.
    pub const NOSUID: u64 = 0x0000_0002;
    /// Disallow access to device special files.
    pub const NODEV: u64 = 0x0000_0004;
    /// Disallow program execution.
    pub const NOEXEC: u64 = 0x0000_0008;
    /// Mask covering the atime mode (`relatime`, `noatime`, `strictatime`).
    pub const ATIME: u64 = 0x0000_0070;
    /// Update atime relative to mtime/ctime.
    pub const RELATIME: u64 = 0x0000_0000;
    /// Do not update access times.
    pub const NOATIME: u64 = 0x0000_0010;
    /// Always perform atime updates.
    pub const STRICTATIME: u64 = 0x0000_0020;
    /// Do not update directory access times.
    pub const NODIRATIME: u64 = 0x0000_0080;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Attributes to set and clear recursively on a mount tree with mount_setattr(2).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecursiveAttr {
    /// `MOUNT_ATTR_*` bits to set.
    pub set: u64,
    /// `MOUNT_ATTR_*` bits to clear.
    pub clear: u64,
}

/// One mount entry's options, split the way mount(2) needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags to set, e.g. `MS_RDONLY | MS_NOSUID | MS_BIND`.
    pub flags: MsFlags,
    /// Flags an option explicitly cleared (`rw`, `suid`, `dev`, `exec` ...). A bind mount needs
    /// them to decide whether a remount is due and whether a locked source flag conflicts.
    pub cleared: MsFlags,
    /// Propagation changes (`MS_SLAVE | MS_REC`, ...), in the order given; each one is its own
    /// mount(2) call made after the mount itself.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid` ...), if any option asked for one.
    pub recursive: Option<RecursiveAttr>,
    /// Options no table knows, comma-joined: the data argument of mount(2).
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            recursive: None,
            data: String::new(),
        }
    }
}

impl MountOptions {
    /// Whether the options ask for a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Whether a bind mount needs a second `MS_REMOUNT | MS_BIND` call to apply its flags: the
    /// first bind ignores everything but `MS_REC`.
    pub fn needs_bind_remount(&self) -> bool {
        let structural = MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT;
        !self.flags.difference(structural).is_empty() || !self.cleared.is_empty()
    }
}

/// An option that sets (`clear == false`) or clears one or more `MS_*` flags.
struct FlagOption {
    name: &'static str,
    clear: bool,
    flag: MsFlags,
}

const fn set(name: &'static str, flag: MsFlags) -> FlagOption {
    FlagOption {
        name,
        clear: false,
        flag,
    }
}

const fn clear(name: &'static str, flag: MsFlags) -> FlagOption {
    FlagOption {
        name,
        clear: true,
        flag,
    }
}

/// runc's `mountFlags` table.
const FLAG_OPTIONS: &[FlagOption] = &[
    clear("async", MsFlags::MS_SYNCHRONOUS),
    clear("atime", MsFlags::MS_NOATIME),
    set("bind", MsFlags::MS_BIND),
    set("defaults", MsFlags::empty()),
    clear("dev", MsFlags::MS_NODEV),
    clear("diratime", MsFlags::MS_NODIRATIME),
    set("dirsync", MsFlags::MS_DIRSYNC),
    clear("exec", MsFlags::MS_NOEXEC),
    set("iversion", MsFlags::MS_I_VERSION),
    set("lazytime", MsFlags::MS_LAZYTIME),
    clear("loud", MsFlags::MS_SILENT),
    set("mand", MsFlags::MS_MANDLOCK),
    set("noatime", MsFlags::MS_NOATIME),
    set("nodev", MsFlags::MS_NODEV),
    set("nodiratime", MsFlags::MS_NODIRATIME),
    set("noexec", MsFlags::MS_NOEXEC),
    clear("noiversion", MsFlags::MS_I_VERSION),
    clear("nolazytime", MsFlags::MS_LAZYTIME),
    clear("nomand", MsFlags::MS_MANDLOCK),
    clear("norelatime", MsFlags::MS_RELATIME),
    clear("nostrictatime", MsFlags::MS_STRICTATIME),
    set("nosuid", MsFlags::MS_NOSUID),
    set("nosymfollow", MS_NOSYMFOLLOW),
    set("rbind", MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    set("relatime", MsFlags::MS_RELATIME),
    set("remount", MsFlags::MS_REMOUNT),
    set("ro", MsFlags::MS_RDONLY),
    clear("rw", MsFlags::MS_RDONLY),
    set("silent", MsFlags::MS_SILENT),
    set("strictatime", MsFlags::MS_STRICTATIME),
    clear("suid", MsFlags::MS_NOSUID),
    set("sync", MsFlags::MS_SYNCHRONOUS),
    clear("symfollow", MS_NOSYMFOLLOW),
];

/// runc's `recAttrFlags` table: `(option, clear, MOUNT_ATTR_*)`.
const RECURSIVE_OPTIONS: &[(&str, bool, u64)] = &[
    ("rro", false, attr::RDONLY),
    ("rrw", true, attr::RDONLY),
    ("rnosuid", false, attr::NOSUID),
    ("rsuid", true, attr::NOSUID),
    ("rnodev", false, attr::NODEV),
    ("rdev", true, attr::NODEV),
    ("rnoexec", false, attr::NOEXEC),
    ("rexec", true, attr::NOEXEC),
    ("rnodiratime", false, attr::NODIRATIME),
    ("rdiratime", true, attr::NODIRATIME),
    ("rrelatime", false, attr::RELATIME),
    ("rnorelatime", true, attr::RELATIME),
    ("rnoatime", false, attr::NOATIME),
    ("ratime", true, attr::NOATIME),
    ("rstrictatime", false, attr::STRICTATIME),
    ("rnostrictatime", true, attr::STRICTATIME),
    ("rnosymfollow", false, attr::NOSYMFOLLOW),
    ("rsymfollow", true, attr::NOSYMFOLLOW),
];

/// The mount(2) flags of a propagation option (`"rslave"` → `MS_SLAVE | MS_REC`), as used both
/// in mount options and in `linux.rootfsPropagation`.
pub fn propagation(option: &str) -> Option<MsFlags> {
    let flags = match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flags)
}

/// Splits a mount entry's options into flags, propagation changes, recursive attributes and data.
///
/// Later options win over earlier ones (`"ro", "rw"` is read-write), as with mount(8).
pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut parsed = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    let mut recursive: Option<RecursiveAttr> = None;
    for option in options {
        let option = option.as_ref();
        if let Some(known) = FLAG_OPTIONS.iter().find(|f| f.name == option) {
            if known.clear {
                parsed.flags.remove(known.flag);
                parsed.cleared.insert(known.flag);
            } else {
                parsed.flags.insert(known.flag);
                parsed.cleared.remove(known.flag);
            }
        } else if let Some(flags) = propagation(option) {
            parsed.propagation.push(flags);
        } else if let Some(&(_, is_clear, bit)) = RECURSIVE_OPTIONS
            .iter()
            .find(|(name, _, _)| *name == option)
        {
            let attrs = recursive.get_or_insert_with(RecursiveAttr::default);
            if is_clear {
                attrs.clear |= bit;
                attrs.set &= !bit;
            } else {
                attrs.set |= bit;
                attrs.clear &= !bit;
            }
            // mount_setattr(2): an atime mode is only changed when the whole ATIME mask is
            // cleared too; RELATIME is zero, so the mask is what selects it.
            if bit & attr::ATIME == bit {
                attrs.clear |= attr::ATIME;
            }
        } else {
            data.push(option);
        }
    }
    parsed.recursive = recursive;
    parsed.data = data.join(",");
    parsed
}

/// `MS_*` flags a mount currently has, from the `f_flags` of statfs(2) (`ST_*` bits).
///
/// There is no `ST_STRICTATIME`: a mount without `noatime` and `relatime` is strictatime.
pub fn flags_from_statfs(st_flags: libc::c_ulong) -> MsFlags {
    const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;
    let table: [(libc::c_ulong, MsFlags); 10] = [
        (libc::ST_RDONLY, MsFlags::MS_RDONLY),
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (libc::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
        (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
    ];
    let mut flags = MsFlags::empty();
    for (st, ms) in table {
        if st_flags & st == st {
            flags |= ms;
        }
    }
    if !flags.intersects(ATIME_MODE) {
        flags |= MsFlags::MS_STRICTATIME;
    }
    flags
}

/// The mutually exclusive atime modes.
pub const ATIME_MODE: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Flags the kernel locks on mounts inherited into a less privileged user namespace
/// (`MNT_LOCK_*`): a remount must keep them.
pub const LOCKED: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOSUID)
    .union(ATIME_MODE)
    .union(MsFlags::MS_NODIRATIME);

/// The flags to retry a refused bind remount with: the requested flags plus the locked flags
/// the mount `current`ly has (runc's emulation of `mount --bind -o remount,...`).
///
/// Fails with the conflicting flags when the request clears a locked flag (`exec` on a
/// noexec source) or asks for another atime mode than the locked one, since the result would
/// silently differ from the request.
pub fn relock(requested: &MountOptions, current: MsFlags) -> Result<MsFlags, MsFlags> {
    let locked = current & LOCKED;
    let cleared = locked & requested.cleared;
    if !cleared.is_empty() {
        return Err(cleared);
    }
    let atime = ATIME_MODE | MsFlags::MS_NODIRATIME;
    let wanted_atime = requested.flags & atime;
    if !wanted_atime.is_empty() && wanted_atime != current & atime {
        return Err(current & atime);
    }
    Ok(requested.flags | locked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dev_tmpfs_options() {
        let parsed = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(parsed.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(parsed.data, "mode=755,size=65536k");
        assert!(parsed.propagation.is_empty());
        assert!(!parsed.is_bind());
    }

    #[test]
    fn devpts_options_keep_data_in_order() {
        let parsed = parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(parsed.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(parsed.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn bind_with_flags_and_propagation() {
        let parsed = parse(&[
            "rbind", "ro", "nosuid", "nodev", "noexec", "rslave", "shared",
        ]);
        assert!(parsed.is_bind());
        assert_eq!(
            parsed.flags,
            MsFlags::MS_BIND
                | MsFlags::MS_REC
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
        );
        assert_eq!(
            parsed.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_SHARED]
        );
        assert!(parsed.needs_bind_remount());
        assert_eq!(parsed.data, "");
    }

    #[test]
    fn plain_bind_needs_no_remount() {
        assert!(!parse(&["bind"]).needs_bind_remount());
        assert!(!parse(&["rbind", "rprivate"]).needs_bind_remount());
        // Clearing a flag is a request too (runc, unlike mount(8)).
        assert!(parse(&["bind", "rw"]).needs_bind_remount());
    }

    #[test]
    fn clearing_options_override_earlier_ones() {
        let parsed = parse(&[
            "ro", "nosuid", "nodev", "noexec", "rw", "suid", "dev", "exec",
        ]);
        assert_eq!(parsed.flags, MsFlags::empty());
        assert_eq!(
            parsed.cleared,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        let parsed = parse(&["rw", "ro"]);
        assert_eq!(parsed.flags, MsFlags::MS_RDONLY);
        assert_eq!(parsed.cleared, MsFlags::empty());
    }

    #[test]
    fn atime_sync_and_remount_options() {
        let parsed = parse(&[
            "relatime",
            "norelatime",
            "noatime",
            "sync",
            "dirsync",
            "remount",
        ]);
        assert_eq!(
            parsed.flags,
            MsFlags::MS_NOATIME
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_DIRSYNC
                | MsFlags::MS_REMOUNT
        );
        assert_eq!(parsed.cleared, MsFlags::MS_RELATIME);
    }

    #[test]
    fn every_propagation_option() {
        for (name, flags) in [
            ("private", MsFlags::MS_PRIVATE),
            ("rprivate", MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            ("slave", MsFlags::MS_SLAVE),
            ("rslave", MsFlags::MS_SLAVE | MsFlags::MS_REC),
            ("shared", MsFlags::MS_SHARED),
            ("rshared", MsFlags::MS_SHARED | MsFlags::MS_REC),
            ("unbindable", MsFlags::MS_UNBINDABLE),
            ("runbindable", MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
        ] {
            assert_eq!(propagation(name), Some(flags), "{name}");
            assert_eq!(parse(&[name]).propagation, vec![flags], "{name}");
        }
        assert_eq!(propagation("slaved"), None);
    }

    #[test]
    fn recursive_attributes() {
        let parsed = parse(&["rbind", "rro", "rnosuid", "rnoatime"]);
        let attrs = parsed.recursive.expect("recursive attributes");
        assert_eq!(attrs.set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(attrs.clear, attr::ATIME);
        assert_eq!(parsed.data, "");
        assert_eq!(parse(&["rbind"]).recursive, None);
        let attrs = parse(&["rro", "rrw"]).recursive.unwrap();
        assert_eq!((attrs.set, attrs.clear), (0, attr::RDONLY));
    }

    #[test]
    fn unknown_options_are_data() {
        let parsed = parse(&["defaults", "size=1m", "uid=1000", "x-gvfs-hide"]);
        assert_eq!(parsed.flags, MsFlags::empty());
        assert_eq!(parsed.data, "size=1m,uid=1000,x-gvfs-hide");
        assert_eq!(parse::<&str>(&[]), MountOptions::default());
    }

    #[test]
    fn relock_keeps_locked_source_flags() {
        let source = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RELATIME;
        let retry = relock(&parse(&["bind", "ro"]), source).unwrap();
        assert_eq!(
            retry,
            MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_RELATIME
        );
        // The same atime mode may be asked for; another may not.
        assert!(relock(&parse(&["bind", "ro", "relatime"]), source).is_ok());
        assert_eq!(
            relock(&parse(&["bind", "noatime"]), source),
            Err(MsFlags::MS_RELATIME)
        );
        // Clearing a locked flag is refused, naming it.
        assert_eq!(
            relock(&parse(&["bind", "ro", "dev", "exec"]), source),
            Err(MsFlags::MS_NODEV)
        );
        // Flags that cannot be locked (sync) are not carried over.
        let retry = relock(&parse(&["bind"]), MsFlags::MS_SYNCHRONOUS).unwrap();
        assert_eq!(retry, MsFlags::MS_BIND);
    }

    #[test]
    fn statfs_flags_map_to_mount_flags() {
        let st = libc::ST_RDONLY | libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RELATIME;
        assert_eq!(
            flags_from_statfs(st),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RELATIME
        );
        assert_eq!(
            flags_from_statfs(libc::ST_NOEXEC),
            MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME
        );
    }
}
