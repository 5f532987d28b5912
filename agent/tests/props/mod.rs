//! Properties of hostguard's parsers, shared by the proptest tests (`tests/properties.rs`, on
//! stable, in `cargo test`) and the libFuzzer targets (`fuzz/`, on nightly), so both check the
//! same thing. Each function takes any input, must never panic inside hostguard, and panics
//! itself when a property does not hold.
#![allow(dead_code)]

use std::path::{Component, Path};

use hostguard::iptables::save;
use hostguard::lxc::Config;
use hostguard::state::iptables::RuleArgs;
use hostguard::state::sysctl::{values_equal, SysctlKey, SysctlState};
use hostguard::state::types::Limit;
use hostguard::sysctl::{glob_match, parse_line, render};

/// Any bytes as a state document: an error or a document whose parts keep their promises.
pub fn state_document(bytes: &[u8]) {
    if let Ok(doc) = hostguard::state::load(bytes, "fuzz") {
        if let Some(s) = &doc.sysctl {
            sysctl_state(s);
        }
    }
}

/// A document of one sysctl key and value, built as valid JSON so the fuzzer reaches validation
/// and rendering rather than the JSON parser.
pub fn sysctl_entry(key: &str, value: &str, ignore_missing: bool) {
    let doc = serde_json::json!({
        "version": 1,
        "sysctl": {"persist": "/etc/sysctl.d/60-hostguard.conf", "ignore_missing": ignore_missing, "values": {key: value}}
    });
    state_document(doc.to_string().as_bytes());
}

/// A validated sysctl section: its persisted file stays in /etc/sysctl.d, every key stays under
/// /proc/sys, and the rendered file reads back, line by line, as exactly the document's values.
fn sysctl_state(s: &SysctlState) {
    if let Some(p) = &s.persist {
        let name = p.strip_prefix("/etc/sysctl.d/").expect("persist is in /etc/sysctl.d");
        assert!(!name.contains('/') && name.ends_with(".conf") && !name.starts_with('.'), "persist {p:?}");
    }
    let text = render(s);
    let read: Vec<(String, String)> = text.lines().filter_map(parse_line).collect();
    assert_eq!(read.len(), s.values.len(), "rendered file {text:?} has another number of settings");
    for (k, v) in &s.values {
        sysctl_key_ok(k);
        let want = (k.rel_path().to_string(), v.normalized());
        assert!(read.contains(&want), "{want:?} does not read back from {text:?}");
        assert!(values_equal(v.as_str(), &v.normalized()), "{v:?} differs from its normal form");
    }
}

fn sysctl_key_ok(k: &SysctlKey) {
    let rel = k.rel_path();
    assert!(!rel.starts_with('/') && !rel.ends_with('/'), "{rel:?}");
    for c in rel.split('/') {
        assert!(!c.is_empty() && c != "." && c != "..", "{k:?} has component {c:?}");
        assert!(!c.chars().any(char::is_control), "{k:?}");
    }
    let full = format!("/proc/sys/{rel}");
    assert!(Path::new(&full).components().all(|c| !matches!(c, Component::ParentDir)), "{full}");
    let again = SysctlKey::parse(rel).unwrap_or_else(|e| panic!("{rel:?}, the path of {k:?}, is refused: {e}"));
    assert_eq!(again.rel_path(), rel);
}

/// A sysctl key as the document names it.
pub fn sysctl_key(s: &str) {
    if let Ok(k) = SysctlKey::parse(s) {
        sysctl_key_ok(&k);
    }
}

/// A line of a sysctl.d file, and a glob against a key path.
pub fn sysctl_line(line: &str, path: &str) {
    if let Some((k, _v)) = parse_line(line) {
        assert!(glob_match(&k, &k), "{k:?} does not match itself");
        let got = glob_match(&k, path);
        // Short enough, and few enough stars, for the obvious (exponential) definition to be
        // the reference: with 15 stars it took the fuzzer's 10 s timeout itself.
        if k.len() <= 16 && path.len() <= 16 && k.matches('*').count() <= 4 {
            assert_eq!(got, glob_reference(k.as_bytes(), path.as_bytes()), "glob {k:?} against {path:?}");
        }
    }
}

/// `*` is any run of characters other than `/`; everything else matches itself.
fn glob_reference(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_reference(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && glob_reference(p, &s[1..])),
        (Some(a), Some(b)) if a == b => glob_reference(&p[1..], &s[1..]),
        _ => false,
    }
}

/// A size: what parses prints in a form that parses to the same size.
pub fn size(s: &str) {
    let parsed = Limit::parse(s);
    assert_eq!(Limit::from_json(&serde_json::Value::String(s.to_string())), parsed);
    if let Ok(l) = parsed {
        assert_eq!(Limit::parse(&l.to_string()), Ok(l), "{s:?} -> {l}");
        assert!(!s.chars().any(|c| c.is_control() && c != '\t'), "{s:?} accepted with a control character");
    }
}

