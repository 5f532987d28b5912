//! `apply --confirm SECONDS` and `hostguard confirm` (SPEC section 6), like `iptables-apply`.
//!
//! Before the change, a watchdog is started — this binary again, in its own session (setsid),
//! its standard streams on /dev/null, so it outlives the terminal or SSH connection that ran
//! `apply` — and then what to undo (`undo::TableUndo`: the rule specs this apply edits and the
//! chains as they were) is written under `<root>/run/hostguard/confirm/` as `pending.json`. The
//! watchdog waits for the apply to release the run lock, sleeps SECONDS, takes the lock, renames
//! `pending.json` to `rolling-back.json` and undoes only this apply's edits, on the rules as they
//! are then (`undo::render`). `hostguard confirm` renames `pending.json` to `confirmed.json`.
//! Only one rename can succeed, so a confirm that races the deadline either keeps the rules or
//! reports that they were rolled back, never both. Every step goes through `Host`, so the crash
//! tests kill a run at each of these commit points.
//!
//! With `--confirm-probe TARGET` (`crate::probe`) the apply itself, still holding the run lock,
//! probes TARGET until SECONDS have passed: the first answer confirms, no answer rolls back
//! there and then, and the report says which (a rolled-back chain is `failed`). The watchdog stays
//! the safety net: should the apply die before it decided, the watchdog, once it has the lock,
//! probes for SECONDS itself and confirms or rolls back the same way.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, HostError, Result};
use crate::host::Host;
use crate::report::Exit;

use super::undo::{self, TableUndo};
use crate::probe::Probe;

pub const DIR: &str = "/run/hostguard/confirm";
const PENDING: &str = "pending.json";
const CONFIRMED: &str = "confirmed.json";
const ROLLING: &str = "rolling-back.json";
const ROLLED: &str = "rolled-back.json";

/// How long the watchdog waits for the run lock (the apply it guards, or another run).
const LOCK_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pending {
    seconds: u64,
    armed_at: u64,
    tables: Vec<TableUndo>,
    #[serde(default)]
    result: Vec<String>,
    /// `--confirm-probe`: confirm by itself when this answers.
    #[serde(default)]
    probe: Option<Probe>,
    /// The owned nftables tables this apply replaces, as they were: an `nft -f` script that
    /// deletes each and loads the old one (a table that did not exist is only deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nft: Option<String>,
}

