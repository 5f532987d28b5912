//! The firewall as the audit sees it: the filter table of each family (read with the iptables
//! module), and one question for the iptables chain walk (`iptables::walk`, shared with the SSH
//! guard): what does FORWARD do with a new packet from bridge A to bridge B? Only rules whose matches are all about interfaces decide; a rule with
//! any other match (a port, an address, a conntrack state) is skipped, because it decides for
//! some packets only, and the audit asks about traffic in general.

use crate::host::Host;
use crate::iptables::diff::{self, Desired, Entry};
use crate::iptables::save::{display_line, Rule, TableDump};
use crate::iptables::walk::{self, End, Matched, M};
use crate::iptables::{normalize, Tools};
use crate::state::iptables::{Backend, Family, IptablesState, Table};

/// The filter table of one family, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Firewall {
    /// `ipv4` or `ipv6`, as in the document.
    pub family: &'static str,
    pub filter: std::result::Result<Filter, String>,
}

/// The filter table of one family, as the iptables module reads it.
pub type Filter = TableDump;

fn forward_policy(filter: &Filter) -> Option<&str> {
    filter.chain("FORWARD").and_then(|c| c.policy.as_deref())
}

/// The filter tables of both families, each read or the reason it could not be.
pub fn read(host: &Host) -> Vec<Firewall> {
    let tools = Tools::resolve(host, Backend::Auto);
    [Family::V4, Family::V6]
        .into_iter()
        .map(|family| Firewall {
            family: family.key(),
            filter: match &tools {
                Ok(t) => t.read(host, family, Table::Filter).map_err(|e| e.to_string()),
                Err(e) => Err(format!("iptables could not be run: {e}")),
            },
        })
        .collect()
}

/// What a rule says, as far as the evaluator cares.
#[derive(Debug, Default)]
struct Parsed {
    /// (negated, pattern)
    in_if: Option<(bool, String)>,
    out_if: Option<(bool, String)>,
    target: Option<String>,
    goto: bool,
    /// Some match other than interfaces (and comments, and physdev-is-bridged).
    conditional: bool,
}

fn parse(args: &[String]) -> Parsed {
    let mut p = Parsed::default();
    let mut neg = false;
    let mut i = 0;
    let mut module: Option<&str> = None;
    while i < args.len() {
        let a = args[i].as_str();
        let val = args.get(i + 1).cloned().unwrap_or_default();
        match a {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-i" | "--in-interface" => {
                p.in_if = Some((neg, val));
                i += 2;
            }
            "-o" | "--out-interface" => {
                p.out_if = Some((neg, val));
                i += 2;
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                p.goto = a.starts_with("-g") || a == "--goto";
                p.target = Some(val);
                // Target options (`--reject-with`, `--log-prefix`) follow and match nothing.
                i = args.len();
            }
            "-m" | "--match" => {
                module = Some(args.get(i + 1).map(String::as_str).unwrap_or(""));
                i += 2;
            }
            "--comment" => i += 2,
            "--physdev-is-bridged" if module == Some("physdev") && !neg => i += 1,
            _ => {
                p.conditional = true;
                i += 1;
            }
        }
        neg = false;
    }
    p
}

/// iptables interface matching: a trailing `+` matches any name with that prefix.
fn if_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn side_matches(cond: &Option<(bool, String)>, name: &str) -> bool {
    match cond {
        None => true,
        Some((neg, pat)) => if_matches(pat, name) != *neg,
    }
}

/// Where a packet ended, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept(String),
    Drop(String),
}

/// Whether a rule decides a new packet from `in_if` to `out_if`: only when all its matches are
/// about interfaces (a rule with any other match is taken not to match).
fn interface_match(args: &[String], in_if: &str, out_if: &str) -> Matched {
    let p = parse(args);
    let decides = !p.conditional && side_matches(&p.in_if, in_if) && side_matches(&p.out_if, out_if);
    Matched { m: if decides { M::Yes } else { M::No }, target: p.target, goto: p.goto }
}

