//! A resolv.conf file (host-local's `resolvConf`) turned into a result's `dns`.

use crate::spec::Dns;
use std::path::Path;

/// The DNS settings of resolv.conf text: `nameserver`, `domain`, `search` and `options` lines.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The DNS settings of the resolv.conf at `path`.
pub fn read(path: &Path) -> std::io::Result<Dns> {
    std::fs::read_to_string(path).map(|t| parse(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_keys() {
        let dns = parse(
            "# comment\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.com\n\
             search a.example b.example\noptions ndots:5 rotate\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(dns.domain.as_deref(), Some("example.com"));
        assert_eq!(dns.search, ["a.example", "b.example"]);
        assert_eq!(dns.options, ["ndots:5", "rotate"]);
    }
}
