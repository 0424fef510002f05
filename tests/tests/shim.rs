//! The shim (`peapod-shim`, started by `runtime::shim::spawn`): CRI logs of a container's
//! stdout and stderr, output captured after its starter has exited, exit records, and
//! log rotation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use peapod_tests::host::{process_gone, wait_for_file, wait_until};
use peapod_tests::{require_root, Bundle, Container};
use runtime::logs::{self, Entry, LogOptions, ReadOptions, Stream};
use runtime::shim::{self, ExitRecord, Reason, ShimConfig, Started};

/// Set in the environment of the starter process: the [`ShimConfig`] as JSON.
const STARTER_ENV: &str = "PEAPOD_SHIM_STARTER_CONFIG";

/// Blocks until the test creates `/shared/go`.
const WAIT_FOR_GO: &str = "until [ -e /shared/go ]; do sleep 0.05; done";

/// `peapod-shim` in the cargo profile directory this test was built into.
fn shim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps")
        .join("peapod-shim");
    assert!(
        path.is_file(),
        "{} not found: build it first (`cargo build -p peapod-runtime`)",
        path.display()
    );
    path
}

/// A container run by a shim, with its log and exit file in a temp dir. On drop the
/// container is killed if it still runs, the shim is waited for, then the container
/// is deleted and the directories removed.
struct Shimmed {
    config: ShimConfig,
    started: Started,
    _logs: tempfile::TempDir,
    container: Container,
}

impl Shimmed {
    fn config(container: &Container, logs: &Path, log: LogOptions) -> ShimConfig {
        ShimConfig {
            binary: shim_binary(),
            id: container.id().to_string(),
            root: container.root().to_path_buf(),
            bundle: container.bundle().path().to_path_buf(),
            log_path: logs.join("default_pod_uid/ctr/0.log"),
            exit_file: logs.join("exit.json"),
            shim_log: logs.join("shim.log"),
            log,
        }
    }

    /// Start the container through a shim, spawned by this process.
    fn spawn(bundle: Bundle, log: LogOptions) -> Shimmed {
        let (container, logs, config) = Self::prepare(bundle, log);
        let started = shim::spawn(&config).unwrap_or_else(|e| panic!("spawn: {e}"));
        Shimmed {
            config,
            started,
            _logs: logs,
            container,
        }
    }

