//! Resource limits and the OOM score of the container's process.
//!
//! Both can need CAP_SYS_RESOURCE (raising a hard rlimit, lowering oom_score_adj).
//! Hosts where root lacks it still run the container: like containerd's
//! `restrict_oom_score_adj`, the request is clamped to what is allowed and a warning
//! says so, instead of failing the container.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Why a limit could not be applied (only for errors other than missing privilege).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// `setrlimit` failed for a reason other than privilege.
    #[error("process.rlimits: {kind}: soft {soft} hard {hard}: {errno}")]
    Rlimit {
        /// The limit's name, e.g. RLIMIT_NOFILE.
        kind: String,
        /// Requested soft limit.
        soft: u64,
        /// Requested hard limit.
        hard: u64,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
    /// The config asks for a soft limit above its own hard limit.
    #[error("process.rlimits: {kind}: soft limit {soft} exceeds hard limit {hard}")]
    SoftAboveHard {
        /// The limit's name.
        kind: String,
        /// Requested soft limit.
        soft: u64,
        /// Requested hard limit.
        hard: u64,
    },
    /// Writing oom_score_adj failed for a reason other than privilege.
    #[error("process.oomScoreAdj {value}: {source}")]
    OomScore {
        /// The requested value.
        value: i32,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn resource(kind: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match kind {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn name(kind: PosixRlimitType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

fn get(res: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the resource id is valid.
    unsafe { libc::getrlimit(res, &mut cur) };
    cur
}

fn set(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> Result<(), nix::errno::Errno> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own; the resource id is valid.
    let rc = unsafe { libc::setrlimit(res, &lim) };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// What to do when the requested hard limit cannot be raised: keep the current hard
/// limit and fit the soft limit under it.
pub fn clamp(soft: u64, hard: u64, current_hard: u64) -> (u64, u64) {
    let hard = hard.min(current_hard);
    (soft.min(hard), hard)
}

/// Apply `process.rlimits`.
pub fn apply_rlimits(rlimits: &[PosixRlimit]) -> Result<(), LimitError> {
    for r in rlimits {
        let (soft, hard) = (r.soft(), r.hard());
        if soft > hard {
            return Err(LimitError::SoftAboveHard {
                kind: name(r.typ()),
                soft,
                hard,
            });
        }
        let res = resource(r.typ());
        match set(res, soft, hard) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) => {
                let cur = get(res);
                let (s, h) = clamp(soft, hard, cur.rlim_max);
                tracing::warn!(
                    "{}: cannot raise hard limit to {hard} without CAP_SYS_RESOURCE; using soft {s} hard {h}",
                    name(r.typ())
                );
                set(res, s, h).map_err(|errno| LimitError::Rlimit {
                    kind: name(r.typ()),
                    soft: s,
                    hard: h,
                    errno,
                })?;
            }
            Err(errno) => {
                return Err(LimitError::Rlimit {
                    kind: name(r.typ()),
                    soft,
                    hard,
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// Write `/proc/self/oom_score_adj`; a value the process may not set is clamped to
/// the current one with a warning.
pub fn apply_oom_score_adj(value: i32) -> Result<(), LimitError> {
    let path = "/proc/self/oom_score_adj";
    match std::fs::write(path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            let current = std::fs::read_to_string(path).unwrap_or_default();
            tracing::warn!(
                "oomScoreAdj {value} not permitted (no CAP_SYS_RESOURCE); keeping {}",
                current.trim()
            );
            Ok(())
        }
        Err(source) => Err(LimitError::OomScore { value, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_keeps_soft_under_hard() {
        assert_eq!(clamp(2048, 4096, 1024), (1024, 1024));
        assert_eq!(clamp(512, 4096, 1024), (512, 1024));
        assert_eq!(clamp(512, 800, 1024), (512, 800));
    }

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(name(PosixRlimitType::RlimitNofile), "RLIMIT_NOFILE");
    }
}
