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

/// The table as `cmd -t TABLE` prints it, parsed line by line while the command still prints:
/// for 50,000 rules the parse takes as long again as iptables-save itself.
fn read(host: &Host, cmd: &str, table: Table) -> Result<TableDump, HostError> {
    let mut reader = TableReader::new(table);
    let mut lines = Lines::default();
    let out = host.run_ok_streaming(&[cmd, "-t", table.name()], &mut |chunk| lines.feed(chunk, &mut |l| reader.line_bytes(l)))?;
    lines.end(&mut |l| reader.line_bytes(l));
    // Comment lines iptables printed on stderr (warnings), so the reader sees them too.
    for line in out.stderr.lines().filter(|l| l.starts_with('#')) {
        reader.line(line);
    }
    reader.finish().map_err(|e| HostError::Other(format!("could not read the output of `{cmd} -t {table}`: {e}")))
}

/// The one table in a `save -t TABLE` output; a table the backend has not created yet (nft
/// prints nothing for it) is empty, with the kernel's default built-in chains.
pub fn parse_table(text: &str, table: Table) -> Result<TableDump, String> {
    let mut reader = TableReader::new(table);
    for line in text.lines() {
        reader.line(line);
    }
    reader.finish()
}

/// A command's output, given in pieces as it is printed, cut into lines (without the newline).
#[derive(Default)]
struct Lines {
    /// The start of a line a piece ended in.
    partial: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8], line: &mut dyn FnMut(&[u8])) {
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', chunk) {
            if self.partial.is_empty() {
                line(&chunk[start..i]);
            } else {
                self.partial.extend_from_slice(&chunk[start..i]);
                line(&self.partial);
                self.partial.clear();
            }
            start = i + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
    }

    /// The last line, when the output does not end with a newline.
    fn end(self, line: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
        }
    }
}

/// `parse_table`, a line at a time.
struct TableReader {
    table: Table,
    parser: save::Parser,
    /// iptables-nft prints this comment, and no rules, for a table that `nft` changed in ways
    /// iptables cannot show: read as empty, it would be rewritten blind.
    incompatible: Option<String>,
}

impl TableReader {
    fn new(table: Table) -> TableReader {
        TableReader { table, parser: save::Parser::default(), incompatible: None }
    }

    /// A line as the command printed it, without its newline (as `str::lines` gives it: a
    /// carriage return before the newline is not part of it).
    fn line_bytes(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.line(&String::from_utf8_lossy(line));
    }

    fn line(&mut self, line: &str) {
        if self.incompatible.is_none() && line.starts_with('#') && line.contains("is incompatible") {
            self.incompatible = Some(line.to_string());
        }
        self.parser.line(line);
    }

    fn finish(self) -> Result<TableDump, String> {
        let table = self.table;
        if let Some(line) = self.incompatible {
            return Err(format!(
                "{} (the {table} table holds nftables rules iptables cannot show; hostguard will not manage it)",
                line.trim_start_matches(['#', ' '])
            ));
        }
        let tables = self.parser.finish()?;
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

    /// Read as a command prints it, in pieces cut anywhere (inside a quoted comment, a UTF-8
    /// character, a CRLF), a table is what `parse_table` reads from the whole text.
    #[test]
    fn a_table_read_in_pieces_is_the_table_read_whole() {
        let text = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    :HG - [0:0]\r\n[3:120] -A INPUT -m comment --comment \"caf\u{e9} \\\"q\\\" \u{1f512}\" -j HG\n-A HG -s 10.0.0.1/32 -j ACCEPT\r\n\
                    -A HG -c 1 2 -j DROP\nCOMMIT\n# Completed";
        let whole = parse_table(text, Table::Filter).unwrap();
        assert_eq!(whole.chain("HG").unwrap().rules.len(), 2);
        let bytes = text.as_bytes();
        for size in 1..=bytes.len() {
            let mut reader = TableReader::new(Table::Filter);
            let mut lines = Lines::default();
            for chunk in bytes.chunks(size) {
                lines.feed(chunk, &mut |l| reader.line_bytes(l));
            }
            lines.end(&mut |l| reader.line_bytes(l));
            assert_eq!(reader.finish().unwrap(), whole, "pieces of {size} bytes");
        }
        // A first error is the same error, whatever the pieces.
        let bad = "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j DROP\n-A INPUT -j \"unclosed\nCOMMIT\n";
        let e = parse_table(bad, Table::Filter).unwrap_err();
        let mut reader = TableReader::new(Table::Filter);
        let mut lines = Lines::default();
        for chunk in bad.as_bytes().chunks(3) {
            lines.feed(chunk, &mut |l| reader.line_bytes(l));
        }
        lines.end(&mut |l| reader.line_bytes(l));
        assert_eq!(reader.finish().unwrap_err(), e);
        assert!(e.starts_with("line 3: a rule of chain NOPE"), "{e}");
    }

    #[test]
    fn a_table_changed_by_nft_is_refused_not_read_as_empty() {
        let text = "# Generated by iptables-nft-save v1.8.9 (nf_tables)\n# Table `filter' is incompatible, use 'nft' tool.\n";
        let e = parse_table(text, Table::Filter).unwrap_err();
        assert!(e.contains("will not manage it"), "{e}");
    }
}
