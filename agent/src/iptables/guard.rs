//! The SSH lockout guard (SPEC section 6): when the run comes from an SSH session
//! (`SSH_CONNECTION`, read by the command line into `Options::ssh_session`), the INPUT chain it
//! would leave behind is walked (`walk`, netfilter's jump/goto/RETURN rules) for that session's
//! packets (TCP, client to server ports, conntrack state ESTABLISHED). A rule that may drop them,
//! or a DROP policy they reach, refuses the apply unless `--force`.
//!
//! The walk is conservative: a DROP or REJECT whose match hostguard cannot decide (an interface
//! name, an extension it does not model) counts as dropping the session; an ACCEPT counts only
//! when its match certainly holds. A RETURN (or a goto) whose match it cannot decide is both
//! taken and not: a DROP on either path refuses, and an ACCEPT after it decides nothing, since
//! the session may have left the chain before it.

use std::net::IpAddr;

use crate::error::{Error, Result};
pub use crate::kind::Session;
use crate::state::iptables::{Family, Table};

use std::borrow::Cow;

use super::normalize;
use super::save::Rule;
use super::walk::{self, Chains, End, Matched, M};
use super::{Group, Plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Why the session would be dropped.
    Drop(String),
    Continue,
}

/// The content of one chain after apply: the plan's target for owned chains, else the host's.
impl Chains for Group {
    fn rules(&self, chain: &str) -> Option<Cow<'_, [Rule]>> {
        if let Some(c) = self.chains.iter().find(|c| c.spec.chain.as_str() == chain) {
            if c.diff.rewrite {
                return Some(Cow::Owned(c.diff.target.iter().map(|e| e.canon.clone()).collect()));
            }
        }
        self.current.rules(chain)
    }
    fn has(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c.spec.chain.as_str() == chain) || self.current.chain(chain).is_some()
    }
    fn policy(&self, chain: &str) -> Option<String> {
        if let Some(c) = self.chains.iter().find(|c| c.spec.chain.as_str() == chain) {
            if let Some(p) = &c.diff.set_policy {
                return Some(p.clone());
            }
        }
        self.current.chain(chain).and_then(|c| c.policy.clone())
    }
}

/// Refuse when the plan would drop the SSH session `s` (the one this runs from).
pub fn check_ssh(plan: &Plan, s: Option<&Session>) -> Result<()> {
    let Some(s) = s else { return Ok(()) };
    let family = if s.client.is_ipv4() { Family::V4 } else { Family::V6 };
    let Some(g) = plan.groups.iter().find(|g| g.family == family && g.table == Table::Filter) else { return Ok(()) };
    if g.changed().next().is_none() {
        return Ok(());
    }
    match walk_input(g, s) {
        Verdict::Drop(why) => Err(Error::Refused(format!(
            "refusing to apply: the new {} filter INPUT chain would drop the SSH session this runs from \
             ({} port {} -> {} port {}): {why}. Accept it first (e.g. \"-p tcp --dport {} -j ACCEPT\" or \
             \"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\"), or pass --force; consider --confirm SECONDS",
            family.key(),
            s.client,
            s.client_port,
            s.server,
            s.server_port,
            s.server_port
        ))),
        _ => Ok(()),
    }
}

/// What happens to the session's packets in INPUT.
pub fn walk_input(chains: &dyn Chains, s: &Session) -> Verdict {
    let family = if s.client.is_ipv4() { Family::V4 } else { Family::V6 };
    match walk::walk(chains, "INPUT", &|_, r| matches(&r.args, s, family)) {
        End::Accept(_) => Verdict::Accept,
        End::Drop(d) => Verdict::Drop(format!("the rule `{}`", d.rule.line(&d.chain))),
        End::Continue => match chains.policy("INPUT").as_deref() {
            Some("DROP") => Verdict::Drop("no rule accepts it and the policy is DROP".into()),
            _ => Verdict::Accept,
        },
    }
}

