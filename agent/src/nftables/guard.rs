//! The SSH lockout guard for owned nftables tables (SPEC section 6), beside the iptables one.
//!
//! An nf_tables packet passes a hook only if EVERY base chain registered there lets it through,
//! whichever table (and layer: iptables-nft's, iptables-legacy's, a neighbour's, hostguard's)
//! holds the chain: `accept` ends one base chain, `drop` ends the packet. So the session this run
//! comes from (`SSH_CONNECTION`: TCP, client to server port, conntrack state established) is
//! dropped by the apply if any base chain the apply writes at `prerouting` or `input` would drop
//! it. Chains the apply does not write let the session through today — it is running through them
//! — and iptables' own chains are walked by the iptables guard; so each owned table that changes
//! is walked here, every base chain of it at those hooks, in priority order.
//!
//! As the iptables walk, conservative: a `drop`, `reject` or `queue` whose match cannot be decided
//! (a set lookup, an interface, an expression not modelled) counts as dropping; an `accept` counts
//! only when its match certainly holds.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::iptables::guard::{Session, Verdict};
use crate::iptables::walk::M;
use crate::state::nftables::split_top_level;

use super::listing::{Chain, Table};

impl M {
    fn of(b: bool) -> M {
        if b { M::Yes } else { M::No }
    }
}

/// Refuse when writing one of `tables` (the owned tables this apply replaces, as nft will list
/// them) would drop the SSH session `s` (the one this run comes from).
pub fn check_ssh<'a>(tables: impl Iterator<Item = &'a Table>, s: Option<&Session>) -> Result<()> {
    let Some(s) = s else { return Ok(()) };
    for t in tables {
        if let Some(why) = drops(t, s) {
            return Err(Error::Refused(format!(
                "refusing to apply: the new table {} {} would drop the SSH session this runs from ({} port {} -> {} port {}): {why}. \
                 Accept it first (e.g. \"tcp dport {} accept\" or \"ct state established,related accept\" at the top of that chain), \
                 or pass --force; consider --confirm SECONDS",
                t.family, t.name, s.client, s.client_port, s.server, s.server_port, s.server_port
            )));
        }
    }
    Ok(())
}

/// Why the session's packets would be dropped by one of the table's base chains at `prerouting`
/// or `input`, walked in priority order; `None` when every one lets them through.
pub fn drops(t: &Table, s: &Session) -> Option<String> {
    let fam_ok = match t.family.as_str() {
        "inet" => true,
        "ip" => s.client.is_ipv4(),
        "ip6" => !s.client.is_ipv4(),
        _ => false,
    };
    if !fam_ok {
        return None;
    }
    let mut bases: Vec<(i32, &String, &Chain, String)> = t
        .chains
        .iter()
        .filter_map(|(n, c)| {
            let h = c.hook(&t.family)?;
            matches!(h.hook.as_str(), "prerouting" | "input").then_some((h.priority, n, c, h.policy))
        })
        .collect();
    bases.sort_by_key(|b| b.0);
    for (prio, name, _, policy) in bases {
        let v = match walk(t, name, s, 0) {
            Verdict::Continue if policy == "drop" => Verdict::Drop("no rule accepts it and the policy is drop".into()),
            v => v,
        };
        if let Verdict::Drop(why) = v {
            return Some(format!("base chain {name} (priority {prio}): {why}"));
        }
    }
    None
}

fn walk(t: &Table, chain: &str, s: &Session, depth: usize) -> Verdict {
    if depth > 16 {
        return Verdict::Continue;
    }
    let Some(c) = t.chains.get(chain) else { return Verdict::Continue };
    // As in the iptables walk: once a `return` (or a `goto` whose chain ends) may have been
    // taken, an `accept` after it decides nothing; a `drop` still does.
    let mut may_have_returned = false;
    let accept = |may_have_returned: bool| if may_have_returned { Verdict::Continue } else { Verdict::Accept };
    for rule in &c.rules {
        let (m, verdict) = rule_match(&with_maps(t, rule), s);
        if m == M::No {
            continue;
        }
        let Some(verdict) = verdict else { continue };
        match verdict {
            V::Accept if m == M::Yes => return accept(may_have_returned),
            V::Drop => return Verdict::Drop(format!("the rule `{rule}` in chain {chain}")),
            V::Return if m == M::Yes => return Verdict::Continue,
            V::Return => may_have_returned = true,
            V::Jump(target, goto) => match walk(t, &target, s, depth + 1) {
                Verdict::Drop(why) => return Verdict::Drop(why),
                Verdict::Accept if m == M::Yes => return accept(may_have_returned),
                Verdict::Continue if goto && m == M::Yes => return Verdict::Continue,
                Verdict::Continue if goto => may_have_returned = true,
                _ => {}
            },
            _ => {}
        }
    }
    Verdict::Continue
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Accept,
    Drop,
    Return,
    Continue,
    /// `jump`/`goto` (true) a chain.
    Jump(String, bool),
}

