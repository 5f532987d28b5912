//! The difference between a desired table and the host's, both in the form nft lists them: the
//! table is owned whole, so every chain, rule, set, element and block that is not the document's
//! is drift, and so is every one that is missing. Pure: no host access.
//!
//! Exceptions, because the kernel changes them by itself: counters are not compared (tables are
//! listed with `nft -s`), and a `dynamic` or `timeout` set whose document gives no `elements` keeps
//! whatever the kernel added; when it does give elements, those must be present and the rest are
//! the kernel's.

use similar::{capture_diff_slices, Algorithm, DiffOp};

use crate::state::nftables::TableSpec;

use super::listing::Table;

/// `+`/`-` lines saying how `current` differs from `desired`; empty when they are equal.
pub fn diff(spec: &TableSpec, desired: &Table, current: Option<&Table>) -> Vec<String> {
    let empty = Table::default();
    let mut out = Vec::new();
    let current = match current {
        Some(c) => c,
        None => {
            out.push(format!("+ table {} (absent)", spec.key()));
            &empty
        }
    };
    lines(&mut out, "table", &desired.attrs, &current.attrs);
    for (name, want) in &desired.chains {
        let label = format!("chain {name}");
        match current.chains.get(name) {
            None => {
                out.push(format!("+ {label}"));
                out.extend(want.header.iter().chain(&want.rules).map(|l| format!("+ {label}: {l}")));
            }
            Some(have) => {
                lines(&mut out, &label, &want.header, &have.header);
                ordered(&mut out, &label, &want.rules, &have.rules);
            }
        }
    }
    for name in current.chains.keys().filter(|n| !desired.chains.contains_key(*n)) {
        out.push(format!("- chain {name} (not in the document)"));
    }
    for (name, want) in &desired.sets {
        let label = format!("{} {name}", if want.is_map { "map" } else { "set" });
        let runtime = spec.sets.iter().find(|s| s.name.as_str() == name).is_some_and(|s| s.runtime_elements());
        let named = spec.sets.iter().find(|s| s.name.as_str() == name).is_some_and(|s| s.elements.is_some());
        match current.sets.get(name) {
            None => {
                out.push(format!("+ {label}"));
                out.extend(want.props.iter().map(|l| format!("+ {label}: {l}")));
                out.extend(want.elements.iter().map(|e| format!("+ {label}: element {e}")));
            }
            Some(have) => {
                if have.is_map != want.is_map {
                    out.push(format!("- {} {name}", if have.is_map { "map" } else { "set" }));
                }
                lines(&mut out, &label, &want.props, &have.props);
                if runtime && !named {
                    continue;
                }
                let missing = want.elements.iter().filter(|e| have.elements.binary_search(e).is_err());
                out.extend(missing.map(|e| format!("+ {label}: element {e}")));
                if !runtime {
                    let extra = have.elements.iter().filter(|e| want.elements.binary_search(e).is_err());
                    out.extend(extra.map(|e| format!("- {label}: element {e}")));
                }
            }
        }
    }
    for (name, have) in current.sets.iter().filter(|(n, _)| !desired.sets.contains_key(*n)) {
        out.push(format!("- {} {name} (not in the document)", if have.is_map { "map" } else { "set" }));
    }
    out.extend(current.other.iter().map(|b| format!("- {} (not in the document)", b.replace('\n', " "))));
    out
}

/// Lines compared as a whole, order kept (a chain's header, a set's properties).
fn lines(out: &mut Vec<String>, label: &str, want: &[String], have: &[String]) {
    if want != have {
        out.extend(have.iter().filter(|l| !want.contains(l)).map(|l| format!("- {label}: {l}")));
        out.extend(want.iter().filter(|l| !have.contains(l)).map(|l| format!("+ {label}: {l}")));
    }
}