    /// Start the container through a shim spawned by a short-lived starter process (a
    /// kubelet that restarts right after starting a container), which has exited when
    /// this returns.
    fn spawn_from_starter(bundle: Bundle) -> Shimmed {
        let (container, logs, config) = Self::prepare(bundle, LogOptions::default());
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "starter", "--ignored", "--nocapture"])
            .env(STARTER_ENV, serde_json::to_string(&config).unwrap())
            .output()
            .expect("running the starter process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("STARTED "))
            .unwrap_or_else(|| {
                panic!(
                    "the starter did not start the container: {stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        let mut pids = line.split(' ').map(|p| p.parse::<i32>().unwrap());
        let started = Started {
            pid: pids.next().unwrap(),
            shim_pid: pids.next().unwrap(),
        };
        Shimmed {
            config,
            started,
            _logs: logs,
            container,
        }
    }

    fn prepare(bundle: Bundle, log: LogOptions) -> (Container, tempfile::TempDir, ShimConfig) {
        require_root();
        let container = Container::new(bundle);
        let logs = tempfile::Builder::new()
            .prefix("pp-shim-")
            .tempdir()
            .expect("a log directory");
        let config = Self::config(&container, logs.path(), log);
        (container, logs, config)
    }

    /// Waits for the exit record; then the shim itself ends.
    fn wait_exit(&self) -> ExitRecord {
        wait_for_file(&self.config.exit_file);
        let record = shim::exit_status(&self.config.exit_file).expect("a readable exit record");
        assert!(
            wait_until(Duration::from_secs(10), || process_gone(
                self.started.shim_pid
            )),
            "the shim did not exit after writing the exit record"
        );
        record
    }

    /// The live log's entries, in order.
    fn entries(&self) -> Vec<Entry> {
        entries_of(&self.config.log_path)
    }

    /// The log as `peapod logs` would print it with `options` (rotated files included).
    fn read_log(&self, options: &ReadOptions) -> String {
        let mut out = Vec::new();
        logs::read(&self.config.log_path, options, &mut out, &|| true).unwrap();
        String::from_utf8(out).unwrap()
    }
}

impl Drop for Shimmed {
    fn drop(&mut self) {
        if !process_gone(self.started.shim_pid) {
            self.container.kill("KILL");
            let gone = wait_until(Duration::from_secs(20), || {
                process_gone(self.started.shim_pid)
            });
            if !gone && !std::thread::panicking() {
                panic!("shim {} still runs", self.started.shim_pid);
            }
        }
    }
}

fn entries_of(path: &Path) -> Vec<Entry> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split_inclusive(|b| *b == b'\n')
        .map(|l| Entry::parse(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Not a test: the starter process of [`Shimmed::spawn_from_starter`], run by the
/// other tests as `<this test binary> --exact starter --ignored`.
#[test]
#[ignore = "run by the other tests as their starter process"]
fn starter() {
    let Ok(config) = std::env::var(STARTER_ENV) else {
        return;
    };
    let config: ShimConfig = serde_json::from_str(&config).expect("a ShimConfig");
    match shim::spawn(&config) {
        Ok(started) => {
            println!("STARTED {} {}", started.pid, started.shim_pid);
            std::process::exit(0)
        }
        Err(e) => {
            println!("FAILED {e}");
            std::process::exit(1)
        }
    }
}

#[test]
fn logs_both_streams_and_outlives_its_starter() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh(&format!(
        "echo out1; echo err1 >&2; head -c 40960 /dev/zero | tr '\\0' x; echo; \
         {WAIT_FOR_GO}; echo after; echo err2 >&2; printf tail-no-newline"
    ));
    let ctr = Shimmed::spawn_from_starter(bundle);
    // The starter has exited; the shim and the container run on.
    assert!(
        !process_gone(ctr.started.shim_pid),
        "the shim died with its starter"
    );
    assert!(
        !process_gone(ctr.started.pid),
        "the container died with its starter"
    );
    let shim_session = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(ctr.started.shim_pid)));
    assert_ne!(
        shim_session.ok(),
        nix::unistd::getsid(None).ok(),
        "the shim did not leave the starter's session"
    );
    assert!(
        wait_until(Duration::from_secs(10), || ctr.entries().len() >= 5),
        "the first lines never reached the log: {:?}",
        ctr.entries()
    );
    std::fs::write(shared.join("go"), "").unwrap();
    let record = ctr.wait_exit();
    assert_eq!(
        (record.exit_code, record.signal, record.reason),
        (0, None, Reason::Completed),
        "{record:?}"
    );
    assert!(record.started_at <= record.finished_at, "{record:?}");

    let entries = ctr.entries();
    let of = |stream| -> Vec<(bool, String)> {
        entries
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| (e.partial, String::from_utf8_lossy(&e.content).into_owned()))
            .collect()
    };
    let x = |n| "x".repeat(n);
    assert_eq!(
        of(Stream::Stdout),
        [
            (false, "out1".to_string()),
            (true, x(16384)),
            (true, x(16384)),
            (false, x(40960 - 2 * 16384)),
            (false, "after".to_string()),
            (true, "tail-no-newline".to_string()),
        ]
    );
    assert_eq!(
        of(Stream::Stderr),
        [(false, "err1".to_string()), (false, "err2".to_string())]
    );

    // Read back, the partial entries are one line again.
    let text = ctr.read_log(&ReadOptions::default());
    assert!(
        text.contains(&format!("\n{}\n", x(40960))),
        "40 KiB line not merged"
    );
    assert!(
        text.ends_with("\ntail-no-newline"),
        "{:?}",
        &text[text.len() - 40..]
    );
}

