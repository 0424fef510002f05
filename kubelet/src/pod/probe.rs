//! Startup, liveness and readiness probers for one container instance, with upstream's
//! semantics: one task per probe, ticking every `periodSeconds` (one run at a time,
//! missed ticks skipped, no drift), idle for `initialDelaySeconds` after the container
//! started, liveness and readiness idle until the startup probe has passed, results
//! counted against `successThreshold` / `failureThreshold`.
//!
//! The probers only report ([`ProbeEvent`]); the pod worker acts on them:
//!
//! - start a [`ContainerProbes`] right after a container instance started, keep it with
//!   the instance, drop it when the instance dies or is killed (that stops its tasks and
//!   releases the pod's namespace thread);
//! - ignore events whose `instance` is not the container's current one;
//! - `Started` → the status's `started: true`; `Ready(b)` → `ready: b` and the pod's
//!   Ready/ContainersReady conditions (a new instance starts not ready);
//! - `Unhealthy(message)` → a Warning `Unhealthy` event with that message;
//! - `Restart { message, grace }` → a `Killing` event with `message`, drop the probes,
//!   kill the instance with `grace` (else the pod's grace period), then restart it per
//!   restartPolicy with the usual back-off.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::handler::{self, Action, Outcome, Target};

/// How often a run that could not be carried out ([`Outcome::Error`]) is tried again
/// before it is reported, as upstream retries.
const ATTEMPTS: usize = 3;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `startupProbe`: gates the other two.
    Startup,
    /// `livenessProbe`: failing restarts the container.
    Liveness,
    /// `readinessProbe`: sets the container's `ready`.
    Readiness,
}

impl Kind {
    /// As events name it: `Startup`, `Liveness`, `Readiness`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    /// The spec field (`startupProbe`...), for error messages.
    fn field(self) -> &'static str {
        match self {
            Kind::Startup => "startupProbe",
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
        }
    }
}

/// What a prober learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The container counts as started: its startup probe passed, or it has none
    /// (then sent at once, with kind Startup). Set `started: true`.
    Started,
    /// The container's readiness changed (kind Readiness). Without a readiness probe
    /// `Ready(true)` follows `Started`. Readiness starts false; nothing is sent for that.
    Ready(bool),
    /// One run failed or could not be carried out: the message of a `Warning
    /// Unhealthy` event ("Liveness probe failed: ..."). Sent for every such run,
    /// whether or not it reaches the threshold.
    Unhealthy(String),
    /// Liveness or startup failed `failureThreshold` times in a row: kill the
    /// container ("Killing" event with `message`) and restart it per the pod's
    /// restartPolicy. `grace` is the probe's terminationGracePeriodSeconds, which
    /// overrides the pod's for this kill. That probe stops; the others run until the
    /// [`ContainerProbes`] is dropped.
    Restart {
        /// "Container web failed liveness probe, will be restarted".
        message: String,
        /// The probe-level grace period, if set.
        grace: Option<i64>,
    },
}

/// A prober's report about one container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// The container's name in the pod.
    pub container: String,
    /// The runtime's id of the instance probed (a report about an instance that has
    /// since been replaced is stale).
    pub instance: String,
    /// Which probe.
    pub kind: Kind,
    /// What it learned.
    pub change: Change,
}

/// How a probe is timed and judged, with upstream's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Idle time after the container started.
    pub initial_delay: Duration,
    /// Time between runs.
    pub period: Duration,
    /// Time one run may take.
    pub timeout: Duration,
    /// Passes in a row that make a failing probe pass.
    pub success_threshold: u32,
    /// Failures in a row that make a passing probe fail.
    pub failure_threshold: u32,
    /// The probe-level terminationGracePeriodSeconds.
    pub grace: Option<i64>,
}

impl Timing {
    /// The timing of `probe` (defaults 0 s delay, 10 s period, 1 s timeout, success 1,
    /// failure 3; values below the minimum of 1 count as 1).
    pub fn of(probe: &Probe) -> Timing {
        let seconds = |value: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(value.map_or(default, |v| u64::try_from(v).unwrap_or(0).max(min)))
        };
        let count = |value: Option<i32>, default: u32| {
            value.map_or(default, |v| u32::try_from(v).unwrap_or(0).max(1))
        };
        Timing {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
            grace: probe.termination_grace_period_seconds,
        }
    }
}

/// Counts results in a row and says when the probe's result flips, as upstream's
/// worker does: a result is published once it came `threshold` times in a row.
#[derive(Debug, Clone)]
struct Streak {
    last: Option<bool>,
    run: u32,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Streak {
    fn new(timing: &Timing) -> Streak {
        Streak {
            last: None,
            run: 0,
            success_threshold: timing.success_threshold,
            failure_threshold: timing.failure_threshold,
        }
    }

    /// Take one run's result; Some(result) when it is now the probe's result.
    fn observe(&mut self, passed: bool) -> Option<bool> {
        if self.last == Some(passed) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(passed);
            self.run = 1;
        }
        let threshold = if passed {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        (self.run >= threshold).then_some(passed)
    }
}

/// One run of a probe's check, bounded by its timeout.
type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// The probers of one container instance; dropping it stops them.
#[derive(Debug)]
pub struct ContainerProbes {
    tasks: Vec<JoinHandle<()>>,
}

impl ContainerProbes {
    /// Start probing `container`'s instance at `target`, which has just started (the
    /// initial delays count from now). Reports go to `events`. A probe whose action
    /// cannot be resolved (an unknown port name...) reports every run as errored, as
    /// upstream does, and never restarts the container.
    pub fn start(
        container: &Container,
        target: Target,
        events: mpsc::UnboundedSender<ProbeEvent>,
    ) -> ContainerProbes {
        let probes = [
            (Kind::Startup, &container.startup_probe),
            (Kind::Liveness, &container.liveness_probe),
            (Kind::Readiness, &container.readiness_probe),
        ];
        let probes = probes
            .into_iter()
            .filter_map(|(kind, probe)| {
                let probe = probe.as_ref()?;
                let timing = Timing::of(probe);
                let action = Action::from_probe(probe, container, kind.field());
                let target = target.clone();
                let check: Check = Arc::new(move || {
                    let action = action.clone();
                    let target = target.clone();
                    Box::pin(async move {
                        match action {
                            Ok(action) => handler::run(&action, &target, timing.timeout).await,
                            Err(e) => Outcome::Error(e.to_string()),
                        }
                    })
                });
                Some((kind, timing, check))
            })
            .collect();
        let reporter = Reporter {
            container: container.name.clone(),
            instance: target.container_id.clone(),
            events,
        };
        ContainerProbes::with_checks(reporter, probes)
    }

