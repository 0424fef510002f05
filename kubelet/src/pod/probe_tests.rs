//! The probers' timing and thresholds, on paused time with scripted checks.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// A check that answers from a script (then `rest`), taking `takes` per run, and
/// records when each run started (milliseconds since the container started).
struct Script {
    answers: Mutex<VecDeque<Outcome>>,
    rest: Outcome,
    takes: Duration,
    runs: Mutex<Vec<u64>>,
    t0: Instant,
}

impl Script {
    fn new(answers: Vec<Outcome>, rest: Outcome) -> Arc<Script> {
        Script::slow(answers, rest, Duration::ZERO)
    }

    fn slow(answers: Vec<Outcome>, rest: Outcome, takes: Duration) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(answers.into()),
            rest,
            takes,
            runs: Mutex::new(Vec::new()),
            t0: Instant::now(),
        })
    }

    fn check(self: &Arc<Script>) -> Check {
        let script = self.clone();
        Arc::new(move || {
            let script = script.clone();
            Box::pin(async move {
                script
                    .runs
                    .lock()
                    .expect("runs")
                    .push(script.t0.elapsed().as_millis() as u64);
                tokio::time::sleep(script.takes).await;
                let next = script.answers.lock().expect("answers").pop_front();
                next.unwrap_or_else(|| script.rest.clone())
            })
        })
    }

    fn runs(&self) -> Vec<u64> {
        self.runs.lock().expect("runs").clone()
    }
}

fn timing(period: u64, success: u32, failure: u32) -> Timing {
    Timing {
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(period),
        timeout: Duration::from_secs(1),
        success_threshold: success,
        failure_threshold: failure,
        grace: None,
    }
}

/// Whole seconds as the milliseconds the script records.
fn secs(seconds: &[u64]) -> Vec<u64> {
    seconds.iter().map(|s| s * 1000).collect()
}

fn fail(text: &str) -> Outcome {
    Outcome::Failure(text.into())
}

/// Probes for container `web`, instance `id1`, and the receiving end of their reports.
fn start(
    probes: Vec<(Kind, Timing, Check)>,
) -> (ContainerProbes, mpsc::UnboundedReceiver<ProbeEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let reporter = Reporter {
        container: "web".into(),
        instance: "id1".into(),
        events: tx,
    };
    (ContainerProbes::with_checks(reporter, probes), rx)
}

/// Let `seconds` pass, then take every report so far as (kind, change).
async fn after(seconds: u64, rx: &mut mpsc::UnboundedReceiver<ProbeEvent>) -> Vec<(Kind, Change)> {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut seen = Vec::new();
    while let Ok(event) = rx.try_recv() {
        assert_eq!(
            (event.container.as_str(), event.instance.as_str()),
            ("web", "id1")
        );
        seen.push((event.kind, event.change));
    }
    seen
}

fn unhealthy(text: &str) -> Change {
    Change::Unhealthy(text.into())
}