#[test]
fn records_exit_codes_and_signals() {
    let exited = |script: &str| {
        let mut bundle = Bundle::new();
        bundle.sh(script);
        Shimmed::spawn(bundle, LogOptions::default())
    };
    let ok = exited("exit 0");
    let three = exited("echo failing >&2; exit 3");
    let killed = exited("echo up; sleep 1000");
    assert!(
        wait_until(Duration::from_secs(10), || !killed.entries().is_empty()),
        "the sleeper never logged"
    );
    killed.container.kill("KILL");

    let record = ok.wait_exit();
    assert_eq!((record.exit_code, record.reason), (0, Reason::Completed));
    let record = three.wait_exit();
    assert_eq!(
        (record.exit_code, record.signal, record.reason),
        (3, None, Reason::Error),
        "{record:?}"
    );
    assert_eq!(three.entries()[0].content, b"failing");
    let record = killed.wait_exit();
    assert_eq!(
        (record.exit_code, record.signal, record.reason),
        (137, Some(9), Reason::Error),
        "{record:?}"
    );
}

#[test]
fn a_failed_start_is_reported_and_leaves_nothing() {
    let mut bundle = Bundle::new();
    bundle.args(&["/no/such/program"]);
    let (container, _logs, config) = Shimmed::prepare(bundle, LogOptions::default());
    let error = shim::spawn(&config).expect_err("a container without its program started");
    assert!(error.to_string().contains("/no/such/program"), "{error}");
    assert!(!config.exit_file.exists());
    let state = container.cmd(["state", container.id()]).failed();
    assert!(state.stderr.contains("does not exist"), "{state}");
}

#[test]
fn rotation_keeps_the_newest_files() {
    let mut bundle = Bundle::new();
    bundle.sh("i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done");
    let options = LogOptions {
        max_size: 2048,
        max_files: 3,
    };
    let ctr = Shimmed::spawn(bundle, options);
    assert_eq!(ctr.wait_exit().reason, Reason::Completed);
    let rotated = logs::rotated_files(&ctr.config.log_path).unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    for file in rotated.iter().chain([&ctr.config.log_path]) {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 2048, "{} has {size} bytes", file.display());
    }
    let last = ctr.entries().pop().expect("a live log with entries");
    assert_eq!(last.content, b"line 299");

    // Read across the rotated files: an unbroken run of lines up to the last one.
    let numbers: Vec<u32> = ctr
        .read_log(&ReadOptions::default())
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers[0] > 0, "the oldest files were not removed");
    let want: Vec<u32> = (numbers[0]..300).collect();
    assert_eq!(numbers, want);
    let tail = ReadOptions {
        tail: Some(2),
        ..ReadOptions::default()
    };
    assert_eq!(ctr.read_log(&tail), "line 298\nline 299\n");
}

#[test]
fn logs_a_terminal_as_stdout() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["terminal"] = serde_json::json!(true);
    bundle.sh("echo on a tty; [ -t 1 ] && echo is a tty; exit 4");
    let ctr = Shimmed::spawn(bundle, LogOptions::default());
    let record = ctr.wait_exit();
    assert_eq!((record.exit_code, record.reason), (4, Reason::Error));
    let lines: Vec<(Stream, String)> = ctr
        .entries()
        .into_iter()
        .map(|e| (e.stream, String::from_utf8_lossy(&e.content).into_owned()))
        .collect();
    // The terminal turns "\n" into "\r\n", as it does for `kubectl logs` of a tty pod.
    assert_eq!(
        lines,
        [
            (Stream::Stdout, "on a tty\r".to_string()),
            (Stream::Stdout, "is a tty\r".to_string()),
        ]
    );
}

#[test]
fn an_oom_kill_is_recorded_as_oomkilled() {
    let mut bundle = Bundle::new();
    bundle.spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 16 << 20 });
    // The shell holds 64 MiB in a variable: past the limit, the kernel kills it.
    bundle.sh("echo filling; x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived");
    let ctr = Shimmed::spawn(bundle, LogOptions::default());
    let record = ctr.wait_exit();
    assert_eq!(
        (record.exit_code, record.signal, record.reason),
        (137, Some(9), Reason::OomKilled),
        "{record:?}"
    );
}
