//! The pure half of `linux.seccomp`: the OCI description turned into libseccomp's terms
//! (actions, architectures, argument comparisons, one rule per syscall name), checked
//! for what cannot be honoured, without touching the kernel or libseccomp's state.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::SeccompError;

/// `EPERM`: what `SCMP_ACT_ERRNO` returns when the config names no errno, as runc does.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;
/// The kernel passes six arguments to a system call.
const MAX_ARGS: usize = 6;

/// A filter ready to hand to libseccomp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What happens to a syscall no rule matches.
    pub default: ScmpAction,
    /// Extra architectures the filter covers besides the native one.
    pub arches: Vec<ScmpArch>,
    /// The rules, one per syscall name and condition set, in config order.
    pub rules: Vec<Rule>,
    /// `linux.seccomp.flags`.
    pub flags: Vec<LinuxSeccompFilterFlag>,
}

/// One libseccomp rule: `action` when `syscall` is called and every condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The syscall's name (resolved to a number only when compiling).
    pub syscall: String,
    /// What to do.
    pub action: ScmpAction,
    /// Argument comparisons, all of which must hold.
    pub conditions: Vec<ScmpArgCompare>,
}

impl Plan {
    /// Translate `seccomp`. Rules whose action is the default action are dropped, as
    /// libseccomp refuses them and they change nothing.
    pub fn from_spec(seccomp: &LinuxSeccomp) -> Result<Plan, SeccompError> {
        if seccomp.listener_path().is_some() {
            return Err(SeccompError::Unsupported {
                what: "linux.seccomp.listenerPath".into(),
                why: "peapod-runtime has no seccomp notify support".into(),
            });
        }
        let default = action(
            "linux.seccomp.defaultAction",
            seccomp.default_action(),
            seccomp.default_errno_ret(),
        )?;
        let arches = seccomp
            .architectures()
            .iter()
            .flatten()
            .map(|arch| {
                let name = serde_json::to_value(arch)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                name.parse::<ScmpArch>()
                    .map_err(|_| SeccompError::Unsupported {
                        what: format!("linux.seccomp.architectures: {name:?}"),
                        why: "libseccomp does not know this architecture".into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = Vec::new();
        for (i, syscall) in seccomp.syscalls().iter().flatten().enumerate() {
            rules.extend(syscall_rules(i, syscall, default)?);
        }
        Ok(Plan {
            default,
            arches,
            rules,
            flags: seccomp.flags().clone().unwrap_or_default(),
        })
    }
}

/// The rules of `linux.seccomp.syscalls[i]`. Several comparisons of the same argument
/// cannot be ANDed by libseccomp, so, as runc does, each becomes a rule of its own
/// (they are then alternatives).
fn syscall_rules(
    i: usize,
    syscall: &LinuxSyscall,
    default: ScmpAction,
) -> Result<Vec<Rule>, SeccompError> {
    let field = format!("linux.seccomp.syscalls[{i}]");
    let action = action(&field, syscall.action(), syscall.errno_ret())?;
    if action == default {
        return Ok(Vec::new());
    }
    let args = syscall.args().clone().unwrap_or_default();
    let conditions = args
        .iter()
        .map(|arg| condition(&field, arg))
        .collect::<Result<Vec<_>, _>>()?;
    let repeated = args
        .iter()
        .enumerate()
        .any(|(n, a)| args[..n].iter().any(|b| b.index() == a.index()));
    let sets: Vec<Vec<ScmpArgCompare>> = if repeated {
        conditions.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conditions]
    };
    let mut rules = Vec::new();
    for name in syscall.names() {
        for conditions in &sets {
            rules.push(Rule {
                syscall: name.clone(),
                action,
                conditions: conditions.clone(),
            });
        }
    }
    Ok(rules)
}

/// An OCI action as libseccomp's; `errno_ret` is the errno of `SCMP_ACT_ERRNO` and the
/// message of `SCMP_ACT_TRACE`.
pub fn action(
    field: &str,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
) -> Result<ScmpAction, SeccompError> {
    let ret = errno_ret.unwrap_or(DEFAULT_ERRNO);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(i32::try_from(ret).map_err(|_| SeccompError::Invalid {
                field: format!("{field}.errnoRet"),
                value: ret.to_string(),
                expected: "an errno number",
            })?)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(ret).map_err(|_| SeccompError::Invalid {
                field: format!("{field}.errnoRet"),
                value: ret.to_string(),
                expected: "a 16-bit trace message",
            })?)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported {
                what: format!("{field}: SCMP_ACT_NOTIFY"),
                why: "it needs a seccomp notify listener (linux.seccomp.listenerPath), \
                      which peapod-runtime does not support"
                    .into(),
            })
        }
    })
}

