//! The `iptables` resource kind: owned chains of IPv4 and IPv6 tables, read with
//! `iptables-save`, compared in canonical form, written with one `iptables-restore --noflush`
//! transaction per changed table and family, and read back.
//!
//! Every owned chain is one resource (`iptables/ipv4/filter/FORWARD`). How rules are compared:
//! a desired rule that the built-in normaliser renders exactly as the host already prints it is
//! equal (no namespace needed); otherwise the desired chains are canonicalised by iptables itself
//! in a throwaway network namespace (`canon`), or, when that is impossible, by the normaliser.
//! The report's message says which was used.

mod backend;
mod canon;
pub mod confirm;
pub mod diff;
pub mod guard;
pub mod neighbours;
pub mod normalize;
pub mod save;
pub mod undo;
pub mod walk;

use foldhash::HashSet;
use std::borrow::Cow;
use std::sync::Arc;

use crate::kind::{Ctx, Resources};
use crate::error::Result;
use crate::host::Host;
use crate::report::{ResourceReport, Status};
use crate::state::iptables::{Backend, ChainSpec, Family, IptablesState, Table};

pub use backend::Tools;
use diff::{ChainDiff, Desired, Edit, Entry};
use neighbours::{Foreign, Neighbour};
use save::{Rule, TableDump};
use undo::{ChainUndo, TableUndo};

const KIND: &str = "iptables";

const BY_SAVE: &str = "compared with iptables-save's output";
const BY_EMPTY: &str = "none of the rules is present, whatever their spelling; the read-back after apply is compared in canonical form";
const BY_NETNS: &str = "canonical form by iptables in a private network namespace";

/// One owned chain, planned.
#[derive(Debug)]
struct ChainPlan {
    spec: Arc<ChainSpec>,
    rules: Vec<Entry>,
    diff: ChainDiff,
    compared_by: String,
    /// The neighbours of the chain, with what they need from the table as read.
    foreign: Foreign,
    /// The rules' canonical forms are the normaliser's guess, not yet confirmed by iptables:
    /// after apply, a read-back that differs is canonicalised before it counts as failed.
    lazy: bool,
}

impl ChainPlan {
    fn desired(&self) -> Desired<'_> {
        self.desired_with(&self.foreign, &self.rules)
    }

    fn desired_with<'a>(&'a self, foreign: &'a Foreign, rules: &'a [Entry]) -> Desired<'a> {
        Desired {
            chain: self.spec.chain.as_str(),
            policy: self.spec.policy.map(|p| p.as_str()),
            purge: self.spec.purge,
            ignore: &self.spec.ignore,
            foreign,
            rules,
        }
    }

    fn foreign_in(&self, table: &TableDump) -> Foreign {
        foreign_in(&self.spec, table)
    }

    /// What the restore input loads for one of this chain's entries.
    fn args_written<'a>(&'a self, e: &'a Entry) -> &'a [String] {
        match (&e.write, e.source) {
            (Some(w), _) => w,
            (None, Some(i)) => self.spec.rules[i].args(),
            (None, None) => &e.canon.args,
        }
    }

    fn id(&self) -> String {
        format!("{KIND}/{}/{}/{}", self.spec.family.key(), self.spec.table, self.spec.chain)
    }

    fn doc_path(&self) -> String {
        format!("iptables.{}[\"{}\"][\"{}\"]", self.spec.family.key(), self.spec.table, self.spec.chain)
    }

    fn report(&self) -> ResourceReport {
        let status = if self.diff.in_sync() { Status::InSync } else { Status::Drift };
        let (current, desired) = match self.spec.policy {
            Some(p) => (self.diff.current_policy.clone(), Some(p.to_string())),
            None => (None, None),
        };
        let what = if self.diff.in_sync() { "in sync".to_string() } else { self.diff.summary(self.spec.chain.as_str()) };
        ResourceReport::new(KIND, self.id(), status)
            .values(current, desired)
            .message(format!("{what} ({})", self.compared_by))
            .with_diff(self.diff.lines.clone())
    }
}

/// A chain's neighbours as a table shows them (Docker's bridges are learned from its rules).
pub fn foreign_in(spec: &ChainSpec, table: &TableDump) -> Foreign {
    let bridges = if spec.foreign.contains(&Neighbour::Docker) {
        neighbours::docker_bridges(table.chains.iter().map(|c| (c.name.as_str(), c.rules.as_slice())))
    } else {
        Default::default()
    };
    Foreign { names: spec.foreign.clone(), bridges }
}

