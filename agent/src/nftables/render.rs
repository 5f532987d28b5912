//! A desired table written two ways: as the listing nft would print if the document is already
//! spelled canonically (the fast path, no namespace needed), and as an `nft -f` script in which
//! every line that nft could refuse is mapped to the document path it came from.

use crate::state::nftables::{SetSpec, TableSpec};

use super::listing::{self, Chain, Set, Table};

/// The table as nft lists it when every string of the document is already in nft's own spelling.
pub fn as_listed(spec: &TableSpec) -> Table {
    let mut t = Table { family: spec.family.to_string(), name: spec.name.to_string(), ..Table::default() };
    for c in &spec.chains {
        let header = c.base.iter().map(|b| {
            let device = b.device.as_ref().map(|d| format!(" device \"{d}\"")).unwrap_or_default();
            format!("type {} hook {}{device} priority {}; policy {};", b.kind, b.hook, b.priority, b.policy.unwrap_or("accept"))
        });
        let rules = c.rules.iter().map(|r| r.as_str().to_string()).collect();
        t.chains.insert(c.name.to_string(), Chain { header: header.collect(), rules });
    }
    for s in &spec.sets {
        let mut elements: Vec<String> =
            s.elements.iter().flatten().map(|e| listing::element(e.as_str())).collect();
        elements.sort();
        t.sets.insert(s.name.to_string(), Set { is_map: s.is_map, props: set_props(s), elements });
    }
    t
}

/// A set's own lines, in the order nft lists them (type, size, flags, timeout).
fn set_props(s: &SetSpec) -> Vec<String> {
    let mut p = vec![format!("type {}", s.kind.as_str())];
    if let Some(n) = s.size {
        p.push(format!("size {n}"));
    }
    if !s.flags.is_empty() {
        p.push(format!("flags {}", s.flags.join(",")));
    }
    if let Some(t) = &s.timeout {
        p.push(format!("timeout {}", t.as_str()));
    }
    p
}

/// An `nft -f` script and, per line (1-based, index 0 unused), what in the document it loads.
#[derive(Debug, Default)]
pub struct Script {
    pub text: String,
    pub lines: Vec<Option<String>>,
}

impl Script {
    pub fn new() -> Script {
        Script { text: String::new(), lines: vec![None] }
    }

    pub fn line(&mut self, text: &str, source: Option<String>) {
        self.text.push_str(text);
        self.text.push('\n');
        self.lines.push(source);
    }

    /// nft's error output with each `FILE:LINE:COL: Error: …` pointing at the document rule it
    /// loads (`nftables.tables["inet x"].chains["c"].rules[2] `…``).
    pub fn explain(&self, stderr: &str) -> String {
        self.explain_only(stderr, "")
    }

    /// Like `explain`, keeping only the errors at document paths that start with `prefix` (and
    /// those that point at no document line).
    pub fn explain_only(&self, stderr: &str, prefix: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        for l in stderr.lines() {
            let Some((loc, msg)) = l.split_once(": Error: ") else {
                if let Some(msg) = l.strip_prefix("Error: ") {
                    out.push(msg.trim().to_string());
                }
                continue;
            };
            let line = loc.rsplit(':').nth(1).and_then(|n| n.parse::<usize>().ok());
            match line.and_then(|n| self.lines.get(n)).and_then(Clone::clone) {
                Some(source) if source.starts_with(prefix) => out.push(format!("{}: {source}", msg.trim())),
                Some(_) => {}
                None => out.push(msg.trim().to_string()),
            }
        }
        if out.is_empty() {
            return stderr.trim().to_string();
        }
        // After a syntax error nft reports every line that follows as one too: the first is the
        // one to fix.
        out.dedup();
        match out.len() {
            1 => out.remove(0),
            n => format!("{} (and {} more error{})", out[0], n - 1, if n == 2 { "" } else { "s" }),
        }
    }

    /// The document paths the errors in `stderr` point at.
    pub fn culprits(&self, stderr: &str) -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| l.split_once(": Error: "))
            .filter_map(|(loc, _)| loc.rsplit(':').nth(1).and_then(|n| n.parse::<usize>().ok()))
            .filter_map(|n| self.lines.get(n).cloned().flatten())
            .collect()
    }
}

