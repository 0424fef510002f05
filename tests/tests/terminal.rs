//! Terminals: `process.terminal` with `--console-socket` hands the caller the
//! pty master over SCM_RIGHTS, and the container's stdio is the pty.

use serde_json::json;

use peapod_tests::{Bundle, ConsoleSocket, Container};

/// A container running an interactive `sh` on a terminal.
fn terminal_container() -> Container {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["terminal"] = json!(true);
    bundle.args(&["sh"]);
    Container::new(bundle)
}

#[test]
fn create_sends_the_pty_master_over_the_console_socket() {
    let ctr = terminal_container();
    let socket = ConsoleSocket::new();
    ctr.create_with(&["--console-socket", socket.path().to_str().unwrap()])
        .ok();
    let mut pty = socket.receive_pty();
    ctr.start();

    // The echoed input holds the expression, only the output holds the value.
    pty.send_line("echo pp-$((6*7))");
    pty.read_until("pp-42");
    pty.send_line("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-$((1+1))-tty");
    let seen = pty.read_until("all-2-tty\r\n");
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");

    pty.send_line("exit 0");
    ctr.wait_for_status("stopped");
}

#[test]
fn run_detach_sends_the_pty_master_over_the_console_socket() {
    let ctr = terminal_container();
    let socket = ConsoleSocket::new();
    ctr.run_with(&[
        "--detach",
        "--console-socket",
        socket.path().to_str().unwrap(),
    ])
    .ok();
    let mut pty = socket.receive_pty();
    pty.send_line("echo $((40+2))-$(hostname)");
    pty.read_until("42-runc");
    pty.send_line("exit 3");
    ctr.wait_for_status("stopped");
}

#[test]
fn terminal_without_console_socket_fails() {
    // `create` always detaches, so it has nowhere to put the pty master.
    let ctr = terminal_container();
    let out = ctr.create_with(&[]).failed();
    assert!(!out.stderr.is_empty(), "{out}");
    ctr.cmd(["state", ctr.id()]).failed();
}

#[test]
fn console_socket_without_terminal_fails() {
    let ctr = Container::with_args(&["true"]);
    let socket = ConsoleSocket::new();
    let out = ctr
        .create_with(&["--console-socket", socket.path().to_str().unwrap()])
        .failed();
    assert!(!out.stderr.is_empty(), "{out}");
}