/// The owned chains of one table of one family.
#[derive(Debug)]
struct Group {
    family: Family,
    table: Table,
    current: TableDump,
    chains: Vec<ChainPlan>,
}

#[derive(Debug)]
pub struct Plan {
    tools: Option<Tools>,
    groups: Vec<Group>,
    /// The SSH session the guard keeps (`Options::ssh_session`).
    session: Option<guard::Session>,
}

pub fn plan(ctx: &Ctx, desired: &IptablesState) -> Result<Plan> {
    if desired.chains.is_empty() {
        return Ok(Plan { tools: None, groups: Vec::new(), session: None });
    }
    let mut slices: Vec<(Family, Table, &[Arc<ChainSpec>])> = Vec::new();
    let mut i = 0;
    while i < desired.chains.len() {
        let (family, table) = (desired.chains[i].family, desired.chains[i].table);
        let n = desired.chains[i..].iter().take_while(|c| c.family == family && c.table == table).count();
        slices.push((family, table, &desired.chains[i..i + n]));
        i += n;
    }
    // Every table is read while the tools are resolved (`iptables -V`) and the document's rules
    // are normalised: waiting for iptables-save is most of an in-sync plan's time, and neither
    // of the others needs the table. The reads run side by side too (filter and nat, IPv4 and
    // IPv6).
    let backend = desired.backend;
    let (tools, reads, prepared) = std::thread::scope(|s| {
        let running: Vec<_> = slices
            .iter()
            .map(|&(family, table, _)| s.spawn(move || backend::read_before_resolve(ctx.host, backend, family, table)))
            .collect();
        let tools = Tools::resolve(ctx.host, backend);
        let prepared: Vec<Vec<Prepared>> = slices.iter().map(|&(family, _, specs)| specs.iter().map(|spec| prepare(spec, family)).collect()).collect();
        let reads: Vec<_> = running.into_iter().map(|r| r.join().expect("reading a table does not panic")).collect();
        (tools, reads, prepared)
    });
    // On a host without the tools `-V` fails too: that error comes first, as when the tools
    // were resolved before any table was read.
    let tools = tools?;
    let mut groups: Vec<Group> = Vec::new();
    for ((&(family, table, specs), current), prepared) in slices.iter().zip(reads).zip(prepared) {
        // The first table that cannot be read is the error, as when they were read in turn.
        let current = current?;
        let chains = plan_group(ctx.host, &tools, family, table, &current, specs, prepared);
        groups.push(Group { family, table, current, chains });
    }
    Ok(Plan { tools: Some(tools), groups, session: ctx.opts.ssh_session.clone() })
}

/// A desired chain's rules as written (negations first: what the namespace and the restore
/// input get) and through the built-in normaliser: all `plan_group` needs of the document
/// before it sees the table.
struct Prepared<'a> {
    written: Vec<Cow<'a, [String]>>,
    normalized: Vec<Rule>,
}

fn prepare(spec: &ChainSpec, family: Family) -> Prepared<'_> {
    let written: Vec<Cow<[String]>> = spec.rules.iter().map(|r| normalize::negations_first(r.args())).collect();
    let normalized: Vec<Rule> = written.iter().map(|a| Rule::new(normalize::normalize_fixed(a, family))).collect();
    Prepared { written, normalized }
}

/// An entry's arguments to write: `None` when they are the document rule's own (borrowed by
/// `negations_first`), so a plan does not copy every argument of every rule.
fn owned(written: Cow<[String]>) -> Option<Vec<String>> {
    match written {
        Cow::Borrowed(_) => None,
        Cow::Owned(v) => Some(v),
    }
}

/// What `plan_group` learns of one desired chain before it becomes a `ChainPlan`.
struct Pending<'a> {
    spec: &'a Arc<ChainSpec>,
    /// The rules as written, negations first: what the namespace and the restore input get.
    written: Vec<Cow<'a, [String]>>,
    /// `written` through the built-in normaliser.
    normalized: Vec<Rule>,
    /// The fast path: every normalised rule is literally what the host prints.
    fast: bool,
    foreign: Foreign,
    /// Holds none of its managed rules yet, so it differs whatever the spelling (`ChainPlan::lazy`).
    empty: bool,
    /// iptables' own form of the rules from a private namespace, or why it refused them; `None`
    /// when it was not asked.
    canonical: Option<std::result::Result<Vec<Rule>, String>>,
    /// Why the namespace could not be used, when it could not.
    fallback_note: Option<String>,
}

impl Pending<'_> {
    /// Whether iptables must canonicalise the chain in a private namespace.
    fn needs_namespace(&self) -> bool {
        !self.fast && !self.empty
    }
}

