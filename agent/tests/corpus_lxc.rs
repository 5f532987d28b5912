//! Real LXC container configs that nobody on this project wrote (`tests/data/lxc/`, each named
//! with its source in `tests/data/MANIFEST.md`), each as the config of a real busybox container
//! in a temp lxcpath. For every config: `show` prints the settings LXC itself reads from it
//! (`lxc-info -c KEY` of every network key agrees), and that document plans in sync and applies
//! without changing a byte; a document changing limits, capabilities, the network and a `config`
//! key converges, a second apply changes nothing, every line it does not manage stays as it was
//! and in order, LXC reads each managed key back as written, and the container starts with the
//! converged config. A config in LXC 1.x keys (which LXC 2.1 and later refuse) is migrated first
//! and then must do the same.
//!
//! A config the manifest marks "waits for issue N" must still fail (and fails the test the day
//! it passes). Needs root, LXC and busybox-static (tests/lib/setup.sh installs them) and a
//! cgroup v1 host like tests/system/lxc.

use crate::util;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use util::{manifest_rows, run_with, Run};

fn lxc(argv: &[&str]) -> Run {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A busybox container in its own temp lxcpath, stopped and destroyed on drop.
struct Container {
    dir: tempfile::TempDir,
    name: String,
}

impl Container {
    fn new(tag: usize) -> Result<Container, String> {
        let dir = tempfile::Builder::new().prefix("hostguard-lxc-corpus.").tempdir().unwrap();
        let name = format!("hgcx{}x{tag}", std::process::id());
        let c = Container { dir, name };
        let r = lxc(&["lxc-create", "-P", c.lxcpath(), "-n", &c.name, "-t", "busybox"]);
        if r.code != 0 {
            return Err(format!("lxc-create -t busybox: {}", r.stderr));
        }
        Ok(c)
    }

    fn lxcpath(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join(&self.name).join("config")
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap()
    }

    /// hostguard CMD with the document on standard input.
    fn hg(&self, cmd: &str, doc: &Value) -> Run {
        run_with(&[], &["--format", "json", cmd, "-"], Some(doc.to_string().as_bytes()), &[])
    }

    /// What LXC itself reads for a key (`lxc-info -c KEY`), one value per line.
    fn lxc_reads(&self, key: &str) -> Result<Vec<String>, String> {
        let r = lxc(&["lxc-info", "-P", self.lxcpath(), "-n", &self.name, "-c", key]);
        if r.code != 0 || !r.stderr.trim().is_empty() {
            return Err(format!("lxc-info -c {key} (LXC cannot read the config?): exit {} {}", r.code, r.stderr));
        }
        let text = r.stdout.trim_end();
        let text = text.strip_prefix(&format!("{key} =")).unwrap_or(text);
        Ok(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = lxc(&["lxc-stop", "-P", self.lxcpath(), "-n", &self.name, "-k"]);
        let _ = lxc(&["lxc-destroy", "-P", self.lxcpath(), "-n", &self.name, "-f"]);
        // LXC removes its cgroups when a container stops; remove any it left (only ours).
        for controller in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            for prefix in ["lxc.payload.", "lxc.monitor."] {
                let d = controller.path().join(format!("{prefix}{}", self.name));
                if d.is_dir() {
                    let _ = Command::new("find").arg(&d).args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]).status();
                }
            }
        }
    }
}

fn expect(r: &Run, code: i32, what: &str) -> Result<(), String> {
    if r.code == code {
        Ok(())
    } else {
        Err(format!("{what}: exit {} (expected {code})\nstdout: {}\nstderr: {}", r.code, r.stdout, r.stderr))
    }
}

/// The `lxc` section of `show --lxcpath`, as a document.
fn shown(c: &Container) -> Result<Value, String> {
    let r = run_with(&[], &["show", "--lxcpath", c.lxcpath()], None, &[]);
    expect(&r, 0, "show")?;
    let j: Value = serde_json::from_str(&r.stdout).map_err(|e| format!("show is not JSON: {e}"))?;
    Ok(json!({ "version": 1, "lxc": j["lxc"].clone() }))
}

/// The lines of a config that hold none of the keys a document manages, in order.
fn unmanaged(text: &str, managed: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            let legacy_net = key.starts_with("lxc.network");
            !(legacy_net || key.starts_with("lxc.net.") || key == "lxc.net" || managed.contains(&key))
        })
        .map(str::to_string)
        .collect()
}

