//! `apply --confirm SECONDS` and `hostguard confirm` (SPEC section 6), like `iptables-apply`.
//!
//! Before the change, what to undo (`undo::TableUndo`: the rule specs this apply edits and the
//! chains as they were) is written under `<root>/run/hostguard/confirm/` as `pending.json`. A
//! watchdog — this binary again, in its own session (setsid), its standard streams on
//! /dev/null, so it outlives the terminal or SSH connection that ran `apply` — waits for the
//! apply to release the run lock, sleeps SECONDS, then renames `pending.json` to
//! `rolling-back.json` and undoes only this apply's edits, on the rules as they are then
//! (`undo::render`). `hostguard confirm` renames `pending.json` to `confirmed.json`. Only one rename can succeed, so a confirm that races the
//! deadline either keeps the rules or reports that they were rolled back, never both.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, HostError, Result};
use crate::host::Host;

use super::undo::{self, TableUndo};

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
}

fn path(host: &Host, name: &str) -> PathBuf {
    host.path(format!("{DIR}/{name}"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A change still waiting for `hostguard confirm` blocks every other firewall change: its
/// rollback would undo them too.
pub fn refuse_if_pending(host: &Host) -> Result<()> {
    if path(host, PENDING).exists() || path(host, ROLLING).exists() {
        return Err(Error::Refused(format!(
            "a firewall change made with --confirm is waiting for `hostguard confirm` ({}); \
             confirm it, or wait for it to be rolled back, then run again",
            path(host, PENDING).display()
        )));
    }
    Ok(())
}

/// Record what to restore. Called before the change is made.
pub fn arm(host: &Host, seconds: u64, tables: &[TableUndo]) -> Result<(), HostError> {
    for stale in [CONFIRMED, ROLLED] {
        let _ = std::fs::remove_file(path(host, stale));
    }
    let p = Pending { seconds, armed_at: now(), tables: tables.to_vec(), result: Vec::new() };
    let json = serde_json::to_vec_pretty(&p).expect("serialises");
    host.write_file(format!("{DIR}/{PENDING}"), &json)?;
    Ok(())
}

/// The apply touched more than it first planned (it retried after a neighbour's change):
/// record it, keeping the countdown of the record already armed.
pub fn update(host: &Host, tables: &[TableUndo]) -> Result<(), HostError> {
    let Some(mut p) = read(host, PENDING) else { return Ok(()) };
    p.tables = tables.to_vec();
    let json = serde_json::to_vec_pretty(&p).expect("serialises");
    host.write_file(format!("{DIR}/{PENDING}"), &json)?;
    Ok(())
}

/// Nothing was changed after all: forget the rollback.
pub fn disarm(host: &Host) -> Result<(), HostError> {
    let p = path(host, PENDING);
    std::fs::remove_file(&p).map_err(|e| HostError::io(&p, e))
}

/// Start the detached watchdog (before the change: it waits for the run lock this run holds).
pub fn start_watchdog(host: &Host) -> Result<(), HostError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().map_err(|e| HostError::Other(format!("cannot find this program: {e}")))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--root").arg(host.root()).arg(WATCHDOG_COMMAND).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map(|_| ()).map_err(|source| HostError::Spawn { argv: format!("{} {WATCHDOG_COMMAND}", exe.display()), source })
}

/// The hidden subcommand the watchdog runs as.
pub const WATCHDOG_COMMAND: &str = "__confirm-watchdog";

/// The watchdog: wait for the apply to finish, sleep, roll back unless confirmed.
pub fn watchdog(host: &Host) -> Result<i32> {
    // SAFETY: ignoring SIGHUP only changes this process's signal disposition.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let seconds = match read(host, PENDING) {
        Some(p) => p.seconds,
        None => return Ok(0),
    };
    // The apply holds the run lock until it has finished: the countdown starts after it.
    drop(host.lock(LOCK_WAIT)?);
    std::thread::sleep(Duration::from_secs(seconds));
    rollback_now(host)
}

/// Roll back now unless confirmed; exit code 0 when rolled back or nothing was pending.
/// Takes the run lock: never call it from a run that holds it.
fn rollback_now(host: &Host) -> Result<i32> {
    if std::fs::rename(path(host, PENDING), path(host, ROLLING)).is_err() {
        return Ok(0); // confirmed (or never armed)
    }
    let _lock = host.lock(LOCK_WAIT)?;
    let mut p = read(host, ROLLING).ok_or_else(|| Error::Load("the rollback record is unreadable".into()))?;
    let mut failed = false;
    for t in &p.tables {
        let line = match undo::rollback(host, t) {
            Ok(line) => line,
            Err(e) => {
                failed = true;
                format!("FAILED to roll back the {} {} table: {e}", t.family.key(), t.table)
            }
        };
        p.result.push(line);
    }
    p.result.push(format!("rolled back at {}", now()));
    host.write_file(format!("{DIR}/{ROLLED}"), &serde_json::to_vec_pretty(&p).expect("serialises"))?;
    let _ = std::fs::remove_file(path(host, ROLLING));
    Ok(if failed { 4 } else { 0 })
}

fn read(host: &Host, name: &str) -> Option<Pending> {
    let text = std::fs::read(path(host, name)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `hostguard confirm`: keep the change. Returns a message for the operator.
pub fn confirm(host: &Host) -> Result<String> {
    match std::fs::rename(path(host, PENDING), path(host, CONFIRMED)) {
        Ok(()) => {
            let n = read(host, CONFIRMED).map(|p| p.tables.len()).unwrap_or(0);
            Ok(format!("confirmed: the firewall change to {n} table(s) is kept"))
        }
        Err(_) if path(host, ROLLING).exists() || path(host, ROLLED).exists() => Err(Error::Refused(
            "too late: the change made with --confirm has been rolled back; apply it again".into(),
        )),
        Err(_) => Err(Error::Refused("nothing to confirm: no apply --confirm is waiting".into())),
    }
}