/// What FORWARD does with a new packet from `in_if` to `out_if`.
pub fn forward_verdict(filter: &Filter, in_if: &str, out_if: &str) -> Verdict {
    forward_rule_verdict(filter, in_if, out_if).unwrap_or_else(|| policy_verdict(filter))
}

/// The verdict of the FORWARD rule that decides a new packet from `in_if` to `out_if`; `None`
/// when no rule does and the policy decides.
pub fn forward_rule_verdict(filter: &Filter, in_if: &str, out_if: &str) -> Option<Verdict> {
    match walk::walk(filter, "FORWARD", &|_, r| interface_match(&r.args, in_if, out_if)) {
        End::Accept(d) => Some(Verdict::Accept(display_line(&d.chain, &d.rule.args))),
        End::Drop(d) => Some(Verdict::Drop(display_line(&d.chain, &d.rule.args))),
        End::Continue => None,
    }
}

/// What FORWARD's policy does with a packet no rule decides.
pub fn policy_verdict(filter: &Filter) -> Verdict {
    match forward_policy(filter) {
        Some("DROP") => Verdict::Drop("the FORWARD policy DROP".into()),
        Some(p) => Verdict::Accept(format!("the FORWARD policy {p}")),
        None => Verdict::Accept("FORWARD (no policy read)".into()),
    }
}

/// Rules (in any chain) that match traffic from `bridge` to itself by interface, other than
/// ACCEPTs (an ACCEPT that never sees a packet lets through what passes anyway): they only see
/// that traffic when bridge netfilter hands it to iptables.
pub fn same_bridge_rules(filter: &Filter, bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in &filter.chains {
        for rule in &c.rules {
            let args = &rule.args;
            let p = parse(args);
            let on = |s: &Option<(bool, String)>| matches!(s, Some((false, pat)) if if_matches(pat, bridge));
            if on(&p.in_if) && on(&p.out_if) && p.target.as_deref() != Some("ACCEPT") {
                out.push(display_line(&c.name, args));
            }
        }
    }
    out
}