/// `iptables-save` output: what parses renders as restore input that parses to the same tables.
pub fn iptables_save(text: &str) {
    let Ok(tables) = save::parse(text) else { return };
    let mut out = String::new();
    for t in &tables {
        out.push_str(&format!("*{}\n", t.name));
        for c in &t.chains {
            out.push_str(&format!(":{} {} [0:0]\n", c.name, c.policy.as_deref().unwrap_or("-")));
        }
        for c in &t.chains {
            for r in &c.rules {
                save::push_restore_line(&mut out, "-A", &c.name, None, &r.args);
            }
        }
        out.push_str("COMMIT\n");
    }
    let again = save::parse(&out).unwrap_or_else(|e| panic!("rendered tables do not parse ({e}):\n{out}"));
    assert_eq!(again, tables, "rendered tables read back differently:\n{out}");
}

/// A rule as a document writes it: accepted rules reach iptables-restore as one line whose
/// arguments are exactly the rule's, whatever shell metacharacters they hold.
pub fn iptables_rule(text: &str) {
    let Ok(rule) = RuleArgs::parse(text) else { return };
    let mut line = String::new();
    save::push_restore_line(&mut line, "-A", "HG", None, rule.args());
    assert_eq!(line.matches('\n').count(), 1, "{text:?} renders as more than one line: {line:?}");
    let args = save::split(line.trim_end_matches('\n')).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(&args[2..], rule.args(), "{text:?} renders as {line:?}");
}

/// An LXC config: read and written back byte for byte.
pub fn lxc_config(text: &str) {
    let c = Config::parse(text);
    assert_eq!(c.text(), text);
    for (_, e) in c.entries() {
        assert!(e.key.starts_with("lxc.") && !e.key.contains('='), "{e:?}");
    }
}

/// `nft list` output: parsed, each table rendered as the `nft -f` definition a `--confirm`
/// rollback loads, and parsed again: the same table.
pub fn nft_listing(text: &str) {
    let Ok(ruleset) = hostguard::nftables::listing::parse(text) else { return };
    for t in &ruleset.tables {
        let out = hostguard::nftables::listing::render(t);
        let again = hostguard::nftables::listing::parse(&out).unwrap_or_else(|e| panic!("rendered table does not parse ({e}):\n{out}"));
        assert_eq!(again.tables, [t.clone()], "rendered table reads back differently:\n{out}");
    }
}

/// A string as a document's rule and as a set element: when validation accepts it, it is exactly
/// one line of the `nft -f` batch, inside its chain or set, and the batch has as many lines and
/// blocks as with a plain `accept` / `1.2.3.4` there.
pub fn nft_rule(text: &str) {
    use hostguard::nftables::render::{table, Script};
    use hostguard::state::nftables::{validate, RawNftables};
    let script = |rule: &str, element: &str| -> Option<Script> {
        let raw: RawNftables = serde_json::from_value(serde_json::json!({ "tables": { "inet hg": {
            "chains": { "c": { "rules": [rule] } },
            "sets": { "s": { "type": "ipv4_addr", "elements": [element] } } } } }))
        .ok()?;
        let mut errs = hostguard::state::ValidationErrors::default();
        let st = validate(raw, &mut errs);
        if !errs.is_empty() {
            return None;
        }
        let mut s = Script::new();
        table(&mut s, &st.tables[0]);
        Some(s)
    };
    let plain = script("accept", "1.2.3.4").expect("the plain table is valid");
    let shape = |s: &Script| s.text.lines().map(|l| l.matches('{').count() as i64 - l.matches('}').count() as i64).collect::<Vec<_>>();
    for (rule, element) in [(text, "1.2.3.4"), ("accept", text)] {
        let Some(s) = script(rule, element) else { continue };
        assert_eq!(s.text.lines().count(), plain.text.lines().count(), "{text:?} changes the batch's lines:\n{}", s.text);
        let want = if rule == text { format!("\t\t{}", text.trim()) } else { format!("\t\t\t{}", text.trim()) };
        assert!(s.text.lines().any(|l| l == want), "{text:?} is not one line of the batch:\n{}", s.text);
        // Outside quotes, the braces of every line but the document's open and close as in the
        // plain batch: the string cannot close its chain or set and open another.
        let (a, b) = (shape(&s), shape(&plain));
        for (i, l) in s.text.lines().enumerate() {
            if l != want {
                assert_eq!(a[i], b[i], "{text:?}: line {} {l:?}", i + 1);
            }
        }
    }
}
