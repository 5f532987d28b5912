//! Real iptables-save dumps that nobody on this project wrote (`tests/data/iptables/`, each file
//! named with its source in `tests/data/MANIFEST.md`), each loaded into network namespaces of its
//! own on both backends. For every dump: `show` of the loaded rules plans in sync and applies
//! without changing a byte; the rules as the source writes them converge from an empty namespace
//! to exactly what `iptables-restore` of the dump gives, and a second apply changes nothing, with
//! `purge: true` and with `purge: false`; a deleted rule, a stray rule and a flipped policy are
//! each reported on exactly their chain and repaired byte for byte.
//!
//! A dump the manifest marks "waits for issue N" must still fail (the test says so, and fails the
//! day it passes, so the mark is removed); every other dump must pass. Needs root, `ip` and both
//! iptables backends.

use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Map, Value};
use util::{manifest_rows, run_with, Run};


/// One chain as the dump declares it.
#[derive(Clone, Debug)]
struct Chain {
    table: String,
    name: String,
    /// `None` for a user-defined chain (`:NAME - [0:0]`).
    policy: Option<String>,
    /// The rules as written after `-A NAME `.
    rules: Vec<String>,
}

/// The chains of an `iptables-save` dump in file order; `[pkts:bytes]` counters are dropped.
fn parse_dump(text: &str) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut table = String::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().unwrap().to_string();
            let policy = words.next().filter(|p| *p != "-").map(str::to_string);
            chains.push(Chain { table: table.clone(), name, policy, rules: Vec::new() });
            continue;
        }
        let line = match line.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map(|(_, r)| r).unwrap_or_else(|| panic!("bad counters: {raw}")),
            None => line,
        };
        // `-P CHAIN POLICY` (iptables-restore takes it as it would from the command line): the
        // chain ends with that policy.
        if let Some(p) = line.strip_prefix("-P ") {
            let (name, policy) = p.split_once(' ').unwrap_or_else(|| panic!("bad policy line: {raw}"));
            let chain = chains.iter_mut().find(|c| c.table == table && c.name == name).unwrap_or_else(|| panic!("policy of undeclared chain: {raw}"));
            chain.policy = Some(policy.trim().to_string());
            continue;
        }
        let rest = line.strip_prefix("-A ").unwrap_or_else(|| panic!("not a rule, chain or table line: {raw}"));
        let (name, rule) = rest.split_once(' ').unwrap_or((rest, ""));
        let chain = chains
            .iter_mut()
            .find(|c| c.table == table && c.name == name)
            .unwrap_or_else(|| panic!("rule for undeclared chain {table}/{name}: {raw}"));
        chain.rules.push(rule.to_string());
    }
    chains
}

/// The state document owning every chain of the dump, rules as the source wrote them.
fn doc_of(chains: &[Chain], backend: &str, family: &str, purge: bool) -> Value {
    let mut tables = Map::new();
    for c in chains {
        let t = tables.entry(c.table.clone()).or_insert_with(|| json!({}));
        let mut chain = json!({ "purge": purge, "rules": c.rules });
        if let Some(p) = &c.policy {
            chain["policy"] = json!(p);
        }
        t[&c.name] = chain;
    }
    let mut ipt = json!({ "backend": backend, "ipv4": {}, "ipv6": {} });
    ipt[family] = Value::Object(tables);
    json!({ "version": 1, "iptables": ipt })
}

/// A network namespace and a fake root for hostguard's lock and files, removed on drop.
struct Ns {
    name: String,
    root: tempfile::TempDir,
}

impl Ns {
    fn new() -> Ns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("hg-cix-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let out = std::process::Command::new("ip").args(["netns", "add", &name]).output().expect("run ip (iproute2)");
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        Ns { name, root: tempfile::tempdir().unwrap() }
    }

