//! Small helpers shared by the integration tests: run the built binary, fake host roots, and
//! private network namespaces that are removed even when a test fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hostguard")
}

/// How one run of hostguard ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    /// The report entry with this id.
    pub fn resource(&self, id: &str) -> serde_json::Value {
        let j = self.json();
        j["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no resource {id} in {}", self.stdout))
    }

    pub fn status(&self, id: &str) -> String {
        self.resource(id)["status"].as_str().unwrap().to_string()
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// Run `prefix... hostguard args...` with optional stdin.
pub fn run_with(prefix: &[&str], args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.push(bin());
    argv.extend_from_slice(args);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("SSH_CONNECTION");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn hostguard");
    if let Some(input) = stdin {
        // A run may exit without reading its input (a usage error exits 1 at once): the write then
        // fails with EPIPE, or not, by how the two processes were scheduled. Its exit code and
        // output are what a test asserts, so a broken pipe is not the test's failure.
        match child.stdin.take().unwrap().write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.unwrap(),
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn hostguard(args: &[&str]) -> Run {
    run_with(&[], args, None, &[])
}

/// A temp directory standing in for `/`, with helpers to plant fake kernel files.
pub struct FakeRoot {
    pub dir: tempfile::TempDir,
}

impl FakeRoot {
    pub fn new() -> FakeRoot {
        FakeRoot { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// The real path of a host path under this root.
    pub fn host_path(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    pub fn write(&self, abs: &str, content: &str) {
        let p = self.host_path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.host_path(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    /// A fake `/proc/sys` key holding `value` as the kernel prints it (with a newline).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.write(&format!("/proc/sys/{}", key.replace('.', "/")), &format!("{value}\n"));
    }

    /// Several keys at once, as `sysctl` writes each.
    pub fn sysctls(&self, pairs: &[(&str, &str)]) {
        for (key, value) in pairs {
            self.sysctl(key, value);
        }
    }

    pub fn sysctl_value(&self, key: &str) -> String {
        self.read(&format!("/proc/sys/{}", key.replace('.', "/"))).trim().to_string()
    }

    /// Every file under the root with its content, to show a run touched nothing. The run lock
    /// is left out: taking it is not a change to the host.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if !p.ends_with("run/hostguard.lock") {
                    out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
                }
            }
        }
        out
    }

    /// Write a state document into the root's parent temp dir and return its path.
    pub fn doc(&self, name: &str, json: &str) -> String {
        let p = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&p, json).unwrap();
        p.to_string_lossy().into_owned()
    }
}

/// A named network namespace, deleted on drop (so also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("hg-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(ok.success(), "ip netns add {name} failed");
        Netns { name }
    }

    pub fn prefix(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.name]
    }

    pub fn hostguard(&self, args: &[&str]) -> Run {
        run_with(&self.prefix(), args, None, &[])
    }

    /// hostguard in the namespace with `--root DIR/root --format json`, the document `d` written
    /// to `DIR/state.json` and given last.
    pub fn hostguard_doc(&self, dir: &Path, args: &[&str], d: &serde_json::Value) -> Run {
        let path = dir.join("state.json");
        std::fs::write(&path, d.to_string()).unwrap();
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mut argv = vec!["--root", root.to_str().unwrap(), "--format", "json"];
        argv.extend_from_slice(args);
        argv.push(path.to_str().unwrap());
        self.hostguard(&argv)
    }

    /// Run a command in the namespace, stdin given; panics when it cannot start.
    pub fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv).env_remove("SSH_CONNECTION");
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Run a command in the namespace that must succeed; its stdout.
    #[track_caller]
    pub fn ok(&self, argv: &[&str]) -> String {
        let o = self.run(argv, None);
        assert!(o.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// `nft -f -` of a script in the namespace (what an operator or a neighbour would write).
    #[track_caller]
    pub fn nft(&self, script: &str) {
        let o = self.run(&["nft", "-f", "-"], Some(script.as_bytes()));
        assert!(o.status.success(), "nft -f failed: {}\n{script}", String::from_utf8_lossy(&o.stderr));
    }

    /// Read a file as seen from inside the namespace (`/proc/sys/net/...`).
    pub fn cat(&self, path: &str) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.name, "cat", path]).output().unwrap();
        assert!(out.status.success(), "cat {path}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// `tests/data/`: the real-world corpora (sources in its MANIFEST.md).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// The rows of the manifest's table for one directory: (file, expected).
pub fn manifest_rows(dir: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data_dir().join("MANIFEST.md")).unwrap();
    let heading = format!("## `{dir}/`");
    let mut rows = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.starts_with(&heading);
            continue;
        }
        if !inside || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 4, "MANIFEST.md row has fewer than 4 cells: {line}");
        rows.push((cells[0].trim_matches('`').to_string(), cells[cells.len() - 1].to_string()));
    }
    assert!(!rows.is_empty(), "MANIFEST.md has no table under {heading}");
    // Every file has a row and every row a file: the manifest cannot drift from the data.
    let mut files: Vec<String> = std::fs::read_dir(data_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    named.sort();
    assert_eq!(files, named, "tests/data/{dir}/ and the MANIFEST.md table under {heading} disagree");
    rows
}
