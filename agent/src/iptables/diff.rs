//! The pure part: what an owned chain should hold, given what it holds now.
//!
//! Ownership semantics (documented in the README):
//! - `purge: true`: the chain holds exactly the listed rules, in order, plus the rules that match
//!   an `ignore` pattern. Ignored rules are not compared, so another tool adding or moving them is
//!   never drift. When hostguard has to rewrite the chain, the ignored rules go first, in their
//!   existing order, then the listed rules: tools such as Docker expect their jump rules
//!   (`-j DOCKER-USER`) to be evaluated first. A rule that is listed is never "ignored".
//! - `purge: false`: the listed rules must appear in the given order relative to each other;
//!   other rules stay where they are. A missing rule is inserted right after the listed rule that
//!   precedes it (before the next listed rule when it is the first, or at the end of the chain
//!   when no listed rule is present yet); a listed rule found out of order is moved.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use super::save::{Chain, Rule};

/// What hostguard writes for one rule: its canonical form (for comparison and reports) and the
/// arguments loaded into the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub canon: Rule,
    pub write: Vec<String>,
    /// Index of the document rule this came from; `None` for a rule kept from the host.
    pub source: Option<usize>,
}

impl Entry {
    pub fn kept(r: &Rule) -> Entry {
        Entry { canon: r.clone(), write: r.args.clone(), source: None }
    }
}

/// The desired content of one chain, canonicalised.
#[derive(Debug, Clone)]
pub struct Desired<'a> {
    pub chain: &'a str,
    pub policy: Option<&'a str>,
    pub purge: bool,
    pub ignore: &'a [Regex],
    pub rules: &'a [Entry],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDiff {
    pub exists: bool,
    pub current_policy: Option<String>,
    /// `Some` when the policy must change.
    pub set_policy: Option<String>,
    /// Whether the rules must be rewritten.
    pub rewrite: bool,
    /// The complete rule list to write when `rewrite` (empty otherwise).
    pub target: Vec<Entry>,
    /// Human diff lines: `+` missing, `-` removed, `~` out of order.
    pub lines: Vec<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub missing: usize,
    pub removed: usize,
    pub moved: usize,
}

impl ChainDiff {
    pub fn in_sync(&self) -> bool {
        self.exists && self.set_policy.is_none() && !self.rewrite
    }

    /// One line: `policy ACCEPT -> DROP; 2 rules missing, 1 to remove`.
    pub fn summary(&self, chain: &str) -> String {
        let mut parts = Vec::new();
        if !self.exists {
            parts.push(format!("chain {chain} does not exist and will be created"));
        }
        if let Some(p) = &self.set_policy {
            parts.push(format!("policy {} -> {p}", self.current_policy.as_deref().unwrap_or("(none)")));
        }
        let c = self.counts;
        let plural = |n: usize| if n == 1 { "rule" } else { "rules" };
        if c.missing > 0 {
            parts.push(format!("{} {} missing", c.missing, plural(c.missing)));
        }
        if c.removed > 0 {
            parts.push(format!("{} {} to remove", c.removed, plural(c.removed)));
        }
        if c.moved > 0 {
            parts.push(format!("{} {} out of order", c.moved, plural(c.moved)));
        }
        parts.join("; ")
    }
}

/// Diff lines shown at most; the counts in the summary are always complete.
pub const MAX_LINES: usize = 200;

/// How long the line diff may search for the smallest edit.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(200);

pub fn diff(desired: &Desired, current: Option<&Chain>) -> ChainDiff {
    let empty = Chain::default();
    let cur = current.unwrap_or(&empty);
    let set_policy = match desired.policy {
        Some(p) if cur.policy.as_deref() != Some(p) => Some(p.to_string()),
        _ => None,
    };
    let want: Vec<&Rule> = desired.rules.iter().map(|e| &e.canon).collect();
    let (compared, kept): (Vec<&Rule>, Vec<&Rule>) = if desired.purge {
        let listed: HashSet<&Rule> = want.iter().copied().collect();
        let (kept, managed) = cur.rules.iter().partition(|r| {
            !desired.ignore.is_empty() && !listed.contains(*r) && {
                let line = r.line(desired.chain);
                desired.ignore.iter().any(|re| re.is_match(&line))
            }
        });
        (managed, kept)
    } else {
        (cur.rules.iter().collect(), Vec::new())
    };
    let merged = if desired.purge { Vec::new() } else { merge(&cur.rules, desired.rules) };
    let target_rules: Vec<&Rule> = if desired.purge { want } else { merged.iter().map(|e| &e.canon).collect() };
    let differs = compared != target_rules;
    let rewrite = differs || current.is_none() && !target_rules.is_empty();
    let (lines, counts) = if differs { lines(desired.chain, &compared, &target_rules) } else { Default::default() };
    // The full list to write is only built when the chain is rewritten.
    let target = match (rewrite, desired.purge) {
        (false, _) => Vec::new(),
        (true, true) => kept.iter().map(|r| Entry::kept(r)).chain(desired.rules.iter().cloned()).collect(),
        (true, false) => merged,
    };
    ChainDiff {
        exists: current.is_some(),
        current_policy: cur.policy.clone(),
        set_policy,
        rewrite,
        target,
        lines,
        counts,
    }
}

