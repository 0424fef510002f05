//! The pod worker's decisions, as upstream's `computePodActions`: from the desired pod and
//! what the worker observed, the next things to do. Pure, so every rule of the lifecycle
//! (init order, native sidecars, restart policy, back-off, liveness kills, completion,
//! active deadline) is tested without a runtime.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::state::{ContainerState, Current, PodState};

/// What the worker knows of a container besides its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Time left in its crash back-off.
    pub backoff: Option<Duration>,
    /// Its liveness or startup probe failed past the threshold: it must be restarted.
    pub unhealthy: bool,
    /// A stop is under way (signals sent, waiting for the exit).
    pub stopping: bool,
}

/// The worker's view of the pod at one moment.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Whether the sandbox exists.
    pub sandbox: bool,
    /// Per-container facts by name (absent: all default).
    pub facts: HashMap<String, Facts>,
    /// The pod has failed for good (active deadline): stop everything, start nothing.
    pub failed: bool,
}

/// Why a running container is to be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its liveness or startup probe failed.
    Unhealthy,
    /// The pod is done (a sidecar outliving the app containers, or a failed init).
    PodDone,
    /// The pod failed (active deadline exceeded).
    PodFailed,
}

/// One step for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the sandbox; nothing else can happen before.
    CreateSandbox,
    /// Start (or restart) a container.
    Start {
        /// Its name.
        name: String,
        /// Whether it is an init container (sidecars included).
        init: bool,
    },
    /// A container to start whose back-off has time left.
    BackOff {
        /// Its name.
        name: String,
        /// The time left.
        remaining: Duration,
    },
    /// Stop a running container.
    Kill {
        /// Its name.
        name: String,
        /// Why.
        why: Why,
    },
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// The next steps for `pod`.
pub fn plan(pod: &Pod, state: &PodState, observed: &Observed) -> Vec<Action> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let facts = |name: &str| observed.facts.get(name).cloned().unwrap_or_default();
    let all_init = spec.init_containers.as_deref().unwrap_or_default();
    let mut actions = Vec::new();
    let kill_running =
        |containers: &mut dyn Iterator<Item = &Container>, why: Why, actions: &mut Vec<Action>| {
            for c in containers {
                let running = state
                    .container(&c.name)
                    .is_some_and(ContainerState::running);
                if running && !facts(&c.name).stopping {
                    actions.push(Action::Kill {
                        name: c.name.clone(),
                        why,
                    });
                }
            }
        };
    if observed.failed {
        kill_running(
            &mut spec.containers.iter().chain(all_init.iter().rev()),
            Why::PodFailed,
            &mut actions,
        );
        return actions;
    }
    if !observed.sandbox {
        return vec![Action::CreateSandbox];
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let sidecars = || all_init.iter().filter(|c| is_sidecar(c)).rev();
    // Once an app container has run, the pod is initialized for good: init containers
    // are not run again, as upstream.
    let apps_began = spec
        .containers
        .iter()
        .any(|c| state.container(&c.name).is_some_and(|s| s.id.is_some()));
    // A pod whose app containers are all done for good (or whose init container failed
    // under Never) is finished: its sidecars stop and nothing starts again.
    let state_of = |c: &Container| state.container(&c.name).map(progress);
    let apps_done = !spec.containers.is_empty()
        && spec
            .containers
            .iter()
            .all(|c| matches!(state_of(c), Some(Progress::Ended(code)) if !restarts(policy, code)));
    let init_failed = !apps_began
        && policy == "Never"
        && all_init.iter().any(|c| {
            !is_sidecar(c) && matches!(state_of(c), Some(Progress::Ended(code)) if code != 0)
        });
    if apps_done || init_failed {
        kill_running(&mut sidecars(), Why::PodDone, &mut actions);
        return actions;
    }
    let start = |c: &Container, init: bool, actions: &mut Vec<Action>| {
        let f = facts(&c.name);
        match f.backoff {
            Some(remaining) => actions.push(Action::BackOff {
                name: c.name.clone(),
                remaining,
            }),
            None => actions.push(Action::Start {
                name: c.name.clone(),
                init,
            }),
        }
    };
    for init in all_init {
        let Some(s) = state.container(&init.name) else {
            continue;
        };
        let f = facts(&init.name);
        if is_sidecar(init) {
            match progress(s) {
                Progress::Running if f.unhealthy && !f.stopping => actions.push(Action::Kill {
                    name: init.name.clone(),
                    why: Why::Unhealthy,
                }),
                Progress::Running if s.started || apps_began => continue,
                Progress::Running => return actions,
                Progress::Ended(_) | Progress::NotStarted => {
                    start(init, true, &mut actions);
                    if !apps_began {
                        return actions;
                    }
                }
            }
            continue;
        }
        if apps_began {
            continue;
        }
        match progress(s) {
            Progress::Ended(0) => continue,
            Progress::Running => {
                if f.unhealthy && !f.stopping {
                    actions.push(Action::Kill {
                        name: init.name.clone(),
                        why: Why::Unhealthy,
                    });
                }
                return actions;
            }
            Progress::Ended(_) | Progress::NotStarted => {
                start(init, true, &mut actions);
                return actions;
            }
        }
    }
    for c in &spec.containers {
        let Some(s) = state.container(&c.name) else {
            continue;
        };
        let f = facts(&c.name);
        match progress(s) {
            Progress::Running => {
                if f.unhealthy && !f.stopping {
                    actions.push(Action::Kill {
                        name: c.name.clone(),
                        why: Why::Unhealthy,
                    });
                }
            }
            Progress::Ended(code) if !restarts(policy, code) => {}
            Progress::Ended(_) | Progress::NotStarted => start(c, false, &mut actions),
        }
    }
    actions
}

/// Where a container is in its life, for planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Never ran, or failed before running (image pull, config error): to be started.
    NotStarted,
    /// Running now.
    Running,
    /// Its latest run ended with this exit code (it may be waiting in back-off).
    Ended(i32),
}

fn progress(s: &ContainerState) -> Progress {
    match &s.current {
        Current::Running { .. } => Progress::Running,
        Current::Terminated(t) => Progress::Ended(t.exit_code),
        Current::Waiting { reason, .. } => match &s.last {
            // A crash back-off waits on the last run; a failed start retries regardless.
            Some(last) if reason == "CrashLoopBackOff" => Progress::Ended(last.exit_code),
            _ => Progress::NotStarted,
        },
    }
}

/// Whether an app container that ended with `exit_code` is restarted under `policy`.
pub fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}
