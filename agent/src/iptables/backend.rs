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
        let suffix = match backend {
            Backend::Auto => "",
            Backend::Nft => "-nft",
            Backend::Legacy => "-legacy",
        };
        let cmd = format!("iptables{suffix}");
        let out = host.run_ok(&[&cmd, "-V"], None)?;
        let version = out.stdout.trim().to_string();
        let label = if version.contains("nf_tables") { "nf_tables" } else { "legacy" }.to_string();
        Ok(Tools { label, version, suffix: suffix.to_string() })
    }

    pub fn save_cmd(&self, family: Family) -> String {
        format!("{}{}-save", family.command(), self.suffix)
    }

    pub fn restore_cmd(&self, family: Family) -> String {
        format!("{}{}-restore", family.command(), self.suffix)
    }

    /// The current content of one table.
    pub fn read(&self, host: &Host, family: Family, table: Table) -> Result<TableDump, HostError> {
        let cmd = self.save_cmd(family);
        let out = host.run_ok(&[&cmd, "-t", table.name()], None)?;
        parse_table(&out.stdout, table).map_err(|e| HostError::Other(format!("could not read the output of `{cmd} -t {table}`: {e}")))
    }

    /// Load `input` with `--noflush --wait`: one transaction, all or nothing for the table.
    pub fn restore(&self, host: &Host, family: Family, input: &str) -> Result<(), String> {
        let cmd = self.restore_cmd(family);
        match host.run(&[&cmd, "--noflush", "--wait"], Some(input.as_bytes())) {
            Ok(o) if o.success => Ok(()),
            Ok(o) => Err(o.stderr.trim().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The one table in a `save -t TABLE` output; a table the backend has not created yet (nft
/// prints nothing for it) is empty, with the kernel's default built-in chains.
pub fn parse_table(text: &str, table: Table) -> Result<TableDump, String> {
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
