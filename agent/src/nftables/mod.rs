//! The `nftables` resource kind (SPEC section 3b): whole named tables, owned whole, read with
//! `nft -s list table`, compared in the form nft itself lists them, and replaced — every changed
//! table at once — in one `nft -f` transaction that `nft -c` has checked first. Tables the
//! document does not name (Docker's, firewalld's, Incus's, libvirt's, iptables-nft's) are never
//! listed, compared or written.
//!
//! Every table is one resource (`nftables/inet/hostguard`). How it is compared: when the document
//! is already spelled as nft lists it, directly (no namespace); otherwise the desired tables are
//! loaded into a throwaway network namespace and listed there (`canon`), so `tcp dport ssh` and
//! `tcp dport 22` are the same rule. A table nft refuses there is `failed` already in plan, with
//! nft's message and the document rule it points at.

pub mod canon;
pub mod diff;
pub mod guard;
pub mod listing;
pub mod render;
pub mod show;

use std::sync::Arc;

use crate::kind::{Ctx, Resources};
use crate::error::{HostError, Result};
use crate::host::Host;
use crate::report::{ResourceReport, Status};
use crate::state::nftables::{NftablesState, TableSpec};

use listing::Table;
use render::Script;

const KIND: &str = "nftables";
pub const NFT: &str = "nft";

const BY_LISTING: &str = "compared with nft's listing";
const BY_NETNS: &str = "canonical form by nft in a private network namespace";
const BY_CHECK: &str = "the table is absent; `nft -c` accepts it";

/// One owned table, planned.
#[derive(Debug)]
struct TablePlan {
    spec: Arc<TableSpec>,
    current: Option<Table>,
    /// The table as nft lists it once loaded, or why nft refuses it.
    desired: std::result::Result<Table, String>,
    diff: Vec<String>,
    compared_by: String,
}

impl TablePlan {
    fn id(&self) -> String {
        format!("{KIND}/{}/{}", self.spec.family, self.spec.name)
    }

    fn changes(&self) -> bool {
        self.desired.is_ok() && !self.diff.is_empty()
    }

    fn report(&self) -> ResourceReport {
        let r = ResourceReport::new(KIND, self.id(), Status::InSync);
        match &self.desired {
            Err(why) => ResourceReport { status: Status::Failed, ..r }.message(format!("nft refuses the table: {why}")),
            Ok(_) if self.diff.is_empty() => r.message(format!("in sync ({})", self.compared_by)),
            Ok(_) => ResourceReport { status: Status::Drift, ..r }
                .message(format!("{} ({})", diff::summary(&self.diff), self.compared_by))
                .with_diff(self.diff.clone()),
        }
    }
}

#[derive(Debug)]
pub struct Plan {
    tables: Vec<TablePlan>,
    /// The batch `nft -c` already accepted in plan (creating the absent tables), which apply
    /// need not check again when it is the whole batch.
    checked: Option<String>,
    /// The SSH session the guard keeps (`Options::ssh_session`).
    session: Option<crate::kind::Session>,
}

/// The tables the host holds, as `(family, name)`.
pub fn list_tables(host: &Host) -> std::result::Result<Vec<(String, String)>, HostError> {
    let out = host.run_ok(&[NFT, "list", "tables"], None)?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("table"), Some(f), Some(n)) => Some((f.to_string(), n.trim_matches('"').to_string())),
                _ => None,
            }
        })
        .collect())
}

/// One table as the host holds it, `None` when it does not exist (nft says "No such file or
/// directory"; asking for it directly saves an `nft list tables`, which costs as much as the
/// listing).
pub fn read_table(host: &Host, family: &str, name: &str) -> std::result::Result<Option<Table>, HostError> {
    let argv = [NFT, "-s", "list", "table", family, name];
    let out = host.run(&argv, None)?;
    if !out.success {
        if out.stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(HostError::Command { argv: argv.join(" "), status: out.status, stderr: out.stderr.trim().to_string() });
    }
    let mut r = listing::parse(&out.stdout).map_err(|e| HostError::Other(format!("`nft -s list table {family} {name}`: {e}")))?;
    Ok(r.tables.pop())
}