/// Whether the rule's match holds for the session's packets, and its verdict.
fn rule_match(rule: &str, s: &Session) -> (M, Option<V>) {
    let w = tokens(rule);
    let v4 = s.client.is_ipv4();
    let mut m = M::Yes;
    let mut i = 0;
    let at = |k: usize| w.get(k).map(String::as_str).unwrap_or("");
    while i < w.len() {
        // `SELECTOR [op] VALUE`: the value is at `i + n`, after an optional operator.
        let op_value = |n: usize| -> (bool, M, &str, usize) {
            match at(i + n) {
                "!=" => (true, M::Yes, at(i + n + 1), n + 2),
                "==" => (false, M::Yes, at(i + n + 1), n + 2),
                "<" | ">" | "<=" | ">=" => (false, M::Unknown, at(i + n + 1), n + 2),
                v => (false, M::Yes, v, n + 1),
            }
        };
        let word = at(i);
        if let Some(n) = (1..=2).find(|&n| at(i + n) == "vmap") {
            if !(word == "ct" && at(i + 1) == "state") {
                // A verdict map on anything else: a `drop` in it may be the session's; a jump in
                // it is not followed (which key the session has is not known).
                let values = vmap_values(at(i + n + 1));
                let drop = values.is_empty() || values.iter().any(|v| v == "drop" || v.starts_with("reject"));
                return (m.and(M::Unknown), drop.then_some(V::Drop));
            }
        }
        let (r, used): (M, usize) = match (word, at(i + 1)) {
            ("accept", _) => return (m, Some(V::Accept)),
            ("drop" | "queue", _) => return (m, Some(V::Drop)),
            ("reject", _) => return (m, Some(V::Drop)),
            ("return", _) => return (m, Some(V::Return)),
            ("continue", _) => return (m, Some(V::Continue)),
            ("jump" | "goto", target) => return (m, Some(V::Jump(target.trim_matches('"').to_string(), word == "goto"))),
            ("ct", "state") if at(i + 2) == "vmap" => {
                // `ct state vmap { established : accept, invalid : drop }`
                let verdict = vmap_for(at(i + 3), "established");
                return (m, verdict);
            }
            ("ct", "state") => {
                let (neg, ok, v, n) = op_value(2);
                (ok.and(M::of(set_words(v).iter().any(|x| x == "established")).not(neg)), n)
            }
            ("tcp" | "th", "dport" | "sport") => {
                let (neg, ok, v, n) = op_value(2);
                let port = if at(i + 1) == "dport" { s.server_port } else { s.client_port };
                (ok.and(port_in(v, port).not(neg)), n)
            }
            ("tcp", "flags") => {
                // `tcp flags syn`, `tcp flags & (syn | ack) == syn`: an established packet
                // carries ack and no syn.
                let eq = (i + 2..(i + 10).min(w.len())).take_while(|&j| !is_verdict(at(j))).find(|&j| at(j) == "==");
                let (value, end) = match eq {
                    Some(j) => (at(j + 1), j + 2),
                    None => (at(i + 2), i + 3),
                };
                (if value == "syn" { M::No } else { M::Unknown }, end - i)
            }
            ("udp" | "udplite" | "sctp" | "dccp" | "icmp" | "icmpv6" | "igmp" | "esp" | "ah", _) => {
                let (_, _, _, n) = op_value(2);
                (M::No, n)
            }
            ("ip", sel) | ("ip6", sel) => {
                let (neg, ok, v, n) = op_value(2);
                let fam_match = (word == "ip") == v4;
                let r = if !fam_match {
                    M::No
                } else {
                    match sel {
                        "saddr" => ok.and(addr_in(v, s.client).not(neg)),
                        "daddr" => ok.and(addr_in(v, s.server).not(neg)),
                        "protocol" | "nexthdr" => ok.and(M::of(set_words(v).iter().any(|x| x == "tcp" || x == "6")).not(neg)),
                        _ => M::Unknown,
                    }
                };
                (r, n)
            }
            ("meta", "l4proto") => {
                let (neg, ok, v, n) = op_value(2);
                (ok.and(M::of(set_words(v).iter().any(|x| x == "tcp" || x == "6")).not(neg)), n)
            }
            ("meta", "nfproto") => {
                let (neg, ok, v, n) = op_value(2);
                let want = if v4 { "ipv4" } else { "ipv6" };
                (ok.and(M::of(set_words(v).iter().any(|x| x == want)).not(neg)), n)
            }
            ("meta", "iifname" | "iif") => {
                let (neg, ok, v, n) = op_value(2);
                (ok.and(iface(v, s).not(neg)), n)
            }
            ("iifname" | "iif", _) => {
                let (neg, ok, v, n) = op_value(1);
                (ok.and(iface(v, s).not(neg)), n)
            }
            ("counter", _) => (M::Yes, 1),
            ("comment", _) => (M::Yes, 2),
            ("log", _) => {
                let mut j = i + 1;
                while matches!(at(j), "prefix" | "level" | "flags" | "group" | "snaplen" | "queue-threshold") {
                    j += 2;
                }
                (M::Yes, j - i)
            }
            // An expression hostguard does not model: undecided, one word at a time.
            _ => (M::Unknown, 1),
        };
        m = m.and(r);
        i += used.max(1);
    }
    (m, None)
}