fn plan_group<'a>(
    host: &Host,
    tools: &Tools,
    family: Family,
    table: Table,
    current: &TableDump,
    specs: &'a [Arc<ChainSpec>],
    prepared: Vec<Prepared<'a>>,
) -> Vec<ChainPlan> {
    let mut pending: Vec<Pending> = specs
        .iter()
        .zip(prepared)
        .map(|(spec, Prepared { written, normalized })| {
            let fast = match current.chain(spec.chain.as_str()) {
                // A chain in sync holds the rules in their order: compared pair by pair, without
                // hashing every rule of the chain.
                Some(c) if c.rules == normalized => true,
                Some(c) => {
                    let have: HashSet<&Rule> = c.rules.iter().collect();
                    normalized.iter().all(|r| have.contains(r))
                }
                None => normalized.is_empty(),
            };
            // A chain that holds none of its managed rules yet differs whatever the spelling: it
            // is written without asking iptables first, and its read-back decides.
            let foreign = foreign_in(spec, current);
            let d = Desired { chain: spec.chain.as_str(), policy: None, purge: spec.purge, ignore: &spec.ignore, foreign: &foreign, rules: &[] };
            let empty = !spec.rules.is_empty()
                && current.chain(spec.chain.as_str()).is_none_or(|c| c.rules.iter().all(|r| !d.owns(r, &HashSet::default())));
            Pending { spec, written, normalized, fast, foreign, empty, canonical: None, fallback_note: None }
        })
        .collect();
    let need: Vec<usize> = (0..pending.len()).filter(|&k| pending[k].needs_namespace()).collect();
    if !need.is_empty() {
        // Declared in the namespace, so jumps to them load: the host's chains and every listed one.
        let existing: Vec<String> =
            current.chains.iter().map(|c| c.name.clone()).chain(specs.iter().map(|s| s.chain.to_string())).collect();
        let canonicalize = |pending: &[Pending], ks: &[usize]| {
            let requests: Vec<canon::Request> = ks
                .iter()
                .map(|&k| canon::Request { chain: pending[k].spec.chain.as_str(), rules: pending[k].written.iter().map(|w| &**w).collect() })
                .collect();
            canon::canonicalize(host, tools, family, table, &existing, &requests)
        };
        match canonicalize(&pending, &need) {
            Ok(mut map) => {
                for &k in &need {
                    pending[k].canonical = Some(Ok(map.remove(specs[k].chain.as_str()).unwrap_or_default()));
                }
            }
            Err(canon::CanonError::Unavailable(why)) => {
                for &k in &need {
                    pending[k].fallback_note = Some(format!("compared with the built-in normaliser: {why}"));
                }
            }
            Err(canon::CanonError::Rejected(msg)) => {
                // One chain of the batch holds a rule iptables refuses: find which, chain by chain.
                for &k in &need {
                    let one = match canonicalize(&pending, &[k]) {
                        Ok(mut map) => Ok(map.remove(specs[k].chain.as_str()).unwrap_or_default()),
                        Err(canon::CanonError::Rejected(m)) => Err(m),
                        Err(canon::CanonError::Unavailable(_)) => Err(msg.clone()),
                    };
                    pending[k].canonical = Some(one);
                }
            }
        }
    }
    // Rules move into their entries rather than being copied: a 10,000-rule chain is tens of
    // megabytes of small strings, and on a VM page faults are what a plan spends its time on.
    let mut out = Vec::new();
    for p in pending {
        let Pending { spec, written, normalized, fast, foreign, empty, canonical, fallback_note } = p;
        let direct = |canon: Vec<Rule>, written: Vec<Cow<[String]>>| -> Vec<Entry> {
            canon
                .into_iter()
                .zip(written)
                .enumerate()
                .map(|(i, (canon, write))| Entry::new(canon, owned(write), Some(i)))
                .collect()
        };
        let (rules, compared_by) = match canonical {
            None if fast => (direct(normalized, written), BY_SAVE.to_string()),
            None if empty => (direct(normalized, written), BY_EMPTY.to_string()),
            None => (direct(normalized, written), fallback_note.unwrap_or_default()),
            Some(Ok(c)) if c.len() == spec.rules.len() => (direct(c, written), BY_NETNS.to_string()),
            // A rule that iptables stores as several (`-s a,b`): write what iptables printed.
            Some(Ok(c)) => (c.iter().map(Entry::kept).collect(), BY_NETNS.to_string()),
            Some(Err(msg)) => (
                direct(normalized, written),
                format!("iptables refused a rule of this chain in a test namespace: {msg}; compared with the built-in normaliser"),
            ),
        };
        let mut plan = ChainPlan {
            spec: spec.clone(),
            rules,
            diff: diff::diff(
                &Desired { chain: spec.chain.as_str(), policy: None, purge: false, ignore: &[], foreign: &foreign, rules: &[] },
                None,
            ),
            compared_by,
            foreign,
            lazy: empty,
        };
        plan.diff = diff::diff(&plan.desired(), current.chain(spec.chain.as_str()));
        out.push(plan);
    }
    out
}

