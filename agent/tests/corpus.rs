//! The hostile input corpus (`tests/corpus/`): every case in its README's table runs against a
//! fresh fake root and a directory standing for the world outside it; the table says what must
//! happen, and for every case nothing under the root or outside it changes.

use crate::util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use util::{run_with, FakeRoot, Netns};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

#[derive(Debug)]
struct Case {
    name: String,
    links: Vec<(String, String)>,
    expect: Expect,
}

#[derive(Debug)]
enum Expect {
    Refused { stderr: String },
    Failed { code: i32, id: String, message: String },
    Saved { text: String },
}

/// The rows of the README's table.
fn cases() -> Vec<Case> {
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).unwrap();
    let mut out = Vec::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        // `\|` is a literal `|` inside a cell.
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .replace("\\|", "\u{1}")
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "|"))
            .collect();
        assert_eq!(cells.len(), 4, "README row does not have 4 cells: {line}");
        let name = cells[0].trim_matches('`').to_string();
        let links = cells[2]
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let s = s.strip_prefix("link ").unwrap_or_else(|| panic!("{name}: setup {s:?} is not `link PATH -> TARGET`"));
                let (p, t) = s.split_once(" -> ").unwrap_or_else(|| panic!("{name}: setup {s:?} has no ` -> `"));
                (p.to_string(), t.to_string())
            })
            .collect();
        let must = cells[3].as_str();
        let expect = if let Some(text) = must.strip_prefix("exit 1: ") {
            Expect::Refused { stderr: text.to_string() }
        } else if let Some(text) = must.strip_prefix("exit 2: saved ") {
            Expect::Saved { text: text.to_string() }
        } else {
            let (code, rest) = must.split_once(": failed ").unwrap_or_else(|| panic!("{name}: cannot read {must:?}"));
            let (id, message) = rest.split_once(": ").unwrap_or_else(|| panic!("{name}: cannot read {must:?}"));
            let code = code.strip_prefix("exit ").and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{name}: {must:?}"));
            Expect::Failed { code, id: id.to_string(), message: message.to_string() }
        };
        out.push(Case { name, links, expect });
    }
    out
}

/// A fake host and the world outside it, both holding files a link could lead a write to.
struct World {
    root: FakeRoot,
    outside: tempfile::TempDir,
}

const SECRET: &str = "secret";

fn world() -> World {
    let root = FakeRoot::new();
    root.sysctl("vm.swappiness", "10");
    root.sysctl("vm.dirty_ratio", "20");
    root.write("/etc/shadow", &format!("root:{SECRET}-in-root:19000:0:99999:7:::\n"));
    root.write("/etc/sysctl.d/10-local.conf", "vm.swappiness = 10\n");
    for c in ["memory", "cpu", "pids"] {
        root.write(&format!("/sys/fs/cgroup/{c}/cgroup.procs"), "");
    }
    root.write("/sys/fs/cgroup/pids/hostguard/web1/pids.max", "max\n");
    root.write("/var/lib/lxc/web1/config", "lxc.uts.name = web1\nlxc.start.auto = 0\n");
    root.write("/srv/lxc/web1/config", "lxc.uts.name = web1\nlxc.start.auto = 0\n");
    let outside = tempfile::tempdir().unwrap();
    let o = |rel: &str, content: &str| {
        let p = outside.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    o("shadow", &format!("root:{SECRET}-outside:19000:0:99999:7:::\n"));
    std::fs::create_dir_all(outside.path().join("sysctl.d")).unwrap();
    std::fs::create_dir_all(outside.path().join("etc/sysctl.d")).unwrap();
    o("vm/swappiness", "60\n");
    o("vm/dirty_ratio", "20\n");
    o("web1/config", &format!("# {SECRET}\nlxc.uts.name = outside\n"));
    o("lxc/web1/config", &format!("# {SECRET}\nlxc.uts.name = outside\n"));
    o("cg/web1/pids.max", "max\n");
    World { root, outside }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                out.insert(p.clone(), std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes());
            } else if !p.ends_with("run/hostguard.lock") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn plant(w: &World, case: &Case) {
    for (path, target) in &case.links {
        let target = if let Some(rel) = target.strip_prefix("@outside/") {
            w.outside.path().join(rel)
        } else {
            PathBuf::from(target)
        };
        let p = w.root.host_path(path);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
            Ok(_) => std::fs::remove_file(&p).unwrap(),
            Err(_) => std::fs::create_dir_all(p.parent().unwrap()).unwrap(),
        }
        std::os::unix::fs::symlink(&target, &p).unwrap();
    }
}

