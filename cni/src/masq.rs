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
//! Rules are read with `iptables -w -S` and changed with one `iptables-restore -w --noflush`
//! transaction per family (the xtables lock serialises concurrent plugins).

use crate::spec::Cidr;
use sha2::{Digest, Sha512};
use std::io::Write;
use std::process::{Command, Stdio};

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
///
/// Each family is one `iptables-restore --noflush` transaction: with the nft
/// backend every separate iptables call is a kernel commit costing several
/// milliseconds, and one transaction also leaves no half-built chain behind.
/// Declaring the chain flushes a leftover from an interrupted earlier ADD.
pub fn setup(network: &str, container_id: &str, ips: &[Cidr]) -> Result<(), Error> {
    let chain = chain_name(network, container_id);
    let comment = quote(&comment(network, container_id));
    for v4 in [true, false] {
        let family: Vec<&Cidr> = ips.iter().filter(|ip| ip.addr.is_ipv4() == v4).collect();
        if family.is_empty() {
            continue;
        }
        let mut script = format!("*nat\n:{chain} - [0:0]\n");
        for ip in &family {
            let subnet = ip.to_network();
            script += &format!("-A {chain} -d {subnet} -m comment --comment {comment} -j ACCEPT\n");
        }
        let multicast = if v4 { "224.0.0.0/4" } else { "ff00::/8" };
        script +=
            &format!("-A {chain} ! -d {multicast} -m comment --comment {comment} -j MASQUERADE\n");
        for ip in &family {
            let host = if v4 { 32 } else { 128 };
            script += &format!(
                "-A POSTROUTING -s {}/{host} -m comment --comment {comment} -j {chain}\n",
                ip.addr
            );
        }
        script += "COMMIT\n";
        restore(tool(family[0]), &script)?;
    }
    Ok(())
}

/// Whether the attachment's chain exists (for CHECK).
pub fn exists(network: &str, container_id: &str) -> bool {
    let chain = chain_name(network, container_id);
    ["iptables", "ip6tables"]
        .iter()
        .any(|tool| iptables(tool, &["-t", "nat", "-S", &chain]).is_ok())
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
    let Ok(rules) = iptables(tool, &["-t", "nat", "-S"]) else {
        return Ok(());
    };
    let mut script = String::from("*nat\n");
    let mut exists = false;
    for rule in rules.lines() {
        let words = split_rule(rule);
        match words.first().map(String::as_str) {
            Some("-N") if words.get(1).map(String::as_str) == Some(chain) => exists = true,
            Some("-A")
                if words.get(1).is_some_and(|c| c != chain)
                    && words.windows(2).any(|w| w[0] == "-j" && w[1] == chain) =>
            {
                let args: Vec<String> = words[1..].iter().map(|w| quote(w)).collect();
                script += &format!("-D {}\n", args.join(" "));
                exists = true;
            }
            _ => {}
        }
    }
    if !exists {
        return Ok(());
    }
    script += &format!("-F {chain}\n-X {chain}\nCOMMIT\n");
    restore(tool, &script)
}

/// A word for an iptables-restore line: quoted (with `\"` escapes) when it has spaces or quotes.
fn quote(word: &str) -> String {
    if word.is_empty() || word.contains([' ', '"', '\\']) {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        word.to_string()
    }
}

/// Applies `script` with `<tool>-restore -w --noflush` as one transaction.
fn restore(tool: &str, script: &str) -> Result<(), Error> {
    let restore = format!("{tool}-restore");
    let cmd = format!("{restore} -w --noflush");
    let mut child = Command::new(locate(&restore))
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output().map_err(|source| Error::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    if !out.status.success() || matches!(written, Some(Err(_))) {
        return Err(Error::Failed {
            cmd,
            stderr: format!(
                "{} (input: {script:?})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
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
    fn quotes_round_trip_through_split() {
        let c = comment("n", "c1");
        assert_eq!(quote(&c), r#""name: \"n\" id: \"c1\"""#);
        assert_eq!(split_rule(&format!("-A X --comment {}", quote(&c)))[3], c);
        assert_eq!(quote("-j"), "-j");
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
