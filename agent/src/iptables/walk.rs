//! The one walk of iptables chains, netfilter's jump, goto, RETURN and end-of-chain rules, for
//! everything that asks where a packet ends: the SSH lockout guard (`guard`, the session's
//! packets through INPUT) and the audit (`audit::firewall`, a new packet between two bridges
//! through FORWARD). The caller says whether a rule matches its packet (`M`); the walk follows
//! the targets.
//!
//! A match may be undecided (`M::Unknown`, e.g. an interface the caller does not know). The walk
//! is then conservative for the question "is the packet accepted?": an undecided DROP or REJECT
//! decides (dropped), an undecided ACCEPT does not, and an undecided RETURN (or a goto whose
//! chain ends) is both taken and not — the walk goes on past it, where a DROP still decides but
//! an ACCEPT does not, since the packet may have left the chain before it.

use std::borrow::Cow;

use super::save::{Rule, TableDump};

/// Whether a rule's matches hold for the packet walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum M {
    Yes,
    No,
    Unknown,
}

impl M {
    pub fn and(self, o: M) -> M {
        match (self, o) {
            (M::No, _) | (_, M::No) => M::No,
            (M::Yes, M::Yes) => M::Yes,
            _ => M::Unknown,
        }
    }
    pub fn or(self, o: M) -> M {
        match (self, o) {
            (M::Yes, _) | (_, M::Yes) => M::Yes,
            (M::No, M::No) => M::No,
            _ => M::Unknown,
        }
    }
    /// `self`, negated when `neg` (a `!` before the match).
    pub fn not(self, neg: bool) -> M {
        match (self, neg) {
            (M::Yes, true) => M::No,
            (M::No, true) => M::Yes,
            (m, _) => m,
        }
    }
}

/// What the caller says of one rule: whether it matches, and its target (`-j`/`-g`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub m: M,
    pub target: Option<String>,
    /// The target is gone to (`-g`), not jumped to.
    pub goto: bool,
}

/// The chains of one table, as the question needs them (the host's, or as an apply leaves them).
pub trait Chains {
    fn rules(&self, chain: &str) -> Option<Cow<'_, [Rule]>>;
    /// Whether `chain` is a chain (not a target such as LOG), without copying its rules.
    fn has(&self, chain: &str) -> bool;
    fn policy(&self, chain: &str) -> Option<String>;
}

impl Chains for TableDump {
    fn rules(&self, chain: &str) -> Option<Cow<'_, [Rule]>> {
        self.chain(chain).map(|c| Cow::Borrowed(c.rules.as_slice()))
    }
    fn has(&self, chain: &str) -> bool {
        self.chain(chain).is_some()
    }
    fn policy(&self, chain: &str) -> Option<String> {
        self.chain(chain).and_then(|c| c.policy.clone())
    }
}

/// The rule that decided, and the chain it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub chain: String,
    pub rule: Rule,
}

/// Where the walk of a chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Accept(Decider),
    /// Dropped (DROP or REJECT), or, with an undecided match, maybe dropped.
    Drop(Decider),
    /// Off the end of the chain, or RETURNed: the caller's next rule, or a built-in chain's policy.
    Continue,
}

/// Chains deeper than this are not followed (the walk continues as if they returned).
const MAX_DEPTH: usize = 16;

/// Walk `chain` for one packet; `matches` tells what each rule (in the chain named) does with it.
pub fn walk(chains: &dyn Chains, chain: &str, matches: &dyn Fn(&str, &Rule) -> Matched) -> End {
    walk_at(chains, chain, matches, 0)
}

fn walk_at(chains: &dyn Chains, chain: &str, matches: &dyn Fn(&str, &Rule) -> Matched, depth: usize) -> End {
    if depth > MAX_DEPTH {
        return End::Continue;
    }
    let Some(rules) = chains.rules(chain) else { return End::Continue };
    // Set once a RETURN (or a goto whose chain ends) may have been taken: the packet then either
    // left this chain there or went on, and the walk follows the second path. An ACCEPT on it
    // does not decide, since the first path never met it; a DROP still does.
    let mut may_have_returned = false;
    let accept = |may_have_returned: bool, d: Decider| if may_have_returned { End::Continue } else { End::Accept(d) };
    let decider = |r: &Rule| Decider { chain: chain.to_string(), rule: r.clone() };
    for r in rules.iter() {
        let Matched { m, target, goto } = matches(chain, r);
        if m == M::No {
            continue;
        }
        match target.as_deref() {
            Some("ACCEPT") if m == M::Yes => return accept(may_have_returned, decider(r)),
            Some("DROP" | "REJECT") => return End::Drop(decider(r)),
            Some("RETURN") if m == M::Yes => return End::Continue,
            Some("RETURN") => may_have_returned = true,
            Some(t) if chains.has(t) => match walk_at(chains, t, matches, depth + 1) {
                End::Drop(d) => return End::Drop(d),
                End::Accept(d) if m == M::Yes => return accept(may_have_returned, d),
                // After a goto, the end of the chain gone to ends this chain too (netfilter goes
                // back to this chain's caller, or to the policy of a built-in chain), so the rules
                // after the goto are never reached.
                End::Continue if goto && m == M::Yes => return End::Continue,
                End::Continue if goto => may_have_returned = true,
                _ => {}
            },
            // LOG, MARK and other targets that do not end the walk.
            _ => {}
        }
    }
    End::Continue
}