    /// Start the given probes; the seam the timing tests use with scripted checks.
    fn with_checks(reporter: Reporter, probes: Vec<(Kind, Timing, Check)>) -> ContainerProbes {
        let started_at = Instant::now();
        let has_startup = probes.iter().any(|(kind, _, _)| *kind == Kind::Startup);
        let has_readiness = probes.iter().any(|(kind, _, _)| *kind == Kind::Readiness);
        let (started_tx, started) = watch::channel(!has_startup);
        if !has_startup {
            reporter.send(Kind::Startup, Change::Started);
            if !has_readiness {
                reporter.send(Kind::Readiness, Change::Ready(true));
            }
        }
        let started_tx = Arc::new(started_tx);
        let tasks = probes
            .into_iter()
            .map(|(kind, timing, check)| {
                let prober = Prober {
                    kind,
                    timing,
                    check,
                    reporter: reporter.clone(),
                    started: started.clone(),
                    started_tx: started_tx.clone(),
                    started_at,
                    ready_without_probe: !has_readiness,
                };
                tokio::spawn(prober.run())
            })
            .collect();
        ContainerProbes { tasks }
    }
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Sends reports about one container instance.
#[derive(Debug, Clone)]
struct Reporter {
    container: String,
    instance: String,
    events: mpsc::UnboundedSender<ProbeEvent>,
}

impl Reporter {
    /// False once nobody listens.
    fn send(&self, kind: Kind, change: Change) -> bool {
        let event = ProbeEvent {
            container: self.container.clone(),
            instance: self.instance.clone(),
            kind,
            change,
        };
        self.events.send(event).is_ok()
    }
}

/// One probe's task.
struct Prober {
    kind: Kind,
    timing: Timing,
    check: Check,
    reporter: Reporter,
    /// Whether the container counts as started (the startup probe passed, or none).
    started: watch::Receiver<bool>,
    started_tx: Arc<watch::Sender<bool>>,
    started_at: Instant,
    /// Send `Ready(true)` on start-up success (there is no readiness probe).
    ready_without_probe: bool,
}

impl Prober {
    async fn run(self) {
        let mut streak = Streak::new(&self.timing);
        let mut ready = false;
        // The first tick is at once, then every period on a fixed schedule: a run
        // longer than the period skips the ticks it missed instead of bunching them.
        let mut ticker = tokio::time::interval_at(self.started_at, self.timing.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            if self.started_at.elapsed() < self.timing.initial_delay {
                continue;
            }
            let started = *self.started.borrow();
            // Startup stops once passed; the others wait for it.
            if started == (self.kind == Kind::Startup) {
                if self.kind == Kind::Startup {
                    return;
                }
                continue;
            }
            let passed = match self.attempt().await {
                Outcome::Success => true,
                Outcome::Failure(output) => {
                    let message = format!("{} probe failed: {output}", self.kind.label());
                    if !self.reporter.send(self.kind, Change::Unhealthy(message)) {
                        return;
                    }
                    false
                }
                // Not counted: the check could not say anything about the container.
                Outcome::Error(error) => {
                    let message = format!("{} probe errored: {error}", self.kind.label());
                    if !self.reporter.send(self.kind, Change::Unhealthy(message)) {
                        return;
                    }
                    continue;
                }
            };
            let Some(result) = streak.observe(passed) else {
                continue;
            };
            let listening = match (self.kind, result) {
                (Kind::Readiness, result) if result != ready => {
                    ready = result;
                    self.reporter.send(Kind::Readiness, Change::Ready(result))
                }
                (Kind::Readiness, _) | (Kind::Liveness, true) => true,
                (Kind::Startup, true) => {
                    self.started_tx.send_replace(true);
                    self.reporter.send(Kind::Startup, Change::Started);
                    if self.ready_without_probe {
                        self.reporter.send(Kind::Readiness, Change::Ready(true));
                    }
                    // Started is for good: this prober is done.
                    return;
                }
                (Kind::Liveness | Kind::Startup, false) => {
                    let message = format!(
                        "Container {} failed {} probe, will be restarted",
                        self.reporter.container,
                        self.kind.label().to_lowercase()
                    );
                    let grace = self.timing.grace;
                    self.reporter
                        .send(self.kind, Change::Restart { message, grace });
                    // Held until the container is replaced (a new ContainerProbes):
                    // probing a container being killed only adds noise.
                    return;
                }
            };
            if !listening {
                return;
            }
        }
    }

    /// One run, tried again while it could not be carried out.
    async fn attempt(&self) -> Outcome {
        let mut outcome = (self.check)().await;
        for _ in 1..ATTEMPTS {
            if !matches!(outcome, Outcome::Error(_)) {
                break;
            }
            outcome = (self.check)().await;
        }
        outcome
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