/// What one line of the restore input loads, for the message that names it when iptables refuses
/// the line. Described only then: an apply of 10,000 rules formatted 10,000 of these in advance.
enum Loads<'a> {
    /// The table, a chain declaration or a policy.
    Nothing,
    /// `-D` of a rule in a chain.
    Delete(&'a str, &'a Rule),
    /// The document's rule of a chain, by index.
    Document(&'a ChainPlan, usize),
    /// A rule of the host's, written again (a rule iptables stores as several).
    Kept(&'a str, &'a Rule),
}

impl Loads<'_> {
    fn describe(&self) -> Option<String> {
        Some(match self {
            Loads::Nothing => return None,
            Loads::Delete(chain, r) => format!("the rule `{}`, to delete", r.line(chain)),
            Loads::Document(c, i) => format!("{}.rules[{i}] `{}`", c.doc_path(), c.spec.rules[*i].text()),
            Loads::Kept(chain, r) => format!("the kept rule `{}`", r.line(chain)),
        })
    }
}

/// How often a table is read, edited and read back before a neighbour changing it at the same
/// time makes the chain `failed`.
const ATTEMPTS: usize = 3;

impl Group {
    fn changed(&self) -> impl Iterator<Item = &ChainPlan> {
        self.chains.iter().filter(|c| !c.diff.in_sync())
    }