/// The host path of one of the state machine's files.
fn file(name: &str) -> String {
    format!("{DIR}/{name}")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Called by every apply with a firewall section, under the run lock: a rollback record found
/// here belongs to a watchdog that died mid-rollback (a live one holds the lock while it rolls
/// back). That rollback is finished now, and this run refused, since it planned from the rules
/// as they were before.
pub fn finish_interrupted(host: &Host) -> Result<()> {
    if !host.exists(file(ROLLING)) {
        return Ok(());
    }
    let (lines, _) = rollback_held(host, None)?;
    Err(Error::Refused(format!(
        "the rollback of an earlier apply --confirm had been interrupted; it is finished now ({}): run again",
        lines.join("; ")
    )))
}

/// A change still waiting for `hostguard confirm` blocks every other firewall change: its
/// rollback would undo them too.
pub fn refuse_if_pending(host: &Host) -> Result<()> {
    if host.exists(file(PENDING)) {
        return Err(Error::Refused(format!(
            "a firewall change made with --confirm is waiting for `hostguard confirm` ({}); \
             confirm it, or wait for it to be rolled back, then run again",
            host.path(file(PENDING)).display()
        )));
    }
    Ok(())
}

/// Record what to restore. Called before the change is made, after the watchdog started.
pub fn arm(host: &Host, seconds: u64, tables: &[TableUndo], probe: Option<&Probe>) -> Result<(), HostError> {
    for stale in [CONFIRMED, ROLLED] {
        let _ = host.remove(file(stale));
    }
    let p = Pending { seconds, armed_at: now(), tables: tables.to_vec(), result: Vec::new(), probe: probe.cloned(), nft: None };
    let json = serde_json::to_vec_pretty(&p).expect("serialises");
    host.write_file(file(PENDING), &json)?;
    Ok(())
}

/// Record the owned nftables tables to restore, before they are replaced. When the iptables
/// kind armed a rollback in this run (still pending), the script joins that record and its
/// watchdog; otherwise a record and watchdog of its own are started. Returns whether it started
/// them (then the caller settles a `--confirm-probe` and disarms when nothing changed).
pub fn arm_nft(host: &Host, seconds: u64, script: &str, probe: Option<&Probe>) -> Result<bool, HostError> {
    if let Some(mut p) = read(host, PENDING) {
        p.nft = Some(p.nft.take().unwrap_or_default() + script);
        host.write_file(file(PENDING), &serde_json::to_vec_pretty(&p).expect("serialises"))?;
        return Ok(false);
    }
    start_watchdog(host)?;
    arm(host, seconds, &[], probe)?;
    let Some(mut p) = read(host, PENDING) else { return Err(HostError::Other("the rollback record did not read back".into())) };
    p.nft = Some(script.to_string());
    host.write_file(file(PENDING), &serde_json::to_vec_pretty(&p).expect("serialises"))?;
    Ok(true)
}

/// The apply touched more than it first planned (it retried after a neighbour's change):
/// record it, keeping the countdown of the record already armed.
pub fn update(host: &Host, tables: &[TableUndo]) -> Result<(), HostError> {
    let Some(mut p) = read(host, PENDING) else { return Ok(()) };
    p.tables = tables.to_vec();
    let json = serde_json::to_vec_pretty(&p).expect("serialises");
    host.write_file(file(PENDING), &json)?;
    Ok(())
}

/// Nothing was changed after all: forget the rollback.
pub fn disarm(host: &Host) -> Result<(), HostError> {
    host.remove(file(PENDING)).map(drop)
}

/// Start the detached watchdog, before the rollback is armed: it takes the run lock this run
/// holds before it reads the record, so a run killed before arming leaves a watchdog that
/// finds nothing to do, and one killed after is rolled back.
pub fn start_watchdog(host: &Host) -> Result<(), HostError> {
    let exe = std::env::current_exe().map_err(|e| HostError::Other(format!("cannot find this program: {e}")))?;
    host.spawn_detached(&[exe.as_os_str(), "--root".as_ref(), host.root().as_os_str(), WATCHDOG_COMMAND.as_ref()])
}

/// The hidden subcommand the watchdog runs as.
pub const WATCHDOG_COMMAND: &str = "__confirm-watchdog";

/// The watchdog: wait for the apply to finish, sleep, roll back unless confirmed.
pub fn watchdog(host: &Host) -> Result<Exit> {
    // SAFETY: ignoring SIGHUP only changes this process's signal disposition.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // The apply holds the run lock until it has finished: the countdown starts after it. The
    // record is read only then: the apply writes it after starting the watchdog.
    let lock = host.lock(LOCK_WAIT)?;
    // An apply with --confirm-probe has usually decided by now.
    let Some(p) = read(host, PENDING) else { return Ok(Exit::Ok) };
    let deadline = Instant::now() + Duration::from_secs(p.seconds);
    if let Some(probe) = &p.probe {
        // The apply died before its probe decided: decide here, holding the lock.
        return Ok(match settle_held(host, probe, deadline)? {
            Settled::Kept(_) => Exit::Ok,
            Settled::RolledBack { failed, .. } => Exit::of(false, failed),
        });
    }
    drop(lock);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    rollback_now(host)
}

/// How a `--confirm-probe` apply ended.
#[derive(Debug)]
pub enum Settled {
    /// The probe answered: confirmed. The message says what answered.
    Kept(String),
    /// It did not: rolled back. `why` is the probe's last failure, `lines` what the rollback did.
    RolledBack { why: String, lines: Vec<String>, failed: bool },
}

/// Probe until `deadline`, then confirm or roll back. The caller holds the run lock.
pub fn settle_held(host: &Host, probe: &Probe, deadline: Instant) -> Result<Settled> {
    match probe.until(deadline) {
        Ok(what) => {
            if host.rename(file(PENDING), file(CONFIRMED)).unwrap_or(false) {
                if let Some(mut p) = read(host, CONFIRMED) {
                    p.result.push(format!("confirmed by --confirm-probe {} at {}: {what}", probe.target, now()));
                    let _ = host.write_file(file(CONFIRMED), &serde_json::to_vec_pretty(&p).expect("serialises"));
                }
            }
            Ok(Settled::Kept(what))
        }
        Err(why) => {
            if !host.rename(file(PENDING), file(ROLLING))? {
                // `hostguard confirm` cannot run while we hold the lock; nothing was pending.
                return Ok(Settled::Kept(format!("confirmed meanwhile (the probe failed: {why})")));
            }
            let (lines, failed) = rollback_held(host, Some(format!("--confirm-probe {}: {why}", probe.target)))?;
            Ok(Settled::RolledBack { why, lines, failed })
        }
    }
}

/// Roll back now unless confirmed; `Ok` when rolled back or nothing was pending, `Failed` when a
/// table could not be rolled back. Takes the run lock: never call it from a run that holds it.
fn rollback_now(host: &Host) -> Result<Exit> {
    let _lock = host.lock(LOCK_WAIT)?;
    // The commit point: from here on `confirm` reports the change as rolled back.
    if !host.rename(file(PENDING), file(ROLLING))? {
        return Ok(Exit::Ok); // confirmed (or never armed)
    }
    let (_, failed) = rollback_held(host, None)?;
    Ok(Exit::of(false, failed))
}

/// Undo what `rolling-back.json` records, keep the outcome as `rolled-back.json`, then drop the
/// record; the caller renamed it there (or found it left by a killed run) and holds the run lock.
/// Rolling back twice is harmless (`undo::render` works on the rules as they are), and a record
/// left by a run killed after writing the outcome is just dropped. Returns one line per table
/// and whether any table failed.
fn rollback_held(host: &Host, why: Option<String>) -> Result<(Vec<String>, bool)> {
    let mut lines = Vec::new();
    let mut failed = false;
    if let Some(done) = read(host, ROLLED).filter(|_| why.is_none()) {
        lines = done.result;
    } else {
        let mut p = read(host, ROLLING).ok_or_else(|| Error::Load("the rollback record is unreadable".into()))?;
        p.result.extend(why);
        for t in &p.tables {
            let line = match undo::rollback(host, t) {
                Ok(line) => line,
                Err(e) => {
                    failed = true;
                    format!("FAILED to roll back the {} {} table: {e}", t.family.key(), t.table)
                }
            };
            lines.push(line.clone());
            p.result.push(line);
        }
        if let Some(script) = &p.nft {
            let tables = nft_tables(script);
            let line = match host.run_change(&[crate::nftables::NFT, "-f", "-"], Some(script.as_bytes())) {
                Ok(o) if o.success => format!("restored the nftables table(s) {} as they were", tables.join(", ")),
                Ok(o) => {
                    failed = true;
                    format!("FAILED to restore the nftables table(s) {}: {}", tables.join(", "), o.stderr.trim())
                }
                Err(e) => {
                    failed = true;
                    format!("FAILED to restore the nftables table(s) {}: {e}", tables.join(", "))
                }
            };
            lines.push(line.clone());
            p.result.push(line);
        }
        p.result.push(format!("rolled back at {}", now()));
        host.write_file(file(ROLLED), &serde_json::to_vec_pretty(&p).expect("serialises"))?;
    }
    host.remove(file(ROLLING))?;
    Ok((lines, failed))
}

/// The tables an nft rollback script restores (`inet hostguard`), from its `delete table` lines.
fn nft_tables(script: &str) -> Vec<String> {
    script.lines().filter_map(|l| l.strip_prefix("delete table ")).map(str::to_string).collect()
}

fn read(host: &Host, name: &str) -> Option<Pending> {
    let text = host.read_optional(file(name)).ok()??;
    serde_json::from_str(&text).ok()
}

/// `hostguard confirm`: keep the change. Returns a message for the operator.
pub fn confirm(host: &Host) -> Result<String> {
    if host.rename(file(PENDING), file(CONFIRMED))? {
        let n = read(host, CONFIRMED).map(|p| p.tables.len() + p.nft.as_deref().map_or(0, |s| nft_tables(s).len())).unwrap_or(0);
        return Ok(format!("confirmed: the firewall change to {n} table(s) is kept"));
    }
    if host.exists(file(ROLLING)) || host.exists(file(ROLLED)) {
        return Err(Error::Refused("too late: the change made with --confirm has been rolled back; apply it again".into()));
    }
    Err(Error::Refused("nothing to confirm: no apply --confirm is waiting".into()))
}