/// Append the whole table to `s`: first its sets and chains (so jumps and `@set` references
/// resolve whatever the order), then the rules of each chain.
pub fn table(s: &mut Script, spec: &TableSpec) {
    let path = spec.doc_path();
    let key = spec.key();
    s.line(&format!("table {key} {{"), Some(path.clone()));
    for set in &spec.sets {
        let field = if set.is_map { "maps" } else { "sets" };
        let spath = crate::state::key_path(&format!("{path}.{field}"), set.name.as_str());
        s.line(&format!("\t{} {} {{", if set.is_map { "map" } else { "set" }, set.name), Some(spath.clone()));
        for p in set_props(set) {
            let what = p.split(' ').next().unwrap_or("type");
            s.line(&format!("\t\t{p}"), Some(format!("{spath}.{what} `{p}`")));
        }
        let els: Vec<_> = set.elements.iter().flatten().collect();
        if !els.is_empty() {
            s.line("\t\telements = {", Some(format!("{spath}.elements")));
            for (i, e) in els.iter().enumerate() {
                let comma = if i + 1 < els.len() { "," } else { "" };
                s.line(&format!("\t\t\t{}{comma}", e.as_str()), Some(format!("{spath}.elements[{i}] `{}`", e.as_str())));
            }
            s.line("\t\t}", None);
        }
        s.line("\t}", None);
    }
    for c in &spec.chains {
        let cpath = crate::state::key_path(&format!("{path}.chains"), c.name.as_str());
        s.line(&format!("\tchain {} {{", c.name), Some(cpath.clone()));
        if let Some(b) = &c.base {
            let device = b.device.as_ref().map(|d| format!(" device \"{d}\"")).unwrap_or_default();
            let policy = b.policy.map(|p| format!(" policy {p};")).unwrap_or_default();
            s.line(
                &format!("\t\ttype {} hook {}{device} priority {};{policy}", b.kind, b.hook, b.priority),
                Some(format!("{cpath} (type {} hook {} priority {})", b.kind, b.hook, b.priority)),
            );
        }
        s.line("\t}", None);
    }
    s.line("}", None);
    if spec.chains.iter().all(|c| c.rules.is_empty()) {
        return;
    }
    s.line(&format!("table {key} {{"), Some(path.clone()));
    for c in spec.chains.iter().filter(|c| !c.rules.is_empty()) {
        let cpath = crate::state::key_path(&format!("{path}.chains"), c.name.as_str());
        s.line(&format!("\tchain {} {{", c.name), Some(cpath.clone()));
        for (i, r) in c.rules.iter().enumerate() {
            s.line(&format!("\t\t{}", r.as_str()), Some(format!("{cpath}.rules[{i}] `{}`", r.as_str())));
        }
        s.line("\t}", None);
    }
    s.line("}", None);
}

/// Replace the table whole, in the same transaction: `table` makes sure it exists, so that
/// `delete` cannot fail on a first run, and the new definition follows.
pub fn replace(s: &mut Script, spec: &TableSpec) {
    let key = spec.key();
    s.line(&format!("table {key}"), None);
    s.line(&format!("delete table {key}"), None);
    table(s, spec);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::nftables::{validate, RawNftables};
    use crate::state::ValidationErrors;

    fn spec() -> TableSpec {
        let raw: RawNftables = serde_json::from_value(serde_json::json!({ "tables": { "inet hg": {
            "chains": { "forward": { "type": "filter", "hook": "forward", "priority": "filter", "policy": "drop",
                                     "rules": ["tcp dport 22 accept", "jump other"] },
                        "other": { "rules": ["accept"] } },
            "sets": { "s": { "type": "ipv4_addr", "flags": ["interval"], "elements": ["192.0.2.0/24", "10.0.0.1"] } } } } }))
        .unwrap();
        let mut errs = ValidationErrors::default();
        let st = validate(raw, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        (*st.tables[0]).clone()
    }

    #[test]
    fn the_script_maps_each_line_to_its_document_path() {
        let mut s = Script::new();
        table(&mut s, &spec());
        let n = s.text.lines().position(|l| l.trim() == "jump other").unwrap() + 1;
        assert_eq!(s.lines[n].as_deref(), Some("nftables.tables[\"inet hg\"].chains[\"forward\"].rules[1] `jump other`"));
        let err = format!("/dev/stdin:{n}:3-12: Error: Could not process rule: No such file or directory\n\t\tjump other\n\t\t^^^^");
        assert_eq!(
            s.explain(&err),
            "Could not process rule: No such file or directory: nftables.tables[\"inet hg\"].chains[\"forward\"].rules[1] `jump other`"
        );
        assert_eq!(s.culprits(&err).len(), 1);
    }

    #[test]
    fn the_listed_form_is_what_nft_prints_for_canonical_spellings() {
        let t = as_listed(&spec());
        assert_eq!(t.chains["forward"].header, ["type filter hook forward priority filter; policy drop;"]);
        assert_eq!(t.sets["s"].props, ["type ipv4_addr", "flags interval"]);
        assert_eq!(t.sets["s"].elements, ["10.0.0.1", "192.0.2.0/24"]);
    }
}