    /// The restore input that makes the chains as planned with targeted edits (SPEC section 5):
    /// `-N` for a missing chain, the policy, then each chain's deletions and inserts. No chain is
    /// declared (`:CHAIN -` flushes an existing user chain under `--noflush`) or flushed. Also
    /// returns, per line, the rule it loads, for error messages.
    fn render<'a>(&self, diffs: &[(&'a ChainPlan, &'a ChainDiff)]) -> (String, Vec<Loads<'a>>) {
        let mut s = format!("*{}\n", self.table.name());
        let mut lines: Vec<Loads> = vec![Loads::Nothing];
        for (c, d) in diffs {
            let name = c.spec.chain.as_str();
            if !d.exists && !c.spec.builtin() {
                s.push_str(&format!("-N {name}\n"));
                lines.push(Loads::Nothing);
            }
            if let (Some(p), true) = (&d.set_policy, c.spec.builtin()) {
                s.push_str(&format!(":{name} {p} [0:0]\n"));
                lines.push(Loads::Nothing);
            }
        }
        for (c, d) in diffs {
            let name = c.spec.chain.as_str();
            for e in &d.edits {
                let (op, entry) = match e {
                    Edit::Delete(r) => {
                        save::push_restore_line(&mut s, "-D", name, None, &r.args);
                        lines.push(Loads::Delete(name, r));
                        continue;
                    }
                    Edit::Insert(at, entry) => (("-I", Some(*at)), entry),
                    Edit::Append(entry) => (("-A", None), entry),
                };
                save::push_restore_line(&mut s, op.0, name, op.1, c.args_written(entry));
                lines.push(match entry.source {
                    Some(i) => Loads::Document(c, i),
                    None => Loads::Kept(name, &entry.canon),
                });
            }
        }
        s.push_str("COMMIT\n");
        (s, lines)
    }

    /// The rollback record of the changed chains, before anything is changed.
    fn undo(&self, tools: &Tools) -> TableUndo {
        let chains = self
            .changed()
            .map(|c| {
                let cur = self.current.chain(c.spec.chain.as_str());
                let mut u = ChainUndo {
                    chain: c.spec.chain.to_string(),
                    policy: c.diff.set_policy.as_ref().and(cur.and_then(|ch| ch.policy.clone())),
                    created: cur.is_none(),
                    touched: Vec::new(),
                    before: cur.map(|ch| ch.rules.clone()).unwrap_or_default(),
                };
                touch(&mut u, &c.diff);
                u
            })
            .collect();
        TableUndo { tools: tools.clone(), family: self.family, table: self.table, chains }
    }

    /// Canonical forms of a lazily compared chain's rules, by iptables in a namespace.
    fn canonical_now(&self, host: &Host, tools: &Tools, c: &ChainPlan) -> Option<Vec<Entry>> {
        let written: Vec<Cow<[String]>> = c.spec.rules.iter().map(|r| normalize::negations_first(r.args())).collect();
        let existing: Vec<String> = self
            .current
            .chains
            .iter()
            .map(|c| c.name.clone())
            .chain(self.chains.iter().map(|c| c.spec.chain.to_string()))
            .collect();
        let req = canon::Request { chain: c.spec.chain.as_str(), rules: written.iter().map(|w| &**w).collect() };
        let mut map = canon::canonicalize(host, tools, self.family, self.table, &existing, &[req]).ok()?;
        let rules = map.remove(c.spec.chain.as_str())?;
        Some(if rules.len() == written.len() {
            rules.into_iter().zip(written).enumerate().map(|(i, (canon, write))| Entry::new(canon, owned(write), Some(i))).collect()
        } else {
            rules.iter().map(Entry::kept).collect()
        })
    }

    /// Edit, read back, and when a neighbour changed the table in between (the restore was
    /// refused, or the read-back is not as planned), plan again from a fresh read and retry.
    /// `persist` records the specs about to be touched before each restore, for `--confirm`;
    /// without it no undo record is built (for 10,000 rules, a fifth of an apply's instructions).
    fn apply(&self, host: &Host, tools: &Tools, note: &str, mut persist: Option<&mut dyn FnMut(&TableUndo)>) -> Vec<ResourceReport> {
        let before: Vec<ResourceReport> = self.chains.iter().map(ChainPlan::report).collect();
        if self.changed().next().is_none() {
            return before;
        }
        let mut undo = persist.is_some().then(|| self.undo(tools));
        // Per chain: the diff still to load (`None`: in sync) and the rules it is compared with.
        let mut todo: Vec<Option<ChainDiff>> = self.chains.iter().map(|c| (!c.diff.in_sync()).then(|| c.diff.clone())).collect();
        let mut rules: Vec<Option<Vec<Entry>>> = vec![None; self.chains.len()];
        let mut snapshot: Option<TableDump> = None;
        let mut attempt = 0;
        let outcome: std::result::Result<TableDump, String> = loop {
            attempt += 1;
            let pairs: Vec<(&ChainPlan, &ChainDiff)> = self.chains.iter().zip(&todo).filter_map(|(c, d)| d.as_ref().map(|d| (c, d))).collect();
            if let (Some(undo), Some(persist)) = (undo.as_mut(), persist.as_mut()) {
                for (c, d) in &pairs {
                    if let Some(u) = undo.chains.iter_mut().find(|u| u.chain == c.spec.chain.as_str()) {
                        touch(u, d);
                    }
                }
                persist(undo);
            }
            let (input, lines) = self.render(&pairs);
            let restored = tools.restore(host, self.family, &input);
            let now = tools.read(host, self.family, self.table);
            let now = match (restored, now) {
                (_, Err(e)) => break Err(format!("could not read the {} table back: {e}", self.table)),
                (Err(msg), Ok(now)) => {
                    let moved = snapshot.as_ref().unwrap_or(&self.current) != &now;
                    if moved && attempt < ATTEMPTS {
                        snapshot = Some(now);
                        self.replan(host, tools, snapshot.as_ref().expect("set"), &mut todo, &mut rules, true);
                        continue;
                    }
                    let lines: Vec<Option<String>> = lines.iter().map(Loads::describe).collect();
                    let why = failure(&msg, &lines);
                    break Err(format!("`{} --noflush` refused the {} table, which is unchanged: {why}", tools.restore_cmd(self.family), self.table));
                }
                (Ok(()), Ok(now)) => now,
            };
            let pending = self.replan(host, tools, &now, &mut todo, &mut rules, false);
            if pending == 0 || attempt >= ATTEMPTS {
                break Ok(now);
            }
            snapshot = Some(now);
        };
        if let (Some(undo), Some(persist)) = (undo.as_ref(), persist.as_mut()) {
            persist(undo);
        }
        let reports = self
            .chains
            .iter()
            .zip(before)
            .zip(&todo)
            .zip(&rules)
            .map(|(((c, r), left), rules)| {
                if c.diff.in_sync() {
                    return r;
                }
                let what = c.diff.summary(c.spec.chain.as_str());
                let now = match &outcome {
                    Err(e) => return r.after(Status::Failed, e.clone()),
                    Ok(now) => now,
                };
                if let Some(again) = left {
                    return r
                        .after(
                            Status::Failed,
                            format!(
                                "applied, but iptables does not hold the desired chain after {ATTEMPTS} attempts (another program changing it at the same time?): {}",
                                again.summary(c.spec.chain.as_str())
                            ),
                        )
                        .with_diff(again.lines.clone());
                }
                let lost = lost_rules(c, rules.as_deref().unwrap_or(&c.rules), &self.current, now);
                let mut r = r.after(Status::Changed, format!("{what}{note} ({}){lost}", c.compared_by));
                if c.spec.policy.is_some() {
                    r.current = now.chain(c.spec.chain.as_str()).and_then(|ch| ch.policy.clone());
                }
                r
            })
            .collect();
        // Not freed, like the plan (`Plan::apply`).
        std::mem::forget(outcome);
        reports
    }

    /// Diff every chain again against `now`; with `all`, also those already done (a refused
    /// restore changed nothing). Returns how many still differ.
    fn replan(&self, host: &Host, tools: &Tools, now: &TableDump, todo: &mut [Option<ChainDiff>], rules: &mut [Option<Vec<Entry>>], all: bool) -> usize {
        let mut pending = 0;
        for (k, c) in self.chains.iter().enumerate() {
            if c.diff.in_sync() || (todo[k].is_none() && !all) {
                continue;
            }
            let foreign = c.foreign_in(now);
            let ch = now.chain(c.spec.chain.as_str());
            let mut again = diff::diff(&c.desired_with(&foreign, rules[k].as_deref().unwrap_or(&c.rules)), ch);
            if !again.in_sync() && c.lazy && rules[k].is_none() {
                if let Some(canon) = self.canonical_now(host, tools, c) {
                    again = diff::diff(&c.desired_with(&foreign, &canon), ch);
                    rules[k] = Some(canon);
                }
            }
            todo[k] = (!again.in_sync()).then_some(again);
            pending += usize::from(todo[k].is_some());
        }
        pending
    }
}