/// `purge: false`: the current rules with the listed ones ensured present in order.
fn merge(current: &[Rule], want: &[Entry]) -> Vec<Entry> {
    // Greedy: listed rules found in order stay where they are.
    let mut at: HashMap<&Rule, Vec<usize>> = HashMap::new();
    for (i, r) in current.iter().enumerate() {
        at.entry(r).or_default().push(i);
    }
    let mut matched: Vec<Option<usize>> = vec![None; want.len()];
    let mut pos = 0;
    for (j, w) in want.iter().enumerate() {
        let found = at.get(&w.canon).and_then(|is| is.get(is.partition_point(|&i| i < pos)).copied());
        if let Some(i) = found {
            matched[j] = Some(i);
            pos = i + 1;
        }
    }
    // Missing rules go right after the listed rule before them; those before the first listed
    // rule found go right before it; with none found, at the end. One pass, no inserts.
    let mut after: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut before_first: Vec<usize> = Vec::new();
    let mut anchor: Option<usize> = None;
    for (j, m) in matched.iter().enumerate() {
        match (m, anchor) {
            (Some(i), _) => anchor = Some(*i),
            (None, Some(i)) => after.entry(i).or_default().push(j),
            (None, None) => before_first.push(j),
        }
    }
    let first = matched.iter().flatten().next().copied();
    let by_index: HashMap<usize, usize> = matched.iter().enumerate().filter_map(|(j, m)| m.map(|i| (i, j))).collect();
    let listed: HashSet<&Rule> = want.iter().map(|e| &e.canon).collect();
    let mut out: Vec<Entry> = Vec::with_capacity(current.len() + want.len());
    for (i, r) in current.iter().enumerate() {
        if Some(i) == first {
            out.extend(before_first.iter().map(|&j| want[j].clone()));
        }
        match by_index.get(&i) {
            // The document's spelling of the same rule.
            Some(&j) => out.push(want[j].clone()),
            // An out-of-order copy of a listed rule is moved, not duplicated.
            None if listed.contains(r) => continue,
            None => out.push(Entry::kept(r)),
        }
        if let Some(js) = after.get(&i) {
            out.extend(js.iter().map(|&j| want[j].clone()));
        }
    }
    if first.is_none() {
        out.extend(before_first.iter().map(|&j| want[j].clone()));
    }
    out
}