pub fn plan(ctx: &Ctx, desired: &NftablesState) -> Result<Plan> {
    if desired.tables.is_empty() {
        return Ok(Plan { tables: Vec::new(), checked: None, session: None });
    }
    let mut tables = Vec::new();
    for spec in &desired.tables {
        let (f, n) = (spec.family.name(), spec.name.as_str());
        let current = read_table(ctx.host, f, n).map_err(|e| match e {
            HostError::Spawn { .. } => {
                HostError::Other(format!("cannot read the host's nftables tables (is the nftables package installed?): {e}"))
            }
            e => e,
        })?;
        tables.push(TablePlan { spec: spec.clone(), current, desired: Ok(Table::default()), diff: Vec::new(), compared_by: String::new() });
    }
    // The fast path: the document already says what nft lists.
    let mut need = Vec::new();
    let mut absent = Vec::new();
    for (k, t) in tables.iter_mut().enumerate() {
        let listed = render::as_listed(&t.spec);
        let d = diff::diff(&t.spec, &listed, t.current.as_ref());
        if d.is_empty() {
            (t.desired, t.compared_by) = (Ok(listed), BY_LISTING.into());
        } else if t.current.is_none() {
            absent.push(k);
        } else {
            need.push(k);
        }
    }
    // An absent table is drift whatever its canonical form: `nft -c` of creating it, on this
    // host, says already in plan whether nft takes it, without a throwaway namespace. Apply
    // compares the table it reads back in canonical form when it differs from the document's.
    let mut checked = None;
    if !absent.is_empty() {
        let mut script = Script::new();
        for &k in &absent {
            render::replace(&mut script, &tables[k].spec);
        }
        match ctx.host.run(&[NFT, "-c", "-f", "-"], Some(script.text.as_bytes())) {
            Ok(out) if out.success => {
                for &k in &absent {
                    tables[k].desired = Ok(render::as_listed(&tables[k].spec));
                    tables[k].compared_by = BY_CHECK.into();
                }
                checked = Some(script.text);
            }
            // Refused: the namespace says which table and rule.
            _ => need.extend(absent),
        }
        need.sort_unstable();
    }
    if !need.is_empty() {
        let specs: Vec<&TableSpec> = need.iter().map(|&k| &*tables[k].spec).collect();
        match canon::canonicalize(ctx.host, &specs) {
            Ok(results) => {
                for (&k, result) in need.iter().zip(results) {
                    tables[k].desired = result;
                    tables[k].compared_by = BY_NETNS.into();
                }
            }
            Err(why) => {
                for &k in &need {
                    tables[k].desired = Ok(render::as_listed(&tables[k].spec));
                    tables[k].compared_by = format!("compared as written, not in nft's canonical form: {why}");
                }
            }
        }
    }
    for t in &mut tables {
        if let Ok(want) = &t.desired {
            t.diff = diff::diff(&t.spec, want, t.current.as_ref());
        }
    }
    Ok(Plan { tables, checked, session: ctx.opts.ssh_session.clone() })
}

impl Plan {
    fn changed(&self) -> impl Iterator<Item = &TablePlan> {
        self.tables.iter().filter(|t| t.changes())
    }

    /// The owned tables this plan rewrites, as they are now: what a `--confirm` rollback
    /// restores (a table that did not exist is deleted).
    pub fn rollback_script(&self) -> Option<String> {
        let changed: Vec<&TablePlan> = self.changed().collect();
        if changed.is_empty() {
            return None;
        }
        let mut s = String::new();
        for t in changed {
            let key = t.spec.key();
            s.push_str(&format!("table {key}\ndelete table {key}\n"));
            if let Some(cur) = &t.current {
                s.push_str(&listing::restore(cur));
            }
        }
        Some(s)
    }

    fn refused(&self) -> Option<String> {
        let bad = self.tables.iter().find(|t| t.desired.is_err())?;
        Some(format!("not applied: nft refuses the table {}, and all owned tables change in one transaction", bad.spec.key()))
    }

    fn fail_changed(&self, why: &str) -> Vec<ResourceReport> {
        self.tables
            .iter()
            .map(|t| {
                let r = t.report();
                if t.changes() {
                    r.after(Status::Failed, why.to_string())
                } else {
                    r
                }
            })
            .collect()
    }

    fn apply_with(&self, host: &Host, note: &str) -> Vec<ResourceReport> {
        let changed: Vec<&TablePlan> = self.changed().collect();
        if changed.is_empty() {
            return self.tables.iter().map(TablePlan::report).collect();
        }
        // All owned tables change in one transaction or not at all: a document with a table nft
        // refuses changes none of them, as a refused batch would.
        if let Some(why) = self.refused() {
            return self.fail_changed(&why);
        }
        self.replace(host, &changed, note)
    }