fn touch(u: &mut ChainUndo, d: &ChainDiff) {
    u.touch(d.edits.iter().map(|e| match e {
        Edit::Delete(r) => r,
        Edit::Insert(_, e) | Edit::Append(e) => &e.canon,
    }));
}

/// Rules of others that were in the chain when it was read and are gone after apply. hostguard
/// deletes only its own rules, by their spec, so another program removed them while it ran:
/// the report says so rather than claim a chain that lost a rule is merely in sync.
fn lost_rules(c: &ChainPlan, rules: &[Entry], was: &TableDump, now: &TableDump) -> String {
    let (Some(before), Some(after)) = (was.chain(c.spec.chain.as_str()), now.chain(c.spec.chain.as_str())) else { return String::new() };
    let listed: HashSet<&Rule> = rules.iter().map(|e| &e.canon).collect();
    let foreign = c.foreign_in(was);
    let d = c.desired_with(&foreign, rules);
    let mut have: foldhash::HashMap<&Rule, usize> = foldhash::HashMap::default();
    for r in &after.rules {
        *have.entry(r).or_default() += 1;
    }
    let mut lost = Vec::new();
    for r in before.rules.iter().filter(|r| !d.owns(r, &listed)) {
        match have.get_mut(r) {
            Some(n) if *n > 0 => *n -= 1,
            _ => lost.push(format!("`{}`", r.line(c.spec.chain.as_str()))),
        }
    }
    if lost.is_empty() {
        return String::new();
    }
    format!(
        "; {} rule(s) not hostguard's were removed from {} by another program while hostguard ran (hostguard deletes only its own): {}",
        lost.len(),
        c.spec.chain,
        lost.join(", ")
    )
}

/// iptables' message, with the document rule its line number points at.
pub(crate) fn failure(stderr: &str, lines: &[Option<String>]) -> String {
    let msg: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Try `")).collect();
    let msg = msg.join("; ");
    let n = msg.rsplit("line").next().and_then(|t| {
        t.trim_start_matches([':', ' ']).split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<usize>().ok())
    });
    if let Some(rule) = n.and_then(|n| lines.get(n.wrapping_sub(1))).and_then(Clone::clone) {
        return format!("{msg}: {rule}");
    }
    // nf_tables reports the line of COMMIT; its message names the culprit in quotes
    // ("Chain 'X' does not exist"), which finds the rule.
    let quoted = msg.split(['\'', '`']).skip(1).step_by(2).filter(|t| !t.is_empty() && !t.contains(' '));
    for token in quoted {
        let word = |l: &&String| l.split([' ', '`']).any(|w| w == token);
        if let Some(rule) = lines.iter().flatten().find(word) {
            return format!("{msg}: {rule}");
        }
    }
    msg
}

