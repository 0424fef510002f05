//! `peapod-kubelet`: the node agent. Runs the pods of a static manifests folder and serves
//! the local API on a unix socket for the `peapod` CLI.
//!
//! Pods outlive the kubelet: stopping it (SIGTERM, Ctrl-C) leaves them running under their
//! shims, and the next start adopts them, as the upstream kubelet does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use tokio::sync::mpsc;

use kubelet::pod::security::NodeSecurity;
use kubelet::pod::{Cri, NodeConfig, PodManager};
use kubelet::source::{self, FolderConfig};
use runtime::logs::LogOptions;
use runtime::sandbox::Paths;

#[derive(Parser)]
#[command(
    name = "peapod-kubelet",
    version,
    about = "The peapod node agent: runs the pods of a manifests folder"
)]
struct Args {
    /// The API server to join, and the node's credential for it. Without it the node
    /// runs its static pods only.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The static pod manifests folder (YAML or JSON Pods; several documents per file).
    #[arg(long, value_name = "DIR", default_value = "/etc/peapod/manifests")]
    manifests: PathBuf,
    /// The local API's unix socket.
    #[arg(long, value_name = "PATH", default_value = "/run/peapod/kubelet.sock")]
    socket: PathBuf,
    /// The node's name [default: the host name].
    #[arg(long)]
    node_name: Option<String>,
    /// The image store and pod data.
    #[arg(long, value_name = "DIR", default_value = runtime::image::store::DEFAULT_ROOT)]
    root: PathBuf,
    /// The container runtime's state root (as `peapod-runtime --root`).
    #[arg(long, value_name = "DIR", default_value = "/run/peapod")]
    runtime_root: PathBuf,
    /// The `peapod-runtime` binary [default: beside this one, else on PATH].
    #[arg(long, value_name = "PATH")]
    runtime: Option<PathBuf>,
    /// The `peapod-shim` binary [default: beside this one, else on PATH].
    #[arg(long, value_name = "PATH")]
    shim: Option<PathBuf>,
    /// Where pod sandboxes keep their state.
    #[arg(long, value_name = "DIR", default_value = "/run/peapod/sandboxes")]
    sandbox_dir: PathBuf,
    /// Where pod network namespaces are pinned (where `ip netns` looks).
    #[arg(long, value_name = "DIR", default_value = "/run/netns")]
    netns_dir: PathBuf,
    /// The pods' log directory (CRI layout).
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pod_log_dir: PathBuf,
    /// The cgroup under which `kubepods` is made, in every hierarchy.
    #[arg(long, value_name = "PATH", default_value = "/")]
    cgroup_root: PathBuf,
    /// The most processes a pod's cgroup may hold; -1: unlimited.
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pod_max_pids: i64,
    /// The CNI config folder (the first config by name is used; peapod's default
    /// network when it has none).
    #[arg(long, value_name = "DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked up (repeatable).
    #[arg(long, value_name = "DIR", default_values = ["/opt/cni/bin", "/usr/lib/cni"])]
    cni_bin_dir: Vec<PathBuf>,
    /// The CNI result cache.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/cni")]
    cni_cache_dir: PathBuf,
    /// A network namespace to run CNI plugins in, so the node side of pod networks
    /// (bridge, veth host ends, rules) lives there instead of the host's own.
    #[arg(long, value_name = "PATH")]
    cni_netns: Option<PathBuf>,
    /// Rotate a container log when it reaches this size (e.g. 10Mi).
    #[arg(long, value_name = "SIZE", default_value = "10Mi", value_parser = parse_size)]
    container_log_max_size: u64,
    /// Log files kept per container, the live one included.
    #[arg(long, value_name = "N", default_value_t = 5)]
    container_log_max_files: usize,
    /// The cluster's DNS server addresses (comma-separated), the nameservers of
    /// `ClusterFirst` pods. None: those pods get the node's resolver (`Default`).
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain (e.g. cluster.local), searched by `ClusterFirst` pods and
    /// naming pods with a subdomain.
    #[arg(long, value_name = "DOMAIN", default_value = "")]
    cluster_domain: String,
    /// The node's resolver configuration, which `Default` pods get; empty: none.
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// The node's addresses (comma-separated) [default: those of the interface with the
    /// default route in the node's network namespace].
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    node_ip: Vec<std::net::IpAddr>,
    /// Run containers that name no seccomp profile with RuntimeDefault instead of
    /// Unconfined. `Localhost` profiles are read from `<--root>/seccomp`.
    #[arg(long)]
    seccomp_default: bool,
    /// Namespaced sysctls pods may set beyond the safe set: names or `prefix*` patterns,
    /// comma-separated (e.g. `kernel.msg*,net.core.somaxconn`).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    allowed_unsafe_sysctls: Vec<String>,
    /// The first crash back-off (doubling up to 5 minutes). Upstream's 10s is the
    /// default; tests shorten it to watch several restarts.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    crash_loop_backoff_initial: Duration,
    /// Print peapod's default CNI network config (what is used when the CNI config
    /// folder has none) and exit.
    #[arg(long)]
    print_default_cni_config: bool,

