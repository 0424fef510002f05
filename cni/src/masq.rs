//! IP masquerade for pods: one iptables nat chain per attachment, as the reference plugins lay it out.
//!
//! For network `net` and container `id` the chain is `CNI-<24 hex of sha512(net+id)>`
//! (the reference's `utils.FormatChainName`), every rule carries the comment
//! `name: "<net>" id: "<id>"`, the chain accepts traffic to the pod's own
//! subnets and masquerades the rest except multicast, and `POSTROUTING`
//! jumps to it for the pod's source address. Teardown needs only the name
//! and id — never the pod's addresses — so it works when the netns or the
//! interface are already gone (the reference leaks there, plugins#810).
//!
//! iptables is run as `iptables -w` (the xtables lock serialises concurrent plugins).

use crate::spec::Cidr;
use sha2::{Digest, Sha512};
use std::process::Command;

/// Errors from running iptables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The iptables binary could not be run.
    #[error("failed to run {cmd}: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// iptables exited non-zero.
    #[error("{cmd} failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// What iptables printed on stderr.
        stderr: String,
    },
}

/// The per-attachment chain name, identical to the reference plugins' `FormatChainName`.
pub fn chain_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

/// The comment on every rule of an attachment, as the reference writes it.
pub fn comment(network: &str, container_id: &str) -> String {
    format!("name: \"{network}\" id: \"{container_id}\"")
}

fn tool(ip: &Cidr) -> &'static str {
    if ip.addr.is_ipv4() {
        "iptables"
    } else {
        "ip6tables"
    }
}

/// Where iptables lives when the runtime gave the plugin a `PATH` without the sbin dirs.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// `tool` as found on `PATH`, else in the usual sbin directories, else the bare name.
fn locate(tool: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(std::path::PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| tool.into())
}

fn iptables(tool: &str, args: &[&str]) -> Result<String, Error> {
    let cmd = format!("{tool} -w {}", args.join(" "));
    let out = Command::new(locate(tool))
        .arg("-w")
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the chain and the POSTROUTING jump for the pod addresses `ips`.
pub fn setup(network: &str, container_id: &str, ips: &[Cidr]) -> Result<(), Error> {
    let chain = chain_name(network, container_id);
    let comment = comment(network, container_id);
    for ip in ips {
        let tool = tool(ip);
        // A leftover chain from an earlier, interrupted ADD is reused after a flush.
        if iptables(tool, &["-t", "nat", "-N", &chain]).is_err() {
            iptables(tool, &["-t", "nat", "-F", &chain])?;
        }
        let subnet = ip.to_network().to_string();
        let c = comment.as_str();
        iptables(
            tool,
            &[
                "-t",
                "nat",
                "-A",
                &chain,
                "-d",
                &subnet,
                "-j",
                "ACCEPT",
                "-m",
                "comment",
                "--comment",
                c,
            ],
        )?;
        let multicast = if ip.addr.is_ipv4() {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        };
        iptables(
            tool,
            &[
                "-t",
                "nat",
                "-A",
                &chain,
                "!",
                "-d",
                multicast,
                "-j",
                "MASQUERADE",
                "-m",
                "comment",
                "--comment",
                c,
            ],
        )?;
        let host = if ip.addr.is_ipv4() { 32 } else { 128 };
        let source = format!("{}/{host}", ip.addr);
        iptables(
            tool,
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                &source,
                "-j",
                &chain,
                "-m",
                "comment",
                "--comment",
                c,
            ],
        )?;
    }
    Ok(())
}

/// Removes the jumps and the chain of an attachment; absent rules are fine.
pub fn teardown(network: &str, container_id: &str) -> Result<(), Error> {
    let chain = chain_name(network, container_id);
    for tool in ["iptables", "ip6tables"] {
        remove_chain(tool, &chain)?;
    }
    Ok(())
}

fn remove_chain(tool: &str, chain: &str) -> Result<(), Error> {
    // ip6tables may be unusable on hosts without IPv6; nothing of ours can be there then.
    let Ok(rules) = iptables(tool, &["-t", "nat", "-S", "POSTROUTING"]) else {
        return Ok(());
    };
    for rule in rules.lines() {
        let words = split_rule(rule);
        let jumps = words.windows(2).any(|w| w[0] == "-j" && w[1] == chain);
        if jumps && words.first().map(String::as_str) == Some("-A") {
            let mut args: Vec<&str> = vec!["-t", "nat", "-D"];
            args.extend(words[1..].iter().map(String::as_str));
            iptables(tool, &args)?;
        }
    }
    if iptables(tool, &["-t", "nat", "-S", chain]).is_ok() {
        iptables(tool, &["-t", "nat", "-F", chain])?;
        iptables(tool, &["-t", "nat", "-X", chain])?;
    }
    Ok(())
}

/// The container ids that have a masquerade chain on `network` (read from the rule comments).
pub fn attachments(network: &str) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    let prefix = format!("name: \"{network}\" id: \"");
    for tool in ["iptables", "ip6tables"] {
        let Ok(rules) = iptables(tool, &["-t", "nat", "-S"]) else {
            continue;
        };
        for rule in rules.lines() {
            let words = split_rule(rule);
            let Some(pos) = words.iter().position(|w| w == "--comment") else {
                continue;
            };
            let Some(id) = words
                .get(pos + 1)
                .and_then(|c| c.strip_prefix(&prefix))
                .and_then(|rest| rest.strip_suffix('"'))
            else {
                continue;
            };
            let in_own_chain = words.get(1).is_some_and(|c| *c == chain_name(network, id));
            if in_own_chain && !ids.iter().any(|i| i == id) {
                ids.push(id.to_string());
            }
        }
    }
    Ok(ids)
}

/// Splits an `iptables -S` line into words, honouring double quotes and `\"` escapes.
fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'"') => {
                word.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_name_is_short_and_stable() {
        let name = chain_name("net", "abc");
        assert_eq!(name.len(), 28);
        assert!(name.starts_with("CNI-"));
        assert_eq!(name, chain_name("net", "abc"));
        assert_ne!(name, chain_name("net", "abd"));
    }

    #[test]
    fn splits_quoted_comments() {
        let words = split_rule(
            r#"-A POSTROUTING -s 10.1.0.2/32 -m comment --comment "name: \"n\" id: \"c1\"" -j CNI-x"#,
        );
        assert_eq!(words[7], r#"name: "n" id: "c1""#);
        assert_eq!(words[9], "CNI-x");
    }
}
