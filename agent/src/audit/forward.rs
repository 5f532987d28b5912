//! The forward hook as the kernel runs it, across both netfilter layers (SPEC section 3b). A
//! forwarded packet passes only if EVERY base chain registered at `forward` for its family lets it
//! through: iptables' FORWARD (iptables-legacy's, or iptables-nft's `ip filter`/`ip6 filter`,
//! read through iptables) and every `type filter hook forward` chain of every native nftables
//! table of the family (`ip` or `ip6`, and `inet` for both), in priority order. An `accept` ends
//! one base chain only; a `drop` or `reject` in any of them ends the packet.
//!
//! The question is the audit's: what happens to a NEW connection from interface A to interface B
//! (or, with `ANY`, between two interfaces no rule names)? In nft rules the model reads
//! `iifname`/`oifname`/`iif`/`oif` (`!=`, anonymous and named sets, `*` wildcards), `meta
//! nfproto`, `ct state` (a new connection is `new`), verdict maps keyed by interface or ct state
//! (anonymous or named), `jump`/`goto`/`return`/`continue`, the verdicts, and the statements that
//! decide nothing (`counter`, `log`, `comment`, `... set ...`). A rule that also matches anything
//! it knows to be a condition on some packets only (an address, a port, a protocol, a mark, `ct
//! status`, `limit`, `fib`) is skipped, as the iptables walker skips such rules: it neither
//! makes the traffic in general safe nor unsafe.
//!
//! Where the model stops: a rule holding an expression it does not know, with a verdict (or a
//! jump), is UNKNOWN, and the walk of that base chain stops there, since what follows depends on
//! it. A definite drop in any other base chain still drops the packet (the order of chains cannot
//! undo a drop); otherwise the hook's answer is `Unknown`, which the checks count as "not shown
//! dropped": a hardening audit must not claim an isolation it cannot show, and the finding names
//! the rule so the operator can judge it. `queue` is unknown too (userspace decides). The
//! `bridge` family's forward hook (frames between ports of one bridge, without br_netfilter),
//! `netdev` ingress, marks set by one chain and read by the next, and iptables' mangle and
//! security tables are not modelled.

use std::collections::BTreeSet;

use crate::host::Host;
use crate::iptables::Tools;
use crate::nftables::guard::{set_words, tokens};
use crate::nftables::listing::{Chain, Table};
use crate::state::iptables::Backend;
use crate::state::nftables::split_top_level;

use super::firewall::{self, Filter};

/// An interface name no rule names: the packet of "traffic in general".
pub const ANY: &str = "(any interface)";

/// The priority of iptables' filter FORWARD (NF_IP_PRI_FILTER), as nft names it `filter`.
const IPTABLES_PRIORITY: i32 = 0;

/// How deep jumps are followed before the walk gives up (nft itself refuses loops).
const MAX_DEPTH: usize = 16;

/// The tables iptables-nft keeps for `ip` and `ip6`.
const IPTABLES_TABLES: &[&str] = &["filter", "nat", "mangle", "raw", "security"];

/// The native nftables tables of the host (iptables-nft's own left out: iptables reads its
/// `filter`), or why they could not be read.
pub fn read_nft(host: &Host) -> Result<Vec<Table>, String> {
    let names = crate::nftables::list_tables(host).map_err(|e| format!("nft could not list the tables ({e})"))?;
    let iptables_nft = Tools::resolve(host, Backend::Auto).is_ok_and(|t| t.label == "nf_tables");
    let mut out = Vec::new();
    for (family, name) in names {
        // iptables-nft's own tables: `filter` is read through iptables; the others hold no
        // filter chain at the forward hook but mangle's and security's, which the model leaves
        // out, and nft 1.1 lists them with a warning line the listing parser does not take.
        if iptables_nft && IPTABLES_TABLES.contains(&name.as_str()) && (family == "ip" || family == "ip6") {
            continue;
        }
        match crate::nftables::read_table(host, &family, &name) {
            Ok(Some(t)) => out.push(t),
            Ok(None) => {}
            Err(e) => return Err(format!("table {family} {name} could not be read ({e})")),
        }
    }
    Ok(out)
}