#[tokio::test(start_paused = true)]
async fn without_probes_the_container_is_started_and_ready_at_once() {
    let (_probes, mut rx) = start(vec![]);
    assert_eq!(
        after(0, &mut rx).await,
        [
            (Kind::Startup, Change::Started),
            (Kind::Readiness, Change::Ready(true))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_flips_only_after_its_thresholds_and_reports_each_failure() {
    let script = Script::new(
        vec![
            Outcome::Success,
            Outcome::Success,
            fail("500"),
            fail("500"),
            fail("500"),
        ],
        Outcome::Success,
    );
    let (_probes, mut rx) = start(vec![(Kind::Readiness, timing(10, 2, 3), script.check())]);
    let started = after(5, &mut rx).await;
    // Started at once (no startup probe), not ready yet: the first pass is one of two.
    assert_eq!(started, [(Kind::Startup, Change::Started)]);
    assert_eq!(
        after(10, &mut rx).await,
        [(Kind::Readiness, Change::Ready(true))]
    );
    let failing = after(30, &mut rx).await;
    assert_eq!(
        failing,
        [
            (Kind::Readiness, unhealthy("Readiness probe failed: 500")),
            (Kind::Readiness, unhealthy("Readiness probe failed: 500")),
            (Kind::Readiness, unhealthy("Readiness probe failed: 500")),
            (Kind::Readiness, Change::Ready(false)),
        ]
    );
    // Passing again takes two runs in a row; readiness keeps probing, never restarts.
    assert_eq!(after(10, &mut rx).await, []);
    assert_eq!(
        after(10, &mut rx).await,
        [(Kind::Readiness, Change::Ready(true))]
    );
    assert_eq!(script.runs(), secs(&[0, 10, 20, 30, 40, 50, 60]));
}

#[tokio::test(start_paused = true)]
async fn liveness_restarts_after_failure_threshold_in_a_row_then_holds() {
    let script = Script::new(
        vec![fail("a"), Outcome::Success, fail("b"), fail("c")],
        fail("d"),
    );
    let mut live = timing(5, 1, 3);
    live.grace = Some(7);
    let (_probes, mut rx) = start(vec![(Kind::Liveness, live, script.check())]);
    let seen = after(100, &mut rx).await;
    assert_eq!(
        seen,
        [
            (Kind::Startup, Change::Started),
            (Kind::Readiness, Change::Ready(true)),
            (Kind::Liveness, unhealthy("Liveness probe failed: a")),
            (Kind::Liveness, unhealthy("Liveness probe failed: b")),
            (Kind::Liveness, unhealthy("Liveness probe failed: c")),
            (Kind::Liveness, unhealthy("Liveness probe failed: d")),
            (
                Kind::Liveness,
                Change::Restart {
                    message: "Container web failed liveness probe, will be restarted".into(),
                    grace: Some(7),
                }
            ),
        ]
    );
    // The success reset the streak; after the verdict nothing more runs.
    assert_eq!(script.runs(), secs(&[0, 5, 10, 15, 20]));
}

#[tokio::test(start_paused = true)]
async fn the_startup_probe_gates_liveness_and_readiness() {
    let startup = Script::new(vec![fail("booting"), fail("booting")], Outcome::Success);
    let liveness = Script::new(vec![], Outcome::Success);
    let readiness = Script::new(vec![], Outcome::Success);
    let (_probes, mut rx) = start(vec![
        (Kind::Startup, timing(2, 1, 5), startup.check()),
        (Kind::Liveness, timing(3, 1, 3), liveness.check()),
        (Kind::Readiness, timing(3, 1, 3), readiness.check()),
    ]);
    assert_eq!(
        after(1, &mut rx).await,
        [(Kind::Startup, unhealthy("Startup probe failed: booting"))]
    );
    let seen = after(10, &mut rx).await;
    assert_eq!(
        seen,
        [
            (Kind::Startup, unhealthy("Startup probe failed: booting")),
            (Kind::Startup, Change::Started),
            (Kind::Readiness, Change::Ready(true)),
        ]
    );
    // Started at 4 s; the others ran at their first tick after it, on their own schedule.
    assert_eq!(startup.runs(), secs(&[0, 2, 4]));
    assert_eq!(liveness.runs(), secs(&[6, 9]));
    assert_eq!(readiness.runs(), secs(&[6, 9]));
}

#[tokio::test(start_paused = true)]
async fn a_failing_startup_probe_restarts_with_its_grace() {
    let script = Script::new(vec![], fail("no"));
    let mut startup = timing(1, 1, 2);
    startup.grace = Some(3);
    let liveness = Script::new(vec![], Outcome::Success);
    let (_probes, mut rx) = start(vec![
        (Kind::Startup, startup, script.check()),
        (Kind::Liveness, timing(1, 1, 1), liveness.check()),
    ]);
    let seen = after(10, &mut rx).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[2],
        (
            Kind::Startup,
            Change::Restart {
                message: "Container web failed startup probe, will be restarted".into(),
                grace: Some(3),
            }
        )
    );
    assert_eq!(liveness.runs(), Vec::<u64>::new());
}

#[tokio::test(start_paused = true)]
async fn the_initial_delay_counts_from_the_container_start() {
    let script = Script::new(vec![], Outcome::Success);
    let mut delayed = timing(4, 1, 1);
    delayed.initial_delay = Duration::from_secs(5);
    let (_probes, _rx) = start(vec![(Kind::Readiness, delayed, script.check())]);
    tokio::time::sleep(Duration::from_secs(13)).await;
    // Ticks at 0 and 4 are inside the delay; 8 is the first run, as upstream.
    assert_eq!(script.runs(), secs(&[8, 12]));
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_skips_missed_ticks_without_drifting() {
    let script = Script::slow(vec![], Outcome::Success, Duration::from_millis(2500));
    let (_probes, _rx) = start(vec![(Kind::Liveness, timing(1, 1, 3), script.check())]);
    tokio::time::sleep(Duration::from_millis(9900)).await;
    // One run at a time: the ticks missed during a run collapse into one (as Go's
    // ticker drops them), so the next run starts when the last ends, never two at once
    // and never a burst of catch-up runs.
    assert_eq!(script.runs(), [0, 2500, 5000, 7500]);
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_and_reported_but_never_counted() {
    let script = Script::new(vec![], Outcome::Error("no runtime".into()));
    let (_probes, mut rx) = start(vec![(Kind::Liveness, timing(10, 1, 1), script.check())]);
    let seen = after(25, &mut rx).await;
    let errored = (
        Kind::Liveness,
        unhealthy("Liveness probe errored: no runtime"),
    );
    assert_eq!(seen[2..], [errored.clone(), errored.clone(), errored]);
    // Three attempts per tick, at 0, 10 and 20 s.
    assert_eq!(script.runs(), secs(&[0, 0, 0, 10, 10, 10, 20, 20, 20]));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_probes_stops_them() {
    let script = Script::new(vec![], Outcome::Success);
    let (probes, _rx) = start(vec![(Kind::Readiness, timing(1, 1, 1), script.check())]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(probes);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(script.runs(), secs(&[0, 1]));
}

#[test]
fn timing_defaults_and_minimums_are_upstreams() {
    let defaults = Timing::of(&Probe::default());
    assert_eq!(defaults, timing(10, 1, 3));
    let low = Timing::of(&Probe {
        period_seconds: Some(0),
        timeout_seconds: Some(-1),
        failure_threshold: Some(0),
        initial_delay_seconds: Some(-5),
        termination_grace_period_seconds: Some(2),
        ..Probe::default()
    });
    assert_eq!(low.period, Duration::from_secs(1));
    assert_eq!(low.timeout, Duration::from_secs(1));
    assert_eq!(low.failure_threshold, 1);
    assert_eq!(low.initial_delay, Duration::ZERO);
    assert_eq!(low.grace, Some(2));
}
