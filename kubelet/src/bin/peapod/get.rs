//! `peapod get pods`: the pod table, or the pods as YAML, JSON or names.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::client::{Client, ServerError};
use crate::pods::{self, age_cell, summarize};

/// Arguments of `peapod get`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// The resource type: pods (also pod, po), or pod/NAME.
    #[arg(value_name = "TYPE")]
    resource: String,
    /// Only these pods.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// List pods of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Output format: wide, yaml, json or name.
    #[arg(short, long, value_name = "FORMAT")]
    output: Option<String>,
}

/// How pods are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

impl Output {
    fn parse(text: Option<&str>) -> anyhow::Result<Output> {
        Ok(match text {
            None => Output::Table,
            Some("wide") => Output::Wide,
            Some("yaml") => Output::Yaml,
            Some("json") => Output::Json,
            Some("name") => Output::Name,
            Some(other) => anyhow::bail!(
                "unable to match a printer suitable for the output format {other:?}, \
                 allowed formats are: json,name,wide,yaml"
            ),
        })
    }
}

/// The names a resource argument stands for: `pods` → none; `pod/web` → web.
pub fn pod_names(resource: &str, names: &[String]) -> anyhow::Result<Vec<String>> {
    if let Some(name) = resource
        .strip_prefix("pod/")
        .or(resource.strip_prefix("pods/"))
    {
        return Ok(std::iter::once(name.to_owned())
            .chain(names.iter().cloned())
            .collect());
    }
    match resource {
        "pods" | "pod" | "po" => Ok(names
            .iter()
            .map(|n| n.strip_prefix("pod/").unwrap_or(n).to_owned())
            .collect()),
        other => anyhow::bail!("the server doesn't have a resource type {other:?}"),
    }
}

/// Run `peapod get`.
pub async fn run(client: &Client, namespace: &str, args: &GetArgs) -> anyhow::Result<()> {
    let output = Output::parse(args.output.as_deref())?;
    let names = pod_names(&args.resource, &args.names)?;
    let pods: Vec<Pod> = if names.is_empty() {
        pods::fetch_all(client)
            .await?
            .into_iter()
            .filter(|p| args.all_namespaces || pods::namespace(p) == namespace)
            .collect()
    } else {
        let mut found = Vec::new();
        let mut missing = None;
        for name in &names {
            match pods::fetch(client, namespace, name).await {
                Ok(pod) => found.push(pod),
                // kubectl prints what it found, then the errors.
                Err(e)
                    if e.downcast_ref::<ServerError>()
                        .is_some_and(|s| s.is_not_found()) =>
                {
                    missing.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(err) = missing {
            print!(
                "{}",
                render(&found, output, args.all_namespaces, crate::pods::now())?
            );
            return Err(err);
        }
        found
    };
    if pods.is_empty() && matches!(output, Output::Table | Output::Wide) {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
        return Ok(());
    }
    let single = names.len() == 1;
    let text = if single && matches!(output, Output::Yaml | Output::Json) {
        serialize(&pods[0], output)?
    } else {
        render(&pods, output, args.all_namespaces, crate::pods::now())?
    };
    out!("{}", text.trim_end_matches('\n'));
    Ok(())
}

/// Several pods in `output`'s shape (a v1 List for YAML and JSON).
pub fn render(
    pods: &[Pod],
    output: Output,
    namespaces: bool,
    now: Timestamp,
) -> anyhow::Result<String> {
    match output {
        Output::Table | Output::Wide => Ok(table(pods, output == Output::Wide, namespaces, now)),
        Output::Name => Ok(pods
            .iter()
            .map(|p| format!("pod/{}\n", pods::name(p)))
            .collect()),
        Output::Yaml | Output::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "items": pods,
                "kind": "List",
                "metadata": {"resourceVersion": ""},
            });
            serialize(&list, output)
        }
    }
}

fn serialize<T: serde::Serialize>(value: &T, output: Output) -> anyhow::Result<String> {
    Ok(if output == Output::Json {
        serde_json::to_string_pretty(value)? + "\n"
    } else {
        yaml_serde::to_string(value)?
    })
}

/// kubectl's pod table.
pub fn table(pods: &[Pod], wide: bool, namespaces: bool, now: Timestamp) -> String {
    let mut text = String::new();
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if namespaces {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    text.push_str(&header.join("\t"));
    text.push('\n');
    for pod in pods {
        let summary = summarize(pod);
        let mut row = Vec::new();
        if namespaces {
            row.push(pods::namespace(pod).to_owned());
        }
        row.extend([
            pods::name(pod).to_owned(),
            summary.ready.clone(),
            summary.status.clone(),
            summary.restarts_cell(now),
            age_cell(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        ]);
        if wide {
            let status = pod.status.as_ref();
            let spec = pod.spec.as_ref();
            let none = |v: Option<&String>| {
                v.filter(|s| !s.is_empty())
                    .cloned()
                    .unwrap_or_else(|| "<none>".into())
            };
            row.push(none(status.and_then(|s| s.pod_ip.as_ref())));
            row.push(none(spec.and_then(|s| s.node_name.as_ref())));
            row.push(none(status.and_then(|s| s.nominated_node_name.as_ref())));
            row.push(readiness_gates(pod));
        }
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    pods::align(&text, 6, 3)
}

/// `ready/total` readiness gates, `<none>` without any.
fn readiness_gates(pod: &Pod) -> String {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    if gates.is_empty() {
        return "<none>".into();
    }
    let ready = gates
        .iter()
        .filter(|g| pods::condition_true(pod, &g.condition_type))
        .count();
    format!("{ready}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn pod(namespace: &str, name: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                pod_ip: ip.map(Into::into),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn tables_plain_wide_and_all_namespaces() {
        let pods = [
            pod("default", "web-node1", Some("10.88.0.5")),
            pod("kube-system", "dns", None),
        ];
        assert_eq!(
            table(&pods[..1], false, false, at(192)),
            "NAME        READY   STATUS    RESTARTS   AGE\n\
             web-node1   0/0     Pending   0          3m12s\n"
        );
        assert_eq!(
            table(&pods, true, true, at(45)),
            "NAMESPACE     NAME        READY   STATUS    RESTARTS   AGE   IP          NODE    NOMINATED NODE   READINESS GATES\n\
             default       web-node1   0/0     Pending   0          45s   10.88.0.5   node1   <none>           <none>\n\
             kube-system   dns         0/0     Pending   0          45s   <none>      node1   <none>           <none>\n"
        );
    }

    #[test]
    fn names_and_lists() {
        let pods = [pod("default", "a", None), pod("default", "b", None)];
        assert_eq!(
            render(&pods, Output::Name, false, at(0)).unwrap(),
            "pod/a\npod/b\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&pods, Output::Json, false, at(0)).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][1]["metadata"]["name"], "b");
        let yaml = render(&pods[..1], Output::Yaml, false, at(0)).unwrap();
        assert!(yaml.starts_with("apiVersion: v1\nitems:\n"), "{yaml}");
        assert!(Output::parse(Some("table")).is_err());
    }

    #[test]
    fn resource_arguments() {
        assert_eq!(pod_names("pods", &[]).unwrap(), Vec::<String>::new());
        assert_eq!(pod_names("po", &["web".into()]).unwrap(), ["web"]);
        assert_eq!(pod_names("pod/web", &[]).unwrap(), ["web"]);
        let err = pod_names("deployments", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"deployments\""
        );
    }
}