impl Plan {
    fn changed_groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(|g| g.changed().next().is_some())
    }
}

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        let mut out: Vec<ResourceReport> = self.groups.iter().flat_map(|g| g.chains.iter().map(ChainPlan::report)).collect();
        // Say in the plan what apply would refuse, on the first chain that changes.
        if let Err(e) = guard::check_ssh(self, self.session.as_ref()) {
            if let Some(r) = out.iter_mut().find(|r| r.status == Status::Drift) {
                r.message.push_str(&format!("; apply would refuse without --force: {e}"));
            }
        }
        out
    }

    fn preflight(&self, ctx: &Ctx) -> Result<()> {
        confirm::finish_interrupted(ctx.host)?;
        if self.changed_groups().next().is_none() {
            return Ok(());
        }
        confirm::refuse_if_pending(ctx.host)?;
        if !ctx.opts.force {
            guard::check_ssh(self, self.session.as_ref())?;
        }
        Ok(())
    }

    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport> {
        let Some(tools) = &self.tools else { return Vec::new() };
        let changed: Vec<&Group> = self.changed_groups().collect();
        let mut note = String::new();
        let armed_for = ctx.opts.confirm.filter(|_| !changed.is_empty());
        // The rollback record exists only for --confirm.
        let mut records: Vec<TableUndo> = if armed_for.is_some() { changed.iter().map(|g| g.undo(tools)).collect() } else { Vec::new() };
        if let Some(secs) = armed_for {
            // The watchdog starts before the record and the change: it waits for this run's
            // lock, so even a run killed half-way is rolled back, and one killed before the
            // record leaves nothing pending.
            let armed = confirm::start_watchdog(ctx.host)
                .and_then(|()| confirm::arm(ctx.host, secs, &records, ctx.opts.confirm_probe.as_ref()));
            match armed {
                Ok(()) => {
                    note = match &ctx.opts.confirm_probe {
                        Some(p) => format!("; kept only if --confirm-probe {} answers within {secs}s", p.target),
                        None => format!("; rolled back in {secs}s unless `hostguard confirm` runs"),
                    };
                }
                Err(e) => {
                    // Without a working rollback, a confirm-guarded change is not made at all.
                    return self
                        .reports()
                        .into_iter()
                        .map(|r| {
                            if r.status == Status::InSync {
                                r
                            } else {
                                r.after(Status::Failed, format!("not applied: could not arm the --confirm rollback: {e}"))
                            }
                        })
                        .collect();
                }
            }
        }
        let mut out: Vec<ResourceReport> = Vec::new();
        let mut k = 0;
        for g in &self.groups {
            let is_changed = g.changed().next().is_some();
            let idx = k;
            let mut persist = |u: &TableUndo| {
                records[idx] = u.clone();
                // The record on disk must name every spec before iptables is touched; if it
                // cannot be written, the earlier one still undoes the first plan.
                let _ = confirm::update(ctx.host, &records);
            };
            let persist: Option<&mut dyn FnMut(&TableUndo)> = (is_changed && armed_for.is_some()).then_some(&mut persist);
            out.extend(g.apply(ctx.host, tools, &note, persist));
            k += usize::from(is_changed);
        }
        if armed_for.is_some() && out.iter().all(|r| r.status != Status::Changed) {
            // Nothing took: there is nothing to roll back.
            let _ = confirm::disarm(ctx.host);
        } else if let (Some(secs), Some(probe)) = (armed_for, &ctx.opts.confirm_probe) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            settle(&mut out, confirm::settle_held(ctx.host, probe, deadline));
        }
        // Not freed: the run ends with the report, as after a plan (`engine::converge`); freeing
        // the plan of 10,000 rules and the table read back was a sixth of an apply's instructions.
        std::mem::forget(self);
        out
    }
}

/// Put what `--confirm-probe` decided into the report: a kept change stays `changed`, a
/// rolled-back one is `failed` (the document's rules are not in place).
pub(crate) fn settle(out: &mut [ResourceReport], settled: Result<confirm::Settled>) {
    for r in out.iter_mut().filter(|r| r.status == Status::Changed) {
        *r = match &settled {
            Ok(confirm::Settled::Kept(what)) => r.after(Status::Changed, format!("{}; kept: {what}", r.message)),
            Ok(confirm::Settled::RolledBack { why, lines, .. }) => {
                r.after(Status::Failed, format!("{}; rolled back: {why} ({})", r.message, lines.join("; ")))
            }
            Err(e) => r.after(Status::Failed, format!("{}; the --confirm-probe decision failed: {e}", r.message)),
        };
    }
}

