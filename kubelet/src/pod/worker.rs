//! One task per pod: it follows the plan ([`super::plan`]) — sandbox, init containers in
//! order, native sidecars, app containers, restarts per the pod's restartPolicy with
//! back-off, kills — and on stop takes everything down (app containers first, then the
//! sidecars). It wakes on three things only: a command from the manager, a container's
//! exit (its shim's pidfd), and a timer (back-off, active deadline).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::mpsc;

use runtime::sandbox::{Qos, Sandbox};
use runtime::shim::{self, Reason};

use super::cri::{sandbox_name, Cri, CriError, Instance, Start};
use super::events::{self, Kind};
use super::handler::{self, Outcome, Target};
use super::plan::{self, Action, Facts, Observed, Why};
use super::probe::{Change, ContainerProbes, ProbeEvent};
use super::security;
use super::state::{lock, ContainerState, Current, PodState, SandboxInfo, Terminated};
use super::status;
use super::termination::{self, Victim, MINIMUM_GRACE};

/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long has its back-off reset.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// The most plan rounds one sync runs (each round starts something).
const MAX_ROUNDS: usize = 64;
/// The longest a postStart hook may hold up its pod's worker (upstream sets none; a hook
/// that hangs would otherwise keep the pod from ever being stopped).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the manager tells a worker.
#[derive(Debug)]
pub enum Command {
    /// Stop the pod (grace period in seconds; None: the pod's own) and remove it.
    Stop(Option<i64>),
}

/// A container's crash back-off.
#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    /// The next wait.
    delay: Duration,
    /// The current wait's end.
    until: Option<Instant>,
    /// The current wait's length.
    wait: Duration,
}

/// A pod's worker.
pub struct Worker {
    cri: Arc<Cri>,
    state: Arc<Mutex<PodState>>,
    pod: Pod,
    sandbox: Option<Sandbox>,
    /// The current instance of each container, by container name.
    instances: HashMap<String, Instance>,
    backoff: HashMap<String, Backoff>,
    sandbox_backoff: Backoff,
    /// Containers being stopped (signals sent, exit awaited).
    stopping: HashSet<String>,
    /// Containers to restart because a probe failed: the message and the probe's own
    /// grace period, if it sets one.
    unhealthy: HashMap<String, (String, Option<i64>)>,
    /// Past `activeDeadlineSeconds`: everything stops and nothing starts again.
    failed: bool,
    /// When `activeDeadlineSeconds` runs out.
    deadline: Option<Instant>,
    exits_tx: mpsc::UnboundedSender<(String, String)>,
    exits: mpsc::UnboundedReceiver<(String, String)>,
    /// The probers of each running container, by container name.
    probes: HashMap<String, ContainerProbes>,
    probes_tx: mpsc::UnboundedSender<ProbeEvent>,
    probe_events: mpsc::UnboundedReceiver<ProbeEvent>,
}

impl Worker {
    /// A worker for `pod`, reporting into `state`.
    pub fn new(cri: Arc<Cri>, pod: Pod, state: Arc<Mutex<PodState>>) -> Worker {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let (probes_tx, probe_events) = mpsc::unbounded_channel();
        Worker {
            cri,
            state,
            pod,
            sandbox: None,
            instances: HashMap::new(),
            backoff: HashMap::new(),
            sandbox_backoff: Backoff::default(),
            stopping: HashSet::new(),
            unhealthy: HashMap::new(),
            failed: false,
            deadline: None,
            exits_tx,
            exits,
            probes: HashMap::new(),
            probes_tx,
            probe_events,
        }
    }

