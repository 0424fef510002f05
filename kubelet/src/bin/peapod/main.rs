//! `peapod`: the human CLI for one node, with kubectl's verbs and output shapes.
//!
//! One file per command group: [`images`] (list, remove, import, prune) and
//! [`pull`] work on the image store; [`apply`], [`get`], [`describe`],
//! [`logs`] and [`delete`] talk to the kubelet's local API through [`client`],
//! sharing kubectl's way of showing pods ([`pods`]); [`exec`] and
//! [`port_forward`] look the pod up the same way, then open their WebSockets
//! with `kubelet::stream::client`. Each command returns
//! `anyhow::Result`; `main` prints an API error as kubectl does
//! (`Error from server (NotFound): …`), any other with its causes as
//! `peapod: …`, and exits 1.

/// `println!` that treats a closed stdout (`peapod images | head -1`) as the
/// end of the output instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod apply;
mod client;
mod delete;
mod describe;
mod exec;
mod get;
mod images;
mod logs;
mod pods;
mod port_forward;
mod pull;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use runtime::image::Store;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "peapod",
    version,
    about = "Manage a peapod node: pods and images"
)]
struct Cli {
    /// The image store's directory [env: PEAPOD_ROOT] [default: /var/lib/peapod]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The kubelet's socket [env: PEAPOD_SOCKET] [default: /run/peapod/kubelet.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The namespace of the pods named.
    #[arg(short, long, global = true, default_value = "default")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update pods from manifests (written into the kubelet's manifests folder).
    Apply(apply::ApplyArgs),
    /// List pods.
    Get(get::GetArgs),
    /// Show a pod in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Print a container's log.
    Logs(logs::LogsArgs),
    /// Delete pods (remove their manifests) and wait until they are gone.
    Delete(delete::DeleteArgs),
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
        match err.downcast_ref::<client::ServerError>() {
            // kubectl's shape, which scripts and hands already know.
            Some(server) => eprintln!("{server}"),
            None => eprintln!("peapod: {}", message(&err)),
        }
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

/// A command that talks to the kubelet rather than the image store.
enum PodVerb<'a> {
    Apply(&'a apply::ApplyArgs),
    Get(&'a get::GetArgs),
    Describe(&'a describe::DescribeArgs),
    Logs(&'a logs::LogsArgs),
    Delete(&'a delete::DeleteArgs),
}

impl<'a> PodVerb<'a> {
    fn of(command: &'a Command) -> Option<PodVerb<'a>> {
        Some(match command {
            Command::Apply(args) => PodVerb::Apply(args),
            Command::Get(args) => PodVerb::Get(args),
            Command::Describe(args) => PodVerb::Describe(args),
            Command::Logs(args) => PodVerb::Logs(args),
            Command::Delete(args) => PodVerb::Delete(args),
            _ => return None,
        })
    }

    async fn run(self, kubelet: &client::Client, namespace: &str) -> anyhow::Result<()> {
        match self {
            PodVerb::Apply(args) => apply::run(kubelet, args).await,
            PodVerb::Get(args) => get::run(kubelet, namespace, args).await,
            PodVerb::Describe(args) => describe::run(kubelet, namespace, args).await,
            PodVerb::Logs(args) => logs::run(kubelet, namespace, args).await,
            PodVerb::Delete(args) => delete::run(kubelet, namespace, args).await,
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli
        .socket
        .clone()
        .or_else(|| std::env::var_os("PEAPOD_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(client::DEFAULT_SOCKET));
    if let Some(verb) = PodVerb::of(&cli.command) {
        let kubelet = client::Client::new(&socket);
        // One thread is plenty for a client of one socket.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(verb.run(&kubelet, &cli.namespace));
    }
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
        // Handled by PodVerb.
        Command::Apply(_)
        | Command::Get(_)
        | Command::Describe(_)
        | Command::Logs(_)
        | Command::Delete(_) => Ok(()),
        Command::Exec(mut args) => {
            args.namespace = cli.namespace;
            std::process::exit(exec::run(&socket, &args)?)
        }
        Command::PortForward(mut args) => {
            args.namespace = cli.namespace;
            std::process::exit(port_forward::run(&socket, &args)?)
        }
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