/// The host's current rules as the `iptables` section of a state document; `None` when
/// iptables is not installed. With both backends in use (iptables-nft warns "iptables-legacy
/// tables present"), the one holding rules is shown, and named as the document's backend.
pub fn show(ctx: &Ctx) -> Result<Option<serde_json::Value>> {
    let Ok(auto) = Tools::resolve(ctx.host, Backend::Auto) else { return Ok(None) };
    let dump = |tools: &Tools, family: Family| -> Result<Option<Vec<TableDump>>> {
        let cmd = tools.save_cmd(family);
        let Ok(out) = ctx.host.run_ok(&[&cmd], None) else { return Ok(None) };
        let tables = save::parse(&out.stdout).map_err(|e| crate::error::HostError::Other(format!("`{cmd}`: {e}")))?;
        Ok(Some(tables))
    };
    let rules = |ts: &Option<Vec<TableDump>>| ts.iter().flatten().flat_map(|t| &t.chains).map(|c| c.rules.len()).sum::<usize>();
    let mut tools = auto;
    let mut backend = "auto";
    let v4 = ctx.host.run(&[&tools.save_cmd(Family::V4)], None).map(|o| o.stdout + &o.stderr).unwrap_or_default();
    if tools.label == "nf_tables" && v4.contains("iptables-legacy tables present") {
        if let Ok(legacy) = Tools::resolve(ctx.host, Backend::Legacy) {
            if rules(&dump(&legacy, Family::V4)?) > rules(&dump(&tools, Family::V4)?) {
                tools = legacy;
                backend = "legacy";
            }
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("backend".into(), backend.into());
    for family in [Family::V4, Family::V6] {
        let Some(tables) = dump(&tools, family)? else { continue };
        let mut fam = serde_json::Map::new();
        for t in tables {
            let mut chains = serde_json::Map::new();
            for c in t.chains {
                let mut ch = serde_json::Map::new();
                if let Some(p) = c.policy {
                    ch.insert("policy".into(), p.into());
                }
                ch.insert("purge".into(), true.into());
                ch.insert("rules".into(), c.rules.iter().map(Rule::doc_text).collect::<Vec<_>>().into());
                chains.insert(c.name, ch.into());
            }
            fam.insert(t.name, chains.into());
        }
        doc.insert(family.key().into(), fam.into());
    }
    Ok(Some(doc.into()))
}

/// The nftables tables that `show`'s `iptables` section already prints: with the nf_tables
/// backend, iptables-nft keeps each iptables table as an nft table of the same name (`ip filter`,
/// `ip6 nat`), which the `nftables` section then leaves out rather than print twice.
pub fn shown_nft_tables(ctx: &Ctx, shown: &serde_json::Value) -> Vec<(String, String)> {
    if shown["backend"] == "legacy" || Tools::resolve(ctx.host, Backend::Auto).map_or(true, |t| t.label != "nf_tables") {
        return Vec::new();
    }
    [(Family::V4, "ip"), (Family::V6, "ip6")]
        .into_iter()
        .flat_map(|(family, nft)| {
            shown[family.key()].as_object().into_iter().flat_map(|m| m.keys()).map(move |t| (nft.to_string(), t.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_rule_its_line_points_at() {
        let lines = vec![None, None, Some("iptables.ipv4[\"filter\"][\"X\"].rules[0] `-j A`".to_string()), Some("rules[1] `-j NOPE`".into())];
        let legacy = "iptables-restore v1.8.9 (legacy): Couldn't load target `NOPE':No such file or directory\n\nError occurred at line: 4\nTry `iptables-restore -h' for more information.";
        assert!(failure(legacy, &lines).ends_with(": rules[1] `-j NOPE`"), "{}", failure(legacy, &lines));
        // nf_tables points at COMMIT; the quoted name finds the rule.
        let nft = "iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 5";
        assert!(failure(nft, &lines).ends_with(": rules[1] `-j NOPE`"), "{}", failure(nft, &lines));
        assert_eq!(failure("something else", &lines), "something else");
    }

    #[test]
    fn a_restore_line_is_described_as_the_rule_it_loads() {
        let r = Rule::new(vec!["-s".into(), "10.0.0.1/32".into(), "-j".into(), "ACCEPT".into()]);
        assert_eq!(Loads::Nothing.describe(), None);
        assert_eq!(Loads::Delete("INPUT", &r).describe().unwrap(), "the rule `-A INPUT -s 10.0.0.1/32 -j ACCEPT`, to delete");
        assert_eq!(Loads::Kept("INPUT", &r).describe().unwrap(), "the kept rule `-A INPUT -s 10.0.0.1/32 -j ACCEPT`");
    }
}