/// `vmap @name` with the table's map `name` written in: `vmap { k : v, … }`.
fn with_maps(t: &Table, rule: &str) -> String {
    let Some((head, name)) = rule.split_once("vmap @") else { return rule.to_string() };
    let (name, tail) = name.split_once(' ').unwrap_or((name, ""));
    match t.sets.get(name) {
        Some(m) if m.is_map => format!("{head}vmap {{ {} }} {tail}", m.elements.join(", ")),
        _ => rule.to_string(),
    }
}

fn is_verdict(w: &str) -> bool {
    matches!(w, "accept" | "drop" | "reject" | "queue" | "return" | "continue" | "jump" | "goto")
}

/// The rule's words, an anonymous set `{ … }` or a quoted string as one word each.
pub(crate) fn tokens(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted) = (0i32, false);
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            c if c.is_whitespace() && !quoted && depth <= 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `established,related`, `{ established, related }`, `22`: the words of a value.
pub(crate) fn set_words(v: &str) -> Vec<String> {
    let inner = v.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(v);
    inner.split(',').map(|x| x.trim().trim_matches('"').to_string()).filter(|x| !x.is_empty()).collect()
}

/// The verdicts of a verdict map `{ k : v, … }`.
fn vmap_values(v: &str) -> Vec<String> {
    let inner = v.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or("");
    split_top_level(inner, ',').iter().filter_map(|e| e.split_once(':')).map(|(_, v)| v.trim().to_string()).collect()
}

/// The verdict `{ … }` maps `key` to; `Some(Drop)` when undecided and some verdict drops.
fn vmap_for(v: &str, key: &str) -> Option<V> {
    if !v.starts_with('{') {
        return Some(V::Drop); // a named map: undecided
    }
    let inner = v.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or("");
    for e in split_top_level(inner, ',') {
        let Some((k, verdict)) = e.split_once(':') else { continue };
        if k.split(['|', ',']).any(|x| x.trim() == key) {
            return match verdict.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["accept"] => Some(V::Accept),
                ["drop"] | ["reject", ..] => Some(V::Drop),
                ["jump", t] => Some(V::Jump(t.to_string(), false)),
                ["goto", t] => Some(V::Jump(t.to_string(), true)),
                _ => None,
            };
        }
    }
    None
}

fn iface(v: &str, s: &Session) -> M {
    let names = set_words(v);
    if s.client.is_loopback() {
        return M::Unknown;
    }
    // The session does not arrive on the loopback; any other name may be its interface.
    if !names.is_empty() && names.iter().all(|n| n == "lo") {
        M::No
    } else {
        M::Unknown
    }
}

fn port_in(v: &str, port: u16) -> M {
    if v.starts_with('@') || v.starts_with('$') {
        return M::Unknown;
    }
    set_words(v)
        .iter()
        .map(|p| {
            let range = match p.split_once('-') {
                Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
                None => p.parse::<u16>().ok().map(|n| (n, n)),
            };
            match range {
                Some((a, b)) => M::of((a..=b).contains(&port)),
                None => M::Unknown,
            }
        })
        .fold(M::No, M::or)
}

fn addr_in(v: &str, ip: IpAddr) -> M {
    if v.starts_with('@') || v.starts_with('$') {
        return M::Unknown;
    }
    set_words(v).iter().map(|a| one_addr(a, ip)).fold(M::No, M::or)
}

