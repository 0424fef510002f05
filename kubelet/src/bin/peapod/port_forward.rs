//! `peapod port-forward`: forward local ports to a pod's ports, as `kubectl
//! port-forward` does, one WebSocket per accepted connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use kubelet::stream::client;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::pods;

/// `peapod port-forward pod/NAME|NAME [--address ADDR] LOCAL:REMOTE|:REMOTE|PORT...`
#[derive(clap::Args)]
pub struct PortForwardArgs {
    /// The pod (NAME or pod/NAME).
    pod: String,
    /// Ports: LOCAL:REMOTE, :REMOTE (any free local port), or PORT (the same on both).
    #[arg(required = true, value_name = "PORTS")]
    ports: Vec<String>,
    /// The local address to listen on (an IP, or localhost).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// The pod's namespace (the global `-n`).
    #[arg(skip)]
    pub namespace: String,
}

/// One forwarded port: local (0 = any free one) to remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    /// The local port to listen on; 0 lets the system pick.
    pub local: u16,
    /// The pod's port.
    pub remote: u16,
}

/// Parse `LOCAL:REMOTE`, `:REMOTE` or `PORT`.
pub fn parse_ports(spec: &str) -> anyhow::Result<PortPair> {
    let port = |text: &str, which: &str| -> anyhow::Result<u16> {
        match text.parse::<u16>() {
            Ok(0) | Err(_) => bail!(
                "port specification {spec:?}: {which} port {text:?} is not a port number (1-65535)"
            ),
            Ok(port) => Ok(port),
        }
    };
    Ok(match spec.split_once(':') {
        None => {
            let both = port(spec, "the")?;
            PortPair {
                local: both,
                remote: both,
            }
        }
        Some(("", remote)) => PortPair {
            local: 0,
            remote: port(remote, "the remote")?,
        },
        Some((local, remote)) => PortPair {
            local: port(local, "the local")?,
            remote: port(remote, "the remote")?,
        },
    })
}

fn parse_address(text: &str) -> anyhow::Result<IpAddr> {
    if text == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    text.parse()
        .with_context(|| format!("--address {text:?}: expected an IP address or localhost"))
}

/// Forward until Ctrl-C. A refusal by the server (no such pod) is returned as the
/// [`crate::client::ServerError`] `main` prints as kubectl does.
pub fn run(socket: &Path, args: &PortForwardArgs) -> anyhow::Result<i32> {
    let pairs = args
        .ports
        .iter()
        .map(|spec| parse_ports(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let address = parse_address(&args.address)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(forward(socket, args, address, &pairs));
    runtime.shutdown_background();
    result.map(|()| 0)
}

async fn forward(
    socket: &Path,
    args: &PortForwardArgs,
    address: IpAddr,
    pairs: &[PortPair],
) -> anyhow::Result<()> {
    let pod = pods::pod_name(&args.pod).to_owned();
    // Fail early, as kubectl does, on a pod that is not there.
    pods::fetch(&Client::new(socket), &args.namespace, &pod).await?;
    for pair in pairs {
        let listener = TcpListener::bind(SocketAddr::new(address, pair.local))
            .await
            .with_context(|| format!("listening on {address}:{}", pair.local))?;
        let local = listener.local_addr().context("the listener's address")?;
        out!("Forwarding from {local} -> {}", pair.remote);
        tokio::spawn(accept(
            listener,
            socket.to_path_buf(),
            args.namespace.clone(),
            pod.clone(),
            pair.remote,
        ));
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// Accept connections on one listener; each gets its own WebSocket to the pod.
async fn accept(
    listener: TcpListener,
    socket: PathBuf,
    namespace: String,
    pod: String,
    remote: u16,
) {
    let local = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    loop {
        let connection = match listener.accept().await {
            Ok((connection, _)) => connection,
            Err(e) => {
                eprintln!("error: accepting a connection on port {local}: {e}");
                continue;
            }
        };
        out!("Handling connection for {local}");
        let (socket, namespace, pod) = (socket.clone(), namespace.clone(), pod.clone());
        tokio::spawn(async move {
            if let Err(e) = client::forward(&socket, &namespace, &pod, remote, connection).await {
                eprintln!("error: an error occurred forwarding {local} -> {remote}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_as_kubectl_reads_them() {
        assert_eq!(
            parse_ports("8080:80").unwrap(),
            PortPair {
                local: 8080,
                remote: 80
            }
        );
        assert_eq!(
            parse_ports(":80").unwrap(),
            PortPair {
                local: 0,
                remote: 80
            }
        );
        assert_eq!(
            parse_ports("5000").unwrap(),
            PortPair {
                local: 5000,
                remote: 5000
            }
        );
        for bad in ["", "x", "80:", "0", "70000:80", "a:b"] {
            let err = parse_ports(bad).unwrap_err().to_string();
            assert!(err.contains("port specification"), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_are_ips_or_localhost() {
        assert_eq!(
            parse_address("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(parse_address("0.0.0.0").is_ok());
        assert!(parse_address("my-host").is_err());
    }
}
