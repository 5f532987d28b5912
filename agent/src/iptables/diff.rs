//! The pure diff of one owned chain: desired (canonical rules) against current, and the
//! targeted edits that converge it. Semantics (documented in the README):
//! - A rule is hostguard's own when the document lists it, or when it is neither a named
//!   neighbour's (`foreign`) nor matched by an `ignore` pattern (`purge: true` only). hostguard
//!   edits only its own rules: it deletes them by their rule spec (`-D CHAIN RULE`), inserts its
//!   rules at a position (`-I CHAIN N`) or appends them, and never flushes or rewrites a chain.
//!   Every other rule stays where it is, which keeps the ownership invariant (SPEC section 3).
//! - `purge: true`: hostguard's own rules are exactly the listed ones, in order. Own rules that
//!   are not listed are deleted; a listed rule out of order is deleted and inserted again (all
//!   its copies, since `-D` removes the first match); the rest stay.
//! - `purge: false`: the listed rules must appear in the given order relative to each other;
//!   nothing is ever removed, duplicates included, and a duplicate of a listed rule is not drift.
//! - Where a missing rule goes: right after the listed rule before it; before the first listed
//!   rule present when it comes before all of them; with no listed rule present, at the end of
//!   the chain, but before the rules a neighbour keeps last (Docker's `-A DOCKER-USER -j RETURN`).

use std::sync::Arc;

// foldhash, not SipHash: the keys are rules iptables-save printed, and hashing them was a
// tenth of a plan (SipHash over every argument of every rule).
use foldhash::{HashMap, HashSet};
use regex::Regex;

use super::neighbours::Foreign;
use super::save::{Chain, Rule};

/// What hostguard writes for one rule: its canonical form (for comparison and reports) and the
/// arguments loaded into the kernel. Shared, not copied: the diff puts each desired rule into its
/// edit list and the chain after the edits, and an apply of 10,000 rules spent a fifth of its
/// instructions copying (and freeing) their strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry(Arc<EntryData>);

#[derive(Debug, PartialEq, Eq)]
pub struct EntryData {
    pub canon: Rule,
    /// The arguments loaded, when they are not the document's rule `source` as written (a rule
    /// kept from the host, or one whose negations were moved first); see `args_written`.
    pub write: Option<Vec<String>>,
    /// Index of the document rule this came from; `None` for a rule kept from the host.
    pub source: Option<usize>,
}

impl std::ops::Deref for Entry {
    type Target = EntryData;
    fn deref(&self) -> &EntryData {
        &self.0
    }
}

impl Entry {
    pub fn new(canon: Rule, write: Option<Vec<String>>, source: Option<usize>) -> Entry {
        Entry(Arc::new(EntryData { canon, write, source }))
    }

    pub fn kept(r: &Rule) -> Entry {
        Entry::new(r.clone(), Some(r.args.clone()), None)
    }
}

/// The desired content of one chain, canonicalised.
#[derive(Debug, Clone)]
pub struct Desired<'a> {
    pub chain: &'a str,
    pub policy: Option<&'a str>,
    pub purge: bool,
    pub ignore: &'a [Regex],
    pub foreign: &'a Foreign,
    pub rules: &'a [Entry],
}

impl Desired<'_> {
    /// Whether `r`, found in the chain, is hostguard's to edit.
    pub fn owns(&self, r: &Rule, listed: &HashSet<&Rule>) -> bool {
        if listed.contains(r) {
            return true;
        }
        if self.foreign.owns(self.chain, r) {
            return false;
        }
        !(self.purge && !self.ignore.is_empty() && {
            let line = r.line(self.chain);
            self.ignore.iter().any(|re| re.is_match(&line))
        })
    }
}

