//! Runs the built `peapod-bridge` as a runtime would, in network namespaces and on bridges the tests create.
//!
//! The harness (and what it guarantees about the machine's own namespace) is in `common`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[test]
fn add_configures_container_and_reaches_gateway() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"mtu": 1400}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(address(&r), format!("{}.2/24", net.prefix));
    assert_eq!(r["ips"][0]["gateway"], net.gateway());
    assert_eq!(r["ips"][0]["interface"], 2);
    let ifaces = r["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], net.bridge);
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], ns.to_str().unwrap());
    assert!(ifaces[1].get("sandbox").is_none());
    assert_eq!(
        r["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": net.gateway()})
    );
    let addrs = ip_in(&ns, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains(&address(&r)), "{addrs}");
    let link = ip_in(&ns, &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    let routes = ip_in(&ns, &["ip", "route"]);
    assert!(
        routes.contains(&format!("default via {}", net.gateway())),
        "{routes}"
    );
    assert!(net.link_exists(ifaces[1]["name"].as_str().unwrap()));
    assert!(
        pings(&ns, &net.gateway()),
        "container cannot ping its gateway"
    );
}

#[test]
fn two_containers_reach_each_other() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let conf = net.ours(json!({}));
    let ra = net.run("peapod-bridge", "ADD", "a", &a, &conf).result();
    let rb = net.run("peapod-bridge", "ADD", "b", &b, &conf).result();
    assert_ne!(address(&ra), address(&rb));
    assert!(pings(&a, &host_ip(&rb)), "a cannot ping b");
    assert!(pings(&b, &host_ip(&ra)), "b cannot ping a");
}

#[test]
fn del_removes_veth_reservation_and_masq_rules() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"ipMasq": true}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    let veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let rules = net.masq_rules();
    assert_eq!(rules.len(), 3, "{rules:#?}");
    let src = format!("-s {}/32", host_ip(&r));
    assert!(
        rules
            .iter()
            .any(|l| l.starts_with("-A POSTROUTING") && l.contains(&src)),
        "{rules:#?}"
    );
    assert!(rules
        .iter()
        .any(|l| l.contains("! -d 224.0.0.0/4") && l.contains("MASQUERADE")));
    assert_eq!(net.reserved().len(), 1);
    let del = net.run("peapod-bridge", "DEL", "c1", &ns, &with_prev(&conf, &r));
    del.assert_ok();
    assert!(del.stdout.is_empty());
    assert!(!net.link_exists(&veth), "host veth {veth} survived DEL");
    assert!(!ip_in(&ns, &["ip", "link"]).contains("eth0"));
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
    // DEL is idempotent.
    net.run("peapod-bridge", "DEL", "c1", &ns, &conf)
        .assert_ok();
}

#[test]
fn del_of_unknown_container_and_vanished_netns_succeeds() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"ipMasq": true}));
    net.run("peapod-bridge", "DEL", "never-added", &ns, &conf)
        .assert_ok();
    net.run(
        "peapod-bridge",
        "DEL",
        "never-added",
        Path::new("/run/netns/pp-cni-none"),
        &conf,
    )
    .assert_ok();
    net.run("peapod-bridge", "DEL", "never-added", Path::new(""), &conf)
        .assert_ok();
}

#[test]
fn del_with_empty_netns_still_removes_masq_rules() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"ipMasq": true}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(net.masq_rules().len(), 3);
    let veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    net.run(
        "peapod-bridge",
        "DEL",
        "c1",
        Path::new(""),
        &with_prev(&conf, &r),
    )
    .assert_ok();
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
    assert!(net.reserved().is_empty());
    assert!(!net.link_exists(&veth));
}

#[test]
fn malformed_config_is_a_cni_error() {
    let mut net = Net::new();
    let ns = net.netns();
    let out = run_plugin_raw(&net, "peapod-bridge", "ADD", "c1", &ns, b"{\"cniVersion\":");
    assert!(!out.ok);
    let err = out.json();
    assert_eq!(err["code"], 6, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("decode"));

    let bad = net.ours(json!({"mtu": "big"}));
    let out = net.run("peapod-bridge", "ADD", "c1", &ns, &bad);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 6);
    let bad = net.config("peapod-bridge", "no-such-ipam", json!({}));
    let out = net.run("peapod-bridge", "ADD", "c1", &ns, &bad);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 7, "{}", out.stdout);
    assert!(!net.link_exists(&net.bridge) || !ip_in(&ns, &["ip", "link"]).contains("eth0"));
}