/// Rules in order: the smallest set of removals and insertions, as a person reads a diff.
fn ordered(out: &mut Vec<String>, label: &str, want: &[String], have: &[String]) {
    if want == have {
        return;
    }
    for op in capture_diff_slices(Algorithm::Myers, have, want) {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete { old_index, old_len, .. } => {
                out.extend(have[old_index..old_index + old_len].iter().map(|r| format!("- {label}: {r}")))
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                out.extend(want[new_index..new_index + new_len].iter().map(|r| format!("+ {label}: {r}")))
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                out.extend(have[old_index..old_index + old_len].iter().map(|r| format!("- {label}: {r}")));
                out.extend(want[new_index..new_index + new_len].iter().map(|r| format!("+ {label}: {r}")));
            }
        }
    }
}

/// One line for the report: how many things differ.
pub fn summary(lines: &[String]) -> String {
    let add = lines.iter().filter(|l| l.starts_with('+')).count();
    let del = lines.iter().filter(|l| l.starts_with('-')).count();
    if lines.first().is_some_and(|l| l.ends_with("(absent)")) {
        return "the table is absent".into();
    }
    match (add, del) {
        (a, 0) => format!("{a} line{} missing", if a == 1 { "" } else { "s" }),
        (0, d) => format!("{d} line{} not in the document", if d == 1 { "" } else { "s" }),
        (a, d) => format!("{a} line{} missing, {d} not in the document", if a == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::listing::parse;
    use crate::state::nftables::{validate, RawNftables};
    use crate::state::ValidationErrors;

    fn spec(v: serde_json::Value) -> TableSpec {
        let raw: RawNftables = serde_json::from_value(serde_json::json!({ "tables": { "inet hg": v } })).unwrap();
        let mut errs = ValidationErrors::default();
        let st = validate(raw, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        (*st.tables[0]).clone()
    }

    fn table(text: &str) -> Table {
        parse(text).unwrap().tables.remove(0)
    }

    const HOST: &str = "table inet hg {\n set s {\n type ipv4_addr\n flags dynamic,timeout\n timeout 1h\n elements = { 1.2.3.4 timeout 1h expires 10m, 5.6.7.8 timeout 1h expires 1s }\n }\n chain c {\n type filter hook input priority filter; policy drop;\n ct state established,related accept\n tcp dport 22 accept\n }\n}\n";

    #[test]
    fn run_time_elements_of_a_dynamic_set_are_not_drift() {
        let s = spec(serde_json::json!({
            "chains": { "c": { "type": "filter", "hook": "input", "priority": "filter", "policy": "drop",
                               "rules": ["ct state established,related accept", "tcp dport 22 accept"] } },
            "sets": { "s": { "type": "ipv4_addr", "flags": ["dynamic", "timeout"], "timeout": "1h" } } }));
        let want = crate::nftables::render::as_listed(&s);
        assert_eq!(diff(&s, &want, Some(&table(HOST))), Vec::<String>::new());
    }

    #[test]
    fn a_removed_rule_a_flipped_policy_and_an_extra_chain_are_each_one_line() {
        let s = spec(serde_json::json!({
            "chains": { "c": { "type": "filter", "hook": "input", "priority": "filter", "policy": "accept",
                               "rules": ["ct state established,related accept", "iifname \"lo\" accept", "tcp dport 22 accept"] } },
            "sets": { "s": { "type": "ipv4_addr", "flags": ["dynamic", "timeout"], "timeout": "1h", "elements": ["9.9.9.9 timeout 1h"] } } }));
        let want = crate::nftables::render::as_listed(&s);
        let mut host = table(HOST);
        host.chains.insert("extra".into(), Default::default());
        let d = diff(&s, &want, Some(&host));
        assert_eq!(
            d,
            [
                "- chain c: type filter hook input priority filter; policy drop;",
                "+ chain c: type filter hook input priority filter; policy accept;",
                "+ chain c: iifname \"lo\" accept",
                "- chain extra (not in the document)",
                "+ set s: element 9.9.9.9 timeout 1h",
            ]
        );
        assert_eq!(summary(&d), "3 lines missing, 2 not in the document");
        assert_eq!(summary(&diff(&s, &want, None)), "the table is absent");
    }
}