/// One `args` entry as a libseccomp comparison. For `SCMP_CMP_MASKED_EQ` the OCI
/// `value` is the mask and `valueTwo` what the masked argument must equal.
fn condition(field: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    if arg.index() >= MAX_ARGS {
        return Err(SeccompError::Invalid {
            field: format!("{field}.args.index"),
            value: arg.index().to_string(),
            expected: "0 to 5",
        });
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok(ScmpArgCompare::new(arg.index() as u32, op, datum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Result<Plan, SeccompError> {
        Plan::from_spec(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn actions_and_errnos_translate() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "syscalls":[{"names":["getcwd","chdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                            {"names":["kill"],"action":"SCMP_ACT_KILL"},
                            {"names":["ptrace"],"action":"SCMP_ACT_TRACE"},
                            {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert_eq!(p.default, ScmpAction::Errno(38));
        let got: Vec<(&str, ScmpAction)> = p
            .rules
            .iter()
            .map(|r| (r.syscall.as_str(), r.action))
            .collect();
        assert_eq!(
            got,
            [
                ("getcwd", ScmpAction::Errno(13)),
                ("chdir", ScmpAction::Errno(13)),
                ("kill", ScmpAction::KillThread),
                ("ptrace", ScmpAction::Trace(1)),
                ("read", ScmpAction::Allow),
            ]
        );
    }

    #[test]
    fn rules_equal_to_the_default_are_dropped_and_errno_defaults_to_eperm() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW",
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["mount"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].action, ScmpAction::Errno(libc::EPERM));
    }

    #[test]
    fn every_comparison_operator_translates() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":0,"value":1,"op":"SCMP_CMP_NE"},{"index":1,"value":2,"op":"SCMP_CMP_LT"},
                {"index":2,"value":3,"op":"SCMP_CMP_LE"},{"index":3,"value":4,"op":"SCMP_CMP_EQ"},
                {"index":4,"value":5,"op":"SCMP_CMP_GE"},{"index":5,"value":255,"valueTwo":6,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 1, "distinct indices are ANDed in one rule");
        assert_eq!(
            p.rules[0].conditions,
            [
                ScmpArgCompare::new(0, ScmpCompareOp::NotEqual, 1),
                ScmpArgCompare::new(1, ScmpCompareOp::Less, 2),
                ScmpArgCompare::new(2, ScmpCompareOp::LessOrEqual, 3),
                ScmpArgCompare::new(3, ScmpCompareOp::Equal, 4),
                ScmpArgCompare::new(4, ScmpCompareOp::GreaterEqual, 5),
                ScmpArgCompare::new(5, ScmpCompareOp::MaskedEqual(255), 6),
            ]
        );
        let gt = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","args":[
                {"index":0,"value":7,"op":"SCMP_CMP_GT"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            gt.rules[0].conditions,
            [ScmpArgCompare::new(0, ScmpCompareOp::Greater, 7)]
        );
    }

    #[test]
    fn repeated_argument_indices_become_alternative_rules() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                {"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 2);
        assert!(p.rules.iter().all(|r| r.conditions.len() == 1));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_clearly() {
        let err = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("syscalls[0]: SCMP_ACT_NOTIFY"), "{err}");
        assert!(err.contains("listener"), "{err}");
        let err = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("args.index"), "{err}");
        assert!(
            plan(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock"}"#).is_err()
        );
    }

    #[test]
    fn architectures_translate() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"]}"#,
        )
        .unwrap();
        assert_eq!(p.arches, [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32]);
    }
}
