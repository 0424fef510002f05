//! The API server client, from the kubeconfig the operator gives (`--kubeconfig`), as
//! the upstream kubelet reads it: server, CA, and the node's credential (client
//! certificate or bearer token).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client for the API server named by the current context of `kubeconfig`.
pub async fn connect(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", kubeconfig.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("making an API client from {}", kubeconfig.display()))
}
