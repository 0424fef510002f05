//! `peapod logs POD`: a container's log, streamed from the kubelet.

use k8s_openapi::api::core::v1::Pod;

use crate::client::{encode, Client};
use crate::pods;

/// The annotation naming the container kubectl picks when none is given.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// Arguments of `peapod logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The pod (NAME or pod/NAME).
    #[arg(value_name = "POD")]
    pod: String,
    /// The container; optional when the pod has one.
    #[arg(short, long)]
    container: Option<String>,
    /// Keep printing new lines until the container ends.
    #[arg(short, long)]
    follow: bool,
    /// The log of the container's previous instance.
    #[arg(short, long)]
    previous: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,
}

/// Run `peapod logs`.
pub async fn run(client: &Client, namespace: &str, args: &LogsArgs) -> anyhow::Result<()> {
    let pod = pods::fetch(client, namespace, &args.pod).await?;
    let container = match &args.container {
        Some(c) => c.clone(),
        None => default_container(&pod)?,
    };
    let mut query = Vec::new();
    if args.follow {
        query.push("follow=true".to_owned());
    }
    if args.previous {
        query.push("previous=true".to_owned());
    }
    if args.tail >= 0 {
        query.push(format!("tailLines={}", args.tail));
    }
    if args.timestamps {
        query.push("timestamps=true".to_owned());
    }
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        encode(pods::namespace(&pod)),
        encode(pods::name(&pod)),
        encode(&container)
    );
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    client.stream(&path, &mut std::io::stdout().lock()).await
}

/// The container kubectl picks without `-c`: the annotated default, else the only one.
pub fn default_container(pod: &Pod) -> anyhow::Result<String> {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.as_str()))
        .collect();
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        .filter(|c| names.contains(&c.as_str()));
    match (annotated, names.as_slice()) {
        (Some(c), _) => Ok(c.clone()),
        (None, [only]) => Ok((*only).to_owned()),
        (None, _) => anyhow::bail!(
            "a container name must be specified for pod {}, choose one of: [{}]",
            pods::name(pod),
            names.join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[&str], default: Option<&str>) -> Pod {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|c| Container {
                        name: (*c).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.name = Some("web".into());
        if let Some(c) = default {
            pod.metadata.annotations = Some([(DEFAULT_CONTAINER.into(), c.into())].into());
        }
        pod
    }

    #[test]
    fn containers_default_as_in_kubectl() {
        assert_eq!(default_container(&pod(&["web"], None)).unwrap(), "web");
        assert_eq!(
            default_container(&pod(&["web", "sidecar"], Some("sidecar"))).unwrap(),
            "sidecar"
        );
        assert_eq!(
            default_container(&pod(&["web", "sidecar"], None))
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod web, choose one of: [web sidecar]"
        );
    }
}
