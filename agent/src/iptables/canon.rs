//! Canonical forms by iptables itself: the desired chains are loaded into a throwaway network
//! namespace (`host::netns`) and read back with iptables-save, so two spellings iptables stores
//! alike compare equal whatever extension they use. The host's own firewall is never involved.

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
    // Per input line, the rule it loads: iptables' error names a line number.
    let mut lines: Vec<Option<String>> = vec![None; input.lines().count()];
    for c in chains {
        for r in &c.rules {
            let start = input.len();
            save::push_restore_line(&mut input, "-A", c.chain, None, r);
            lines.push(Some(format!("`{}`", input[start..].trim_end())));
        }
    }
    input.push_str("COMMIT\n");
    let restore = tools.restore_cmd(family);
    let save_cmd = tools.save_cmd(family);
    let result = crate::host::netns::scoped(|| {
        let out = host
            .run(&[&restore, "--wait"], Some(input.as_bytes()))
            .map_err(|e| CanonError::Unavailable(e.to_string()))?;
        if !out.success {
            return Err(CanonError::Rejected(super::failure(&out.stderr, &lines)));
        }
        let out = host
            .run_ok(&[&save_cmd, "-t", table.name()], None)
            .map_err(|e| CanonError::Unavailable(e.to_string()))?;
        Ok(out.stdout)
    })
    .map_err(CanonError::Unavailable)??;
    let dump = parse_table(&result, table).map_err(CanonError::Unavailable)?;
    Ok(chains
        .iter()
        .map(|c| (c.chain.to_string(), dump.chain(c.chain).map(|ch| ch.rules.clone()).unwrap_or_default()))
        .collect())
}
