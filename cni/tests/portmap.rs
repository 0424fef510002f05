//! The reference `portmap` chained after `peapod-bridge`, run through our caller:
//! a host port forwarded to a pod, CHECK, and DEL taking every rule away.
//!
//! The harness (and what it guarantees about the machine's own namespace) is in
//! `common`. The caller runs inside the private host netns (its plugins inherit
//! the calling thread's namespace); traffic only goes to 127.0.0.1 there.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cni::caller::{Cache, Caller, CallerError, Network, RuntimeConf};
use common::*;
use serde_json::json;

/// The port the pod's server listens on.
const CONTAINER_PORT: u16 = 8080;

#[test]
fn portmap_forwards_a_host_port_to_the_pod_and_del_removes_its_rules() {
    let mut net = Net::new();
    net.add_reference_plugin("portmap");
    let netns = net.netns();
    let work = tempfile::tempdir().unwrap();
    let conflist = work.path().join("10-portmap.conflist");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {
                "type": "peapod-bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": true,
                "ipam": {
                    "type": "peapod-host-local",
                    "subnet": format!("{}.0/24", net.prefix),
                    "dataDir": net.data.path(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    });
    std::fs::write(&conflist, conf.to_string()).unwrap();
    let network = Network::load(&conflist).unwrap();
    let caller = Caller {
        plugin_dirs: vec![net.cni_path.path().to_path_buf()],
        cache: Cache::new(&work.path().join("cache")),
        timeout: Duration::from_secs(30),
    };
    // Unique per test run, though the private host netns would not clash anyway.
    let host_port = 20000 + (std::process::id() % 20000) as u16;
    let rt = RuntimeConf {
        container_id: format!("{}-web", net.name),
        netns: netns.to_str().unwrap().to_string(),
        ifname: "eth0".into(),
        args: Vec::new(),
        capability_args: json!({"portMappings": [
            {"hostPort": host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
        ]}),
    };

    let result = net.in_host(|| caller.add(&network, &rt)).unwrap();
    let pod_ip: Ipv4Addr = result.ips[0]
        .address
        .to_string()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let dnat = format!("--dport {host_port} -j DNAT --to-destination {pod_ip}:{CONTAINER_PORT}");
    let rules = nat_rules(&net);
    assert!(
        rules.iter().any(|l| l.contains(&dnat)),
        "{dnat}\n{rules:#?}"
    );
    // Our three masquerade rules; portmap's entry rule carries the network's name too.
    let masq: Vec<String> = net
        .masq_rules()
        .into_iter()
        .filter(|l| !l.contains("dnat name:"))
        .collect();
    assert_eq!(masq.len(), 3, "{masq:#?}");
    // portmap turns route_localnet on for the bridge itself (snat is on), so
    // 127.0.0.1 may be routed to the pod; the test never sets it.
    let localnet = net.host_sh(&[
        "cat",
        &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
    ]);
    assert_eq!(String::from_utf8_lossy(&localnet.stdout).trim(), "1");

    let token = format!("peapod-{}", std::process::id());
    let server = serve_once(netns, token.clone());
    let reply = net.in_host(|| fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))));
    let peer = server.join().unwrap();
    assert_eq!(reply, token);
    // snat: the pod sees the connection from the host's side of the bridge,
    // not from 127.0.0.1, which it could not answer.
    assert_eq!(peer.ip().to_string(), net.gateway());

    match net.in_host(|| caller.check(&network, &rt)) {
        Ok(()) => {}
        // containernetworking/plugins#819: portmap up to 1.1.x checks its
        // ip6tables chain even for an IPv4-only pod, where it never made one.
        Err(CallerError::Plugin {
            plugin, verb, msg, ..
        }) if plugin == "portmap"
            && verb == "CHECK"
            && msg.contains("could not check ipv6 dnat") =>
        {
            eprintln!("portmap CHECK hit containernetworking/plugins#819: {msg}");
        }
        Err(e) => panic!("CHECK failed: {e}"),
    }

    net.in_host(|| caller.del(&network, &rt)).unwrap();
    let rules = nat_rules(&net);
    assert!(
        !rules.iter().any(|l| l.contains(&pod_ip.to_string())
            || l.contains(&rt.container_id)
            || l.contains("CNI-DN-")),
        "{rules:#?}"
    );
    // Only portmap's shared top-level chains stay, as the reference leaves them.
    assert!(
        rules
            .iter()
            .filter(|l| l.starts_with("-N "))
            .all(|l| l.starts_with("-N CNI-HOSTPORT-")),
        "{rules:#?}"
    );
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
    assert!(net.bridge_ports().is_empty(), "{:#?}", net.bridge_ports());
    // A second DEL (the cache entry is gone) still succeeds.
    net.in_host(|| caller.del(&network, &rt)).unwrap();
}

/// The host netns' nat table, one rule per line.
fn nat_rules(net: &Net) -> Vec<String> {
    let out = net.host_sh(&["iptables", "-w", "-t", "nat", "-S"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Serves `token` to the first connection on `:8080` inside the network
/// namespace at `netns`, on a dedicated thread (setns changes only that thread);
/// the thread returns the peer's address. It is listening when this returns,
/// and gives up after ten seconds so a failed test cannot leave it behind.
fn serve_once(netns: PathBuf, token: String) -> std::thread::JoinHandle<SocketAddr> {
    let (ready, listening) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, CONTAINER_PORT)).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    conn.write_all(token.as_bytes()).unwrap();
                    return peer;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "nobody connected to the pod");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept in the pod: {e}"),
            }
        }
    });
    listening
        .recv_timeout(Duration::from_secs(10))
        .expect("the pod's server did not start");
    server
}

/// Connects to `addr` and reads until the server closes.
fn fetch(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    reply
}