/// Apply the document's chains of `family`'s filter table to `filter` with the iptables
/// module's own diff and edits: the policy when given, the chain as its targeted edits leave it. Rules are compared in the form
/// the module's normaliser gives them (what iptables-save prints for common rules).
pub fn overlay(filter: &mut Filter, family: &str, doc: &IptablesState) {
    for spec in doc.chains.iter().filter(|c| c.family.key() == family && c.table == Table::Filter) {
        let rules: Vec<Entry> = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Entry::new(Rule::new(normalize::normalize(r.args(), spec.family)), Some(r.args().to_vec()), Some(i)))
            .collect();
        let foreign = crate::iptables::foreign_in(spec, filter);
        let desired = Desired {
            chain: spec.chain.as_str(),
            policy: spec.policy.map(|p| p.as_str()),
            purge: spec.purge,
            ignore: &spec.ignore,
            foreign: &foreign,
            rules: &rules,
        };
        let d = diff::diff(&desired, filter.chain(spec.chain.as_str()));
        let new_rules: Vec<Rule> = d.target.iter().map(|e| e.canon.clone()).collect();
        match filter.chains.iter_mut().find(|c| c.name == spec.chain.as_str()) {
            Some(c) => {
                if let Some(p) = d.set_policy {
                    c.policy = Some(p);
                }
                if d.rewrite {
                    c.rules = new_rules;
                }
            }
            None => filter.chains.push(crate::iptables::save::Chain {
                name: spec.chain.as_str().to_string(),
                policy: d.set_policy,
                rules: new_rules,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::iptables::save::Chain;

    fn rules(lines: &[&str]) -> Vec<Rule> {
        lines.iter().map(|l| Rule::new(l.split_whitespace().map(str::to_string).collect())).collect()
    }

    fn filter(policy: &str, forward: &[&str], extra: &[(&str, &[&str])]) -> Filter {
        let mut chains = vec![Chain { name: "FORWARD".into(), policy: Some(policy.into()), rules: rules(forward) }];
        for (n, r) in extra {
            chains.push(Chain { name: n.to_string(), policy: None, rules: rules(r) });
        }
        Filter { name: "filter".into(), chains }
    }

    #[test]
    fn the_policy_decides_when_no_rule_matches() {
        let f = filter("ACCEPT", &["-i eth0 -j DROP"], &[]);
        assert_eq!(forward_verdict(&f, "br0", "br0"), Verdict::Accept("the FORWARD policy ACCEPT".into()));
        let f = filter("DROP", &[], &[]);
        assert!(matches!(forward_verdict(&f, "br0", "br0"), Verdict::Drop(_)));
    }

    #[test]
    fn interface_rules_decide_and_conditional_ones_are_skipped() {
        let f = filter("ACCEPT", &["-i br0 -o br0 -p tcp --dport 80 -j ACCEPT", "-i br+ -o br0 -j DROP"], &[]);
        assert_eq!(forward_verdict(&f, "br0", "br0"), Verdict::Drop("-A FORWARD -i br+ -o br0 -j DROP".into()));
        let f = filter("DROP", &["-i br0 ! -o br0 -j ACCEPT", "-o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"], &[]);
        assert!(matches!(forward_verdict(&f, "br0", "br0"), Verdict::Drop(_)));
        assert!(matches!(forward_verdict(&f, "br0", "eth0"), Verdict::Accept(_)));
    }

    #[test]
    fn user_chains_are_followed_and_return() {
        let f = filter(
            "DROP",
            &["-j DOCKER-USER", "-i docker0 -o docker0 -j ACCEPT"],
            &[("DOCKER-USER", &["-m comment --comment x -j RETURN"])],
        );
        assert_eq!(forward_verdict(&f, "docker0", "docker0"), Verdict::Accept("-A FORWARD -i docker0 -o docker0 -j ACCEPT".into()));
        let f = filter("ACCEPT", &["-j ISO"], &[("ISO", &["-i docker0 -o docker0 -j DROP"])]);
        assert!(matches!(forward_verdict(&f, "docker0", "docker0"), Verdict::Drop(_)));
    }

    /// The SSH guard's walker followed a goto like a jump (f6c3970); the audit's did not, and
    /// the shared walk must not: a goto's chain that ends sends the packet to FORWARD's policy.
    #[test]
    fn rules_after_a_goto_are_not_reached_when_its_chain_ends() {
        let f = filter("DROP", &["-g EMPTY", "-j ACCEPT"], &[("EMPTY", &[])]);
        assert_eq!(forward_verdict(&f, "br0", "br1"), Verdict::Drop("the FORWARD policy DROP".into()));
        let f = filter("DROP", &["-g ISO", "-j DROP"], &[("ISO", &["-i br0 -j ACCEPT"])]);
        assert_eq!(forward_verdict(&f, "br0", "br1"), Verdict::Accept("-A ISO -i br0 -j ACCEPT".into()));
        let f = filter("DROP", &["-j EMPTY", "-j ACCEPT"], &[("EMPTY", &[])]);
        assert_eq!(forward_verdict(&f, "br0", "br1"), Verdict::Accept("-A FORWARD -j ACCEPT".into()), "a jump comes back");
        // A goto whose interface does not match is not taken.
        let f = filter("DROP", &["-i br9 -g EMPTY", "-j ACCEPT"], &[("EMPTY", &[])]);
        assert!(matches!(forward_verdict(&f, "br0", "br1"), Verdict::Accept(_)));
    }

    #[test]
    fn same_bridge_rules_need_both_sides_unnegated() {
        let f = filter("ACCEPT", &["-i br0 -o br0 -j DROP", "-i br0 ! -o br0 -j ACCEPT", "-i br+ -o br+ -j LOG", "-i br0 -o br0 -j ACCEPT"], &[]);
        assert_eq!(same_bridge_rules(&f, "br0").len(), 2);
        assert!(same_bridge_rules(&f, "eth0").is_empty());
    }
}
