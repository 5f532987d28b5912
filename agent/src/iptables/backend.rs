//! Which binaries hostguard runs: `iptables-nft-*`, `iptables-legacy-*`, or the plain names
//! (`auto`, whatever `iptables -V` reports). Reading and writing one table of one family.

use crate::error::HostError;
use crate::host::Host;
use crate::state::iptables::{Backend, Family, Table};

use super::save::{self, TableDump};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tools {
    /// `nf_tables` or `legacy`, as `iptables -V` says.
    pub label: String,
    /// The version line, e.g. `iptables v1.8.9 (nf_tables)`.
    pub version: String,
    suffix: String,
}

impl Tools {
    pub fn resolve(host: &Host, backend: Backend) -> Result<Tools, HostError> {
        let suffix = suffix(backend);
        let cmd = format!("iptables{suffix}");
        let out = host.run_ok(&[&cmd, "-V"], None)?;
        let version = out.stdout.trim().to_string();
        let label = if version.contains("nf_tables") { "nf_tables" } else { "legacy" }.to_string();
        Ok(Tools { label, version, suffix: suffix.to_string() })
    }

    #[cfg(test)]
    pub fn for_tests() -> Tools {
        Tools { label: "nf_tables".into(), version: "iptables v1.8.9 (nf_tables)".into(), suffix: String::new() }
    }

    pub fn save_cmd(&self, family: Family) -> String {
        save_cmd(&self.suffix, family)
    }

    pub fn restore_cmd(&self, family: Family) -> String {
        format!("{}{}-restore", family.command(), self.suffix)
    }

    /// The current content of one table.
    pub fn read(&self, host: &Host, family: Family, table: Table) -> Result<TableDump, HostError> {
        read(host, &self.save_cmd(family), table)
    }

    /// Load `input` with `--noflush --wait`: one transaction, all or nothing for the table.
    pub fn restore(&self, host: &Host, family: Family, input: &str) -> Result<(), String> {
        let cmd = self.restore_cmd(family);
        match host.run_change(&[&cmd, "--noflush", "--wait"], Some(input.as_bytes())) {
            Ok(o) if o.success => Ok(()),
            Ok(o) => Err(o.stderr.trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn suffix(backend: Backend) -> &'static str {
    match backend {
        Backend::Auto => "",
        Backend::Nft => "-nft",
        Backend::Legacy => "-legacy",
    }
}

fn save_cmd(suffix: &str, family: Family) -> String {
    format!("{}{suffix}-save", family.command())
}

/// One table as `backend`'s save command prints it, before the tools are resolved (`iptables
/// -V`), so that a plan runs the two side by side: which binaries run depends on the backend
/// the document names, never on what `-V` prints.
pub fn read_before_resolve(host: &Host, backend: Backend, family: Family, table: Table) -> Result<TableDump, HostError> {
    read(host, &save_cmd(suffix(backend), family), table)
}

fn read(host: &Host, cmd: &str, table: Table) -> Result<TableDump, HostError> {
    let out = host.run_ok(&[cmd, "-t", table.name()], None)?;
    let warnings = comments(&out.stderr);
    let text = if warnings.is_empty() { out.stdout } else { out.stdout + &warnings };
    parse_table(&text, table).map_err(|e| HostError::Other(format!("could not read the output of `{cmd} -t {table}`: {e}")))
}

/// Comment lines iptables printed on stderr (warnings), so the parser sees them too.
fn comments(stderr: &str) -> String {
    stderr.lines().filter(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect()
}

/// The one table in a `save -t TABLE` output; a table the backend has not created yet (nft
/// prints nothing for it) is empty, with the kernel's default built-in chains.
pub fn parse_table(text: &str, table: Table) -> Result<TableDump, String> {
    // iptables-nft prints this comment, and no rules, for a table that `nft` changed in ways
    // iptables cannot show: read as empty, it would be rewritten blind.
    if let Some(line) = text.lines().find(|l| l.starts_with('#') && l.contains("is incompatible")) {
        return Err(format!(
            "{} (the {table} table holds nftables rules iptables cannot show; hostguard will not manage it)",
            line.trim_start_matches(['#', ' '])
        ));
    }
    let tables = save::parse(text)?;
    match tables.into_iter().find(|t| t.name == table.name()) {
        Some(t) => Ok(t),
        None => Ok(TableDump {
            name: table.name().to_string(),
            chains: table
                .builtin_chains()
                .iter()
                .map(|c| save::Chain { name: c.to_string(), policy: Some("ACCEPT".into()), rules: Vec::new() })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_table_reads_as_its_empty_built_in_chains() {
        let t = parse_table("", Table::Nat).unwrap();
        let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
    }

    #[test]
    fn a_table_changed_by_nft_is_refused_not_read_as_empty() {
        let text = "# Generated by iptables-nft-save v1.8.9 (nf_tables)\n# Table `filter' is incompatible, use 'nft' tool.\n";
        let e = parse_table(text, Table::Filter).unwrap_err();
        assert!(e.contains("will not manage it"), "{e}");
    }
}