/// One targeted edit of a chain, in the order they are loaded (positions count the edits
/// before them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `-D CHAIN RULE`: the first rule with this spec.
    Delete(Rule),
    /// `-I CHAIN AT RULE`, 1-based.
    Insert(usize, Entry),
    /// `-A CHAIN RULE`.
    Append(Entry),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDiff {
    pub exists: bool,
    pub current_policy: Option<String>,
    /// `Some` when the policy must change.
    pub set_policy: Option<String>,
    /// Whether the rules must change.
    pub rewrite: bool,
    /// The edits that make the chain as desired.
    pub edits: Vec<Edit>,
    /// The whole chain after the edits when `rewrite` (empty otherwise).
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
    // The chain holds exactly the listed rules, in their order: every rule is a listed one, so
    // hostguard's, and in place, whether or not the chain is purged. Found pair by pair, with no
    // set of the 10,000 rules of a chain in sync.
    let in_order = cur.rules.len() == desired.rules.len() && cur.rules.iter().zip(desired.rules).all(|(r, e)| *r == e.canon);
    let (edits, target) = if in_order { Default::default() } else { edits(desired, cur) };
    let rewrite = !edits.is_empty();
    let (lines, counts) = if rewrite { lines(desired.chain, &edits) } else { Default::default() };
    ChainDiff {
        exists: current.is_some(),
        current_policy: cur.policy.clone(),
        set_policy,
        rewrite,
        edits,
        target: if rewrite { target } else { Vec::new() },
        lines,
        counts,
    }
}

/// The edits that make `cur` what `desired` lists, and the chain they leave.
fn edits(desired: &Desired, cur: &Chain) -> (Vec<Edit>, Vec<Entry>) {
    let listed: HashSet<&Rule> = desired.rules.iter().map(|e| &e.canon).collect();
    let own: Vec<bool> = cur.rules.iter().map(|r| desired.owns(r, &listed)).collect();
    // Per current rule, the desired rule it already is; `None` for the rest.
    let (deleted, anchors, settled) = if desired.purge { match_purge(cur, &own, desired.rules) } else { match_merge(cur, desired.rules) };
    // Every listed rule in place and nothing to delete: no edit (and no copy of 10,000 entries
    // to find that out).
    if settled {
        return Default::default();
    }
    place(desired, cur, &deleted, &anchors)
}

/// `purge: true`: the longest run of own rules already in the desired order stays; every copy of
/// any other own rule is deleted. Returns which current rules are deleted, per current rule the
/// desired rule it stands for, and whether the own rules are exactly the desired ones already.
fn match_purge(cur: &Chain, own: &[bool], want: &[Entry]) -> (Vec<bool>, Vec<Option<usize>>, bool) {
    use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};
    let o_idx: Vec<usize> = (0..cur.rules.len()).filter(|&i| own[i]).collect();
    let o_rules: Vec<&Rule> = o_idx.iter().map(|&i| &cur.rules[i]).collect();
    let w_rules: Vec<&Rule> = want.iter().map(|e| &e.canon).collect();
    let mut anchors: Vec<Option<usize>> = vec![None; cur.rules.len()];
    if o_rules == w_rules {
        for (j, &i) in o_idx.iter().enumerate() {
            anchors[i] = Some(j);
        }
        return (vec![false; cur.rules.len()], anchors, true);
    }
    let deadline = std::time::Instant::now() + DIFF_DEADLINE;
    let mut kept = vec![false; o_idx.len()];
    for op in capture_diff_slices_deadline(Algorithm::Myers, &o_rules, &w_rules, Some(deadline)) {
        if let DiffOp::Equal { old_index, new_index, len } = op {
            for k in 0..len {
                kept[old_index + k] = true;
                anchors[o_idx[old_index + k]] = Some(new_index + k);
            }
        }
    }
    // `-D` deletes the first rule with the spec: a spec that loses one copy loses them all, and
    // the copies that should stay are inserted again.
    let doomed: HashSet<&Rule> = o_rules.iter().zip(&kept).filter(|(_, k)| !**k).map(|(r, _)| *r).collect();
    let mut deleted = vec![false; cur.rules.len()];
    for &i in &o_idx {
        if doomed.contains(&cur.rules[i]) {
            deleted[i] = true;
            anchors[i] = None;
        }
    }
    (deleted, anchors, false)
}