/// Whether an nft table of `family` (`inet`, `ip`, ...) sees packets of the audit's `fam`.
fn sees(family: &str, fam: &str) -> bool {
    family == "inet" || (family == "ip" && fam == "ipv4") || (family == "ip6" && fam == "ipv6")
}

/// One base chain at the forward hook.
#[derive(Debug, Clone)]
pub enum Base<'a> {
    Iptables(&'a Filter),
    Nft { table: &'a Table, chain: &'a str, priority: i32, policy: &'a str },
}

impl Base<'_> {
    fn priority(&self) -> i32 {
        match self {
            Base::Iptables(_) => IPTABLES_PRIORITY,
            Base::Nft { priority, .. } => *priority,
        }
    }
}

/// Every base chain at the forward hook of one family, by priority.
#[derive(Debug, Clone)]
pub struct Hook<'a> {
    pub family: &'static str,
    pub chains: Vec<Base<'a>>,
}

impl<'a> Hook<'a> {
    pub fn new(family: &'static str, iptables: &'a Filter, nft: &'a [Table]) -> Hook<'a> {
        let mut chains = vec![Base::Iptables(iptables)];
        for t in nft.iter().filter(|t| sees(&t.family, family)) {
            for (name, c) in &t.chains {
                let Some(h) = c.hook(&t.family) else { continue };
                if h.hook == "forward" && h.kind == "filter" {
                    let policy = if h.policy == "drop" { "drop" } else { "accept" };
                    chains.push(Base::Nft { table: t, chain: name, priority: h.priority, policy });
                }
            }
        }
        // Stable: iptables' FORWARD before an nft chain of the same priority (registration order
        // is not knowable; only which drop is named depends on it).
        chains.sort_by_key(Base::priority);
        Hook { family, chains }
    }

    /// The iptables filter table of this family.
    pub fn iptables(&self) -> &'a Filter {
        self.chains.iter().find_map(|c| if let Base::Iptables(f) = c { Some(*f) } else { None }).expect("a hook always holds iptables' FORWARD")
    }

    /// Native nft base chains here (not iptables'): the host's forwarding firewall is nftables.
    pub fn has_nft(&self) -> bool {
        self.chains.iter().any(|c| matches!(c, Base::Nft { .. }))
    }

    /// What the hook does with a new connection from `in_if` to `out_if`.
    pub fn verdict(&self, in_if: &str, out_if: &str) -> Decision {
        let mut accepted = Vec::new();
        let mut rule = None;
        let mut unknown = None;
        for c in &self.chains {
            let d = match c {
                Base::Iptables(f) => match firewall::forward_rule_verdict(f, in_if, out_if) {
                    Some(firewall::Verdict::Drop(by)) => Decision::Drop(by),
                    Some(firewall::Verdict::Accept(by)) => Decision::Accept { rule: Some(by.clone()), by },
                    None => match firewall::policy_verdict(f) {
                        firewall::Verdict::Drop(by) => Decision::Drop(by),
                        firewall::Verdict::Accept(by) => Decision::Accept { by, rule: None },
                    },
                },
                Base::Nft { table, chain, policy, .. } => base_verdict(table, chain, policy, &Packet { in_if, out_if, family: self.family }),
            };
            match d {
                Decision::Drop(by) => return Decision::Drop(by),
                Decision::Unknown(by) => {
                    unknown.get_or_insert(by);
                }
                Decision::Accept { by, rule: r } => {
                    accepted.push(by);
                    if rule.is_none() {
                        rule = r;
                    }
                }
            }
        }
        match unknown {
            Some(by) => Decision::Unknown(by),
            None => Decision::Accept { by: accepted.join(", then "), rule },
        }
    }

