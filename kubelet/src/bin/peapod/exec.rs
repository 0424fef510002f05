//! `peapod exec`: run a command in a pod's container, as `kubectl exec` does; the
//! command's exit code becomes peapod's.

use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;
use std::path::Path;

use anyhow::Context as _;
use kubelet::stream::channel::Size;
use kubelet::stream::client::{self, ClientError, ExecIo, Target};
use kubelet::stream::ExecRequest;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::pods;

/// `peapod exec [-i] [-t] POD [-c C] [-n NS] -- CMD...`
#[derive(clap::Args)]
pub struct ExecArgs {
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Stdin is a TTY: run the command on a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The pod (NAME or pod/NAME).
    pod: String,
    /// The container; the pod's first one if not given.
    #[arg(short, long)]
    container: Option<String>,
    /// The pod's namespace (the global `-n`).
    #[arg(skip)]
    pub namespace: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Run the exec; returns the exit code to leave with. A refusal by the server is
/// returned as the [`crate::client::ServerError`] `main` prints as kubectl does
/// (`Error from server (NotFound): ...`); a command the kubelet could not run prints
/// as kubectl prints it and gives 1.
pub fn run(socket: &Path, args: &ExecArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(exec(socket, args));
    // A read of our stdin may still be pending on a blocking thread; it must not hold
    // the exit.
    runtime.shutdown_background();
    match result {
        Err(e) => match e.downcast::<ClientError>() {
            Ok(ClientError::Remote(message)) => {
                eprintln!("Error from server: {message}");
                Ok(1)
            }
            // The refusal itself, so that `main` knows it for the server's.
            Ok(ClientError::Server(server)) => Err(server.into()),
            Ok(other) => Err(other.into()),
            Err(e) => Err(e),
        },
        Ok(code) => Ok(code),
    }
}

async fn exec(socket: &Path, args: &ExecArgs) -> anyhow::Result<i32> {
    let pod = pods::pod_name(&args.pod).to_owned();
    let container = match &args.container {
        Some(container) => container.clone(),
        None => {
            let found = pods::fetch(&Client::new(socket), &args.namespace, &pod).await?;
            let (container, note) = client::default_container(&found)?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            container
        }
    };
    let tty = args.tty && std::io::stdin().is_terminal();
    if args.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let request = ExecRequest {
        command: args.command.clone(),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    // Raw mode lasts while this guard lives: through every return below.
    let _raw = tty.then(runtime::terminal::RawMode::enter);
    let resize = tty.then(|| {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(watch_size(tx));
        rx
    });
    let io = ExecIo {
        stdin: args.stdin.then(tokio::io::stdin),
        stdout: tokio::io::stdout(),
        stderr: tokio::io::stderr(),
        resize,
    };
    let target = Target {
        namespace: args.namespace.clone(),
        pod,
        container,
    };
    Ok(client::exec(socket, &target, &request, io).await?)
}

/// Send our terminal's size now and after each SIGWINCH.
async fn watch_size(sizes: mpsc::Sender<Size>) {
    let current = || {
        runtime::terminal::size_of(std::io::stdin().as_fd()).map(|(rows, cols)| Size {
            width: cols,
            height: rows,
        })
    };
    if let Some(size) = current() {
        if sizes.send(size).await.is_err() {
            return;
        }
    }
    let Ok(mut changes) = signal(SignalKind::window_change()) else {
        return;
    };
    while changes.recv().await.is_some() {
        if let Some(size) = current() {
            if sizes.send(size).await.is_err() {
                return;
            }
        }
    }
}
