//! Pausing and resuming a container's processes: the v1 `freezer` controller
//! (`freezer.state`) or cgroup v2's built-in `cgroup.freeze`.
//!
//! Freezing is asynchronous in the kernel: v1 shows `FREEZING` until every task has stopped,
//! v2 sets `frozen 1` in `cgroup.events` once it has. [`Cgroup::freeze`] waits for that, so a
//! paused container has really stopped running when `pause` returns (as runc's does). On the
//! hybrid layout the v1 freezer is used, as runc does; v2's `cgroup.freeze` only when no v1
//! freezer hierarchy is mounted.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::file::{read_or_empty, write};
use super::{Cgroup, CgroupError, Mode, Version};

/// How long [`Cgroup::freeze`] and [`Cgroup::thaw`] wait for the kernel to finish.
const WAIT: Duration = Duration::from_secs(5);
/// The first pause between two looks at the freezer's state (doubled up to 50 ms): most
/// cgroups freeze within a millisecond.
const FIRST_POLL: Duration = Duration::from_micros(200);
const LONGEST_POLL: Duration = Duration::from_millis(50);

/// Why a cgroup could not be frozen or thawed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// Neither a v1 freezer hierarchy nor cgroup v2 holds the container.
    #[error("cannot pause or resume: the container's cgroup has no freezer (no v1 freezer hierarchy is mounted and it is not in cgroup v2)")]
    NoFreezer,
    /// The kernel did not finish freezing (or thawing) in time; a freeze is undone.
    #[error("{file} did not reach {wanted} within {waited:?} (it reads {seen:?})")]
    Timeout {
        /// The state file watched (`freezer.state` or `cgroup.events`).
        file: PathBuf,
        /// The state waited for.
        wanted: &'static str,
        /// What the file said last.
        seen: String,
        /// How long it was watched.
        waited: Duration,
    },
    /// Reading or writing a freezer file failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

/// The file interface that freezes one cgroup directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freezer<'a> {
    /// The v1 `freezer` controller's directory.
    V1(&'a Path),
    /// A cgroup v2 directory.
    V2(&'a Path),
}

impl Cgroup {
    /// Freeze every process in the container and wait until the kernel has stopped them all.
    pub fn freeze(&self) -> Result<(), FreezeError> {
        self.freezer()?.set(true, WAIT)
    }

    /// Let the container's processes run again, and wait until the kernel says they do.
    pub fn thaw(&self) -> Result<(), FreezeError> {
        self.freezer()?.set(false, WAIT)
    }

    /// Whether the container is paused: frozen or being frozen. A cgroup without a freezer
    /// (or already removed) is not.
    pub fn is_frozen(&self) -> bool {
        self.freezer().is_ok_and(|f| f.is_frozen())
    }

    fn freezer(&self) -> Result<Freezer<'_>, FreezeError> {
        let v2 = || {
            self.placements
                .iter()
                .find(|p| p.version == Version::V2)
                .map(|p| Freezer::V2(&p.path))
        };
        let found = match self.mode {
            Mode::Unified => v2(),
            Mode::Legacy | Mode::Hybrid => self
                .placements
                .iter()
                .find(|p| p.version == Version::V1 && p.has("freezer"))
                .map(|p| Freezer::V1(&p.path))
                .or_else(v2),
        };
        found.ok_or(FreezeError::NoFreezer)
    }
}