/// Whether the rule matches the session's packets, and its target.
fn matches(args: &[String], s: &Session, family: Family) -> Matched {
    let mut m = M::Yes;
    let mut neg = false;
    let mut target = None;
    let mut i = 0;
    let val = |i: usize| args.get(i + 1).map(String::as_str).unwrap_or("");
    while i < args.len() {
        let a = args[i].as_str();
        let (r, used) = match a {
            "!" => {
                neg = true;
                i += 1;
                continue;
            }
            "-j" | "-g" => {
                target = Some(val(i).to_string());
                break;
            }
            "-s" => (addr(val(i), s.client, family), 2),
            "-d" => (addr(val(i), s.server, family), 2),
            "-i" => {
                let v = val(i);
                let lo = v == "lo" || v == "lo+";
                (if s.client.is_loopback() { M::Unknown } else if lo { M::No } else { M::Unknown }, 2)
            }
            "-p" => (match val(i) { "tcp" | "6" | "all" | "0" => M::Yes, _ => M::No }, 2),
            "-f" => (M::No, 1),
            "-m" => (M::Yes, 2),
            "--dport" => (port_in(val(i), s.server_port), 2),
            "--sport" => (port_in(val(i), s.client_port), 2),
            "--dports" => (list_in(val(i), s.server_port), 2),
            "--sports" => (list_in(val(i), s.client_port), 2),
            "--ports" => (list_in(val(i), s.server_port).or(list_in(val(i), s.client_port)), 2),
            "--state" | "--ctstate" => (if val(i).split(',').any(|x| x == "ESTABLISHED") { M::Yes } else { M::No }, 2),
            "--comment" => (M::Yes, 2),
            "--tcp-flags" if val(i + 1) == "SYN" && val(i).contains("SYN") => (M::No, 3),
            "--syn" => (M::No, 1),
            _ => {
                // An option hostguard does not model: skip its values, undecided.
                let mut j = i + 1;
                while j < args.len() && !args[j].starts_with('-') && args[j] != "!" {
                    j += 1;
                }
                (M::Unknown, j - i)
            }
        };
        m = m.and(r.not(neg));
        neg = false;
        i += used;
    }
    Matched { m, target, goto: args.iter().any(|a| a == "-g") }
}

fn addr(v: &str, ip: IpAddr, family: Family) -> M {
    let Some(canon) = normalize::address(v, family) else { return M::Unknown };
    let Some((net, len)) = canon.split_once('/') else { return M::Unknown };
    let Ok(len) = len.parse::<u32>() else { return M::Unknown };
    match (net.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(n)), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            if u32::from(a) & mask == u32::from(n) { M::Yes } else { M::No }
        }
        (Ok(IpAddr::V6(n)), IpAddr::V6(a)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            if u128::from(a) & mask == u128::from(n) { M::Yes } else { M::No }
        }
        _ => M::Unknown,
    }
}

fn port_in(v: &str, port: u16) -> M {
    let range = |p: &str| -> Option<(u16, u16)> {
        match p.split_once(':') {
            Some((a, b)) => Some((if a.is_empty() { 0 } else { a.parse().ok()? }, if b.is_empty() { 65535 } else { b.parse().ok()? })),
            None => p.parse().ok().map(|n| (n, n)),
        }
    };
    match range(v) {
        Some((a, b)) if (a..=b).contains(&port) => M::Yes,
        Some(_) => M::No,
        None => M::Unknown,
    }
}