#[test]
fn check_passes_after_add_and_fails_when_the_address_is_gone() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"ipMasq": true}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    let check = with_prev(&conf, &r);
    let out = net.run("peapod-bridge", "CHECK", "c1", &ns, &check);
    out.assert_ok();
    assert!(out.stdout.is_empty());
    ip_in(&ns, &["ip", "addr", "del", &address(&r), "dev", "eth0"]);
    let out = net.run("peapod-bridge", "CHECK", "c1", &ns, &check);
    assert!(!out.ok, "CHECK passed without the address");
    assert!(
        out.json()["msg"].as_str().unwrap().contains(&address(&r)),
        "{}",
        out.stdout
    );
    // A missing masquerade chain fails CHECK too.
    // (removing the address took the default route with it)
    ip_in(&ns, &["ip", "addr", "add", &address(&r), "dev", "eth0"]);
    ip_in(
        &ns,
        &["ip", "route", "add", "default", "via", &net.gateway()],
    );
    net.run("peapod-bridge", "CHECK", "c1", &ns, &check)
        .assert_ok();
    net.in_host(|| cni::masq::teardown(&net.name, "c1"))
        .unwrap();
    let out = net.run("peapod-bridge", "CHECK", "c1", &ns, &check);
    assert!(
        !out.ok && out.stdout.contains("masquerade"),
        "{}",
        out.stdout
    );
    ip_in(&ns, &["ip", "addr", "del", &address(&r), "dev", "eth0"]);
    // The address is gone from the link, but DEL still cleans the rules up.
    net.run("peapod-bridge", "DEL", "c1", &ns, &check)
        .assert_ok();
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
}

#[test]
fn result_follows_config_version() {
    let mut net = Net::new();
    let ns = net.netns();
    let mut conf = net.ours(json!({}));
    conf["cniVersion"] = json!("0.4.0");
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(r["ips"][0]["version"], "4");
    net.run("peapod-bridge", "DEL", "c1", &ns, &conf)
        .assert_ok();
}

#[test]
fn gc_and_status_forward_to_ipam_and_drop_stale_chains() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let mut conf = net.ours(json!({"ipMasq": true}));
    conf["cniVersion"] = json!("1.1.0");
    net.run("peapod-bridge", "ADD", "keep", &a, &conf).result();
    net.run("peapod-bridge", "ADD", "stale", &b, &conf).result();
    assert_eq!(net.masq_rules().len(), 6);
    net.run("peapod-bridge", "STATUS", "", Path::new(""), &conf)
        .assert_ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    net.run("peapod-bridge", "GC", "", Path::new(""), &gc)
        .assert_ok();
    let rules = net.masq_rules();
    assert_eq!(rules.len(), 3, "{rules:#?}");
    assert!(rules.iter().all(|l| l.contains("id: \\\"keep\\\"")));
    assert_eq!(net.reserved().len(), 1);
}

#[test]
fn reference_bridge_with_peapod_host_local() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let conf = net.config("bridge", "peapod-host-local", json!({"ipMasq": true}));
    let ra = net.run("bridge", "ADD", "a", &a, &conf).result();
    let rb = net.run("bridge", "ADD", "b", &b, &conf).result();
    assert!(pings(&a, &host_ip(&rb)));
    assert!(pings(&a, &net.gateway()));
    assert_eq!(net.reserved().len(), 2);
    net.run("bridge", "CHECK", "a", &a, &with_prev(&conf, &ra))
        .assert_ok();
    net.run("bridge", "DEL", "a", &a, &with_prev(&conf, &ra))
        .assert_ok();
    net.run("bridge", "DEL", "b", &b, &with_prev(&conf, &rb))
        .assert_ok();
    assert!(net.reserved().is_empty());
}

#[test]
fn peapod_bridge_with_reference_host_local() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let conf = net.config("peapod-bridge", "host-local", json!({"ipMasq": true}));
    let ra = net.run("peapod-bridge", "ADD", "a", &a, &conf).result();
    let rb = net.run("peapod-bridge", "ADD", "b", &b, &conf).result();
    assert_ne!(address(&ra), address(&rb));
    assert!(pings(&b, &host_ip(&ra)));
    assert!(pings(&b, &net.gateway()));
    net.run("peapod-bridge", "CHECK", "a", &a, &with_prev(&conf, &ra))
        .assert_ok();
    net.run("peapod-bridge", "DEL", "a", &a, &with_prev(&conf, &ra))
        .assert_ok();
    net.run("peapod-bridge", "DEL", "b", &b, &with_prev(&conf, &rb))
        .assert_ok();
    assert!(net.reserved().is_empty());
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
}

