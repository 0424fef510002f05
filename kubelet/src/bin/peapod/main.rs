//! `peapod`: the human CLI for one node (images now; pods in a later issue).
//!
//! One file per command group: [`images`] (list, remove, import, prune) and
//! [`pull`]. Each command returns `anyhow::Result`; `main` prints the error
//! with its causes as `peapod: …` and exits 1.

/// `println!` that treats a closed stdout (`peapod images | head -1`) as the
/// end of the output instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod exec;
mod images;
mod port_forward;
mod pull;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use runtime::image::Store;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "peapod", version, about = "Manage a peapod node: images")]
struct Cli {
    /// The image store's directory [env: PEAPOD_ROOT] [default: /var/lib/peapod]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The kubelet's API socket [env: PEAPOD_SOCKET] [default: /run/peapod/kubelet.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List images.
    Images(images::ListArgs),
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// Remove images by name or id, and what only they used.
    Rmi(images::RemoveArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run a command in a pod's container.
    Exec(exec::ExecArgs),
    /// Forward local ports to a pod.
    PortForward(port_forward::PortForwardArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images (same as `peapod images`).
    #[command(alias = "list")]
    Ls(images::ListArgs),
    /// Pull an image from a registry (same as `peapod pull`).
    Pull(pull::PullArgs),
    /// Remove images (same as `peapod rmi`).
    Rm(images::RemoveArgs),
    /// Import images from a `docker save` tarball or an OCI archive.
    Import(images::ImportArgs),
    /// Delete blobs and layers no image uses.
    Prune,
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("peapod: {}", message(&err));
        std::process::exit(1);
    }
}

/// The error and its causes, `: `-joined, leaving out a cause whose text
/// the message already carries (many errors print their source themselves).
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli
        .socket
        .or_else(|| std::env::var_os("PEAPOD_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(kubelet::stream::client::DEFAULT_SOCKET));
    let root = cli
        .root
        .or_else(|| std::env::var_os("PEAPOD_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(runtime::image::store::DEFAULT_ROOT));
    let open = || -> anyhow::Result<Store> {
        Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))
    };
    match cli.command {
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => {
            images::list(&open()?, &args)
        }
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => {
            let options = pull::options(&args)?;
            let store = open()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(pull::pull(&store, &args, &options))
        }
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => {
            images::remove(&open()?, &args)
        }
        Command::Image(ImageCommand::Import(args)) => images::import(&open()?, &args),
        Command::Image(ImageCommand::Prune) => images::prune(&open()?),
        Command::Exec(args) => std::process::exit(exec::run(&socket, &args)?),
        Command::PortForward(args) => std::process::exit(port_forward::run(&socket, &args)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_list_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let repeating = anyhow::Error::new(runtime::image::Error::Io {
            op: "open archive",
            path: "/x.tar".into(),
            source: io,
        })
        .context("importing /x.tar");
        assert_eq!(
            message(&repeating),
            "importing /x.tar: open archive /x.tar: no such file"
        );
        let chained = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(message(&chained), "outer: middle: inner");
    }
}