impl Freezer<'_> {
    fn is_frozen(self) -> bool {
        match self {
            // FREEZING counts: runc calls such a container paused too.
            Freezer::V1(dir) => read_or_empty(&dir.join("freezer.state"))
                .is_ok_and(|s| s != "THAWED" && !s.is_empty()),
            Freezer::V2(dir) => read_or_empty(&dir.join("cgroup.freeze")).is_ok_and(|s| s == "1"),
        }
    }

    /// Request the state and wait up to `wait` for the kernel to reach it. A freeze that
    /// does not complete is undone, so a failed `pause` leaves the container running.
    fn set(self, frozen: bool, wait: Duration) -> Result<(), FreezeError> {
        let result = self.request(frozen).and_then(|()| self.wait(frozen, wait));
        if result.is_err() && frozen {
            let _ = self.request(false);
        }
        result
    }

    fn request(self, frozen: bool) -> Result<(), FreezeError> {
        match self {
            Freezer::V1(dir) => write(
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            )?,
            Freezer::V2(dir) => write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?,
        }
        Ok(())
    }

    fn wait(self, frozen: bool, wait: Duration) -> Result<(), FreezeError> {
        let (file, wanted) = match (self, frozen) {
            (Freezer::V1(dir), true) => (dir.join("freezer.state"), "FROZEN"),
            (Freezer::V1(dir), false) => (dir.join("freezer.state"), "THAWED"),
            (Freezer::V2(dir), true) => (dir.join("cgroup.events"), "frozen 1"),
            (Freezer::V2(dir), false) => (dir.join("cgroup.events"), "frozen 0"),
        };
        let deadline = Instant::now() + wait;
        let mut pause = FIRST_POLL;
        loop {
            let seen = match self {
                Freezer::V1(_) => read_or_empty(&file)?,
                Freezer::V2(_) => frozen_line(&file)?,
            };
            if seen == wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(FreezeError::Timeout {
                    file,
                    wanted,
                    seen,
                    waited: wait,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(LONGEST_POLL);
        }
    }
}

/// The `frozen N` line of a v2 `cgroup.events` file (empty if the file or line is missing).
fn frozen_line(file: &Path) -> Result<String, CgroupError> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(text
            .lines()
            .find(|l| l.starts_with("frozen "))
            .unwrap_or_default()
            .trim()
            .to_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Placement;
    use super::*;

    fn placement(hierarchy: &str, version: Version, path: PathBuf) -> Placement {
        Placement {
            hierarchy: hierarchy.into(),
            version,
            path,
            created: Vec::new(),
        }
    }

    /// A container cgroup on a cgroup v2 fixture tree, with its `cgroup.events`.
    fn v2_cgroup(events: &str) -> (tempfile::TempDir, Cgroup) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("cgroup.freeze"), "0\n").unwrap();
        fs::write(dir.join("cgroup.events"), events).unwrap();
        let cgroup = Cgroup {
            mode: Mode::Unified,
            placements: vec![placement("", Version::V2, dir)],
        };
        (tmp, cgroup)
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn v2_freeze_writes_cgroup_freeze_and_waits_for_the_frozen_event() {
        let (_tmp, cgroup) = v2_cgroup("populated 1\nfrozen 1\n");
        let dir = cgroup.placements[0].path.clone();
        assert!(!cgroup.is_frozen());
        cgroup.freeze().unwrap();
        assert_eq!(read(&dir, "cgroup.freeze"), "1");
        assert!(cgroup.is_frozen());
    }

    #[test]
    fn v2_freeze_that_never_completes_times_out_and_is_undone() {
        let (_tmp, cgroup) = v2_cgroup("populated 1\nfrozen 0\n");
        let dir = cgroup.placements[0].path.clone();
        let err = cgroup
            .freezer()
            .unwrap()
            .set(true, Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, FreezeError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("cgroup.events"), "{err}");
        assert!(err.to_string().contains("frozen 1"), "{err}");
        assert_eq!(read(&dir, "cgroup.freeze"), "0", "the freeze is undone");
        assert!(!cgroup.is_frozen());
    }

    #[test]
    fn v2_thaw_waits_for_frozen_0() {
        let (_tmp, cgroup) = v2_cgroup("populated 1\nfrozen 0\n");
        let dir = cgroup.placements[0].path.clone();
        fs::write(dir.join("cgroup.freeze"), "1").unwrap();
        assert!(cgroup.is_frozen());
        cgroup.thaw().unwrap();
        assert_eq!(read(&dir, "cgroup.freeze"), "0");
        assert!(!cgroup.is_frozen());
    }

    #[test]
    fn hybrid_uses_the_v1_freezer_and_v2_only_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let freezer = tmp.path().join("freezer/c1");
        let unified = tmp.path().join("unified/c1");
        let mut cgroup = Cgroup {
            mode: Mode::Hybrid,
            placements: vec![
                placement("memory", Version::V1, tmp.path().join("memory/c1")),
                placement("freezer", Version::V1, freezer.clone()),
                placement("", Version::V2, unified.clone()),
            ],
        };
        assert_eq!(cgroup.freezer().unwrap(), Freezer::V1(&freezer));
        cgroup.placements.remove(1);
        assert_eq!(cgroup.freezer().unwrap(), Freezer::V2(&unified));
        cgroup.mode = Mode::Legacy;
        cgroup.placements.pop();
        assert!(matches!(cgroup.freezer(), Err(FreezeError::NoFreezer)));
        assert!(!cgroup.is_frozen());
    }

    #[test]
    fn v1_freezing_counts_as_paused_and_a_missing_file_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let freezer = Freezer::V1(tmp.path());
        assert!(!freezer.is_frozen());
        for (state, paused) in [
            ("THAWED\n", false),
            ("FREEZING\n", true),
            ("FROZEN\n", true),
        ] {
            fs::write(tmp.path().join("freezer.state"), state).unwrap();
            assert_eq!(freezer.is_frozen(), paused, "{state}");
        }
    }
}