fn list_in(v: &str, port: u16) -> M {
    v.split(',').map(|p| port_in(p, port)).fold(M::No, M::or)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<String, Vec<Rule>>, Option<String>);
    impl Chains for Fake {
        fn rules(&self, c: &str) -> Option<Cow<'_, [Rule]>> {
            self.0.get(c).map(|r| Cow::Borrowed(r.as_slice()))
        }
        fn has(&self, c: &str) -> bool {
            self.0.contains_key(c)
        }
        fn policy(&self, _: &str) -> Option<String> {
            self.1.clone()
        }
    }
    fn fake(policy: &str, chains: &[(&str, &[&str])]) -> Fake {
        Fake(
            chains
                .iter()
                .map(|(n, rs)| (n.to_string(), rs.iter().map(|r| Rule::new(shlex::split(r).unwrap())).collect()))
                .collect(),
            Some(policy.into()),
        )
    }
    fn session() -> Session {
        Session::parse("10.9.8.7 50000 10.0.0.2 22").unwrap()
    }

    #[test]
    fn drop_policy_without_an_accept_drops_the_session() {
        let f = fake("DROP", &[("INPUT", &["-p tcp -m tcp --dport 80 -j ACCEPT"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
    }

    #[test]
    fn accepting_ssh_or_established_keeps_it() {
        for ok in ["-p tcp -m tcp --dport 22 -j ACCEPT", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                   "-s 10.0.0.0/8 -j ACCEPT", "-p tcp -m multiport --dports 80,22 -j ACCEPT"] {
            let f = fake("DROP", &[("INPUT", &["-i lo -j DROP", ok])]);
            assert_eq!(walk_input(&f, &session()), Verdict::Accept, "{ok}");
        }
    }

    #[test]
    fn an_undecidable_drop_counts_as_dropping() {
        let f = fake("ACCEPT", &[("INPUT", &["-i eth0 -j DROP"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
        let f = fake("ACCEPT", &[("INPUT", &["! -s 10.0.0.0/8 -j DROP", "-p udp -j DROP", "-p tcp --syn -j DROP"])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept);
    }

    #[test]
    fn user_chains_are_followed() {
        let f = fake("DROP", &[("INPUT", &["-j MINE"]), ("MINE", &["-p tcp -m tcp --dport 22 -j ACCEPT"])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept);
        let f = fake("ACCEPT", &[("INPUT", &["-j MINE"]), ("MINE", &["-s 10.9.8.7/32 -j REJECT"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
    }

    /// Found by reading the walker: a goto was followed like a jump, so an ACCEPT after it was
    /// taken to keep a session that netfilter sends to the DROP policy when the chain gone to ends.
    #[test]
    fn rules_after_a_goto_are_not_reached_when_its_chain_ends() {
        let f = fake("DROP", &[("INPUT", &["-g EMPTY", "-j ACCEPT"]), ("EMPTY", &[])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
        let f = fake("DROP", &[("INPUT", &["-g MINE", "-j DROP"]), ("MINE", &["-p tcp -m tcp --dport 22 -j ACCEPT"])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept);
        let f = fake("DROP", &[("INPUT", &["-j EMPTY", "-j ACCEPT"]), ("EMPTY", &[])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept, "a jump comes back");
    }

    /// An uncertain RETURN was skipped, as if never taken: `-i eth1 -j RETURN` then `-j ACCEPT`
    /// in a chain INPUT jumps to was taken to accept the session, which, arriving on eth1, goes
    /// back to INPUT and its DROP.
    #[test]
    fn an_accept_after_an_undecidable_return_does_not_keep_the_session() {
        let f = fake("DROP", &[("INPUT", &["-j MINE"]), ("MINE", &["-i eth1 -j RETURN", "-j ACCEPT"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
        let f = fake("ACCEPT", &[("INPUT", &["-j MINE", "-j DROP"]), ("MINE", &["-i eth1 -j RETURN", "-j ACCEPT"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)), "the returned path meets the DROP");
        let f = fake("ACCEPT", &[("INPUT", &["-j MINE"]), ("MINE", &["-i eth1 -j RETURN", "-p tcp --dport 22 -j DROP"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)), "the path not returned meets the DROP");
        // Both paths accept: kept.
        let f = fake("DROP", &[("INPUT", &["-j MINE", "-j ACCEPT"]), ("MINE", &["-i eth1 -j RETURN", "-j ACCEPT"])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept);
        // In INPUT itself a RETURN goes to the policy.
        let f = fake("DROP", &[("INPUT", &["-i eth1 -j RETURN", "-j ACCEPT"])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
        let f = fake("ACCEPT", &[("INPUT", &["-i eth1 -j RETURN", "-j ACCEPT"])]);
        assert_eq!(walk_input(&f, &session()), Verdict::Accept);
        // The same for a goto whose match is undecided and whose chain ends.
        let f = fake("DROP", &[("INPUT", &["-i eth1 -g EMPTY", "-j ACCEPT"]), ("EMPTY", &[])]);
        assert!(matches!(walk_input(&f, &session()), Verdict::Drop(_)));
    }

    #[test]
    fn session_variable_parses_mapped_addresses() {
        let s = Session::parse("::ffff:10.1.1.1 1234 ::ffff:10.0.0.2 22").unwrap();
        assert!(s.client.is_ipv4());
        assert!(Session::parse("garbage").is_none());
    }
}