    fn run(&self, argv: &[&str], stdin: Option<&str>) -> Run {
        let (cmd, args) = argv.split_first().unwrap();
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name, cmd]).args(args).stdout(std::process::Stdio::piped());
        c.stderr(std::process::Stdio::piped()).stdin(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// hostguard CMD with the document on standard input.
    fn hg(&self, cmd: &str, doc: &Value) -> Run {
        let root = self.root.path().to_string_lossy().into_owned();
        let prefix = ["ip", "netns", "exec", self.name.as_str()];
        run_with(&prefix, &["--root", &root, "--format", "json", cmd, "-"], Some(doc.to_string().as_bytes()), &[])
    }

    fn show(&self) -> Run {
        let root = self.root.path().to_string_lossy().into_owned();
        run_with(&["ip", "netns", "exec", self.name.as_str()], &["--root", &root, "show"], None, &[])
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

struct Tools {
    restore: String,
    save: String,
    cmd: String,
}

fn tools(backend: &str, family: &str) -> Tools {
    let base = if family == "ipv6" { "ip6tables" } else { "iptables" };
    Tools {
        restore: format!("{base}-{backend}-restore"),
        save: format!("{base}-{backend}-save"),
        cmd: format!("{base}-{backend}"),
    }
}

/// `iptables-save` without its comment lines (timestamps) and chain counters, byte for byte
/// otherwise.
fn save(ns: &Ns, t: &Tools) -> Result<String, String> {
    let r = ns.run(&[&t.save], None);
    if r.code != 0 {
        return Err(format!("{} failed: {}", t.save, r.stderr));
    }
    Ok(r.stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| if l.starts_with(':') { l.rsplit_once(" [").map_or(l, |(head, _)| head) } else { l })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The tables of a save that hold something, in name order: a table nothing was loaded into
/// (every chain built-in with policy ACCEPT, no rule) is left out, since reading a table may
/// create it, and legacy prints tables in the order they were first used.
fn loaded_tables(save: &str) -> String {
    let mut tables = Vec::new();
    let mut table: Vec<&str> = Vec::new();
    for line in save.lines() {
        table.push(line);
        if line == "COMMIT" {
            let pristine = table.iter().all(|l| l.starts_with('*') || *l == "COMMIT" || (l.starts_with(':') && l.ends_with(" ACCEPT")));
            if !pristine {
                tables.push(table.join("\n"));
            }
            table.clear();
        }
    }
    tables.sort();
    tables.join("\n")
}

fn ipt(ns: &Ns, t: &Tools, args: &[&str]) -> Result<(), String> {
    let mut argv = vec![t.cmd.as_str(), "-w"];
    argv.extend_from_slice(args);
    let r = ns.run(&argv, None);
    if r.code == 0 { Ok(()) } else { Err(format!("{argv:?}: {}", r.stderr)) }
}

fn expect(r: &Run, code: i32, what: &str) -> Result<(), String> {
    if r.code == code {
        Ok(())
    } else {
        Err(format!("{what}: exit {} (expected {code})\nstdout: {}\nstderr: {}", r.code, clip(&r.stdout), clip(&r.stderr)))
    }
}

fn clip(s: &str) -> String {
    if s.len() > 3000 { format!("{}... ({} bytes)", &s[..3000], s.len()) } else { s.to_string() }
}

/// The ids of the resources a report does not find in sync.
fn not_in_sync(r: &Run) -> Result<Vec<String>, String> {
    let j: Value = serde_json::from_str(&r.stdout).map_err(|e| format!("report is not JSON ({e}): {}", clip(&r.stdout)))?;
    Ok(j["resources"]
        .as_array()
        .ok_or("report has no resources")?
        .iter()
        .filter(|x| x["status"] != "in_sync")
        .map(|x| x["id"].as_str().unwrap_or("?").to_string())
        .collect())
}

fn same(what: &str, want: &str, got: &str) -> Result<(), String> {
    if want == got {
        return Ok(());
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let first = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
    Err(format!(
        "{what}: iptables-save differs from the dump's, first at line {}:\n  want: {:?}\n  got:  {:?}\n({} lines wanted, {} got)",
        first + 1,
        w.get(first),
        g.get(first),
        w.len(),
        g.len()
    ))
}

/// One dump on one backend, every step; the first step that fails ends the case.
fn run_case(file: &str, text: &str, backend: &str) -> Result<(), String> {
    let family = if file.ends_with(".v6") { "ipv6" } else { "ipv4" };
    let t = tools(backend, family);
    let chains = parse_dump(text);

    // What iptables itself makes of the dump.
    let loaded = Ns::new();
    let r = loaded.run(&[&t.restore, "-w"], Some(text));
    expect(&r, 0, &format!("{} of the dump", t.restore))?;
    let baseline = save(&loaded, &t)?;
    let want = loaded_tables(&baseline);

    // show -> plan in sync -> apply changes nothing, byte for byte.
    let shown = loaded.show();
    expect(&shown, 0, "show")?;
    let shown: Value = serde_json::from_str(&shown.stdout).map_err(|e| format!("show is not JSON: {e}"))?;
    expect(&loaded.hg("plan", &shown), 0, "plan of show's document")?;
    expect(&loaded.hg("apply", &shown), 0, "apply of show's document")?;
    same("after apply of show's document", &baseline, &save(&loaded, &t)?)?;

    for purge in [true, false] {
        let doc = doc_of(&chains, backend, family, purge);
        let tag = format!("purge: {purge}");
        // From an empty namespace to exactly the dump.
        let empty = Ns::new();
        expect(&empty.hg("apply", &doc), 2, &format!("{tag}: apply to an empty namespace"))?;
        same(&format!("{tag}: converged from empty"), &want, &loaded_tables(&save(&empty, &t)?))?;
        expect(&empty.hg("apply", &doc), 0, &format!("{tag}: second apply"))?;
        expect(&empty.hg("plan", &doc), 0, &format!("{tag}: plan after apply"))?;
        drop(empty);

        // The loaded namespace is in sync with the dump as written.
        expect(&loaded.hg("plan", &doc), 0, &format!("{tag}: plan of the dump as written against the restored dump"))?;
        mutations(&loaded, &t, &chains, &doc, family, purge, &baseline)?;
    }
    Ok(())
}

/// `what` was done by hand to `chain`: plan reports drift on exactly that chain, and apply
/// repairs the namespace to the dump byte for byte.
fn reported_and_repaired(ns: &Ns, t: &Tools, doc: &Value, what: &str, chain: &str, baseline: &str) -> Result<(), String> {
    let plan = ns.hg("plan", doc);
    expect(&plan, 2, &format!("{what}: plan"))?;
    if not_in_sync(&plan)? != [chain] {
        return Err(format!("{what}: plan reports {:?}, not exactly that chain", not_in_sync(&plan)?));
    }
    expect(&ns.hg("apply", doc), 2, &format!("{what}: apply"))?;
    same(&format!("{what}: repaired"), baseline, &save(ns, t)?)
}

/// A deleted rule, a stray rule and a flipped policy: each reported on exactly its chain, and
/// repaired to the dump byte for byte. Without purge a stray rule is not drift and stays.
fn mutations(ns: &Ns, t: &Tools, chains: &[Chain], doc: &Value, family: &str, purge: bool, baseline: &str) -> Result<(), String> {
    let tag = format!("purge: {purge}");
    let id = |c: &Chain| format!("iptables/{family}/{}/{}", c.table, c.name);
    let busiest = chains.iter().max_by_key(|c| c.rules.len()).filter(|c| !c.rules.is_empty());
    if let Some(c) = busiest {
        let n = (c.rules.len() / 2 + 1).to_string();
        ipt(ns, t, &["-t", &c.table, "-D", &c.name, &n])?;
        reported_and_repaired(ns, t, doc, &format!("{tag}: rule {n} of {} deleted", id(c)), &id(c), baseline)?;

        let stray = if family == "ipv6" { "2001:db8::99/128" } else { "192.0.2.99/32" };
        ipt(ns, t, &["-t", &c.table, "-I", &c.name, "1", "-s", stray, "-j", "RETURN"])?;
        let what = format!("{tag}: a stray rule at the top of {}", id(c));
        if purge {
            reported_and_repaired(ns, t, doc, &what, &id(c), baseline)?;
        } else {
            expect(&ns.hg("plan", doc), 0, &format!("{what}: plan (a rule not listed is not drift without purge)"))?;
            expect(&ns.hg("apply", doc), 0, &format!("{what}: apply"))?;
            ipt(ns, t, &["-t", &c.table, "-D", &c.name, "1"])?;
            same(&format!("{what}: kept by apply, then removed by hand"), baseline, &save(ns, t)?)?;
        }
    }

    let flippable = ["filter", "mangle", "raw"]
        .iter()
        .find_map(|table| chains.iter().find(|c| c.table == *table && c.policy.is_some()));
    if let Some(c) = flippable {
        let other = if c.policy.as_deref() == Some("DROP") { "ACCEPT" } else { "DROP" };
        ipt(ns, t, &["-t", &c.table, "-P", &c.name, other])?;
        reported_and_repaired(ns, t, doc, &format!("{tag}: policy of {} flipped to {other}", id(c)), &id(c), baseline)?;
    }
    Ok(())
}

fn corpus_on(backend: &str) {
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    let mut passed = 0;
    for (file, expected) in manifest_rows("iptables") {
        let text = std::fs::read_to_string(util::data_dir().join("iptables").join(&file)).unwrap();
        let started = std::time::Instant::now();
        let outcome = run_case(&file, &text, backend);
        eprintln!("{backend} {file}: {} ({:.1}s)", if outcome.is_ok() { "ok" } else { "FAILED" }, started.elapsed().as_secs_f64());
        match (outcome, expected.starts_with("waits for issue")) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => failed.push(format!("{file}: passes now: remove \"{expected}\" from MANIFEST.md")),
            (Err(e), true) => pending.push(format!("{file} ({expected}): {e}")),
            (Err(e), false) => failed.push(format!("{file}: {e}")),
        }
    }
    for p in &pending {
        eprintln!("PENDING {backend} {p}\n");
    }
    assert!(failed.is_empty(), "{backend}: {} dumps failed ({passed} passed):\n\n{}", failed.len(), failed.join("\n\n"));
}

#[test]
fn real_dumps_round_trip_converge_and_repair_on_nft() {
    corpus_on("nft");
}

#[test]
fn real_dumps_round_trip_converge_and_repair_on_legacy() {
    corpus_on("legacy");
}