    /// `apply --confirm`: the owned tables' old state is recorded for the watchdog before they
    /// are replaced (joining the iptables kind's record of this run when there is one); with
    /// `--confirm-probe` and a record of its own, the apply settles it after the change.
    fn apply_confirmed(&self, ctx: &Ctx, secs: u64) -> Vec<ResourceReport> {
        let Some(script) = self.rollback_script() else { return self.apply_with(ctx.host, "") };
        if let Some(why) = self.refused() {
            return self.fail_changed(&why);
        }
        let own = match crate::iptables::confirm::arm_nft(ctx.host, secs, &script, ctx.opts.confirm_probe.as_ref()) {
            Ok(own) => own,
            Err(e) => return self.fail_changed(&format!("not applied: could not arm the --confirm rollback: {e}")),
        };
        let changed: Vec<&TablePlan> = self.changed().collect();
        let mut out = self.replace(ctx.host, &changed, &format!("; rolled back in {secs}s unless `hostguard confirm` runs"));
        if !own {
            return out;
        }
        if out.iter().all(|r| r.status != Status::Changed) {
            let _ = crate::iptables::confirm::disarm(ctx.host);
        } else if let Some(probe) = &ctx.opts.confirm_probe {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            crate::iptables::settle(&mut out, crate::iptables::confirm::settle_held(ctx.host, probe, deadline));
        }
        out
    }

    fn replace(&self, host: &Host, changed: &[&TablePlan], note: &str) -> Vec<ResourceReport> {
        let mut script = Script::new();
        for t in changed {
            render::replace(&mut script, &t.spec);
        }
        // Checked first, so a refused batch is known to change nothing, then committed: nft
        // applies a whole `-f` file as one transaction.
        for check in [true, false] {
            if check && self.checked.as_deref() == Some(script.text.as_str()) {
                continue; // plan checked this very batch
            }
            // The commit is a host write (the crash tests stop a run right after it); the check is not.
            let input = Some(script.text.as_bytes());
            let done = if check { host.run(&[NFT, "-c", "-f", "-"], input) } else { host.run_change(&[NFT, "-f", "-"], input) };
            match done {
                Err(e) => return self.fail_changed(&format!("not applied: {e}")),
                Ok(out) if !out.success => {
                    let how = if check { "`nft -c` refused the batch" } else { "`nft -f` refused the batch" };
                    return self.fail_changed(&format!("{how}, so no table was changed: {}", script.explain(&out.stderr)));
                }
                Ok(_) => {}
            }
        }
        self.tables
            .iter()
            .map(|t| {
                let r = t.report();
                if !t.changes() {
                    return r;
                }
                let Ok(want) = &t.desired else { return r };
                match read_table(host, t.spec.family.name(), t.spec.name.as_str()) {
                    Err(e) => r.after(Status::Failed, format!("applied but could not read it back: {e}")),
                    Ok(now) => {
                        let mut again = diff::diff(&t.spec, want, now.as_ref());
                        if !again.is_empty() && t.compared_by == BY_CHECK {
                            // Created from a document not spelled as nft lists it: compare with
                            // its canonical form.
                            if let Ok(Some(Ok(canonical))) = canon::canonicalize(host, &[&t.spec]).map(|mut v| v.pop()) {
                                again = diff::diff(&t.spec, &canonical, now.as_ref());
                            }
                        }
                        if again.is_empty() {
                            r.after(Status::Changed, format!("replaced the table: {}{note} ({})", diff::summary(&t.diff), t.compared_by))
                        } else {
                            r.after(Status::Failed, format!("applied, but nft does not hold the desired table: {}", diff::summary(&again)))
                                .with_diff(again)
                        }
                    }
                }
            })
            .collect()
    }
}

impl Plan {
    /// The SSH lockout guard over the owned tables this apply replaces, as nft will hold them.
    fn check_ssh(&self) -> Result<()> {
        guard::check_ssh(self.changed().filter_map(|t| t.desired.as_ref().ok()), self.session.as_ref())
    }
}

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        // Plan says what apply would do: with one table refused, none changes.
        let mut out: Vec<ResourceReport> = match self.refused() {
            Some(why) => return self.fail_changed(&why),
            None => self.tables.iter().map(TablePlan::report).collect(),
        };
        if let Err(e) = self.check_ssh() {
            if let Some(r) = out.iter_mut().find(|r| r.status == Status::Drift) {
                r.message.push_str(&format!("; apply would refuse without --force: {e}"));
            }
        }
        out
    }

    fn preflight(&self, ctx: &Ctx) -> Result<()> {
        // An interrupted rollback is finished even when nothing changes, as for iptables: a
        // watchdog killed before it put the tables back leaves them as the document wants, and
        // the rollback would otherwise stay undone and its record left for good.
        crate::iptables::confirm::finish_interrupted(ctx.host)?;
        if self.changed().next().is_none() {
            return Ok(());
        }
        // A pending `--confirm` rollback would undo this change too, as for iptables.
        crate::iptables::confirm::refuse_if_pending(ctx.host)?;
        if ctx.opts.force {
            return Ok(());
        }
        self.check_ssh()
    }

    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport> {
        match ctx.opts.confirm {
            Some(secs) => self.apply_confirmed(ctx, secs),
            None => self.apply_with(ctx.host, ""),
        }
    }
}