#[test]
fn reference_bridge_del_cleans_peapod_masq_chain() {
    // Same chain names and comments as the reference, so either plugin can tear down the other's rules.
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"ipMasq": true}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    let mut reference = with_prev(&conf, &r);
    reference["type"] = json!("bridge");
    net.run("bridge", "DEL", "c1", &ns, &reference).assert_ok();
    assert!(net.masq_rules().is_empty(), "{:#?}", net.masq_rules());
}

#[test]
fn failed_add_releases_its_address_and_veth() {
    let mut net = Net::new();
    let ns = net.netns();
    // eth0 already taken in the pod: ADD must fail after IPAM, and undo it.
    // (a veth pair: this kernel has no dummy driver)
    ip_in(
        &ns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    assert!(ip_in(&ns, &["ip", "link"]).contains("eth0"));
    let conf = net.ours(json!({"ipMasq": true}));
    let out = net.run("peapod-bridge", "ADD", "c1", &ns, &conf);
    assert!(!out.ok, "ADD succeeded over an existing eth0");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("eth0"),
        "{}",
        out.stdout
    );
    assert!(net.reserved().is_empty(), "{:?}", net.reserved());
    assert!(net.masq_rules().is_empty());
    let veths = net.host_out(&["ip", "-o", "link", "show", "master", &net.bridge]);
    assert!(veths.is_empty(), "{veths}");
}

#[test]
fn concurrent_adds_create_the_bridge_once_and_get_distinct_addresses() {
    let mut net = Net::new();
    let namespaces: Vec<PathBuf> = (0..8).map(|_| net.netns()).collect();
    let conf = net.ours(json!({"ipMasq": true}));
    let ids: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let (net_ref, conf) = (&net, &conf);
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .zip(&namespaces)
            .map(|(id, ns)| {
                s.spawn(move || run_plugin(net_ref, "peapod-bridge", "ADD", id, ns, conf))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().result())
            .collect()
    });
    let mut addrs: Vec<String> = results.iter().map(address).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 8);
    assert!(pings(&namespaces[0], &host_ip(&results[7])));
    assert_eq!(net.masq_rules().len(), 24);
}

#[test]
fn ipam_route_without_gw_goes_via_the_gateway() {
    let mut net = Net::new();
    let ns = net.netns();
    let mut conf = net.ours(json!({"isDefaultGateway": false, "isGateway": true}));
    conf["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
    let routes = ip_in(&ns, &["ip", "route"]);
    assert!(
        routes.contains(&format!("default via {}", net.gateway())),
        "{routes}"
    );
    let bridge = net.host_out(&["ip", "-o", "-4", "addr", "show", "dev", &net.bridge]);
    assert!(
        bridge.contains(&format!("{}/24", net.gateway())),
        "{bridge}"
    );
    assert!(pings(&ns, &net.gateway()));
}

#[test]
fn hairpin_promisc_and_their_conflict() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let conf = net.ours(json!({"hairpinMode": true}));
    let r = net.run("peapod-bridge", "ADD", "a", &a, &conf).result();
    let veth = r["interfaces"][1]["name"].as_str().unwrap();
    let path = format!("/sys/class/net/{veth}/brport/hairpin_mode");
    let hairpin = net.host_sh(&["cat", &path]);
    assert_eq!(
        String::from_utf8_lossy(&hairpin.stdout).trim(),
        "1",
        "{hairpin:?}"
    );
    let promisc = net.ours(json!({"promiscMode": true}));
    net.run("peapod-bridge", "ADD", "b", &b, &promisc).result();
    let link = net.host_out(&["ip", "-o", "link", "show", &net.bridge]);
    assert!(link.contains("PROMISC"), "{link}");
    let both = net.ours(json!({"promiscMode": true, "hairpinMode": true}));
    let out = net.run("peapod-bridge", "ADD", "c", &b, &both);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 7);
}

