//! Canonical forms by iptables itself: the desired chains are loaded into a throwaway network
//! namespace and read back with iptables-save, so two spellings iptables stores alike compare
//! equal whatever extension they use. The namespace belongs to one short-lived thread that calls
//! `unshare(CLONE_NEWNET)`: the restore and save it runs (as argv) inherit that thread's
//! namespace, and it disappears with them. The host's own firewall is never involved.

use std::collections::{BTreeSet, HashMap};

use crate::host::Host;
use crate::state::iptables::{Family, Table};

use super::backend::{parse_table, Tools};
use super::save::{self, Rule};

/// One chain to canonicalise: its name and the arguments of each rule in order.
pub struct Request<'a> {
    pub chain: &'a str,
    pub rules: Vec<&'a [String]>,
}

/// Why iptables would not take the desired rules (or the namespace could not be made).
#[derive(Debug, Clone)]
pub enum CanonError {
    /// No namespace: the caller falls back to the built-in normaliser.
    Unavailable(String),
    /// iptables refused the rules; the message is iptables' own, with the rule it points at.
    Rejected(String),
}

/// Canonical rules of each requested chain. `existing` are the user chains the host's table
/// holds: declared in the namespace so jumps to them load.
pub fn canonicalize(
    host: &Host,
    tools: &Tools,
    family: Family,
    table: Table,
    existing: &[String],
    chains: &[Request],
) -> Result<HashMap<String, Vec<Rule>>, CanonError> {
    let mut input = format!("*{}\n", table.name());
    let mut declared: BTreeSet<&str> = BTreeSet::new();
    for c in existing.iter().map(String::as_str).chain(chains.iter().map(|c| c.chain)) {
        if !table.is_builtin(c) && declared.insert(c) {
            input.push_str(&format!(":{c} - [0:0]\n"));
        }
    }
    let header_lines = input.lines().count();
    let mut line_of: Vec<(String, String)> = Vec::new();
    for c in chains {
        for r in &c.rules {
            save::push_rule(&mut input, c.chain, r);
            line_of.push((c.chain.to_string(), input.lines().last().unwrap_or("").to_string()));
        }
    }
    input.push_str("COMMIT\n");
    let restore = tools.restore_cmd(family);
    let save_cmd = tools.save_cmd(family);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare on the calling thread only; it has no memory-safety preconditions.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(CanonError::Unavailable(format!("cannot create a network namespace: {e}")));
            }
            let out = host
                .run(&[&restore, "--wait"], Some(input.as_bytes()))
                .map_err(|e| CanonError::Unavailable(e.to_string()))?;
            if !out.success {
                return Err(CanonError::Rejected(explain(&out.stderr, header_lines, &line_of)));
            }
            let out = host
                .run_ok(&[&save_cmd, "-t", table.name()], None)
                .map_err(|e| CanonError::Unavailable(e.to_string()))?;
            Ok(out.stdout)
        })
        .join()
        .unwrap_or_else(|_| Err(CanonError::Unavailable("the namespace thread panicked".into())))
    })?;
    let dump = parse_table(&result, table).map_err(CanonError::Unavailable)?;
    Ok(chains
        .iter()
        .map(|c| (c.chain.to_string(), dump.chain(c.chain).map(|ch| ch.rules.clone()).unwrap_or_default()))
        .collect())
}

/// iptables' message, plus the rule its line number points at. Legacy reports the rule's line;
/// nf_tables reports the line of COMMIT, where the whole batch failed.
pub fn explain(stderr: &str, header_lines: usize, line_of: &[(String, String)]) -> String {
    let msg: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Try `"))
        .collect();
    let msg = msg.join("; ");
    let line = msg.rsplit("line").next().and_then(|t| {
        t.trim_start_matches([':', ' ']).split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<usize>().ok())
    });
    match line.and_then(|n| n.checked_sub(header_lines + 1)).and_then(|i| line_of.get(i)) {
        Some((_, rule)) => format!("{msg} (the rule `{rule}`)"),
        None => msg,
    }
}