    /// Run the pod until told to stop, then take it down.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let cri = self.cri.clone();
        let node_ips = tokio::task::spawn_blocking(move || cri.node_ips())
            .await
            .unwrap_or_default();
        self.with_state(|s| s.host_ip = node_ips.first().copied());
        self.adopt().await;
        self.deadline = self.active_deadline();
        loop {
            let wake = self.sync().await;
            self.cri.observer().changed();
            let sleep = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                command = commands.recv() => {
                    let grace = match command {
                        Some(Command::Stop(grace)) => grace,
                        None => None,
                    };
                    self.terminate(grace).await;
                    self.cri.observer().changed();
                    return;
                }
                Some((name, id)) = self.exits.recv() => self.exited(&name, &id),
                Some(event) = self.probe_events.recv() => self.probed(event),
                _ = sleep => {}
            }
        }
    }

    /// When the pod's `activeDeadlineSeconds`, counted from its start time, runs out.
    fn active_deadline(&self) -> Option<Instant> {
        let seconds = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let started = self.with_state(|s| s.start_time);
        let end = started + chrono::Duration::seconds(seconds.max(0));
        let left = (end - Utc::now()).to_std().unwrap_or_default();
        Some(Instant::now() + left)
    }

    /// The pod's grace period: `terminationGracePeriodSeconds`, upstream's 30 s if unset.
    fn grace(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0)
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut PodState) -> T) -> T {
        f(&mut lock(&self.state))
    }

    fn event(&self, kind: Kind, reason: &str, message: String, container: Option<&str>) {
        let event = events::event(&self.pod, kind, reason, message, container);
        self.cri.observer().event(&event);
        self.with_state(|s| s.record(event));
    }

    /// Take over what a previous kubelet left of this pod: its sandbox and containers.
    async fn adopt(&mut self) {
        let cri = self.cri.clone();
        let name = sandbox_name(&self.pod);
        let found = tokio::task::spawn_blocking(move || {
            let sandbox = cri.find_sandbox(&name)?;
            let instances = cri.instances(&sandbox);
            Some((sandbox, instances))
        })
        .await
        .ok()
        .flatten();
        let Some((sandbox, mut instances)) = found else {
            return;
        };
        tracing::info!(pod = %self.name(), "adopting sandbox {}", sandbox.name());
        // The pod has been running since its sandbox was made, not since this kubelet.
        if let Some(created) = parse_time(sandbox.created()) {
            self.with_state(|s| {
                s.start_time = created;
                s.pod.metadata.creation_timestamp = Some(super::status::time(created));
            });
        }
        self.set_sandbox(&sandbox, sandbox.ip().into_iter().collect());
        self.sandbox = Some(sandbox);
        // The newest instance of each container is current; older ones only keep logs.
        instances.sort_by_key(|i| i.record.restart_count);
        let mut stale = Vec::new();
        for instance in instances {
            if let Some(old) = self.instances.remove(&instance.record.name) {
                stale.push(old);
            }
            self.instances
                .insert(instance.record.name.clone(), instance);
        }
        for old in stale {
            self.remove_instance(old).await;
        }
        let current: Vec<Instance> = self.instances.values().cloned().collect();
        for instance in current {
            let name = instance.record.name.clone();
            let exit = shim::exit_status(&instance.exit_file());
            let started_at = file_time(&instance.bundle.join(super::cri::RECORD));
            let spec = self.spec_container(&name);
            self.with_state(|s| {
                if let Some(c) = s.container_mut(&name) {
                    c.id = Some(instance.id.clone());
                    c.restart_count = instance.record.restart_count;
                    c.image_id = Some(instance.record.image_id.clone());
                    c.shim_pid = Some(instance.record.shim_pid);
                    c.log_path = Some(instance.record.log_path.clone());
                    c.exit_file = Some(instance.exit_file());
                    c.current = Current::Running { started_at };
                    // An adopted container has started (it ran before this kubelet);
                    // readiness is probed afresh, as upstream.
                    c.started = true;
                    c.ready = spec.as_ref().is_some_and(|s| s.readiness_probe.is_none());
                }
            });
            match exit {
                Some(_) => self.exited(&name, &instance.id),
                None => {
                    self.watch(&name, &instance.id, instance.record.shim_pid);
                    if let Some(container) = &spec {
                        self.start_probes(container, &instance.id);
                    }
                }
            }
        }
    }

    /// Do what the plan says until it asks for nothing new; when to look again (None: on
    /// an event).
    async fn sync(&mut self) -> Option<Duration> {
        self.admit();
        self.check_deadline();
        let mut wake = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let earliest = |wake: Option<Duration>, w: Duration| Some(wake.map_or(w, |x| x.min(w)));
        // Each round either starts something, which changes the plan, or ends the loop;
        // the bound is a guard against a rule that would plan the same start forever.
        for _ in 0..MAX_ROUNDS {
            let actions = {
                let observed = self.observed();
                let state = lock(&self.state);
                plan::plan(&self.pod, &state, &observed)
            };
            let mut progressed = false;
            for action in actions {
                match action {
                    Action::CreateSandbox => match self.create_sandbox().await {
                        Ok(()) => progressed = true,
                        Err(w) => return earliest(wake, w),
                    },
                    Action::Start { name, init } => {
                        let Some(container) = self.spec_container(&name) else {
                            continue;
                        };
                        if self.start(&container, init).await.is_err() {
                            let initial = self.cri.config().crash_backoff;
                            self.backoff.entry(name).or_default().after_failure(initial);
                        }
                        progressed = true;
                    }
                    Action::BackOff { name, remaining } => {
                        self.back_off(&name, remaining);
                        wake = earliest(wake, remaining);
                    }
                    Action::Kill { name, why } => self.kill(&name, why),
                }
            }
            if !progressed {
                break;
            }
        }
        wake
    }

    /// What the planner needs besides the pod's state.
    fn observed(&self) -> Observed {
        let mut facts: HashMap<String, Facts> = HashMap::new();
        for (name, backoff) in &self.backoff {
            facts.entry(name.clone()).or_default().backoff = backoff.remaining();
        }
        for name in self.unhealthy.keys() {
            facts.entry(name.clone()).or_default().unhealthy = true;
        }
        for name in &self.stopping {
            facts.entry(name.clone()).or_default().stopping = true;
        }
        Observed {
            sandbox: self.sandbox.is_some(),
            facts,
            failed: self.failed,
        }
    }

    /// The container of the pod spec named `name` (init containers first).
    fn spec_container(&self, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == name)
            .cloned()
    }

    /// Pod admission before anything runs: a pod this node refuses (a forbidden sysctl)
    /// fails at once with the reason, as upstream's kubelet rejects it.
    fn admit(&mut self) {
        if self.failed || self.sandbox.is_some() {
            return;
        }
        if let Err((reason, message)) =
            security::admit_sysctls(&self.pod, &self.cri.config().security)
        {
            self.failed = true;
            self.with_state(|s| s.failure = Some((reason.into(), message.clone())));
            self.event(Kind::Warning, reason, message, None);
        }
    }

    /// Fail the pod once it has been active longer than `activeDeadlineSeconds`.
    fn check_deadline(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.failed || Instant::now() < deadline {
            return;
        }
        self.failed = true;
        let message = "Pod was active on the node longer than the specified deadline";
        self.with_state(|s| s.failure = Some(("DeadlineExceeded".into(), message.into())));
        self.event(Kind::Normal, "DeadlineExceeded", message.into(), None);
    }

    fn container_state(&self, name: &str) -> Option<ContainerState> {
        self.with_state(|s| s.container(name).cloned())
    }

    /// Make the sandbox; on failure, when to try again.
    async fn create_sandbox(&mut self) -> Result<(), Duration> {
        let cri = self.cri.clone();
        let pod = self.pod.clone();
        let qos = match status::qos_class(&pod) {
            "Guaranteed" => Qos::Guaranteed,
            "Burstable" => Qos::Burstable,
            _ => Qos::BestEffort,
        };
        let made = tokio::task::spawn_blocking(move || {
            let made = cri.run_sandbox(&pod, qos)?;
            Ok((made, cri.dns_warnings(&pod)))
        })
        .await
        .unwrap_or_else(|e| Err(CriError::Sandbox(format!("sandbox task: {e}"))));
        match made {
            Ok(((sandbox, ips), warnings)) => {
                for warning in warnings {
                    self.event(Kind::Warning, warning.reason, warning.message, None);
                }
                self.set_sandbox(&sandbox, ips);
                self.sandbox = Some(sandbox);
                self.sandbox_backoff = Backoff::default();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), "{e}");
                self.event(Kind::Warning, "FailedCreatePodSandBox", e.to_string(), None);
                Err(self.sandbox_backoff.after_failure(Duration::from_secs(1)))
            }
        }
    }

    fn set_sandbox(&self, sandbox: &Sandbox, ips: Vec<IpAddr>) {
        let info = SandboxInfo {
            name: sandbox.name().to_string(),
            netns: sandbox.pins().net.clone(),
            ips,
        };
        self.with_state(|s| s.sandbox = Some(info));
    }

    /// A container waits out its back-off: say why in its state and as an event.
    fn back_off(&self, name: &str, remaining: Duration) {
        let pod_name = self.name();
        let image = self
            .spec_container(name)
            .and_then(|c| c.image)
            .unwrap_or_default();
        let wait = self.backoff.get(name).map(|b| b.wait).unwrap_or(remaining);
        let reason = self.with_state(|s| {
            let c = s.container_mut(name)?;
            let reason = match &c.current {
                Current::Waiting { reason, .. } if reason == "ErrImagePull" => {
                    "ImagePullBackOff".to_string()
                }
                // A volume that failed to mount: upstream stays in ContainerCreating.
                Current::Waiting {
                    reason,
                    message: Some(_),
                } if reason == "ContainerCreating" => reason.clone(),
                Current::Waiting { reason, .. }
                    if reason != "ContainerCreating" && reason != "PodInitializing" =>
                {
                    reason.clone()
                }
                _ => "CrashLoopBackOff".to_string(),
            };
            // A reason that stays (a failed mount, CreateContainerConfigError) keeps
            // its message, as upstream shows the error while it retries.
            let stays = reason != "CrashLoopBackOff";
            if stays && matches!(&c.current, Current::Waiting { reason: r, .. } if *r == reason) {
                return Some(reason);
            }
            let message = (reason == "CrashLoopBackOff").then(|| {
                format!(
                    "back-off {}s restarting failed container={name} pod={pod_name}",
                    wait.as_secs()
                )
            });
            c.wait(&reason, message);
            Some(reason)
        });
        let event = match reason.as_deref() {
            Some("CrashLoopBackOff") => {
                Some(format!("Back-off restarting failed container {name}"))
            }
            Some("ImagePullBackOff") => Some(format!("Back-off pulling image \"{image}\"")),
            _ => None,
        };
        if let Some(message) = event {
            self.event(Kind::Normal, "BackOff", message, Some(name));
        }
    }

    /// Pull, create and start one container; its state says how it went.
    async fn start(&mut self, container: &Container, init: bool) -> Result<(), ()> {
        let name = container.name.clone();
        let Some(sandbox) = self.sandbox.clone() else {
            return Err(());
        };
        // The previous instance goes (its log stays for `--previous`).
        let restart_count = self.with_state(|s| {
            let c = s.container_mut(&name)?;
            let count = if c.id.is_some() {
                c.restart_count + 1
            } else {
                0
            };
            if let Current::Terminated(t) = &c.current {
                c.last = Some(t.clone());
            }
            c.current = Current::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            };
            Some(count)
        });
        let Some(restart_count) = restart_count else {
            return Err(());
        };
        if let Some(old) = self.instances.remove(&name) {
            self.remove_instance(old).await;
        }
        let image_name = container.image.clone().unwrap_or_default();
        let present = !self.cri.pulls(container);
        if !present {
            self.event(
                Kind::Normal,
                "Pulling",
                format!("Pulling image \"{image_name}\""),
                Some(&name),
            );
        }
        let pulling = Instant::now();
        let image = match self.cri.ensure_image(container).await {
            Ok(image) => image,
            Err(e) => {
                self.fail(&name, &e);
                return Err(());
            }
        };
        let message = if present {
            format!("Container image \"{image_name}\" already present on machine")
        } else {
            format!(
                "Successfully pulled image \"{image_name}\" in {:.3}s",
                pulling.elapsed().as_secs_f64()
            )
        };
        self.event(Kind::Normal, "Pulled", message, Some(&name));
        let cri = self.cri.clone();
        let pod = self.pod.clone();
        let spec = container.clone();
        let (ips, host_ips) = self.with_state(|s| {
            let ips = s.sandbox.as_ref().map(|x| x.ips.clone());
            (
                ips.unwrap_or_default(),
                s.host_ip.into_iter().collect::<Vec<_>>(),
            )
        });
        let started = tokio::task::spawn_blocking(move || {
            cri.start_container(&Start {
                sandbox: &sandbox,
                pod: &pod,
                container: &spec,
                init,
                image: &image,
                restart_count,
                pod_ips: &ips,
                host_ips: &host_ips,
            })
        })
        .await
        .unwrap_or_else(|e| Err(CriError::Run(format!("container task: {e}"))));
        let (instance, started) = match started {
            Ok(ok) => ok,
            Err(e) => {
                self.fail(&name, &e);
                return Err(());
            }
        };
        let now = Utc::now();
        self.with_state(|s| {
            if let Some(c) = s.container_mut(&name) {
                c.previous_log_path = c.log_path.take();
                c.restart_count = restart_count;
                c.id = Some(instance.id.clone());
                c.image_id = Some(instance.record.image_id.clone());
                c.shim_pid = Some(started.shim_pid);
                c.log_path = Some(instance.record.log_path.clone());
                c.exit_file = Some(instance.exit_file());
                c.current = Current::Running { started_at: now };
                // Without a startup probe a container has started once it runs; without
                // a readiness probe it is ready once it has started.
                c.started = container.startup_probe.is_none();
                c.ready = c.started && container.readiness_probe.is_none();
            }
        });
        self.event(
            Kind::Normal,
            "Created",
            format!("Created container {name}"),
            Some(&name),
        );
        self.event(
            Kind::Normal,
            "Started",
            format!("Started container {name}"),
            Some(&name),
        );
        self.watch(&name, &instance.id, started.shim_pid);
        let id = instance.id.clone();
        self.instances.insert(name.clone(), instance);
        if self.post_start(container, &id).await {
            self.start_probes(container, &id);
        }
        Ok(())
    }

    /// Where a container instance's probes and hooks run.
    fn target(&self, id: &str) -> Option<Target> {
        let (netns, ip) = self.with_state(|s| {
            let sandbox = s.sandbox.as_ref()?;
            let ip = sandbox.ips.first().copied().or(s.host_ip);
            Some((sandbox.netns.clone(), ip))
        })?;
        let runtime = self.cri.runtime();
        let ip = ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Some(Target::new(netns, ip, id.to_string(), runtime))
    }

    /// Start probing a container instance that has just started (or was adopted).
    fn start_probes(&mut self, container: &Container, id: &str) {
        let Some(target) = self.target(id) else {
            return;
        };
        let probes = ContainerProbes::start(container, target, self.probes_tx.clone());
        self.probes.insert(container.name.clone(), probes);
    }

    /// Run the container's postStart hook, if it has one; false when it failed, and the
    /// container is then killed and restarted per the pod's policy, as upstream.
    async fn post_start(&mut self, container: &Container, id: &str) -> bool {
        let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        else {
            return true;
        };
        let name = &container.name;
        let outcome = match (
            handler::Action::from_lifecycle(hook, container, "lifecycle.postStart"),
            self.target(id),
        ) {
            (Ok(action), Some(target)) => handler::run(&action, &target, POST_START_TIMEOUT).await,
            (Err(e), _) => Outcome::Error(e.to_string()),
            (_, None) => Outcome::Error("the pod has no sandbox".into()),
        };
        match outcome {
            Outcome::Success => true,
            Outcome::Failure(why) | Outcome::Error(why) => {
                let message = format!("PostStartHook failed: {why}");
                self.event(Kind::Warning, "FailedPostStartHook", message, Some(name));
                self.unhealthy.insert(
                    name.clone(),
                    (format!("FailedPostStartHook: container {name}"), None),
                );
                false
            }
        }
    }

    /// A prober's report about a container instance (stale ones are dropped).
    fn probed(&mut self, event: ProbeEvent) {
        let name = event.container.as_str();
        let current = self.instances.get(name).map(|i| i.id.as_str());
        if current != Some(event.instance.as_str()) {
            return;
        }
        match event.change {
            Change::Started => self.with_state(|s| {
                if let Some(c) = s.container_mut(name).filter(|c| c.running()) {
                    c.started = true;
                }
            }),
            Change::Ready(ready) => self.with_state(|s| {
                if let Some(c) = s.container_mut(name).filter(|c| c.running()) {
                    c.ready = ready;
                }
            }),
            Change::Unhealthy(message) => {
                self.event(Kind::Warning, "Unhealthy", message, Some(name));
            }
            Change::Restart { message, grace } => {
                self.probes.remove(name);
                self.unhealthy.insert(name.to_string(), (message, grace));
            }
        }
    }

    /// A failed start: the container waits with the reason the error maps to.
    fn fail(&self, name: &str, error: &CriError) {
        let reason = match error {
            CriError::Image { reason, .. } => *reason,
            CriError::Config(_) => "CreateContainerConfigError",
            // Upstream waits for volumes before creating containers.
            CriError::Mount(_) => "ContainerCreating",
            CriError::Run(_) | CriError::Sandbox(_) => "RunContainerError",
        };
        tracing::warn!(pod = %self.name(), container = name, "{reason}: {error}");
        self.with_state(|s| {
            if let Some(c) = s.container_mut(name) {
                c.current = Current::Waiting {
                    reason: reason.into(),
                    message: Some(error.to_string()),
                };
            }
        });
        match error {
            CriError::Mount(e) => self.event(Kind::Warning, "FailedMount", e.to_string(), None),
            _ => self.event(
                Kind::Warning,
                "Failed",
                format!("Error: {error}"),
                Some(name),
            ),
        }
    }

    /// Report the container's exit on the worker's channel when its shim ends.
    fn watch(&self, name: &str, id: &str, shim_pid: i32) {
        let tx = self.exits_tx.clone();
        let (name, id) = (name.to_string(), id.to_string());
        tokio::spawn(async move {
            termination::process_exit(shim_pid).await;
            let _ = tx.send((name, id));
        });
    }

    /// A container's shim ended: record how the container did.
    fn exited(&mut self, name: &str, id: &str) {
        let Some(instance) = self.instances.get(name).filter(|i| i.id == id) else {
            return;
        };
        let record = shim::exit_status(&instance.exit_file());
        let mut terminated = match record {
            Some(r) => Terminated {
                exit_code: r.exit_code,
                signal: r.signal,
                reason: match r.reason {
                    Reason::Completed => "Completed",
                    Reason::Error => "Error",
                    Reason::OomKilled => "OOMKilled",
                }
                .into(),
                message: None,
                started_at: parse_time(&r.started_at),
                finished_at: parse_time(&r.finished_at).unwrap_or_else(Utc::now),
                container_id: Some(id.to_string()),
            },
            None => Terminated {
                exit_code: 137,
                signal: None,
                reason: "ContainerStatusUnknown".into(),
                message: Some("The container's supervisor ended without an exit record".into()),
                started_at: None,
                finished_at: Utc::now(),
                container_id: Some(id.to_string()),
            },
        };
        let policy = self
            .spec_container(name)
            .and_then(|c| c.termination_message_policy)
            .unwrap_or_default();
        if let Some(message) = termination::message(
            instance.record.termination_log.as_deref(),
            Some(&instance.record.log_path),
            &policy,
            terminated.exit_code,
        ) {
            terminated.message = Some(message);
        }
        // A container that ran long enough starts over with no back-off.
        let ran = terminated
            .started_at
            .map(|s| (terminated.finished_at - s).to_std().unwrap_or_default())
            .unwrap_or_default();
        let initial = self.cri.config().crash_backoff;
        let backoff = self.backoff.entry(name.to_string()).or_default();
        if ran >= BACKOFF_RESET {
            *backoff = Backoff::default();
        }
        backoff.after_exit(initial);
        self.stopping.remove(name);
        self.unhealthy.remove(name);
        self.probes.remove(name);
        self.with_state(|s| {
            if let Some(c) = s.container_mut(name) {
                c.current = Current::Terminated(terminated);
                c.started = false;
                c.ready = false;
            }
        });
    }

    /// Start stopping a running container in the background; its exit comes as any other.
    fn kill(&mut self, name: &str, why: Why) {
        let Some(victim) = self.victim(name) else {
            return;
        };
        if !self.stopping.insert(name.to_string()) {
            return;
        }
        let (message, grace) = match (why, self.unhealthy.get(name)) {
            (Why::Unhealthy, Some((message, grace))) => {
                (message.clone(), grace.unwrap_or_else(|| self.grace()))
            }
            _ => (format!("Stopping container {name}"), self.grace()),
        };
        self.event(Kind::Normal, "Killing", message, Some(name));
        self.probes.remove(name);
        let grace = Duration::from_secs(grace.max(0) as u64);
        let pre_stop = self.pre_stop(name, &victim.id, grace);
        tokio::spawn(termination::stop(self.cri.clone(), victim, grace, pre_stop));
    }

    /// The container's preStop hook as a future that runs it (bounded by `grace`) and
    /// records a `FailedPreStopHook` event if it fails; None without a hook.
    fn pre_stop(
        &self,
        name: &str,
        id: &str,
        grace: Duration,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let container = self.spec_container(name)?;
        let hook = container.lifecycle.as_ref()?.pre_stop.clone()?;
        let action = handler::Action::from_lifecycle(&hook, &container, "lifecycle.preStop");
        let target = self.target(id)?;
        let (state, pod, name) = (self.state.clone(), self.pod.clone(), name.to_string());
        let observer = self.cri.observer().clone();
        Some(async move {
            let outcome = match action {
                Ok(action) => handler::run(&action, &target, grace).await,
                Err(e) => Outcome::Error(e.to_string()),
            };
            if let Outcome::Failure(why) | Outcome::Error(why) = outcome {
                let message = format!("PreStopHook failed: {why}");
                let event = events::event(
                    &pod,
                    Kind::Warning,
                    "FailedPreStopHook",
                    message,
                    Some(&name),
                );
                observer.event(&event);
                lock(&state).record(event);
            }
        })
    }

    /// What stopping a running container needs, if it runs.
    fn victim(&self, name: &str) -> Option<Victim> {
        let instance = self.instances.get(name)?;
        let state = self.container_state(name).filter(ContainerState::running)?;
        Some(Victim {
            id: instance.id.clone(),
            shim_pid: state.shim_pid.unwrap_or(instance.record.shim_pid),
            stop_signal: instance.record.stop_signal.clone(),
        })
    }

    /// Stop every container — app containers (and a running init container) together,
    /// then the sidecars one by one in reverse order, as upstream — each with its preStop
    /// hook, stop signal and SIGKILL at the end of the grace period; then remove them, the
    /// sandbox and the pod's files.
    async fn terminate(&mut self, grace: Option<i64>) {
        let grace = grace.unwrap_or_else(|| self.grace()).max(0);
        let deadline = Instant::now() + Duration::from_secs(grace as u64);
        self.with_state(|s| s.deleting_since = Some(Utc::now()));
        // Readiness and liveness stop mattering once the pod goes.
        self.probes.clear();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let init = spec.init_containers.unwrap_or_default();
        let first: Vec<String> = spec
            .containers
            .iter()
            .chain(init.iter().filter(|c| !plan::is_sidecar(c)))
            .map(|c| c.name.clone())
            .collect();
        self.stop_together(&first, deadline, false).await;
        for sidecar in init.iter().rev().filter(|c| plan::is_sidecar(c)) {
            self.stop_together(std::slice::from_ref(&sidecar.name), deadline, true)
                .await;
        }
        let instances: Vec<Instance> = self.instances.drain().map(|(_, i)| i).collect();
        for instance in instances {
            self.remove_instance(instance).await;
        }
        if let Some(sandbox) = self.sandbox.take() {
            let cri = self.cri.clone();
            let result = tokio::task::spawn_blocking(move || cri.tear_down(&sandbox)).await;
            if let Ok(Err(e)) = result {
                tracing::error!(pod = %self.name(), "{e}");
            }
        }
        self.with_state(|s| s.sandbox = None);
    }

    /// Stop the running ones of `names` at once with the grace left until `deadline`
    /// (at least [`MINIMUM_GRACE`] for sidecars, which go after the rest), and record
    /// their exits.
    async fn stop_together(&mut self, names: &[String], deadline: Instant, sidecar: bool) {
        let mut stops = Vec::new();
        for name in names {
            let Some(victim) = self.victim(name) else {
                continue;
            };
            self.stopping.insert(name.clone());
            self.event(
                Kind::Normal,
                "Killing",
                format!("Stopping container {name}"),
                Some(name),
            );
            let mut grace = deadline.saturating_duration_since(Instant::now());
            if sidecar {
                grace = grace.max(MINIMUM_GRACE);
            }
            let pre_stop = self.pre_stop(name, &victim.id, grace);
            stops.push(termination::stop(self.cri.clone(), victim, grace, pre_stop));
        }
        futures::future::join_all(stops).await;
        self.wait_for_exits(names, Instant::now() + Duration::from_secs(1))
            .await;
    }

    /// Handle exits until the given containers have all ended or the deadline passes.
    async fn wait_for_exits(&mut self, names: &[String], deadline: Instant) {
        loop {
            let all_ended = names
                .iter()
                .all(|n| !self.container_state(n).is_some_and(|c| c.running()));
            if all_ended {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.exits.recv()).await {
                Ok(Some((name, id))) => self.exited(&name, &id),
                Ok(None) | Err(_) => return,
            }
        }
    }

    async fn remove_instance(&self, instance: Instance) {
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let cri = self.cri.clone();
        let _ =
            tokio::task::spawn_blocking(move || cri.remove_container(&sandbox, &instance.id)).await;
    }
}

impl Backoff {
    /// Time left in the back-off, if any.
    fn remaining(&self) -> Option<Duration> {
        let left = self.until?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// A container ended: the first restart is immediate, later ones wait 10 s, doubling
    /// up to 5 minutes, as the kubelet's crash back-off.
    fn after_exit(&mut self, initial: Duration) {
        if self.delay.is_zero() {
            self.delay = initial;
            self.until = None;
            self.wait = Duration::ZERO;
        } else {
            self.arm();
        }
    }

    /// A start failed: wait before the next attempt (first `initial`, then doubling).
    fn after_failure(&mut self, initial: Duration) -> Duration {
        if self.delay.is_zero() {
            self.delay = initial;
        }
        self.arm();
        self.wait
    }

    fn arm(&mut self) {
        self.wait = self.delay;
        self.until = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn file_time(path: &std::path::Path) -> DateTime<Utc> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}