fn run_case(text: &str, tag: usize) -> Result<(), String> {
    let legacy = text.lines().any(|l| l.trim_start().starts_with("lxc.network.") || l.trim_start().starts_with("lxc.utsname"));
    let c = Container::new(tag)?;
    let busybox = c.config();
    std::fs::write(c.config_path(), text).unwrap();

    // show -> plan in sync -> apply changes nothing (a legacy config is migrated first).
    let doc = shown(&c)?;
    if legacy {
        expect(&c.hg("plan", &doc), 2, "plan of a config in legacy keys")?;
        expect(&c.hg("apply", &doc), 2, "apply migrating legacy keys")?;
        let backup = std::fs::read_to_string(c.config_path().with_file_name("config.backup")).unwrap_or_default();
        if backup != text {
            return Err("the legacy config is not kept byte for byte as config.backup".into());
        }
    }
    let before = c.config();
    let doc = if legacy { shown(&c)? } else { doc };
    expect(&c.hg("plan", &doc), 0, "plan of show's document")?;
    expect(&c.hg("apply", &doc), 0, "apply of show's document")?;
    if c.config() != before {
        return Err(format!("apply of show's document rewrote the config:\n{}", c.config()));
    }

    // What show says of the network is what LXC reads, key by key.
    let settings = &doc["lxc"]["containers"][&c.name];
    for (i, net) in settings["network"].as_array().into_iter().flatten().enumerate() {
        for (k, v) in net.as_object().unwrap() {
            let want: Vec<String> = match v {
                Value::Array(items) => items.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                other => vec![other.as_str().unwrap().to_string()],
            };
            let got = c.lxc_reads(&format!("lxc.net.{i}.{k}"))?;
            // LXC prints an address with the prefix length it defaults to.
            let bare: Vec<String> = got.iter().map(|g| if want.iter().any(|w| !w.contains('/')) { g.split('/').next().unwrap().to_string() } else { g.clone() }).collect();
            if bare != want {
                return Err(format!("show says lxc.net.{i}.{k} is {want:?}, LXC reads {got:?}"));
            }
        }
    }

    // Converge limits, capabilities, the network and a config key.
    let mut caps: Vec<String> = settings["cap_drop"].as_array().into_iter().flatten().map(|v| v.as_str().unwrap().to_string()).collect();
    caps.extend(["sys_module".to_string(), "sys_time".to_string()]);
    caps.sort();
    caps.dedup();
    let mut want = settings.clone();
    want["memory_limit"] = json!("256M");
    want["cpu_shares"] = json!(512);
    want["cap_drop"] = json!(caps);
    want["network"] = json!([{ "type": "empty" }]);
    want["config"] = json!({ "lxc.start.auto": "1" });
    let mut conv = doc.clone();
    conv["lxc"]["containers"][&c.name] = want;
    let r = c.hg("apply", &conv);
    expect(&r, 2, "apply of the changed document")?;
    expect(&c.hg("apply", &conv), 0, "second apply")?;
    expect(&c.hg("plan", &conv), 0, "plan after apply")?;
    let managed = ["lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup.cpu.shares", "lxc.cap.drop", "lxc.start.auto"];
    if unmanaged(&before, &managed) != unmanaged(&c.config(), &managed) {
        return Err(format!("lines apply does not manage changed:\nbefore:\n{before}\nafter:\n{}", c.config()));
    }
    for (key, value) in [("lxc.cgroup.memory.limit_in_bytes", "256M"), ("lxc.cgroup.cpu.shares", "512"), ("lxc.start.auto", "1"), ("lxc.net.0.type", "empty")] {
        let got = c.lxc_reads(key)?;
        if got != [value] {
            return Err(format!("LXC reads {key} as {got:?}, not {value:?}"));
        }
    }
    let got = c.lxc_reads("lxc.cap.drop")?.join(" ");
    for cap in &caps {
        if !got.split_whitespace().any(|g| g == cap) {
            return Err(format!("LXC's lxc.cap.drop ({got}) lacks {cap}"));
        }
    }

    // LXC starts the container with the converged config (the busybox root given on the
    // command line, since the corpus config names no root of this machine).
    let rootfs = busybox.lines().find_map(|l| l.strip_prefix("lxc.rootfs.path = ")).unwrap_or_default().to_string();
    // A distribution's root has /run, which its common config mounts a tmpfs on; busybox's has not.
    std::fs::create_dir_all(Path::new(rootfs.trim_start_matches("dir:")).join("run")).unwrap();
    let log = c.dir.path().join("start.log");
    let r = lxc(&["lxc-start", "-P", c.lxcpath(), "-n", &c.name, "-s", &format!("lxc.rootfs.path={rootfs}"), "-o", log.to_str().unwrap(), "-l", "INFO"]);
    let state = || lxc(&["lxc-info", "-P", c.lxcpath(), "-n", &c.name, "-s", "-H"]).stdout.trim().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while r.code == 0 && state() != "RUNNING" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if r.code != 0 || state() != "RUNNING" {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(8).collect();
        return Err(format!("lxc-start of the converged config: exit {}, state {}\n{}", r.code, state(), errors.join("\n")));
    }
    Ok(())
}

#[test]
fn real_lxc_configs_round_trip_converge_and_start() {
    assert!(Path::new("/bin/busybox").exists(), "busybox-static is missing (tests/lib/setup.sh installs it)");
    assert!(!Path::new("/sys/fs/cgroup/cgroup.controllers").exists(), "this test expects a cgroup v1 host, as tests/system/lxc does");
    let mut failed = Vec::new();
    let mut passed = 0;
    for (n, (file, expected)) in manifest_rows("lxc").into_iter().enumerate() {
        let text = std::fs::read_to_string(util::data_dir().join("lxc").join(&file)).unwrap();
        let started = std::time::Instant::now();
        let outcome = run_case(&text, n);
        eprintln!("{file}: {} ({:.1}s)", if outcome.is_ok() { "ok" } else { "FAILED" }, started.elapsed().as_secs_f64());
        match (outcome, expected.starts_with("waits for issue")) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => failed.push(format!("{file}: passes now: remove \"{expected}\" from MANIFEST.md")),
            (Err(e), true) => eprintln!("PENDING {file} ({expected}): {e}\n"),
            (Err(e), false) => failed.push(format!("{file}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{} configs failed ({passed} passed):\n\n{}", failed.len(), failed.join("\n\n"));
}