fn run_case(ns: &Netns, case: &Case) -> Result<(), String> {
    let w = world();
    let pre = ns.prefix();
    plant(&w, case);
    let doc = corpus_dir().join(format!("{}.json", case.name));
    let bytes = std::fs::read(&doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let (root_before, outside_before) = (snapshot(w.root.path()), snapshot(w.outside.path()));
    let root = w.root.arg();
    let mut outputs = Vec::new();
    match &case.expect {
        Expect::Refused { stderr } => {
            for cmd in ["validate", "plan", "apply"] {
                // From standard input, so the raw bytes arrive exactly as in the file.
                let run = run_with(&pre, &[cmd, "--format", "json", "--root", &root, "-"], Some(&bytes), &[]);
                if run.code != 1 || !run.stderr.contains(stderr.as_str()) {
                    return Err(format!("{cmd}: exit {} (want 1), stderr {:?} (want it to contain {stderr:?})", run.code, cut(&run.stderr)));
                }
                outputs.push(run.stdout + &run.stderr);
            }
        }
        Expect::Failed { code, id, message } => {
            let doc = doc.to_string_lossy();
            let plan = run_with(&pre, &["plan", "--format", "json", "--root", &root, &doc], None, &[]);
            outputs.push(plan.stdout.clone() + &plan.stderr);
            let run = run_with(&pre, &["apply", "--format", "json", "--root", &root, &doc], None, &[]);
            outputs.push(run.stdout.clone() + &run.stderr);
            if run.code != *code {
                return Err(format!("apply: exit {} (want {code})\nstdout: {}\nstderr: {}", run.code, run.stdout, run.stderr));
            }
            let res = run.resource(id);
            let msg = res["message"].as_str().unwrap_or_default();
            if res["status"] != "failed" || !msg.contains(message.as_str()) {
                return Err(format!("apply: {id} is {} with message {msg:?} (want failed, containing {message:?})", res["status"]));
            }
        }
        Expect::Saved { text } => {
            let run = run_with(&pre, &["apply", "--format", "json", "--root", &root, &doc.to_string_lossy()], None, &[]);
            if run.code != 2 {
                return Err(format!("apply: exit {} (want 2)\nstdout: {}\nstderr: {}", run.code, run.stdout, run.stderr));
            }
            let saved = ns_iptables_save(ns);
            if !saved.contains(text.as_str()) {
                return Err(format!("iptables-save does not show {text:?}:\n{saved}"));
            }
            ns.hostguard(&["plan", "--format", "json", "--root", &root, &doc.to_string_lossy()]).expect(0);
        }
    }
    if snapshot(w.root.path()) != root_before {
        return Err("the host under the root changed".into());
    }
    if snapshot(w.outside.path()) != outside_before {
        return Err("a file outside the root changed".into());
    }
    if let Some(o) = outputs.iter().find(|o| o.contains(SECRET)) {
        return Err(format!("the output shows a victim file's content:\n{o}"));
    }
    Ok(())
}

/// Every table of the namespace's nf_tables IPv4 firewall.
fn ns_iptables_save(ns: &Netns) -> String {
    let o = std::process::Command::new("ip").args(["netns", "exec", &ns.name, "iptables-nft-save"]).output().unwrap();
    assert!(o.status.success(), "iptables-nft-save: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cut(s: &str) -> &str {
    &s[..s.char_indices().nth(400).map_or(s.len(), |(i, _)| i)]
}

#[test]
fn every_hostile_case_is_refused_and_leaves_the_host_untouched() {
    let cases = cases();
    assert!(cases.len() >= 75, "only {} cases read from the README", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        // A namespace per case: an accepted firewall case starts from an empty firewall.
        let ns = Netns::new("corpus");
        if let Err(e) = run_case(&ns, case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn the_readme_lists_every_case_file_and_only_those() {
    let listed: std::collections::BTreeSet<String> = cases().into_iter().map(|c| c.name).collect();
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    assert_eq!(listed, files, "tests/corpus/README.md and the case files disagree");
}