/// `purge: false`: listed rules found in order stay where they are; nothing is deleted. A greedy
/// scan settles the common case (every listed rule present in order) in one pass; when some are
/// missing, the longest common subsequence decides which copies stand for listed rules, so in a
/// chain of repeated blocks (libvirt's per-network MASQUERADE triples) a missing rule goes back
/// into its own block, not after a later copy of its neighbour.
fn match_merge(cur: &Chain, want: &[Entry]) -> (Vec<bool>, Vec<Option<usize>>, bool) {
    use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};
    let mut at: HashMap<&Rule, Vec<usize>> = HashMap::default();
    for (i, r) in cur.rules.iter().enumerate() {
        at.entry(r).or_default().push(i);
    }
    let mut anchors: Vec<Option<usize>> = vec![None; cur.rules.len()];
    let mut pos = 0;
    let mut all = true;
    for (j, w) in want.iter().enumerate() {
        let found = at.get(&w.canon).and_then(|is| is.get(is.partition_point(|&i| i < pos)).copied());
        match found {
            Some(i) => {
                anchors[i] = Some(j);
                pos = i + 1;
            }
            None => all = false,
        }
    }
    if !all {
        anchors = vec![None; cur.rules.len()];
        let c_rules: Vec<&Rule> = cur.rules.iter().collect();
        let w_rules: Vec<&Rule> = want.iter().map(|e| &e.canon).collect();
        let deadline = std::time::Instant::now() + DIFF_DEADLINE;
        for op in capture_diff_slices_deadline(Algorithm::Myers, &c_rules, &w_rules, Some(deadline)) {
            if let DiffOp::Equal { old_index, new_index, len } = op {
                for k in 0..len {
                    anchors[old_index + k] = Some(new_index + k);
                }
            }
        }
    }
    (vec![false; cur.rules.len()], anchors, all)
}

/// The edits: deletions first, then the missing desired rules inserted left to right, so each
/// insert's position is its final one.
fn place(desired: &Desired, cur: &Chain, deleted: &[bool], anchors: &[Option<usize>]) -> (Vec<Edit>, Vec<Entry>) {
    let want = desired.rules;
    let mut edits: Vec<Edit> = Vec::new();
    // What stays, with the desired rule each stands for.
    let mut list: Vec<(Entry, Option<usize>)> = Vec::with_capacity(cur.rules.len() + want.len());
    for (i, r) in cur.rules.iter().enumerate() {
        if deleted[i] {
            edits.push(Edit::Delete(r.clone()));
        } else {
            // A kept desired rule is the document's entry: its spelling is what reports show.
            list.push(match anchors[i] {
                Some(j) => (want[j].clone(), Some(j)),
                None => (Entry::kept(r), None),
            });
        }
    }
    let mut present = vec![false; want.len()];
    for j in list.iter().filter_map(|(_, a)| *a) {
        present[j] = true;
    }
    if present.iter().all(|p| *p) {
        return (edits, list.into_iter().map(|(e, _)| e).collect());
    }
    // Missing rule j goes after the present rule before it; before the first present rule;
    // or, with none present, before the rules a neighbour keeps last.
    let mut after: HashMap<usize, Vec<usize>> = HashMap::default();
    let mut before_first: Vec<usize> = Vec::new();
    let mut anchor: Option<usize> = None;
    for j in 0..want.len() {
        match (present[j], anchor) {
            (true, _) => anchor = Some(j),
            (false, Some(a)) => after.entry(a).or_default().push(j),
            (false, None) => before_first.push(j),
        }
    }
    let first = (0..want.len()).find(|&j| present[j]);
    let tail_at = match first {
        Some(_) => list.len(),
        None => {
            let mut k = list.len();
            while k > 0 && list[k - 1].1.is_none() && desired.foreign.keeps_last(desired.chain, &list[k - 1].0.canon) {
                k -= 1;
            }
            k
        }
    };
    let total = list.len();
    // The chain after the edits, each rule marked when hostguard inserts it.
    let mut fin: Vec<(Entry, bool)> = Vec::with_capacity(total + want.len());
    let missing = |js: &[usize]| js.iter().map(|&j| (want[j].clone(), true)).collect::<Vec<_>>();
    for (k, (e, a)) in list.into_iter().enumerate() {
        if (first.is_none() && k == tail_at) || (a.is_some() && a == first) {
            fin.extend(missing(&before_first));
        }
        fin.push((e, false));
        if let Some(js) = a.and_then(|a| after.get(&a)) {
            fin.extend(missing(js));
        }
    }
    if first.is_none() && tail_at == total {
        fin.extend(missing(&before_first));
    }
    // Inserted left to right, each at its final position; past the last kept rule, appended.
    let last_kept = fin.iter().rposition(|(_, ins)| !ins);
    for (p, (e, ins)) in fin.iter().enumerate() {
        if *ins {
            edits.push(if last_kept.is_none_or(|l| p > l) { Edit::Append(e.clone()) } else { Edit::Insert(p + 1, e.clone()) });
        }
    }
    (edits, fin.into_iter().map(|(e, _)| e).collect())
}