fn one_addr(a: &str, ip: IpAddr) -> M {
    let (net, len) = match a.split_once('/') {
        Some((n, l)) => (n, l.parse::<u32>().ok()),
        None => (a, None),
    };
    match (net.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(x)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            M::of(u32::from(x) & mask == u32::from(n) & mask)
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(x)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            M::of(u128::from(x) & mask == u128::from(n) & mask)
        }
        (Ok(_), _) => M::No,
        _ => M::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::listing::parse;

    fn table(chains: &str) -> Table {
        parse(&format!("table inet hg {{\n{chains}\n}}\n")).unwrap().tables.remove(0)
    }
    fn session() -> Session {
        Session::parse("10.9.8.7 50000 10.0.0.2 22").unwrap()
    }
    fn input(policy: &str, rules: &[&str]) -> Table {
        table(&format!("chain input {{\ntype filter hook input priority filter; policy {policy};\n{}\n}}", rules.join("\n")))
    }

    #[test]
    fn a_drop_policy_without_an_accept_drops_the_session() {
        let why = drops(&input("drop", &["tcp dport 80 accept"]), &session()).unwrap();
        assert!(why.contains("policy is drop"), "{why}");
        assert!(drops(&input("accept", &["ip saddr 10.9.8.0/24 drop"]), &session()).unwrap().contains("ip saddr 10.9.8.0/24 drop"));
    }

    #[test]
    fn accepting_ssh_or_established_keeps_it() {
        for ok in ["tcp dport 22 accept", "ct state established,related accept", "ct state { established, related } accept",
                   "ip saddr 10.0.0.0/8 accept", "tcp dport { 80, 22 } accept", "th dport 20-30 accept",
                   "ct state vmap { invalid : drop, established : accept, related : accept }", "meta l4proto tcp tcp dport 22 counter accept"] {
            let t = input("drop", &["iifname \"lo\" drop", "udp dport 53 drop", "ip6 saddr ::1 drop", "tcp flags & (syn|ack) == syn drop", "ct state invalid drop", ok]);
            assert_eq!(drops(&t, &session()), None, "{ok}");
        }
    }

    #[test]
    fn an_undecidable_drop_counts_and_jumps_are_followed() {
        for bad in ["iifname \"eth0\" drop", "ip saddr @blocked drop", "meta mark 0x1 reject with icmp type admin-prohibited",
                    "iifname vmap { \"eth0\" : drop }"] {
            assert!(drops(&input("accept", &[bad]), &session()).is_some(), "{bad}");
        }
        let t = table("map m {\ntype ifname : verdict\nelements = { \"eth0\" : jump mine }\n}\nchain input {\ntype filter hook input priority filter; policy accept;\niifname vmap @m\n}\nchain mine {\n}");
        assert_eq!(drops(&t, &session()), None, "a verdict map without a drop");
        let t = table("chain input {\ntype filter hook input priority filter; policy drop;\njump mine\n}\nchain mine {\ntcp dport 22 accept\n}");
        assert_eq!(drops(&t, &session()), None);
        let t = table("chain input {\ntype filter hook input priority filter; policy accept;\njump mine\n}\nchain mine {\nip saddr 10.9.8.7 drop\n}");
        assert!(drops(&t, &session()).unwrap().contains("chain mine"));
    }

    /// An undecidable `return` was skipped as if never taken, so the `accept` after it was taken
    /// to keep a session that, arriving on eth1, goes back to the base chain's drop policy.
    #[test]
    fn an_accept_after_an_undecidable_return_does_not_keep_the_session() {
        let t = table("chain input {\ntype filter hook input priority filter; policy drop;\njump mine\n}\nchain mine {\niifname \"eth1\" return\naccept\n}");
        assert!(drops(&t, &session()).unwrap().contains("policy is drop"));
        let t = table("chain input {\ntype filter hook input priority filter; policy drop;\niifname \"eth1\" goto empty\naccept\n}\nchain empty {\n}");
        assert!(drops(&t, &session()).is_some());
        let t = table("chain input {\ntype filter hook input priority filter; policy drop;\njump mine\naccept\n}\nchain mine {\niifname \"eth1\" return\naccept\n}");
        assert_eq!(drops(&t, &session()), None, "accepted on both paths");
    }

    #[test]
    fn every_base_chain_counts_and_other_families_and_hooks_do_not() {
        // Accepted by the first base chain, dropped by a later one at the same hook.
        let t = table("chain a {\ntype filter hook input priority -10; policy accept;\ntcp dport 22 accept\n}\nchain b {\ntype filter hook prerouting priority raw; policy accept;\ntcp dport 22 drop\n}");
        assert!(drops(&t, &session()).unwrap().contains("base chain b (priority -300)"));
        let out = table("chain o {\ntype filter hook output priority filter; policy drop;\n}");
        assert_eq!(drops(&out, &session()), None);
        let mut v6 = input("drop", &[]);
        v6.family = "ip6".into();
        assert_eq!(drops(&v6, &session()), None);
    }
}
