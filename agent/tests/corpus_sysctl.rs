//! Real sysctl.d files that nobody on this project wrote (`tests/data/sysctl/`, each named with
//! its source in `tests/data/MANIFEST.md`), each installed in a fake root beside hostguard's
//! persisted file. Boot precedence: a document setting every numeric key of the file to another
//! value (the keys this kernel has) reports the file's last explicit line for each key (a glob
//! never overrides an explicit key: systemd-sysctl's rule) as reverting it at boot exactly when
//! the file is read after the persisted one (checked with a persisted file that sorts first and one that sorts
//! last). Convergence: the file's `net.*` keys (globs as `all` and `default`), which the kernel
//! keeps per network namespace, converge inside a namespace of their own and a second apply
//! exits 0 — the machine's own sysctls are never written. Needs root and `ip`.

use crate::util;

use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};
use util::{manifest_rows, Run};

/// `[-]key = value` lines of a sysctl.d file: (line number, key, value).
fn entries(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                return None;
            }
            let (k, v) = t.split_once('=')?;
            Some((n + 1, k.trim().trim_start_matches('-').trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The concrete keys a key or glob names for a document (`*` as `all` and `default`).
fn concrete(key: &str) -> Vec<String> {
    if key.contains('*') { ["all", "default"].iter().map(|c| key.replace('*', c)).collect() } else { vec![key.to_string()] }
}

struct Ns {
    name: String,
    root: tempfile::TempDir,
}

impl Ns {
    fn new(tag: usize) -> Ns {
        let name = format!("hg-csy-{}-{tag}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(ok.success(), "ip netns add {name}");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/sys")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/sysctl.d")).unwrap();
        Ns { name, root }
    }

    fn has(&self, key: &str) -> bool {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        Command::new("ip").args(["netns", "exec", &self.name, "test", "-e", &path]).status().unwrap().success()
    }

    fn read(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = Command::new("ip").args(["netns", "exec", &self.name, "cat", &path]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// hostguard CMD with `--root` the fake root, whose /proc/sys is the namespace's own (a bind
    /// mount in a private mount namespace, gone when the run ends).
    fn hg(&self, cmd: &str, doc: &Value) -> Run {
        let root = self.root.path().to_str().unwrap();
        let script = r#"mount --bind /proc/sys "$1/proc/sys" && exec "$2" --root "$1" --format json "$3" -"#;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "unshare", "-m", "sh", "-c", script, "sh", root, util::bin(), cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn expect(r: &Run, code: i32, what: &str) -> Result<(), String> {
    if r.code == code { Ok(()) } else { Err(format!("{what}: exit {} (expected {code})\nstdout: {}\nstderr: {}", r.code, r.stdout, r.stderr)) }
}

fn doc(values: &Map<String, Value>, persist: &str, ignore_missing: bool) -> Value {
    json!({ "version": 1, "sysctl": { "persist": persist, "ignore_missing": ignore_missing, "values": values } })
}

fn run_case(file: &str, text: &str, tag: usize) -> Result<(), String> {
    let ns = Ns::new(tag);
    let installed = if file == "sysctl.conf" { "/etc/sysctl.conf".to_string() } else { format!("/etc/sysctl.d/{file}") };
    std::fs::write(ns.root.path().join(installed.trim_start_matches('/')), text).unwrap();
    let lines = entries(text);

    // Boot precedence: every numeric key set to another value; each of the file's lines is
    // named as reverting it exactly when the file is read after the persisted one.
    let mut other = Map::new();
    for (_, key, value) in &lines {
        let mut tokens: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        let Some(n) = tokens.first().and_then(|t| t.parse::<i64>().ok()) else { continue };
        tokens[0] = (n + 1).to_string();
        // A key this kernel lacks is never persisted, so no file can revert it.
        for k in concrete(key).into_iter().filter(|k| ns.has(k)) {
            other.insert(k, json!(tokens.join(" ")));
        }
    }
    for persist in ["/etc/sysctl.d/10-hostguard.conf", "/etc/sysctl.d/zz-hostguard.conf"] {
        if other.is_empty() {
            break;
        }
        let r = ns.hg("plan", &doc(&other, persist, true));
        let report: Value = serde_json::from_str(&r.stdout).map_err(|e| format!("plan with {persist}: not JSON ({e}): {} {}", r.stdout, r.stderr))?;
        let id = format!("sysctl-file{persist}");
        let res = report["resources"].as_array().and_then(|rs| rs.iter().find(|x| x["id"] == id)).ok_or(format!("no resource {id}"))?;
        let said = format!("{} {}", res["message"], res["diff"]);
        let name = persist.rsplit('/').next().unwrap();
        let read_later = file == "sysctl.conf" || file > name;
        for (n, key, value) in &lines {
            for k in concrete(key).into_iter().filter(|k| other.contains_key(k)) {
                let want = format!("{k} would revert at boot: {installed}:{n} sets {value}");
                // systemd-sysctl's rule: the last explicit line for a key decides it; a glob
                // never sets a key that a file (ours) names explicitly.
                let decides = !key.contains('*') && lines.iter().rev().find(|(_, k2, _)| k2 == &k).map(|l| l.0) == Some(*n);
                if said.contains(&want) != (read_later && decides) {
                    return Err(format!(
                        "persisted as {persist}, {installed} is read {}: plan {} say \"{want}\"\nit said: {said}",
                        if read_later { "after it" } else { "before it" },
                        if read_later && decides { "does not" } else { "does" }
                    ));
                }
            }
        }
    }

    // Convergence of the per-namespace keys.
    let mut net = Map::new();
    for (_, key, value) in &lines {
        for k in concrete(key) {
            if k.starts_with("net.") && ns.has(&k) {
                net.insert(k, json!(value));
            }
        }
    }
    if net.is_empty() {
        return Ok(());
    }
    let d = doc(&net, "/etc/sysctl.d/10-hostguard.conf", false);
    let r = ns.hg("apply", &d);
    if r.code != 0 && r.code != 2 {
        return expect(&r, 2, "apply of the file's net.* keys in a namespace");
    }
    expect(&ns.hg("apply", &d), 0, "second apply")?;
    for (k, v) in &net {
        let want = v.as_str().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        if ns.read(k) != want {
            return Err(format!("{k} reads {:?} in the namespace after apply, not {want:?}", ns.read(k)));
        }
    }
    Ok(())
}

#[test]
fn real_sysctl_files_are_seen_in_boot_order_and_their_net_keys_converge_in_a_namespace() {
    let mut failed = Vec::new();
    let mut passed = 0;
    for (n, (file, expected)) in manifest_rows("sysctl").into_iter().enumerate() {
        let text = std::fs::read_to_string(util::data_dir().join("sysctl").join(&file)).unwrap();
        let outcome = run_case(&file, &text, n);
        eprintln!("{file}: {}", if outcome.is_ok() { "ok" } else { "FAILED" });
        match (outcome, expected.starts_with("waits for issue")) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => failed.push(format!("{file}: passes now: remove \"{expected}\" from MANIFEST.md")),
            (Err(e), true) => eprintln!("PENDING {file} ({expected}): {e}\n"),
            (Err(e), false) => failed.push(format!("{file}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{} files failed ({passed} passed):\n\n{}", failed.len(), failed.join("\n\n"));
}
