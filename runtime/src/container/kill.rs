//! `kill`: send a signal to the container's init, or to every process in it.

use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{ContainerError, Store};

/// Parse a signal as runc does: a name with or without `SIG` (any case) or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("invalid signal number {n}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| format!("unknown signal {text:?}"))
}

/// Signal a container. Without `all` only the init gets it, and only while it lives;
/// with `all` every process in the container's cgroup does.
pub fn kill(store: &Store, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    let container = store.load(id)?;
    let status = container.status(store);
    if !all && !status.can_kill() {
        return Err(ContainerError::State("container not running".into()));
    }
    let mut pids = Vec::new();
    if status.can_kill() {
        pids.extend(container.pid);
    }
    if all {
        if let Some(cgroup) = &container.cgroup {
            pids.extend(cgroup.pids()?);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                return Err(ContainerError::io(format!("kill {pid} with {signal}"))(
                    e.into(),
                ))
            }
        }
    }
    if signal == Signal::SIGKILL {
        super::pause::thaw_after_kill(&container, status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