/// Whether this kernel can filter bridge traffic by VLAN (CONFIG_BRIDGE_VLAN_FILTERING).
fn kernel_filters_vlans(net: &Net) -> bool {
    let probe = format!("{}v", net.bridge);
    let out = net.host_sh(&[
        "ip",
        "link",
        "add",
        &probe,
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    net.host_sh(&["ip", "link", "del", &probe]);
    out.status.success()
}

/// `bridge -j vlan show dev PORT` as (vid, pvid, untagged) entries.
fn port_vlans(net: &Net, port: &str) -> Vec<(u64, bool, bool)> {
    let out = net.host_sh(&["bridge", "-j", "vlan", "show", "dev", port]);
    let ports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let Some(entry) = ports.as_array().and_then(|p| p.first()) else {
        return Vec::new();
    };
    entry["vlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let flags = v["flags"].to_string();
            (
                v["vlan"].as_u64().unwrap(),
                flags.contains("PVID"),
                flags.contains("Untagged"),
            )
        })
        .collect()
}

#[test]
fn vlan_makes_an_access_port_with_its_own_gateway() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    let bad = net.ours(json!({"vlanTrunk": [{"minID": 9, "maxID": 5}]}));
    let out = net.run("peapod-bridge", "ADD", "a", &a, &bad);
    assert_eq!(out.json()["code"], 7, "{}", out.stdout);
    assert!(out.stdout.contains("vlanTrunk"), "{}", out.stdout);
    let conf = net.ours(json!({"vlan": 100, "ipMasq": true}));
    if !kernel_filters_vlans(&net) {
        // This kernel cannot do it: a clear error naming the field, and nothing half-made left.
        let out = net.run("peapod-bridge", "ADD", "a", &a, &conf);
        assert!(!out.ok);
        let err = out.json();
        assert_eq!(err["code"], 2, "{err}");
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains("vlan=100") && msg.contains("CONFIG_BRIDGE_VLAN_FILTERING"),
            "{msg}"
        );
        assert!(net.reserved().is_empty(), "{:?}", net.reserved());
        assert!(net.masq_rules().is_empty());
        let veths = net.host_sh(&["ip", "-o", "link", "show", "type", "veth"]);
        assert!(veths.stdout.is_empty(), "{veths:?}");
        return;
    }
    let ra = net.run("peapod-bridge", "ADD", "a", &a, &conf).result();
    let rb = net.run("peapod-bridge", "ADD", "b", &b, &conf).result();
    for r in [&ra, &rb] {
        let port = r["interfaces"][1]["name"].as_str().unwrap();
        // Access port of VLAN 100 only: the default VLAN 1 is gone.
        assert_eq!(port_vlans(&net, port), vec![(100, true, true)], "{port}");
    }
    let gateway = format!("{}.100", net.bridge);
    assert_eq!(ra["interfaces"][3]["name"], gateway);
    let addrs = net.host_out(&["ip", "-o", "addr", "show", &gateway]);
    assert!(addrs.contains(&format!("{}/24", net.gateway())), "{addrs}");
    assert!(pings(&a, &net.gateway()), "no path to the VLAN gateway");
    assert!(pings(&a, &host_ip(&rb)), "a cannot reach b on VLAN 100");
    net.run("peapod-bridge", "CHECK", "a", &a, &with_prev(&conf, &ra))
        .assert_ok();
    for (id, ns, r) in [("a", &a, &ra), ("b", &b, &rb)] {
        net.run("peapod-bridge", "DEL", id, ns, &with_prev(&conf, r))
            .assert_ok();
    }
    assert!(net.reserved().is_empty());
    assert!(net.masq_rules().is_empty());
}

#[test]
fn force_address_replaces_a_foreign_bridge_address() {
    let mut net = Net::new();
    let (a, b) = (net.netns(), net.netns());
    assert!(net
        .host_sh(&["ip", "link", "add", &net.bridge, "type", "bridge"])
        .status
        .success());
    let foreign = format!("{}.200/24", net.prefix);
    assert!(net
        .host_sh(&["ip", "addr", "add", &foreign, "dev", &net.bridge])
        .status
        .success());
    let conf = net.ours(json!({}));
    let out = net.run("peapod-bridge", "ADD", "a", &a, &conf);
    assert!(!out.ok, "ADD kept a foreign gateway address");
    assert!(net.reserved().is_empty(), "failed ADD kept its IP");
    let forced = net.ours(json!({"forceAddress": true}));
    net.run("peapod-bridge", "ADD", "b", &b, &forced).result();
    let addrs = net.host_out(&["ip", "-o", "-4", "addr", "show", "dev", &net.bridge]);
    assert!(!addrs.contains(&foreign), "{addrs}");
    assert!(addrs.contains(&format!("{}/24", net.gateway())), "{addrs}");
}