    /// Interfaces Docker's nftables tables of this family name (`ip docker-bridges`): the keys of
    /// its verdict maps and the names its rules match.
    pub fn nft_names_in(&self, nft: &[Table], table: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for t in nft.iter().filter(|t| t.name == table && sees(&t.family, self.family)) {
            for s in t.sets.values().filter(|s| s.is_map) {
                for e in &s.elements {
                    if let Some((k, _)) = e.split_once(':') {
                        out.insert(unquote(k.trim()).to_string());
                    }
                }
            }
            for c in t.chains.values() {
                for r in &c.rules {
                    let w = tokens(r);
                    for (i, x) in w.iter().enumerate() {
                        if matches!(x.as_str(), "iifname" | "oifname") {
                            let v = w.get(i + 1).filter(|v| *v != "!=" && *v != "==").or_else(|| w.get(i + 2));
                            for n in v.map(|v| set_words(v)).unwrap_or_default() {
                                if !n.starts_with('@') && n != "vmap" && !n.ends_with('*') {
                                    out.insert(n);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// What the forward hook does with a packet, and which rule or policy decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every base chain let it through: `by` names each chain's deciding rule or policy; `rule`
    /// is the first explicit accept rule among them.
    Accept { by: String, rule: Option<String> },
    /// A base chain drops it (the first one, by priority).
    Drop(String),
    /// No chain certainly drops it, and the named rule may decide it in a way the model cannot
    /// read.
    Unknown(String),
}

struct Packet<'a> {
    in_if: &'a str,
    out_if: &'a str,
    family: &'static str,
}

/// How much of a packet class a rule's match covers. Ordered so that `and` is the maximum: a
/// match that cannot hold beats one on some packets only, which beats one not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Yes,
    Unknown,
    Some,
    No,
}

impl Match {
    fn of(b: bool) -> Match {
        if b { Match::Yes } else { Match::No }
    }
    fn and(self, o: Match) -> Match {
        self.max(o)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Accept,
    Drop,
    /// Decided elsewhere (`queue`: userspace).
    Undecided,
    Return,
    Continue,
    Jump(String, bool),
}

enum Walk {
    Accept(String),
    Drop(String),
    Unknown(String),
    Return,
}

fn where_(t: &Table, chain: &str) -> String {
    format!("chain {chain} of table {} {}", t.family, t.name)
}

fn base_verdict(t: &Table, chain: &str, policy: &str, p: &Packet) -> Decision {
    match walk(t, chain, p, 0) {
        Walk::Accept(by) => Decision::Accept { rule: Some(by.clone()), by },
        Walk::Drop(by) => Decision::Drop(by),
        Walk::Unknown(by) => Decision::Unknown(by),
        Walk::Return => {
            let by = format!("the policy {policy} of {}", where_(t, chain));
            if policy == "drop" { Decision::Drop(by) } else { Decision::Accept { by, rule: None } }
        }
    }
}

fn walk(t: &Table, chain: &str, p: &Packet, depth: usize) -> Walk {
    let Some(c) = t.chains.get(chain) else {
        return Walk::Unknown(format!("a jump to {chain}, which table {} {} does not hold", t.family, t.name));
    };
    if depth > MAX_DEPTH {
        return Walk::Unknown(format!("jumps nested deeper than {MAX_DEPTH} at {}", where_(t, chain)));
    }
    walk_rules(t, chain, c, p, depth)
}

fn walk_rules(t: &Table, chain: &str, c: &Chain, p: &Packet, depth: usize) -> Walk {
    for rule in &c.rules {
        let (m, verb) = rule_eval(t, rule, p);
        let by = || format!("the rule `{rule}` in {}", where_(t, chain));
        let Some(verb) = verb else { continue };
        match m {
            Match::No | Match::Some => continue,
            Match::Unknown if verb == Verb::Continue => continue,
            Match::Unknown => return Walk::Unknown(by()),
            Match::Yes => {}
        }
        match verb {
            Verb::Accept => return Walk::Accept(by()),
            Verb::Drop => return Walk::Drop(by()),
            Verb::Undecided => return Walk::Unknown(by()),
            Verb::Return => return Walk::Return,
            Verb::Continue => {}
            Verb::Jump(target, goto) => match walk(t, &target, p, depth + 1) {
                Walk::Return if goto => return Walk::Return,
                Walk::Return => {}
                decided => return decided,
            },
        }
    }
    Walk::Return
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

/// nft interface matching: a trailing `*` matches any name with that prefix. `ANY` matches only
/// the pattern that matches every name.
fn if_matches(pattern: &str, name: &str) -> bool {
    let pattern = unquote(pattern);
    match pattern.strip_suffix('*').filter(|_| !pattern.ends_with("\\*")) {
        Some(prefix) => prefix.is_empty() || (name != ANY && name.starts_with(prefix)),
        None => name != ANY && pattern == name,
    }
}

/// Whether `name` is in the value `v`: a name, `{ … }`, or a named set of the table.
fn iface_in(t: &Table, v: &str, name: &str) -> Match {
    let names = match v.strip_prefix('@') {
        Some(set) => match t.sets.get(set) {
            Some(s) if !s.is_map => s.elements.clone(),
            _ => return Match::Unknown,
        },
        None => set_words(v),
    };
    Match::of(names.iter().any(|n| if_matches(n, name)))
}

/// The verdict a verdict map gives `key`: `Some(None)` when no element matches (the rule does
/// nothing), `None` when the map cannot be read.
fn vmap_lookup(t: &Table, v: &str, key: impl Fn(&str) -> bool) -> Option<Option<Verb>> {
    let elements: Vec<String> = match v.strip_prefix('@') {
        Some(name) => t.sets.get(name).filter(|s| s.is_map)?.elements.clone(),
        None => {
            let inner = v.trim().strip_prefix('{')?.strip_suffix('}')?;
            split_top_level(inner, ',').into_iter().map(|e| e.trim().to_string()).collect()
        }
    };
    for e in &elements {
        let (k, verdict) = e.split_once(" : ").or_else(|| e.split_once(':'))?;
        if set_words(k).iter().any(|x| key(x)) {
            let words: Vec<&str> = verdict.split_whitespace().collect();
            return Some(Some(match words.as_slice() {
                ["accept", ..] => Verb::Accept,
                ["drop", ..] | ["reject", ..] => Verb::Drop,
                ["jump", c, ..] => Verb::Jump(unquote(c).to_string(), false),
                ["goto", c, ..] => Verb::Jump(unquote(c).to_string(), true),
                ["return", ..] => Verb::Return,
                ["continue", ..] => Verb::Continue,
                _ => Verb::Undecided,
            }));
        }
    }
    Some(None)
}

/// Selectors whose matches the model knows to hold for some packets only.
const CONDITIONS: &[&str] = &[
    "ip", "ip6", "tcp", "udp", "udplite", "sctp", "dccp", "th", "icmp", "icmpv6", "igmp", "esp", "ah", "comp", "ether",
    "vlan", "arp", "fib", "rt", "socket", "osf", "ipsec", "limit", "quota", "numgen", "exthdr", "frag", "hbh", "mh", "dst",
    "srh", "tunnel", "sctp", "gre", "geneve", "vxlan",
];

/// Whether the rule's match holds for the packet, and the verdict it gives when it does.
fn rule_eval(t: &Table, rule: &str, p: &Packet) -> (Match, Option<Verb>) {
    let w = tokens(rule);
    let at = |k: usize| w.get(k).map(String::as_str).unwrap_or("");
    let mut m = Match::Yes;
    let mut i = 0;
    while i < w.len() {
        // `SELECTOR [op] VALUE` with the value at `i + n`: (negated, value, words used).
        let op_value = |n: usize| -> (Option<bool>, &str, usize) {
            match at(i + n) {
                "!=" => (Some(true), at(i + n + 1), n + 2),
                "==" => (Some(false), at(i + n + 1), n + 2),
                "<" | ">" | "<=" | ">=" => (None, at(i + n + 1), n + 2),
                v => (Some(false), v, n + 1),
            }
        };
        let word = at(i);
        let (sel, off) = match (word, at(i + 1)) {
            ("meta", s @ ("iifname" | "oifname" | "iif" | "oif" | "nfproto")) => (s, 2),
            ("ct", "state") => ("ct state", 2),
            (s, _) => (s, 1),
        };
        match sel {
            "accept" => return (m, Some(Verb::Accept)),
            "drop" | "reject" => return (m, Some(Verb::Drop)),
            "queue" => return (m, Some(Verb::Undecided)),
            "return" => return (m, Some(Verb::Return)),
            "continue" => return (m, Some(Verb::Continue)),
            "jump" | "goto" => return (m, Some(Verb::Jump(unquote(at(i + 1)).to_string(), word == "goto"))),
            "iifname" | "oifname" | "iif" | "oif" => {
                let name = if sel.starts_with('i') { p.in_if } else { p.out_if };
                if at(i + off) == "vmap" {
                    return match vmap_lookup(t, at(i + off + 1), |k| if_matches(k, name)) {
                        Some(verb) => (m, verb),
                        None => (m.and(Match::Unknown), Some(Verb::Undecided)),
                    };
                }
                let (neg, v, n) = op_value(off);
                let r = match neg {
                    Some(neg) => {
                        let r = iface_in(t, v, name);
                        if neg && r != Match::Unknown { Match::of(r == Match::No) } else { r }
                    }
                    None => Match::Unknown,
                };
                m = m.and(r);
                i += n;
            }
            "nfproto" => {
                let (neg, v, n) = op_value(off);
                let r = Match::of(set_words(v).iter().any(|x| x == p.family));
                m = m.and(if neg == Some(true) { Match::of(r == Match::No) } else { r });
                i += n;
            }
            "ct state" => {
                if at(i + off) == "vmap" {
                    return match vmap_lookup(t, at(i + off + 1), |k| k == "new") {
                        Some(verb) => (m, verb),
                        None => (m.and(Match::Unknown), Some(Verb::Undecided)),
                    };
                }
                let (neg, v, n) = op_value(off);
                // A new connection's first packet: ct state `new`.
                let r = Match::of(set_words(v).iter().any(|x| x == "new"));
                m = m.and(if neg == Some(true) { Match::of(r == Match::No) } else { r });
                i += n;
            }
            "counter" => i += if at(i + 1) == "packets" { 5 } else { 1 },
            "comment" => i += 2,
            "log" => {
                let mut j = i + 1;
                while matches!(at(j), "prefix" | "level" | "flags" | "group" | "snaplen" | "queue-threshold") {
                    j += 2;
                }
                i = j;
            }
            // `meta mark set 0x1`, `ct mark set …`, `ip dscp set cs1`: statements, not matches.
            _ if at(i + 2) == "set" => i += 4,
            "meta" | "ct" => return (Match::Some.and(m), None),
            s if CONDITIONS.contains(&s) => return (Match::Some.and(m), None),
            // An expression the model does not read: undecided, one word at a time.
            _ => {
                m = m.and(Match::Unknown);
                i += 1;
            }
        }
    }
    (m, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::listing::parse;

    const EMPTY: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    fn ipt(text: &str) -> Filter {
        crate::iptables::save::parse(text).unwrap().remove(0)
    }

    fn nft(text: &str) -> Vec<Table> {
        parse(text).unwrap().tables
    }

    fn forward(policy: &str, rules: &[&str]) -> String {
        format!("table inet t {{\nchain fwd {{\ntype filter hook forward priority filter; policy {policy};\n{}\n}}\n}}\n", rules.join("\n"))
    }

    fn verdict(ipt_text: &str, nft_text: &str, from: &str, to: &str) -> Decision {
        let (f, t) = (ipt(ipt_text), nft(nft_text));
        Hook::new("ipv4", &f, &t).verdict(from, to)
    }

    #[test]
    fn a_drop_in_any_base_chain_drops_and_an_accept_does_not_carry_over() {
        // iptables accepts explicitly; the nft chain drops: dropped.
        let accept = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i br0 -o br0 -j ACCEPT\nCOMMIT\n";
        let d = verdict(accept, &forward("accept", &["iifname \"br0\" oifname \"br0\" drop"]), "br0", "br0");
        assert_eq!(d, Decision::Drop("the rule `iifname \"br0\" oifname \"br0\" drop` in chain fwd of table inet t".into()));
        // The nft chain accepts; iptables' policy drops.
        let drop = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n";
        assert!(matches!(verdict(drop, &forward("accept", &["iifname \"br0\" accept"]), "br0", "br0"), Decision::Drop(b) if b.contains("FORWARD policy DROP")));
        // Both accept: accepted, and the explicit rule is named.
        let d = verdict(EMPTY, &forward("drop", &["iifname \"br*\" oifname != \"eth0\" accept"]), "br0", "br0");
        assert!(matches!(&d, Decision::Accept { rule: Some(r), .. } if r.contains("br*")), "{d:?}");
        // An ip6 table does not see IPv4 packets.
        let six = forward("drop", &[]).replace("table inet", "table ip6");
        assert!(matches!(verdict(EMPTY, &six, "br0", "br0"), Decision::Accept { .. }));
    }

    #[test]
    fn conditions_are_skipped_and_unknown_expressions_stop_the_walk() {
        for some in ["ip saddr 10.0.0.0/8 drop", "tcp dport 22 drop", "ct status dnat drop", "meta mark 0x1 drop", "ct state established,related drop",
                     "limit rate 10/second drop", "iifname \"eth0\" drop", "fib daddr type local drop"] {
            assert!(matches!(verdict(EMPTY, &forward("accept", &[some]), "br0", "br0"), Decision::Accept { .. }), "{some}");
        }
        for drops in ["ct state new drop", "iifname { \"a\", \"br0\" } counter drop comment \"x\"", "meta nfproto ipv4 reject", "oifname != \"eth0\" log prefix \"x\" drop",
                      "meta mark set 0x1 drop", "ct state vmap { new : drop, established : accept }"] {
            assert!(matches!(verdict(EMPTY, &forward("accept", &[drops]), "br0", "br0"), Decision::Drop(_)), "{drops}");
        }
        let u = verdict(EMPTY, &forward("drop", &["foo bar accept", "iifname \"br0\" accept"]), "br0", "br0");
        assert_eq!(u, Decision::Unknown("the rule `foo bar accept` in chain fwd of table inet t".into()));
        // A certain drop elsewhere still drops.
        let drop = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n";
        assert!(matches!(verdict(drop, &forward("accept", &["foo accept"]), "br0", "br0"), Decision::Drop(_)));
        // An unknown statement without a verdict decides nothing.
        assert!(matches!(verdict(EMPTY, &forward("accept", &["foo bar"]), "br0", "br0"), Decision::Accept { .. }));
    }

    #[test]
    fn verdict_maps_and_named_sets_are_looked_up() {
        let t = "table ip t {\nset ifs {\ntype ifname\nelements = { \"br0\", \"br1\" }\n}\nmap jumps {\ntype ifname : verdict\nelements = { \"br0\" : jump in_br0 }\n}\n\
                 chain fwd {\ntype filter hook forward priority 10; policy accept;\noifname vmap @jumps\niifname @ifs oifname \"eth0\" drop\n}\n\
                 chain in_br0 {\nct state established,related accept\niifname \"br0\" drop\n}\n}\n";
        assert!(matches!(verdict(EMPTY, t, "br0", "br0"), Decision::Drop(b) if b.contains("chain in_br0")));
        assert!(matches!(verdict(EMPTY, t, "br1", "eth0"), Decision::Drop(_)));
        assert!(matches!(verdict(EMPTY, t, ANY, ANY), Decision::Accept { rule: None, .. }));
        // goto and return.
        let t = forward("drop", &["goto sub", "accept"]).replace("}\n}\n", "}\nchain sub {\niifname \"br0\" return\naccept\n}\n}\n");
        assert!(matches!(verdict(EMPTY, &t, "br0", "x"), Decision::Drop(b) if b.contains("policy drop")));
        assert!(matches!(verdict(EMPTY, &t, "x", "x"), Decision::Accept { .. }));
    }

    #[test]
    fn other_hooks_and_types_are_not_the_forward_hook() {
        let t = "table inet t {\nchain in {\ntype filter hook input priority 0; policy drop;\n}\nchain nat {\ntype nat hook postrouting priority srcnat; policy accept;\n}\n}\n";
        let (f, t) = (ipt(EMPTY), nft(t));
        let h = Hook::new("ipv4", &f, &t);
        assert!(!h.has_nft());
        assert!(matches!(h.verdict(ANY, ANY), Decision::Accept { .. }));
    }
}
