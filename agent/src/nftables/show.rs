//! `show`: the host's nftables tables as the `nftables` section of a document, spelled as nft lists
//! them, so that `plan` takes each back as in sync by the fast path (no namespace) and `apply`
//! of it changes nothing.
//!
//! Left out, with a warning on stderr naming the table and the reason: a table holding what the
//! kind does not model (flowtables, named counters, quotas, ct helpers, table flags or comments,
//! chain comments, `typeof` sets, set options other than type, size, flags and timeout), since a
//! document that owned it would delete that part on apply; and a table the document could not
//! name (a name nft takes only quoted). Tables the caller says another section already shows
//! (iptables-nft's `ip filter`…, printed through `iptables`) are not printed twice.

use serde_json::{json, Map, Value};

use crate::kind::Ctx;
use crate::error::Result;
use crate::state::nftables::{validate, RawNftables};
use crate::state::ValidationErrors;

use super::listing::{Chain, Hook, Set, Table};

/// `None` when nft is not installed or every table is left out or shown elsewhere.
pub fn show(ctx: &Ctx, shown_elsewhere: &[(String, String)]) -> Result<Option<Value>> {
    let Ok(names) = super::list_tables(ctx.host) else { return Ok(None) };
    let mut tables = Map::new();
    for (family, name) in names {
        if shown_elsewhere.iter().any(|(f, n)| *f == family && *n == name) {
            continue;
        }
        let key = format!("{family} {name}");
        let doc = match super::read_table(ctx.host, &family, &name) {
            Ok(Some(t)) => as_document(&t),
            Ok(None) => continue,
            Err(e) => Err(e.to_string()),
        };
        match doc.and_then(|d| checked(&key, d)) {
            Ok(d) => {
                tables.insert(key, d);
            }
            Err(why) => eprintln!("hostguard: warning: nftables table {key} left out: {why}"),
        }
    }
    Ok((!tables.is_empty()).then(|| json!({ "tables": tables })))
}

/// A table shown must be one the document accepts: validated as `apply` would.
fn checked(key: &str, table: Value) -> std::result::Result<Value, String> {
    let raw: RawNftables = serde_json::from_value(json!({ "tables": { key: table.clone() } })).map_err(|e| e.to_string())?;
    let mut errs = ValidationErrors::default();
    validate(raw, &mut errs);
    match errs.0.first() {
        None => Ok(table),
        Some(e) => Err(format!("the document cannot hold it ({}: {})", e.path, e.message)),
    }
}

/// The table as the document writes it, or why the document cannot hold all of it.
pub fn as_document(t: &Table) -> std::result::Result<Value, String> {
    if let Some(a) = t.attrs.first() {
        return Err(format!("it has `{a}`, which the nftables kind does not model"));
    }
    if let Some(o) = t.other.first() {
        let head = o.lines().next().unwrap_or(o);
        return Err(format!("it holds `{head}`, which the nftables kind does not model"));
    }
    let mut chains = Map::new();
    for (name, c) in &t.chains {
        chains.insert(name.clone(), chain(&t.family, name, c)?);
    }
    let (mut sets, mut maps) = (Map::new(), Map::new());
    for (name, s) in &t.sets {
        let v = set(name, s)?;
        if s.is_map { &mut maps } else { &mut sets }.insert(name.clone(), v);
    }
    let mut out = Map::new();
    out.insert("chains".into(), chains.into());
    if !sets.is_empty() {
        out.insert("sets".into(), sets.into());
    }
    if !maps.is_empty() {
        out.insert("maps".into(), maps.into());
    }
    Ok(out.into())
}

fn chain(family: &str, name: &str, c: &Chain) -> std::result::Result<Value, String> {
    let mut out = Map::new();
    match c.header.as_slice() {
        [] => {}
        [line] if line.starts_with("type ") => {
            let h = Hook::parse(line, family).ok_or_else(|| format!("chain {name}: cannot read `{line}`"))?;
            // The priority as nft printed it (`filter + 10`, `-150`), so the fast path compares it
            // letter for letter.
            let prio = line
                .split_once(" priority ")
                .and_then(|(_, r)| r.split(';').next())
                .map(str::trim)
                .ok_or_else(|| format!("chain {name}: no priority in `{line}`"))?;
            out.insert("type".into(), h.kind.into());
            out.insert("hook".into(), h.hook.into());
            if let Some(d) = h.device {
                out.insert("device".into(), d.into());
            }
            out.insert("priority".into(), prio.parse::<i64>().map(Value::from).unwrap_or_else(|_| prio.into()));
            out.insert("policy".into(), h.policy.into());
        }
        lines => return Err(format!("chain {name} has `{}`, which the nftables kind does not model", lines.join(" "))),
    }
    out.insert("rules".into(), c.rules.clone().into());
    Ok(out.into())
}

fn set(name: &str, s: &Set) -> std::result::Result<Value, String> {
    let mut out = Map::new();
    let mut runtime = false;
    for p in &s.props {
        let (word, rest) = p.split_once(' ').unwrap_or((p, ""));
        match word {
            "type" => {
                out.insert("type".into(), rest.into());
            }
            "flags" => {
                let flags: Vec<&str> = rest.split(',').map(str::trim).collect();
                runtime |= flags.iter().any(|f| matches!(*f, "dynamic" | "timeout"));
                out.insert("flags".into(), flags.into());
            }
            "size" => {
                let n: u32 = rest.parse().map_err(|_| format!("set {name}: cannot read `{p}`"))?;
                out.insert("size".into(), n.into());
            }
            "timeout" => {
                out.insert("timeout".into(), rest.into());
            }
            _ => return Err(format!("set {name} has `{p}`, which the nftables kind does not model")),
        }
    }
    if !out.contains_key("type") {
        return Err(format!("set {name} has no `type` line"));
    }
    // A dynamic or timeout set's elements are the kernel's, added at run time: a document without
    // `elements` keeps them and never counts them as drift.
    if !runtime {
        out.insert("elements".into(), s.elements.clone().into());
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::listing::parse;

    #[test]
    fn a_listing_becomes_the_document_nft_would_list_again() {
        let t = parse("table ip docker-bridges {\n\tmap jumps {\n\t\ttype ifname : verdict\n\t\telements = { \"docker0\" : jump fwd }\n\t}\n\tset seen {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1h\n\t\telements = { 1.2.3.4 timeout 1h expires 59m }\n\t}\n\tchain filter-FORWARD {\n\t\ttype filter hook forward priority filter + 10; policy drop;\n\t\toifname vmap @jumps\n\t}\n\tchain fwd {\n\t}\n}\n")
            .unwrap()
            .tables
            .remove(0);
        let d = as_document(&t).unwrap();
        assert_eq!(d["chains"]["filter-FORWARD"]["priority"], "filter + 10");
        assert_eq!(d["chains"]["filter-FORWARD"]["policy"], "drop");
        assert_eq!(d["chains"]["fwd"], json!({ "rules": [] }));
        assert_eq!(d["maps"]["jumps"]["elements"], json!(["\"docker0\" : jump fwd"]));
        assert_eq!(d["sets"]["seen"], json!({ "type": "ipv4_addr", "size": 65535, "flags": ["dynamic", "timeout"], "timeout": "1h" }));
        assert!(checked("ip docker-bridges", d).is_ok());
        let flow = parse("table inet f {\n\tflowtable ft {\n\t\thook ingress priority filter\n\t\tdevices = { lo }\n\t}\n}\n").unwrap();
        assert!(as_document(&flow.tables[0]).unwrap_err().contains("flowtable ft"));
    }
}