#[test]
fn disabled_container_interface_stays_down_without_addresses() {
    let mut net = Net::new();
    let ns = net.netns();
    let conf = net.ours(json!({"disableContainerInterface": true}));
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(r["interfaces"][2]["name"], "eth0");
    let link = ip_in(&ns, &["ip", "-o", "link", "show", "eth0"]);
    assert!(!link.contains(",UP"), "{link}");
    assert!(!ip_in(&ns, &["ip", "-o", "-4", "addr"]).contains(&address(&r)));
    net.run("peapod-bridge", "DEL", "c1", &ns, &conf)
        .assert_ok();
    assert!(net.reserved().is_empty());
}

#[test]
fn dual_stack_pod_reaches_both_gateways_at_once() {
    let mut net = Net::new();
    let ns = net.netns();
    let n = net.prefix.rsplit('.').next().unwrap().to_string();
    let v6 = format!("fd00:{:x}:{n}::", std::process::id() % 0xffff);
    let mut conf = net.ours(json!({"ipMasq": true}));
    conf["ipam"] = json!({
        "type": "peapod-host-local",
        "ranges": [[{"subnet": format!("{}.0/24", net.prefix)}], [{"subnet": format!("{v6}/64")}]],
        "dataDir": net.data.path(),
    });
    let r = net.run("peapod-bridge", "ADD", "c1", &ns, &conf).result();
    assert_eq!(r["ips"].as_array().unwrap().len(), 2);
    assert_eq!(r["ips"][1]["address"], format!("{v6}2/64"));
    assert_eq!(
        r["routes"][1],
        json!({"dst": "::/0", "gw": format!("{v6}1")})
    );
    // No DAD wait: the address is usable right after ADD.
    let global = ip_in(
        &ns,
        &["ip", "-o", "-6", "addr", "show", "eth0", "scope", "global"],
    );
    assert!(
        global.contains(&format!("{v6}2/64")) && !global.contains("tentative"),
        "{global}"
    );
    assert!(pings(&ns, &net.gateway()));
    assert!(pings(&ns, &format!("{v6}1")), "no IPv6 path to the gateway");
    let v6_rules = net.host_out(&["ip6tables", "-w", "-t", "nat", "-S"]);
    assert!(v6_rules.contains(&format!("-s {v6}2/128")), "{v6_rules}");
    net.run("peapod-bridge", "DEL", "c1", &ns, &with_prev(&conf, &r))
        .assert_ok();
    let v6_rules = net.host_out(&["ip6tables", "-w", "-t", "nat", "-S"]);
    assert!(!v6_rules.contains(&net.name), "{v6_rules}");
    assert!(net.masq_rules().is_empty());
}

#[test]
fn macspoofchk_drops_frames_with_a_foreign_source_mac() {
    let mut net = Net::new();
    let ns = net.netns();
    // Container ids are unique per test run so the shared `bridge nat` table never mixes tests.
    let id = format!("{}-spoof", net.name);
    let conf = net.ours(json!({"macspoofchk": true}));
    let r = net.run("peapod-bridge", "ADD", &id, &ns, &conf).result();
    let table = net.host_out(&["nft", "list", "table", "bridge", "nat"]);
    let mac = r["interfaces"][2]["mac"].as_str().unwrap();
    assert!(
        table.contains(&format!("ether saddr {mac} return")),
        "{table}"
    );
    assert!(table.contains(&format!("macspoofchk-{id}-eth0")));
    assert!(pings(&ns, &net.gateway()));
    ip_in(
        &ns,
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:99"],
    );
    assert!(!pings(&ns, &net.gateway()), "a spoofed MAC got through");
    net.run("peapod-bridge", "DEL", &id, &ns, &with_prev(&conf, &r))
        .assert_ok();
    let table = net.host_out(&["nft", "list", "table", "bridge", "nat"]);
    assert!(!table.contains(&id), "{table}");
    // GC drops the chains of attachments the runtime no longer knows.
    let mut gc_conf = conf.clone();
    gc_conf["cniVersion"] = json!("1.1.0");
    let ns2 = net.netns();
    net.run("peapod-bridge", "ADD", &id, &ns2, &gc_conf)
        .result();
    gc_conf["cni.dev/valid-attachments"] = json!([]);
    net.run("peapod-bridge", "GC", "", Path::new(""), &gc_conf)
        .assert_ok();
    let table = net.host_out(&["nft", "list", "table", "bridge", "nat"]);
    assert!(!table.contains(&id), "{table}");
}
