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

/// `call`, given up after `limit`: a heartbeat must not wait minutes on a server that
/// accepted the connection but never answers (the client's own read timeout is long,
/// for watches), as upstream bounds its heartbeat client.
pub async fn bounded<T>(
    limit: std::time::Duration,
    call: impl std::future::Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|elapsed| Err(kube::Error::Service(Box::new(elapsed))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_is_given_up_on() {
        let silent = std::future::pending::<kube::Result<()>>();
        let result = bounded(Duration::from_secs(10), silent).await;
        assert!(matches!(result, Err(kube::Error::Service(_))), "{result:?}");
        let answered = bounded(Duration::from_secs(10), async { Ok(7) }).await;
        assert_eq!(answered.unwrap(), 7);
    }
}