fn lines(chain: &str, current: &[&Rule], target: &[&Rule]) -> (Vec<String>, Counts) {
    use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};
    // Myers is quadratic when the two lists share nothing (10,000 rules all changed): past the
    // deadline it settles for a diff that is correct but not minimal.
    let deadline = std::time::Instant::now() + DIFF_DEADLINE;
    let ops = capture_diff_slices_deadline(Algorithm::Myers, current, target, Some(deadline));
    let mut removed: Vec<&Rule> = Vec::new();
    let mut inserted: Vec<&Rule> = Vec::new();
    let mut order: Vec<(char, &Rule)> = Vec::new();
    for op in &ops {
        match *op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete { old_index, old_len, .. } => {
                for r in &current[old_index..old_index + old_len] {
                    removed.push(r);
                    order.push(('-', r));
                }
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                for r in &target[new_index..new_index + new_len] {
                    inserted.push(r);
                    order.push(('+', r));
                }
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                for r in &current[old_index..old_index + old_len] {
                    removed.push(r);
                    order.push(('-', r));
                }
                for r in &target[new_index..new_index + new_len] {
                    inserted.push(r);
                    order.push(('+', r));
                }
            }
        }
    }
    let ins: HashSet<&Rule> = inserted.iter().copied().collect();
    let rem: HashSet<&Rule> = removed.iter().copied().collect();
    let mut counts = Counts::default();
    let mut out = Vec::new();
    for (mark, r) in order {
        let moved = ins.contains(r) && rem.contains(r);
        let line = match (mark, moved) {
            ('-', true) => continue,
            ('+', true) => {
                counts.moved += 1;
                format!("~ {}   (out of order)", r.line(chain))
            }
            ('-', false) => {
                counts.removed += 1;
                format!("- {}", r.line(chain))
            }
            _ => {
                counts.missing += 1;
                format!("+ {}", r.line(chain))
            }
        };
        if out.len() < MAX_LINES {
            out.push(line);
        }
    }
    let total = counts.missing + counts.removed + counts.moved;
    if total > MAX_LINES {
        out.push(format!("... and {} more lines", total - MAX_LINES));
    }
    (out, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        Rule::new(shlex::split(s).unwrap())
    }
    fn entries(rs: &[&str]) -> Vec<Entry> {
        rs.iter().enumerate().map(|(i, s)| Entry { canon: rule(s), write: rule(s).args, source: Some(i) }).collect()
    }
    fn chain(policy: Option<&str>, rs: &[&str]) -> Chain {
        Chain { name: "FORWARD".into(), policy: policy.map(String::from), rules: rs.iter().map(|s| rule(s)).collect() }
    }
    fn target(d: &ChainDiff) -> Vec<String> {
        d.target.iter().map(|e| e.canon.args.join(" ")).collect()
    }

    #[test]
    fn purge_keeps_ignored_rules_first_and_reports_the_rest() {
        let ignore = [Regex::new("-j DOCKER").unwrap()];
        let d = Desired { chain: "FORWARD", policy: Some("DROP"), purge: true, ignore: &ignore, rules: &entries(&["-j A", "-j B"]) };
        let cur = chain(Some("ACCEPT"), &["-j B", "-j stray", "-j DOCKER-USER", "-j A"]);
        let r = diff(&d, Some(&cur));
        assert!(!r.in_sync());
        assert_eq!(r.set_policy.as_deref(), Some("DROP"));
        assert_eq!(target(&r), ["-j DOCKER-USER", "-j A", "-j B"]);
        assert_eq!(r.counts, Counts { missing: 0, removed: 1, moved: 1 });
        assert!(r.lines.iter().any(|l| l == "- -A FORWARD -j stray"), "{:?}", r.lines);
        assert_eq!(r.summary("FORWARD"), "policy ACCEPT -> DROP; 1 rule to remove; 1 rule out of order");
    }

    #[test]
    fn ignored_rules_anywhere_are_in_sync() {
        let ignore = [Regex::new("-j DOCKER").unwrap()];
        let d = Desired { chain: "FORWARD", policy: Some("DROP"), purge: true, ignore: &ignore, rules: &entries(&["-j A", "-j B"]) };
        let cur = chain(Some("DROP"), &["-j A", "-j DOCKER", "-j B", "-j DOCKER-USER"]);
        assert!(diff(&d, Some(&cur)).in_sync());
    }

    #[test]
    fn missing_chain_is_created_even_when_empty() {
        let d = Desired { chain: "MINE", policy: None, purge: true, ignore: &[], rules: &[] };
        let r = diff(&d, None);
        assert!(!r.in_sync());
        assert!(r.summary("MINE").contains("will be created"));
    }

    #[test]
    fn without_purge_listed_rules_are_ensured_in_order_and_others_stay() {
        let d = Desired { chain: "FORWARD", policy: None, purge: false, ignore: &[], rules: &entries(&["-j A", "-j B", "-j C"]) };
        let cur = chain(Some("ACCEPT"), &["-j X", "-j A", "-j Y", "-j C"]);
        let r = diff(&d, Some(&cur));
        assert_eq!(target(&r), ["-j X", "-j A", "-j B", "-j Y", "-j C"]);
        assert_eq!(r.counts.missing, 1);
        let cur = chain(Some("ACCEPT"), &["-j X", "-j A", "-j Y", "-j B", "-j C", "-j Z"]);
        assert!(diff(&d, Some(&cur)).in_sync());
        let cur = chain(Some("ACCEPT"), &["-j C", "-j X", "-j A", "-j B"]);
        let r = diff(&d, Some(&cur));
        assert_eq!(target(&r), ["-j X", "-j A", "-j B", "-j C"]);
        let cur = chain(Some("ACCEPT"), &["-j X"]);
        assert_eq!(target(&diff(&d, Some(&cur))), ["-j X", "-j A", "-j B", "-j C"]);
    }

    #[test]
    fn diff_lines_are_capped_but_counts_are_not() {
        let many: Vec<String> = (0..500).map(|i| format!("-j R{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let d = Desired { chain: "X", policy: None, purge: true, ignore: &[], rules: &entries(&refs) };
        let r = diff(&d, Some(&Chain { name: "X".into(), policy: None, rules: Vec::new() }));
        assert_eq!(r.counts.missing, 500);
        assert_eq!(r.lines.len(), MAX_LINES + 1);
    }
}

#[cfg(test)]
mod scale {
    use super::*;

    /// A regression test: 10,000 rules all replaced took minutes in the line diff.
    #[test]
    fn a_chain_whose_every_rule_changed_diffs_quickly() {
        let old: Vec<Rule> = (0..10_000).map(|i| Rule::new(vec!["-j".into(), format!("OLD{i}")])).collect();
        let new: Vec<Entry> = (0..10_000)
            .map(|i| Entry { canon: Rule::new(vec!["-j".into(), format!("NEW{i}")]), write: Vec::new(), source: Some(i) })
            .collect();
        let cur = Chain { name: "X".into(), policy: None, rules: old };
        let start = std::time::Instant::now();
        for purge in [true, false] {
            let d = Desired { chain: "X", policy: None, purge, ignore: &[], rules: &new };
            let r = diff(&d, Some(&cur));
            assert_eq!(r.counts.missing, 10_000);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
    }
}
