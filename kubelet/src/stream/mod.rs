//! Exec, attach and port-forward: the server side the kubelet's APIs route to, over
//! WebSocket (the kubelet's channel framing) or SPDY/3.1 (one stream per channel), and
//! the client side the `peapod` CLI uses.
//!
//! - [`upgrade`]: picks the transport from the request's `Upgrade` header.
//! - [`exec`](mod@exec), [`attach`](mod@attach), [`port_forward`](mod@port_forward): the
//!   work, transport-agnostic (a command through the runtime CLI; a container's live
//!   output from its log; a port dialed inside a pod's network namespace).
//! - [`websocket`] and [`spdy`]: the two transports.
//! - [`channel`]: the v4/v5 channel framing (channel byte, resize JSON, port header).
//! - [`status`]: the v1 `Status` an exec ends with, and reading its exit code back.
//! - [`client`]: the CLI's side of exec and port-forward, over the kubelet's unix socket.

pub mod attach;
pub mod channel;
pub mod client;
pub mod exec;
pub mod port_forward;
mod pty;
pub mod spdy;
pub mod status;
pub mod upgrade;
pub mod websocket;

pub use upgrade::Upgrade;
pub use websocket::{exec, port_forward};

/// The WebSocket subprotocols exec and attach speak, preferred first.
pub const EXEC_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The subprotocols port-forward speaks (the kubelet's WebSocket port-forward framing).
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// Which streams a remote command (exec or attach) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamFlags {
    /// Pass the client's standard input.
    pub stdin: bool,
    /// Send standard output.
    pub stdout: bool,
    /// Send standard error (never with a tty: it shares stdout).
    pub stderr: bool,
    /// A terminal.
    pub tty: bool,
}

impl StreamFlags {
    /// Parse an attach query (`?stdin=1&stdout=1&stderr=1&tty=1`) as the kubelet does.
    pub fn from_query(query: &str) -> Result<StreamFlags, ExecRequestError> {
        let request = ExecRequest::parse(query);
        let flags = request.flags();
        if !(flags.stdin || flags.stdout || flags.stderr) {
            return Err(ExecRequestError::NoStreams);
        }
        Ok(flags)
    }
}

/// An exec request's query (`?command=sh&command=-c&command=...&stdin=1&tty=1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// The command and its arguments (the repeated `command` parameter, in order).
    pub command: Vec<String>,
    /// Pass the client's standard input.
    pub stdin: bool,
    /// Send the command's standard output.
    pub stdout: bool,
    /// Send the command's standard error (never with a tty: it shares stdout).
    pub stderr: bool,
    /// Run the command on a pseudo-terminal.
    pub tty: bool,
}

/// An exec query the kubelet would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecRequestError {
    /// No `command` parameter.
    #[error("missing required command parameter: expected at least one command=ARG")]
    NoCommand,
    /// None of stdin, stdout, stderr asked for.
    #[error("you must specify at least 1 of stdin, stdout, stderr")]
    NoStreams,
}

impl ExecRequest {
    /// Parse a raw query string as the kubelet does: `command` may repeat, the stream
    /// flags are on when `1` or `true`, and a tty has no separate stderr.
    pub fn from_query(query: &str) -> Result<ExecRequest, ExecRequestError> {
        let request = ExecRequest::parse(query);
        if request.command.is_empty() {
            return Err(ExecRequestError::NoCommand);
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(ExecRequestError::NoStreams);
        }
        Ok(request)
    }

    /// The streams this request asks for.
    pub fn flags(&self) -> StreamFlags {
        StreamFlags {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            tty: self.tty,
        }
    }

    /// The query's fields, unchecked (a tty has no separate stderr).
    fn parse(query: &str) -> ExecRequest {
        let mut request = ExecRequest::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let on = matches!(value.as_ref(), "1" | "true");
            match key.as_ref() {
                "command" => request.command.push(value.into_owned()),
                "stdin" | "input" => request.stdin = on,
                "stdout" | "output" => request.stdout = on,
                "stderr" | "error" => request.stderr = on,
                "tty" => request.tty = on,
                _ => {}
            }
        }
        if request.tty {
            request.stderr = false;
        }
        request
    }

    /// The query string for this request (what the client sends).
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for arg in &self.command {
            query.append_pair("command", arg);
        }
        for (name, on) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                query.append_pair(name, "true");
            }
        }
        query.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_commands_keep_their_order_and_decoding() {
        let request = ExecRequest::from_query(
            "command=sh&command=-c&command=echo%20a%26b+c&stdout=1&stderr=true",
        )
        .unwrap();
        assert_eq!(request.command, ["sh", "-c", "echo a&b c"]);
        assert!(request.stdout && request.stderr && !request.stdin && !request.tty);
    }

    #[test]
    fn a_tty_has_no_stderr_and_flags_other_than_1_or_true_are_off() {
        let request =
            ExecRequest::from_query("command=sh&stdin=1&stdout=yes&stderr=1&tty=1").unwrap();
        assert!(request.stdin && request.tty);
        assert!(!request.stdout && !request.stderr);
    }

    #[test]
    fn requests_without_a_command_or_streams_are_refused() {
        assert_eq!(
            ExecRequest::from_query("stdout=1"),
            Err(ExecRequestError::NoCommand)
        );
        assert_eq!(
            ExecRequest::from_query("command=ls"),
            Err(ExecRequestError::NoStreams)
        );
        assert_eq!(
            ExecRequest::from_query(""),
            Err(ExecRequestError::NoCommand)
        );
    }

    #[test]
    fn queries_round_trip() {
        let request = ExecRequest {
            command: vec!["sh".into(), "-c".into(), "echo 'x=1&y'; exit 3".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(ExecRequest::from_query(&request.to_query()), Ok(request));
    }
}