/// Diff lines and counts from the edits: a rule both deleted and inserted is out of order.
fn lines(chain: &str, edits: &[Edit]) -> (Vec<String>, Counts) {
    let mut del: HashMap<&Rule, usize> = HashMap::default();
    let mut ins: HashMap<&Rule, usize> = HashMap::default();
    for e in edits {
        match e {
            Edit::Delete(r) => *del.entry(r).or_default() += 1,
            Edit::Insert(_, e) | Edit::Append(e) => *ins.entry(&e.canon).or_default() += 1,
        }
    }
    let mut counts = Counts::default();
    let mut out = Vec::new();
    // A line is rendered only when it is shown: an apply of 10,000 rules from empty spent a
    // tenth of its instructions rendering lines the report then dropped.
    let push = |out: &mut Vec<String>, line: &dyn Fn() -> String| {
        if out.len() < MAX_LINES {
            out.push(line());
        }
    };
    let mut moved_left: HashMap<&Rule, usize> =
        del.iter().map(|(r, n)| (*r, (*n).min(ins.get(r).copied().unwrap_or(0)))).collect();
    let mut del_moved = moved_left.clone();
    for e in edits {
        match e {
            Edit::Delete(r) => match del_moved.get_mut(r) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    counts.removed += 1;
                    push(&mut out, &|| format!("- {}", r.line(chain)));
                }
            },
            Edit::Insert(_, e) | Edit::Append(e) => match moved_left.get_mut(&e.canon) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    counts.moved += 1;
                    push(&mut out, &|| format!("~ {}   (out of order)", e.canon.line(chain)));
                }
                _ => {
                    counts.missing += 1;
                    push(&mut out, &|| format!("+ {}", e.canon.line(chain)));
                }
            },
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
    use crate::iptables::neighbours::{Foreign, Neighbour};

    fn rule(s: &str) -> Rule {
        Rule::new(shlex::split(s).unwrap())
    }
    fn entries(rs: &[&str]) -> Vec<Entry> {
        rs.iter().enumerate().map(|(i, s)| Entry::new(rule(s), Some(rule(s).args), Some(i))).collect()
    }
    fn chain(policy: Option<&str>, rs: &[&str]) -> Chain {
        Chain { name: "FORWARD".into(), policy: policy.map(String::from), rules: rs.iter().map(|s| rule(s)).collect() }
    }
    fn target(d: &ChainDiff) -> Vec<String> {
        d.target.iter().map(|e| e.canon.args.join(" ")).collect()
    }
    static NO_NEIGHBOURS: std::sync::OnceLock<Foreign> = std::sync::OnceLock::new();
    const NONE: &std::sync::OnceLock<Foreign> = &NO_NEIGHBOURS;
    fn d<'a>(chain: &'a str, purge: bool, ignore: &'a [Regex], foreign: &'a Foreign, rules: &'a [Entry]) -> Desired<'a> {
        Desired { chain, policy: None, purge, ignore, foreign, rules }
    }

    /// What iptables-restore does with the edits, in order.
    fn load(cur: &[Rule], edits: &[Edit]) -> Vec<Rule> {
        let mut out = cur.to_vec();
        for e in edits {
            match e {
                Edit::Delete(r) => {
                    let i = out.iter().position(|x| x == r).expect("-D of a rule the chain holds");
                    out.remove(i);
                }
                Edit::Insert(at, e) => {
                    assert!(*at >= 1 && *at <= out.len(), "-I {at} in a chain of {}", out.len());
                    out.insert(at - 1, e.canon.clone());
                }
                Edit::Append(e) => out.push(e.canon.clone()),
            }
        }
        out
    }

    #[test]
    fn purge_edits_own_rules_and_leaves_ignored_ones_where_they_are() {
        let ignore = [Regex::new("-j DOCKER").unwrap()];
        let mut want = d("FORWARD", true, &ignore, NONE.get_or_init(Foreign::default), &[]);
        want.policy = Some("DROP");
        let rules = entries(&["-j A", "-j B"]);
        want.rules = &rules;
        let cur = chain(Some("ACCEPT"), &["-j B", "-j stray", "-j DOCKER-USER", "-j A"]);
        let r = diff(&want, Some(&cur));
        assert!(!r.in_sync());
        assert_eq!(r.set_policy.as_deref(), Some("DROP"));
        assert_eq!(load(&cur.rules, &r.edits), r.target.iter().map(|e| e.canon.clone()).collect::<Vec<_>>());
        let t = target(&r);
        assert!(t == ["-j DOCKER-USER", "-j A", "-j B"] || t == ["-j A", "-j B", "-j DOCKER-USER"], "{t:?}");
        assert!(!r.edits.iter().any(|e| matches!(e, Edit::Delete(x) if x.args[1] == "DOCKER-USER")));
        assert_eq!(r.counts, Counts { missing: 0, removed: 1, moved: 1 });
        assert!(r.lines.iter().any(|l| l == "- -A FORWARD -j stray"), "{:?}", r.lines);
        assert_eq!(r.summary("FORWARD"), "policy ACCEPT -> DROP; 1 rule to remove; 1 rule out of order");
    }

    #[test]
    fn ignored_rules_anywhere_are_in_sync() {
        let ignore = [Regex::new("-j DOCKER").unwrap()];
        let rules = entries(&["-j A", "-j B"]);
        let cur = chain(Some("DROP"), &["-j A", "-j DOCKER", "-j B", "-j DOCKER-USER"]);
        assert!(diff(&d("FORWARD", true, &ignore, NONE.get_or_init(Foreign::default), &rules), Some(&cur)).in_sync());
    }

    #[test]
    fn missing_chain_is_created_even_when_empty() {
        let r = diff(&d("MINE", true, &[], NONE.get_or_init(Foreign::default), &[]), None);
        assert!(!r.in_sync());
        assert!(r.summary("MINE").contains("will be created"));
    }

    #[test]
    fn without_purge_listed_rules_are_ensured_in_order_and_nothing_is_removed() {
        let rules = entries(&["-j A", "-j B", "-j C"]);
        let want = d("FORWARD", false, &[], NONE.get_or_init(Foreign::default), &rules);
        let cur = chain(Some("ACCEPT"), &["-j X", "-j A", "-j Y", "-j C"]);
        let r = diff(&want, Some(&cur));
        assert_eq!(target(&r), ["-j X", "-j A", "-j B", "-j Y", "-j C"]);
        assert_eq!(r.edits, vec![Edit::Insert(3, rules[1].clone())]);
        assert_eq!(r.counts.missing, 1);
        let cur = chain(Some("ACCEPT"), &["-j X", "-j A", "-j Y", "-j B", "-j C", "-j Z"]);
        assert!(diff(&want, Some(&cur)).in_sync());
        // Out of order: the missing one is added after, the old copy stays.
        let cur = chain(Some("ACCEPT"), &["-j C", "-j X", "-j A", "-j B"]);
        let r = diff(&want, Some(&cur));
        assert_eq!(target(&r), ["-j C", "-j X", "-j A", "-j B", "-j C"]);
        assert!(r.edits.iter().all(|e| !matches!(e, Edit::Delete(_))));
        let cur = chain(Some("ACCEPT"), &["-j X"]);
        assert_eq!(target(&diff(&want, Some(&cur))), ["-j X", "-j A", "-j B", "-j C"]);
    }

    /// Regression: a libvirt host with 58 copies of its MASQUERADE rules lost them to purge: false.
    #[test]
    fn without_purge_a_rule_missing_from_repeated_blocks_goes_back_into_its_own_block() {
        // cisco-srapps-testbed.v4 (tests/data): libvirt wrote its POSTROUTING block once per
        // restart; with one rule of the third copy deleted, the repair must restore the dump.
        let block = ["-s 10.0.0.0/24 -d 224.0.0.0/24 -j RETURN", "-s 10.0.0.0/24 -j MASQUERADE", "-o eth0 -j ACCEPT"];
        let mut full: Vec<&str> = Vec::new();
        for _ in 0..4 {
            full.extend(block);
        }
        full.push("-o ens4 -j MASQUERADE");
        let mut holed = full.clone();
        holed.remove(6);
        let want = entries(&full);
        let f = Foreign::default();
        let dd = d("POSTROUTING", false, &[], &f, &want);
        let cur = chain(None, &holed);
        let out = diff(&dd, Some(&cur));
        assert_eq!(target(&out), full.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(out.edits.len(), 1, "{:?}", out.edits);
        assert_eq!(load(&cur.rules, &out.edits), entries(&full).into_iter().map(|e| e.canon.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn without_purge_a_duplicate_of_a_listed_rule_is_not_drift() {
        let rules = entries(&["-j A", "-j B"]);
        let cur = chain(None, &["-j A", "-j A", "-j B", "-j B", "-j A"]);
        assert!(diff(&d("X", false, &[], NONE.get_or_init(Foreign::default), &rules), Some(&cur)).in_sync());
    }

    #[test]
    fn the_empty_rule_is_a_rule() {
        let rules = entries(&["", "-j A"]);
        let cur = chain(None, &["-j A"]);
        let r = diff(&d("X", true, &[], NONE.get_or_init(Foreign::default), &rules), Some(&cur));
        assert_eq!(r.edits, vec![Edit::Insert(1, rules[0].clone())]);
        assert!(diff(&d("X", true, &[], NONE.get_or_init(Foreign::default), &rules), Some(&chain(None, &["", "-j A"]))).in_sync());
    }

    #[test]
    fn rules_go_before_the_return_docker_keeps_last_in_docker_user() {
        let docker = Foreign { names: vec![Neighbour::Docker], bridges: Default::default() };
        let rules = entries(&["-i eth0 -o docker0 -j DROP", "-j ACCEPT"]);
        let cur = Chain { name: "DOCKER-USER".into(), policy: None, rules: vec![rule("-j RETURN")] };
        for purge in [true, false] {
            let r = diff(&d("DOCKER-USER", purge, &[], &docker, &rules), Some(&cur));
            assert_eq!(target(&r), ["-i eth0 -o docker0 -j DROP", "-j ACCEPT", "-j RETURN"]);
            assert_eq!(r.edits, vec![Edit::Insert(1, rules[0].clone()), Edit::Insert(2, rules[1].clone())]);
        }
        // Without naming Docker, its RETURN is an unlisted rule of an owned chain.
        let r = diff(&d("DOCKER-USER", true, &[], NONE.get_or_init(Foreign::default), &rules), Some(&cur));
        assert_eq!(target(&r), ["-i eth0 -o docker0 -j DROP", "-j ACCEPT"]);
    }

    #[test]
    fn dockers_forward_rules_survive_purge_when_docker_is_named() {
        let fwd = [
            "-j DOCKER-USER",
            "-j DOCKER-ISOLATION-STAGE-1",
            "-o br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-o br-0123456789ab -j DOCKER",
            "-i br-0123456789ab ! -o br-0123456789ab -j ACCEPT",
            "-i br-0123456789ab -o br-0123456789ab -j ACCEPT",
            "-o docker0 -j DOCKER",
            "-i docker0 -o docker0 -j ACCEPT",
            "-i lxcbr0 -j stale",
        ];
        let cur = chain(Some("DROP"), &fwd);
        let bridges = crate::iptables::neighbours::docker_bridges([("FORWARD", cur.rules.as_slice())].into_iter());
        let docker = Foreign { names: vec![Neighbour::Docker], bridges };
        let rules = entries(&["-i lxcbr0 -o eth0 -j ACCEPT", "-i lxcbr0 -o lxcbr0 -j DROP"]);
        let r = diff(&d("FORWARD", true, &[], &docker, &rules), Some(&cur));
        assert_eq!(r.edits.iter().filter(|e| matches!(e, Edit::Delete(_))).count(), 1, "{:?}", r.edits);
        let after = load(&cur.rules, &r.edits);
        for f in &fwd[..8] {
            assert!(after.contains(&rule(f)), "{f} lost");
        }
        assert_eq!(r.counts, Counts { missing: 2, removed: 1, moved: 0 });
    }

    /// `diff` takes a chain that holds exactly the listed rules, in order, as in sync without
    /// sets or matching; the general path agrees, whatever the neighbours, patterns and purge.
    #[test]
    fn a_chain_holding_exactly_the_listed_rules_needs_no_edit_by_either_path() {
        let docker = Foreign { names: vec![Neighbour::Docker], bridges: Default::default() };
        let ignore = [Regex::new("-j ign").unwrap()];
        let lists: [&[&str]; 5] = [
            &[],
            &["-j A"],
            &["-j A", "-j A", "-j B"],
            &["-j ign1", "-j A", "-j ign1"],
            &["-j DOCKER", "-j A", "", "-j DOCKER-X", "-j RETURN"],
        ];
        for want in lists {
            let rules = entries(want);
            let cur = chain(None, want);
            for purge in [true, false] {
                for foreign in [NONE.get_or_init(Foreign::default), &docker] {
                    for ig in [&ignore[..], &[]] {
                        let desired = d("FORWARD", purge, ig, foreign, &rules);
                        let r = diff(&desired, Some(&cur));
                        assert!(r.in_sync() && r.edits.is_empty(), "{want:?} purge {purge}: {:?}", r.edits);
                        assert_eq!(edits(&desired, &cur), (Vec::new(), Vec::new()), "{want:?} purge {purge}");
                    }
                }
            }
        }
    }

    /// The invariant on many small chains: the edits load into exactly the planned chain, every
    /// rule hostguard does not own keeps its place among the others, and the result is in sync.
    #[test]
    fn edits_never_touch_what_hostguard_does_not_own() {
        let docker = Foreign { names: vec![Neighbour::Docker], bridges: Default::default() };
        let ignore = [Regex::new("-j ign").unwrap()];
        let alphabet = ["-j A", "-j B", "-j C", "-j D", "-j ign1", "-j DOCKER", "-j ign2", "-j DOCKER-X", ""];
        let mut seed: u64 = 0x2545F4914F6CDD1D;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for case in 0..3000 {
            let purge = case % 2 == 0;
            let cur_len = next(8);
            let cur: Vec<&str> = (0..cur_len).map(|_| alphabet[next(alphabet.len())]).collect();
            let want_len = next(5);
            let want: Vec<&str> = (0..want_len).map(|_| ["-j A", "-j B", "-j C", "-j D", ""][next(5)]).collect();
            let rules = entries(&want);
            let ig: &[Regex] = if purge { &ignore } else { &[] };
            let desired = d("X", purge, ig, &docker, &rules);
            let c = Chain { name: "X".into(), policy: None, rules: cur.iter().map(|s| rule(s)).collect() };
            let r = diff(&desired, Some(&c));
            let listed: HashSet<&Rule> = rules.iter().map(|e| &e.canon).collect();
            let after = if r.rewrite { load(&c.rules, &r.edits) } else { c.rules.clone() };
            if r.rewrite {
                assert_eq!(after, r.target.iter().map(|e| e.canon.clone()).collect::<Vec<_>>(), "{cur:?} {want:?}");
            }
            let others = |rs: &[Rule]| rs.iter().filter(|r| !desired.owns(r, &listed)).cloned().collect::<Vec<_>>();
            assert_eq!(others(&c.rules), others(&after), "case {case}: {cur:?} -> {want:?}");
            if !purge {
                assert!(r.edits.iter().all(|e| !matches!(e, Edit::Delete(_))), "{cur:?} {want:?}");
            }
            let done = Chain { name: "X".into(), policy: None, rules: after };
            assert!(diff(&desired, Some(&done)).in_sync(), "case {case}: {cur:?} -> {want:?}");
        }
    }

    #[test]
    fn diff_lines_are_capped_but_counts_are_not() {
        let many: Vec<String> = (0..500).map(|i| format!("-j R{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let rules = entries(&refs);
        let r = diff(&d("X", true, &[], NONE.get_or_init(Foreign::default), &rules), Some(&Chain { name: "X".into(), policy: None, rules: Vec::new() }));
        assert_eq!(r.counts.missing, 500);
        assert_eq!(r.lines.len(), MAX_LINES + 1);
        // The lines shown are the first ones, in order; the rest are counted.
        assert_eq!(r.lines[0], "+ -A X -j R0");
        assert_eq!(r.lines[MAX_LINES - 1], format!("+ -A X -j R{}", MAX_LINES - 1));
        assert_eq!(r.lines[MAX_LINES], "... and 300 more lines");
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
            .map(|i| Entry::new(Rule::new(vec!["-j".into(), format!("NEW{i}")]), Some(Vec::new()), Some(i)))
            .collect();
        let cur = Chain { name: "X".into(), policy: None, rules: old };
        let start = std::time::Instant::now();
        for purge in [true, false] {
            let none = Foreign::default();
            let d = Desired { chain: "X", policy: None, purge, ignore: &[], foreign: &none, rules: &new };
            let r = diff(&d, Some(&cur));
            assert_eq!(r.counts.missing, 10_000);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
    }
}
