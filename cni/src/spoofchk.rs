//! MAC spoof checking (`macspoofchk`): nftables rules dropping frames from a pod port with a foreign source MAC.
//!
//! Same layout as the reference plugins: table `bridge nat`, base chain
//! `PREROUTING` (filter hook, priority -300), and per attachment the chains
//! `cni-br-iface-<ref>` and `cni-br-iface-<ref>-mac` where `<ref>` is
//! `<containerID>-<ifname>`; every rule is commented `macspoofchk-<ref>`.
//! Setup is one `nft -f` transaction; teardown finds the jump by its comment,
//! so it needs neither the host veth nor the MAC.

use std::io::Write;
use std::process::{Command, Stdio};

/// Errors from running nft.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// nft could not be run.
    #[error("failed to run nft: {0}")]
    Spawn(#[source] std::io::Error),
    /// nft exited non-zero.
    #[error("nft failed: {0}")]
    Failed(String),
}

const TABLE: &str = "bridge nat";

/// The reference id of an attachment.
fn reference(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut child = Command::new(locate())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(script) = stdin {
        // A write error means nft exited early; its status and stderr say why.
        let _ = input.write_all(script.as_bytes());
    }
    drop(input);
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft` from `PATH`, else from the sbin directories runtimes tend to leave out of `PATH`.
fn locate() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "nft".into())
}

/// Lets frames from `host_veth` into the bridge only with source MAC `mac`.
pub fn setup(container_id: &str, ifname: &str, host_veth: &str, mac: &str) -> Result<(), Error> {
    let r = reference(container_id, ifname);
    let (iface, mac_chain) = (format!("cni-br-iface-{r}"), format!("cni-br-iface-{r}-mac"));
    let comment = format!("comment \"macspoofchk-{r}\"");
    let script = format!(
        "add table {TABLE}\n\
         add chain {TABLE} PREROUTING {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add chain {TABLE} {iface}\n\
         add chain {TABLE} {mac_chain}\n\
         flush chain {TABLE} {iface}\n\
         flush chain {TABLE} {mac_chain}\n\
         add rule {TABLE} PREROUTING iifname \"{host_veth}\" jump {iface} {comment}\n\
         add rule {TABLE} {iface} jump {mac_chain} {comment}\n\
         add rule {TABLE} {mac_chain} ether saddr {mac} return {comment}\n\
         add rule {TABLE} {mac_chain} drop {comment}\n"
    );
    nft(&["-f", "-"], Some(&script)).map(drop)
}

/// The references (`<containerID>-<ifname>`) of every attachment with spoof-check rules.
pub fn attachments() -> Result<Vec<String>, Error> {
    let Ok(listing) = nft(&["list", "table", "bridge", "nat"], None) else {
        return Ok(Vec::new());
    };
    let mut refs: Vec<String> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain cni-br-iface-"))
        .filter_map(|rest| rest.strip_suffix(" {"))
        .filter(|r| !r.ends_with("-mac"))
        .map(str::to_string)
        .collect();
    refs.dedup();
    Ok(refs)
}

/// Whether `reference` (from [`attachments`]) belongs to the attachment `(container_id, ifname)`.
pub fn is_reference_of(reference_id: &str, container_id: &str, ifname: &str) -> bool {
    reference_id == reference(container_id, ifname)
}

/// Removes the attachment's jump and chains; absent ones are fine.
pub fn teardown(container_id: &str, ifname: &str) -> Result<(), Error> {
    teardown_reference(&reference(container_id, ifname))
}

/// [`teardown`] by reference, for GC, which knows only what [`attachments`] listed.
pub fn teardown_reference(r: &str) -> Result<(), Error> {
    let (iface, mac_chain) = (format!("cni-br-iface-{r}"), format!("cni-br-iface-{r}-mac"));
    let Ok(listing) = nft(&["-a", "list", "table", "bridge", "nat"], None) else {
        return Ok(()); // no table, nothing of ours
    };
    let comment = format!("comment \"macspoofchk-{r}\"");
    let mut script = String::new();
    let mut chain = "";
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("");
        } else if chain == "PREROUTING" && line.contains(&format!("jump {iface} ")) {
            if let Some(handle) = line
                .rsplit("# handle ")
                .next()
                .filter(|_| line.contains(&comment))
            {
                script += &format!("delete rule {TABLE} PREROUTING handle {}\n", handle.trim());
            }
        }
    }
    for name in [&iface, &mac_chain] {
        if listing.contains(&format!("chain {name} {{")) {
            script += &format!("flush chain {TABLE} {name}\n");
        }
    }
    for name in [&iface, &mac_chain] {
        if listing.contains(&format!("chain {name} {{")) {
            script += &format!("delete chain {TABLE} {name}\n");
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], Some(&script)).map(drop)
}
