//! `linux.seccomp`: the OCI filter compiled to BPF with libseccomp (the library runc,
//! crun and youki use), loaded by the container's init just before `execve`, and the
//! Kubernetes `RuntimeDefault` profile in [`profile`].
//!
//! The filter is compiled by `create` and `exec` before they clone, so a config that
//! cannot be honoured fails there with a clear message; the child only loads it.

pub mod profile;
pub mod rule;

use libseccomp::{ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag};
use serde_json::{json, Value};

pub use rule::{Plan, Rule};

/// Why a seccomp filter could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The config asks for something this runtime cannot do.
    #[error("seccomp: {what} is not supported: {why}")]
    Unsupported {
        /// The field and value.
        what: String,
        /// Why not.
        why: String,
    },
    /// A field holds a value outside its range.
    #[error("seccomp: {field}: got {value}, expected {expected}")]
    Invalid {
        /// The field.
        field: String,
        /// What it held.
        value: String,
        /// What it may hold.
        expected: &'static str,
    },
    /// libseccomp refused an operation.
    #[error("seccomp: {op}: {source}")]
    Library {
        /// What was being done.
        op: String,
        /// What libseccomp said.
        source: libseccomp::error::SeccompError,
    },
}

fn library(op: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let op = op.into();
    move |source| SeccompError::Library { op, source }
}

/// A compiled filter, ready to load into the calling process.
pub struct Filter {
    ctx: ScmpFilterContext,
    /// Syscall names skipped because this architecture does not know them.
    skipped: Vec<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// Compile `seccomp`. Syscall names libseccomp does not know for the native
    /// architecture are skipped (configs list syscalls of every architecture and kernel
    /// version), as runc does.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
        let plan = Plan::from_spec(seccomp)?;
        let mut ctx = ScmpFilterContext::new(plan.default).map_err(library("new filter"))?;
        // The runtime sets no_new_privs itself when the config asks; libseccomp must not
        // force it (a process without it keeps setuid binaries working).
        ctx.set_ctl_nnp(false)
            .map_err(library("clear the no_new_privs attribute"))?;
        for arch in &plan.arches {
            ctx.add_arch(*arch)
                .map_err(library(format!("add architecture {arch:?}")))?;
        }
        for flag in &plan.flags {
            let set = match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    ctx.set_ctl_waitkill(true)
                }
            };
            set.map_err(|source| SeccompError::Unsupported {
                what: format!("linux.seccomp.flags: {flag}"),
                why: source.to_string(),
            })?;
        }
        let mut skipped = Vec::new();
        for rule in &plan.rules {
            let Ok(syscall) = ScmpSyscall::from_name(&rule.syscall) else {
                skipped.push(rule.syscall.clone());
                continue;
            };
            ctx.add_rule_conditional(rule.action, syscall, &rule.conditions)
                .map_err(library(format!(
                    "add a rule for {} ({:?})",
                    rule.syscall, rule.action
                )))?;
        }
        skipped.sort();
        skipped.dedup();
        Ok(Filter { ctx, skipped })
    }

    /// Names skipped at compile time, for logs and tests.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The filter in libseccomp's readable pseudo-code, for debugging and tests.
    pub fn pseudo_code(&self) -> Result<String, SeccompError> {
        let mut file = tempfile_in_memory()?;
        self.ctx
            .export_pfc(&file)
            .map_err(library("export the filter"))?;
        use std::io::{Read, Seek};
        let mut text = String::new();
        file.rewind()
            .and_then(|_| file.read_to_string(&mut text))
            .map_err(|e| SeccompError::Unsupported {
                what: "reading the exported filter".into(),
                why: e.to_string(),
            })?;
        Ok(text)
    }

    /// Load the filter into this process (and, with TSYNC, its threads). Needs
    /// CAP_SYS_ADMIN or no_new_privs, which is why the init loads it either before
    /// dropping capabilities or after setting no_new_privs.
    pub fn load(&self) -> Result<(), SeccompError> {
        self.ctx.load().map_err(library("load the filter"))
    }
}

/// Compile the `linux.seccomp` of container `id`, if it has one, noting skipped names.
pub fn compile_for(
    seccomp: Option<&LinuxSeccomp>,
    id: &str,
) -> Result<Option<Filter>, SeccompError> {
    let Some(seccomp) = seccomp else {
        return Ok(None);
    };
    let filter = Filter::compile(seccomp)?;
    if !filter.skipped().is_empty() {
        tracing::debug!(id, skipped = ?filter.skipped(), "seccomp: syscalls unknown here");
    }
    Ok(Some(filter))
}

/// An anonymous file to export into.
fn tempfile_in_memory() -> Result<std::fs::File, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(c"seccomp-export", nix::sys::memfd::MFdFlags::empty())
        .map_err(|errno| SeccompError::Unsupported {
        what: "exporting the filter".into(),
        why: format!("memfd_create: {errno}"),
    })?;
    Ok(std::fs::File::from(fd))
}

/// The `linux.seccomp` part of `features`: what this runtime can translate.
pub fn features() -> Value {
    json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": [
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
            "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
            "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32",
            "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
        ],
        "knownFlags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        ],
        // Debian bookworm's libseccomp 2.5 cannot set WAIT_KILLABLE_RECV.
        "supportedFlags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_LOG"
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Filter, SeccompError> {
        Filter::compile(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn unknown_names_are_skipped_and_known_ones_compiled() {
        let f = compile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["getcwd","no_such_syscall_xyz"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        )
        .unwrap();
        assert_eq!(f.skipped(), ["no_such_syscall_xyz"]);
        let pfc = f.pseudo_code().unwrap();
        assert!(pfc.contains("getcwd"), "{pfc}");
        assert!(pfc.contains("ERRNO(13)"), "{pfc}");
    }

    #[test]
    fn argument_conditions_reach_the_filter() {
        let f = compile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":0,"value":4294967295,"op":"SCMP_CMP_NE"}]}]}"#,
        )
        .unwrap();
        let pfc = f.pseudo_code().unwrap();
        assert!(pfc.contains("personality"), "{pfc}");
        assert!(pfc.contains("4294967295"), "{pfc}");
    }

    #[test]
    fn features_parse_as_the_oci_type() {
        let s: oci_spec::runtime::Seccomp = serde_json::from_value(features()).unwrap();
        assert_eq!(s.enabled(), &Some(true));
    }
}