    // Node registration, status and lease (cluster::{config, registration, lease}).
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1, YAML or JSON); flags
    /// given on the command line win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Labels to register the node with: `key=value,...`.
    #[arg(long, value_name = "LIST", default_value = "")]
    node_labels: String,
    /// Taints to register the node with: `key=value:Effect,...` (at registration only).
    #[arg(long, value_name = "LIST", default_value = "")]
    register_with_taints: String,
    /// The most pods the node runs (its `pods` capacity).
    #[arg(long, value_name = "N", default_value_t = kubelet::node::config::DEFAULT_MAX_PODS)]
    max_pods: i64,
    /// Register the node with the API server (`--register-node=false`: report the status
    /// of a Node made by someone else).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    register_node: bool,
    /// How often the node's status is computed, and posted when it changed.
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = kubelet::cluster::config::parse_duration)]
    node_status_update_frequency: Duration,
    /// The node's `spec.providerID`.
    #[arg(long, value_name = "ID")]
    provider_id: Option<String>,
    /// Hard eviction thresholds, which lower allocatable and raise the pressure
    /// conditions: `memory.available<100Mi,nodefs.available<10%,...` (signals left out
    /// are zero) [default: upstream's].
    #[arg(long, value_name = "LIST", value_parser = kubelet::cluster::config::parse_eviction_hard)]
    eviction_hard: Option<kubelet::node::capacity::EvictionThresholds>,
    // The kubelet API on :10250 (kubelet::server), with upstream's flag names (and the
    // `--config` file's `address`, `port`, `tlsCertFile`, ..., `authentication`,
    // `authorization` where a flag is not given). It starts when there is a kubeconfig or
    // a client CA, and the port is not 0.
    /// The kubelet API's address [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    address: Option<std::net::IpAddr>,
    /// The kubelet API's port; 0 disables it [default: 10250].
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// The kubelet API's serving certificate (PEM) [default: self-signed, kept in
    /// <--root>/pki].
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against; a verified
    /// certificate's CN is the user and its O values the groups.
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// Serve requests without credentials as system:anonymous [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    anonymous_auth: Option<bool>,
    /// Authenticate bearer tokens with TokenReview [default: true with --kubeconfig].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    authentication_token_webhook: Option<bool>,
    /// AlwaysAllow or Webhook (SubjectAccessReview) [default: Webhook with --kubeconfig].
    #[arg(long, value_name = "MODE")]
    authorization_mode: Option<kubelet::server::Mode>,
    /// The settings read from `--config` (for the parts whose flags are elsewhere, such
    /// as the kubelet API server's `server` settings).
    #[arg(skip)]
    file: kubelet::cluster::config::KubeletConfig,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args.print_default_cni_config {
        print!("{}", kubelet::network::DEFAULT_CONFLIST);
        return;
    }
    if let Err(err) = apply_config_file(&mut args, &matches).and_then(|()| run(args)) {
        eprintln!("peapod-kubelet: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let node_name = match args.node_name.clone() {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .context("reading the host name for --node-name")?
            .to_string_lossy()
            .to_lowercase(),
    };
    let beside = |name: &str, given: Option<PathBuf>| -> anyhow::Result<PathBuf> {
        given
            .or_else(|| runtime::shim::installed(name))
            .with_context(|| {
                format!(
                    "{name} not found beside peapod-kubelet or on PATH (use --{})",
                    name.trim_start_matches("peapod-")
                )
            })
    };
    let config = NodeConfig {
        node_name: node_name.clone(),
        pods_dir: args.root.join("pods"),
        image_root: args.root.clone(),
        log_dir: args.pod_log_dir.clone(),
        sandbox: Paths {
            netns_dir: args.netns_dir.clone(),
            state_dir: args.sandbox_dir.clone(),
            cgroup_root: args.cgroup_root.clone(),
            resolv_conf: args.resolv_conf.clone(),
            ..Paths::default()
        },
        runtime_binary: beside("peapod-runtime", args.runtime.clone())?,
        runtime_root: args.runtime_root.clone(),
        shim_binary: beside("peapod-shim", args.shim.clone())?,
        cni_conf_dir: args.cni_conf_dir.clone(),
        cni_bin_dirs: args.cni_bin_dir.clone(),
        cni_cache_dir: args.cni_cache_dir.clone(),
        cni_netns: args.cni_netns.clone(),
        log_options: LogOptions {
            max_size: args.container_log_max_size,
            max_files: args.container_log_max_files,
        },
        pull: Default::default(),
        dns: kubelet::pod::dns::NodeDns {
            cluster_dns: args.cluster_dns.clone(),
            cluster_domain: args.cluster_domain.clone(),
            has_resolv_conf: !args.resolv_conf.as_os_str().is_empty(),
        },
        node_ips: args.node_ip.clone(),
        security: NodeSecurity {
            seccomp_default: args.seccomp_default,
            seccomp_root: args.root.join("seccomp"),
            allowed_unsafe_sysctls: args.allowed_unsafe_sysctls.clone(),
        },
        crash_backoff: args.crash_loop_backoff_initial,
        resources: kubelet::pod::resources::NodeResources::from_host(
            std::path::Path::new("/proc/meminfo"),
            args.pod_max_pids,
        )
        .map_err(anyhow::Error::msg)?,
    };
    config.security.check().map_err(anyhow::Error::msg)?;
    let (node_settings, host_probe, lease_settings) = cluster_node(
        &args,
        &node_name,
        vec![config.runtime_binary.clone(), config.shim_binary.clone()],
    )?;
    std::fs::create_dir_all(&args.manifests)
        .with_context(|| format!("creating the manifests folder {}", args.manifests.display()))?;
    let cri = Cri::open(config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(async move {
        let client = match &args.kubeconfig {
            Some(path) => Some(kubelet::cluster::client::connect(path).await?),
            None => None,
        };
        let manager = PodManager::new(cri, args.manifests.clone());
        // apidata: configMaps, secrets and service account tokens for volumes and env
        // from the API server (in place before any pod starts), and the pods' events
        // posted to it.
        if let Some(client) = &client {
            use kubelet::cluster::{events, objects};
            objects::serve(client.clone(), &manager);
            let recorded = manager.observer().events();
            tokio::spawn(events::post(client.clone(), recorded, node_name.clone()));
        }
        // apipods: the pods bound to this node, their status, mirror pods, admission. It
        // starts before the folder source, whose first listing alone must not clean up.
        if let Some(client) = &client {
            let host = kubelet::node::host::HostFacts::read(
                &kubelet::node::host::HostPaths::linux(&args.root, None),
            )
            .context("reading the host's resources for pod admission")?;
            let allocatable = kubelet::node::capacity::allocatable(
                &host,
                node_settings.node.max_pods,
                &node_settings.thresholds,
            );
            kubelet::cluster::pods::start(client.clone(), manager.clone(), &node_name, allocatable);
        }
        let listener = kubelet::api::bind(&args.socket)
            .with_context(|| format!("listening on {}", args.socket.display()))?;
        tracing::info!(node = %node_name, manifests = %args.manifests.display(), socket = %args.socket.display(), "peapod-kubelet started");
        let (events_tx, events_rx) = mpsc::channel(64);
        tokio::spawn(source::watch_folder(
            FolderConfig::new(&args.manifests, &node_name),
            events_tx,
        ));
        tokio::spawn(manager.clone().run(events_rx));
        let node: Arc<dyn kubelet::api::Node> = manager.clone();
        let server = tokio::spawn(kubelet::api::serve(listener, node));
        // kubeapi: the kubelet API on :10250 (kubelet::server).
        let kubelet_api = kubelet_api_settings(&args, &node_name, client.is_some())?;
        let _kubelet_api = if kubelet_api.enabled(client.is_some()) {
            let reviewer = client.clone().map(|c| {
                Arc::new(kubelet::server::KubeReviewer::new(c)) as Arc<dyn kubelet::server::Reviewer>
            });
            let started = kubelet::server::start(kubelet_api, manager.clone(), reviewer);
            Some(started.await.context("starting the kubelet API")?)
        } else {
            None
        };
        // The cluster's parts (registration, lease, pods, status, events, the kubelet
        // API) start here when a kubeconfig is given.
        if let Some(client) = &client {
            // node: the Node, its status reports and its Lease.
            let node_uid = kubelet::cluster::registration::spawn(
                client.clone(),
                node_settings,
                Arc::new(host_probe),
            );
            tokio::spawn(kubelet::cluster::lease::keep(
                client.clone(),
                lease_settings,
                node_uid,
            ));
        }
        shutdown_signal().await;
        tracing::info!("stopping; pods keep running under their shims");
        server.abort();
        let _ = std::fs::remove_file(&args.socket);
        Ok(())
    })
}

/// `--config`: the file's settings, where no flag was given on the command line.
fn apply_config_file(args: &mut Args, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    use kubelet::cluster::config::{choose, load};
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let loaded = load(&path)?;
    for field in &loaded.ignored {
        tracing::warn!(
            "{}: {field}: peapod has no such setting; ignored",
            path.display()
        );
    }
    let file = loaded.config;
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    macro_rules! from_file {
        ($field:ident, $value:expr) => {
            args.$field = choose(
                given(stringify!($field)),
                std::mem::take(&mut args.$field),
                $value,
            )
        };
    }
    from_file!(manifests, file.static_pod_path.clone());
    from_file!(cluster_dns, file.cluster_dns.clone());
    from_file!(cluster_domain, file.cluster_domain.clone());
    from_file!(resolv_conf, file.resolv_conf.clone());
    from_file!(max_pods, file.max_pods);
    from_file!(pod_max_pids, file.pod_pids_limit);
    from_file!(register_node, file.register_node);
    from_file!(
        node_status_update_frequency,
        file.node_status_update_frequency
    );
    from_file!(container_log_max_size, file.container_log_max_size);
    from_file!(container_log_max_files, file.container_log_max_files);
    from_file!(seccomp_default, file.seccomp_default);
    from_file!(allowed_unsafe_sysctls, file.allowed_unsafe_sysctls.clone());
    from_file!(provider_id, file.provider_id.clone().map(Some));
    // The flag's taints win; the file's are used (by `cluster_node`) when none was given.
    let file_taints = file
        .register_with_taints
        .clone()
        .filter(|_| !given("register_with_taints"));
    args.file = kubelet::cluster::config::KubeletConfig {
        register_with_taints: file_taints,
        ..file
    };
    Ok(())
}

/// The node's registration, status and lease settings from the flags and `--config`.
fn cluster_node(
    args: &Args,
    node_name: &str,
    runtime_binaries: Vec<PathBuf>,
) -> anyhow::Result<(
    kubelet::cluster::registration::NodeSettings,
    kubelet::cluster::registration::HostProbe,
    kubelet::cluster::lease::LeaseSettings,
)> {
    use kubelet::node::config::{parse_labels, parse_taints};
    let mut node = kubelet::node::config::NodeConfig::new(node_name, args.node_ip.clone());
    node.labels = parse_labels(&args.node_labels)?;
    node.taints = match &args.file.register_with_taints {
        Some(taints) => taints.clone(),
        None => parse_taints(&args.register_with_taints)?,
    };
    node.max_pods = args.max_pods;
    node.provider_id = args.provider_id.clone();
    // daemonEndpoints names the kubelet API's port (`--port`, else the file's).
    if let Some(port) = args.port.or(args.file.server.port) {
        node.port = i32::from(port);
    }
    node.validate()?;
    let settings = kubelet::cluster::registration::NodeSettings {
        node,
        register: args.register_node,
        update_frequency: args.node_status_update_frequency,
        report_frequency: args
            .file
            .node_status_report_frequency
            .unwrap_or(Duration::from_secs(5 * 60)),
        // The flag has a value only when given, so it wins over the file.
        thresholds: args
            .eviction_hard
            .or(args.file.eviction_hard)
            .unwrap_or_default(),
    };
    let probe = kubelet::cluster::registration::HostProbe {
        paths: kubelet::node::host::HostPaths::linux(&args.root, None),
        node_ips: args.node_ip.clone(),
        runtime_binaries,
    };
    let lease = kubelet::cluster::lease::LeaseSettings {
        node_name: node_name.to_string(),
        duration_seconds: args
            .file
            .node_lease_duration_seconds
            .unwrap_or(kubelet::node::lease::LEASE_DURATION_SECONDS),
    };
    Ok((settings, probe, lease))
}

/// The kubelet API's settings (kubelet::server): flags, else the `--config` file, else
/// upstream's defaults (webhook authentication and authorisation with a kubeconfig).
fn kubelet_api_settings(
    args: &Args,
    node_name: &str,
    has_client: bool,
) -> anyhow::Result<kubelet::server::Settings> {
    let file = &args.file.server;
    let defaults = kubelet::server::Settings::new(node_name, &args.root, has_client);
    let file_mode = match &file.authorization_mode {
        Some(mode) => Some(
            mode.parse::<kubelet::server::Mode>()
                .map_err(anyhow::Error::msg)
                .context("--config: authorization.mode")?,
        ),
        None => None,
    };
    Ok(kubelet::server::Settings {
        address: args.address.or(file.address).unwrap_or(defaults.address),
        port: args.port.or(file.port).unwrap_or(defaults.port),
        tls_cert_file: args.tls_cert_file.clone().or(file.tls_cert_file.clone()),
        tls_private_key_file: args
            .tls_private_key_file
            .clone()
            .or(file.tls_private_key_file.clone()),
        client_ca_file: args.client_ca_file.clone().or(file.client_ca_file.clone()),
        anonymous_auth: args
            .anonymous_auth
            .or(file.anonymous_auth)
            .unwrap_or(defaults.anonymous_auth),
        token_webhook: args
            .authentication_token_webhook
            .or(file.webhook_authn.filter(|_| has_client))
            .unwrap_or(defaults.token_webhook),
        authorization_mode: args
            .authorization_mode
            .or(file_mode)
            .unwrap_or(defaults.authorization_mode),
        node_ips: args.node_ip.clone(),
        ..defaults
    })
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A duration as `10s`, `500ms` or `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 10s, 500ms or 2m");
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| text.split_at(i))
        .ok_or_else(invalid)?;
    let n: u64 = number.parse().map_err(|_| invalid())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(invalid()),
    }
}

/// A size as the kubelet writes it: `10Mi`, `512Ki`, `1Gi`, `100M`, or bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let units: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1000 * 1000),
        ("G", 1000 * 1000 * 1000),
    ];
    let (number, factor) = units
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is not a size like 10Mi, 512Ki or 1048576"))
}
