//! Many pods on one `peapod-bridge` network: 50 sequential and 20 concurrent ADDs
//! get distinct addresses, every pod reaches the gateway and every other pod, and
//! DEL leaves nothing behind.
//!
//! The harness (and what it guarantees about the machine's own namespace) is in
//! `common`; the pings come from `common::icmp`, one raw-socket prober per pod.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

const SEQUENTIAL: usize = 50;
const CONCURRENT: usize = 20;

/// One pod the test added.
struct Pod {
    id: String,
    netns: PathBuf,
    result: Value,
}

impl Pod {
    fn ip(&self) -> Ipv4Addr {
        host_ip(&self.result)
            .parse()
            .unwrap_or_else(|e| panic!("{}: bad address ({e}): {}", self.id, self.result))
    }

    /// The MAC address of the pod's eth0.
    fn mac(&self) -> &str {
        self.result["interfaces"][2]["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no container MAC: {}", self.id, self.result))
    }
}

#[test]
fn seventy_pods_get_distinct_addresses_and_reach_each_other() {
    let mut net = Net::new();
    let conf = net.ours(json!({"ipMasq": true}));

    let started = Instant::now();
    let mut pods = Vec::new();
    for i in 0..SEQUENTIAL {
        let (id, netns) = (format!("seq{i}"), net.netns());
        let result = run_plugin(&net, "peapod-bridge", "ADD", &id, &netns, &conf).result();
        pods.push(Pod { id, netns, result });
    }
    let sequential = started.elapsed();
    let batch: Vec<(String, PathBuf)> = (0..CONCURRENT)
        .map(|i| (format!("par{i}"), net.netns()))
        .collect();
    let (net_ref, conf_ref) = (&net, &conf);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .into_iter()
            .map(|(id, netns)| {
                s.spawn(move || {
                    let out = run_plugin(net_ref, "peapod-bridge", "ADD", &id, &netns, conf_ref);
                    Pod {
                        result: out.result(),
                        id,
                        netns,
                    }
                })
            })
            .collect();
        pods.extend(handles.into_iter().map(|h| h.join().unwrap()));
    });
    eprintln!(
        "{SEQUENTIAL} sequential ADDs: {sequential:?}; {CONCURRENT} concurrent: {:?}",
        started.elapsed() - sequential
    );

    let gateway: Ipv4Addr = net.gateway().parse().unwrap();
    let subnet = gateway.octets();
    let ips: Vec<Ipv4Addr> = pods.iter().map(Pod::ip).collect();
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), SEQUENTIAL + CONCURRENT, "{ips:?}");
    for (pod, ip) in pods.iter().zip(&ips) {
        assert_eq!(ip.octets()[..3], subnet[..3], "{} outside the /24", pod.id);
        assert_ne!(*ip, gateway, "{} got the gateway's address", pod.id);
    }
    assert_eq!(net.reserved().len(), pods.len());
    assert_eq!(net.masq_rules().len(), 3 * pods.len());

    let probing = Instant::now();
    pin_neighbours(&pods);
    let unreachable = unreachable_pairs(&pods, gateway);
    eprintln!(
        "{} pods probed {} targets each in {:?}",
        pods.len(),
        pods.len(),
        probing.elapsed()
    );
    assert!(
        unreachable.is_empty(),
        "{} unreachable (pod -> target) pairs:\n{}",
        unreachable.len(),
        unreachable.join("\n")
    );

    let deleting = Instant::now();
    for pod in &pods {
        run_plugin(
            &net,
            "peapod-bridge",
            "DEL",
            &pod.id,
            &pod.netns,
            &with_prev(&conf, &pod.result),
        )
        .assert_ok();
    }
    eprintln!("{} DELs: {:?}", pods.len(), deleting.elapsed());
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
    assert!(net.bridge_ports().is_empty(), "{:#?}", net.bridge_ports());
    let veths = net.host_out(&["ip", "-o", "link", "show", "type", "veth"]);
    assert!(veths.is_empty(), "{veths}");
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
}

/// Pins each pod's neighbours as permanent ARP entries, except the gateway and
/// the next pod in a ring, which ARP still has to resolve across the bridge.
///
/// Why: the kernel's IPv4 neighbour table is shared by every namespace on the
/// machine and stops creating entries past `gc_thresh3` (1024 by default, and
/// changing it would touch the machine), so a full mesh of 70 pods resolving
/// each other (4830 entries) drops most first packets with "neighbor table
/// overflow", here and in anything else running on the machine. Permanent
/// entries are exempt from that limit; what stays dynamic is about three per pod.
fn pin_neighbours(pods: &[Pod]) {
    for (i, pod) in pods.iter().enumerate() {
        let next = (i + 1) % pods.len();
        let batch: String = pods
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i && j != next)
            .map(|(_, peer)| {
                format!(
                    "neigh replace {} lladdr {} dev eth0 nud permanent\n",
                    peer.ip(),
                    peer.mac()
                )
            })
            .collect();
        let name = pod.netns.file_name().unwrap().to_str().unwrap();
        let mut child = Command::new("ip")
            .args(["-n", name, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(batch.as_bytes())
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "pinning neighbours in {}: {status}",
            pod.id
        );
    }
}

/// Pings the gateway and every other pod from each pod, all pods at once, and
/// returns the pairs that never answered as `pod (ip) -> target`.
fn unreachable_pairs(pods: &[Pod], gateway: Ipv4Addr) -> Vec<String> {
    let ips: Vec<Ipv4Addr> = pods.iter().map(Pod::ip).collect();
    let probers: Vec<_> = pods
        .iter()
        .map(|pod| {
            let own = pod.ip();
            let targets = std::iter::once(gateway)
                .chain(ips.iter().copied().filter(|ip| *ip != own))
                .collect();
            icmp::spawn(pod.netns.clone(), targets)
        })
        .collect();
    let mut unreachable = Vec::new();
    for (pod, prober) in pods.iter().zip(probers) {
        let silent = prober
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("prober in {}: {e}", pod.id));
        for target in silent {
            let what = if target == gateway { " (gateway)" } else { "" };
            unreachable.push(format!("{} ({}) -> {target}{what}", pod.id, pod.ip()));
        }
    }
    unreachable
}
