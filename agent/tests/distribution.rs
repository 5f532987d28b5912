//! What ships beside the binary: the JSON Schema kept in the repository, shell completions and
//! manual pages. None of these commands needs root or reads the host.

use crate::util;

use std::path::Path;
use std::process::Command;

use util::{bin, hostguard};

const REGENERATE: &str = "cargo run -q -p hostguard -- schema > docs/state.schema.json";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_schema_in_the_repository_is_what_the_binary_prints() {
    let kept = std::fs::read_to_string(repo().join("docs/state.schema.json")).unwrap_or_default();
    let run = hostguard(&["schema"]);
    run.expect(0);
    assert!(
        kept == run.stdout,
        "docs/state.schema.json is not what `hostguard schema` prints: the state types changed.\n\
         Regenerate it from the repository root with\n\n    {REGENERATE}\n\nand commit it."
    );
}

#[test]
fn the_schema_refuses_unknown_fields_and_describes_them_from_the_doc_comments() {
    let s: serde_json::Value = serde_json::from_str(&hostguard(&["schema"]).stdout).unwrap();
    assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(s["additionalProperties"], false);
    assert_eq!(s["required"], serde_json::json!(["version"]));
    let persist = s["definitions"]["Sysctl"]["properties"]["persist"]["description"].as_str().unwrap();
    assert!(persist.contains("/etc/sysctl.d/NAME.conf") && !persist.contains('\n'), "{persist}");
}

#[test]
fn a_document_naming_its_schema_validates() {
    let doc = r#"{"$schema": "/usr/share/hostguard/state.schema.json", "$comment": ["why"], "version": 1}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    std::fs::write(&path, doc).unwrap();
    hostguard(&["validate", path.to_str().unwrap()]).expect(0);
}

#[test]
fn completions_for_each_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let run = hostguard(&["completions", shell]);
        run.expect(0);
        for cmd in ["plan", "apply", "audit", "show", "validate", "confirm", "schema", "completions", "man"] {
            assert!(run.stdout.contains(cmd), "{shell} completion lacks {cmd}");
        }
        assert!(!run.stdout.contains("__confirm-watchdog"), "{shell} completion offers the internal command");
    }
}

#[test]
fn an_unknown_shell_exits_1_listing_the_shells() {
    let run = hostguard(&["completions", "nosuchshell"]);
    run.expect(1);
    assert!(run.stderr.contains("nosuchshell") && run.stderr.contains("bash, zsh, fish"), "{}", run.stderr);
}

#[test]
fn the_man_page_has_exit_codes_and_the_documents_sections() {
    let run = hostguard(&["man"]);
    run.expect(0);
    let page = &run.stdout;
    assert!(page.starts_with(".ie") && page.contains(".TH hostguard 1"), "{}", &page[..200.min(page.len())]);
    for want in [".SH \"EXIT STATUS\"", ".SH \"STATE DOCUMENT\"", ".SS sysctl", ".SS cgroups", ".SS iptables", ".SS lxc",
                 "memory_swap_limit", ".SH EXAMPLES", ".SH FILES", "/etc/hostguard/state.json", "hostguard\\-plan"] {
        assert!(page.contains(want), "the page lacks {want}");
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    hostguard(&["man", "--dir", dir.path().to_str().unwrap()]).expect(0);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["hostguard-apply.1", "hostguard-audit.1", "hostguard-completions.1", "hostguard-confirm.1", "hostguard-man.1",
         "hostguard-plan.1", "hostguard-schema.1", "hostguard-show.1", "hostguard-validate.1", "hostguard.1"]
    );
    let plan = std::fs::read_to_string(dir.path().join("hostguard-plan.1")).unwrap();
    assert!(plan.contains("\\-\\-metrics") && plan.contains("SEE ALSO"), "{plan}");
}

/// Run as nobody under strace: the commands work without root, and open no host path that a
/// run would read (only the dynamic loader's files).
#[test]
fn schema_man_and_completions_need_no_root_and_read_nothing_of_the_host() {
    if Command::new("strace").arg("-V").output().is_err() || !nix_is_root() {
        panic!("this test needs strace and root (to drop to nobody); tests/lib/setup.sh installs strace");
    }
    for args in [&["schema"][..], &["man"], &["completions", "bash"]] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let log = dir.path().join("trace");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "strace", "-f", "-qq", "-e", "trace=open,openat,openat2,stat,statx,newfstatat,readlink,readlinkat", "-o"])
            .arg(&log)
            .arg(bin())
            .args(args)
            // cargo's library path for tests would only add loader look-ups to the trace.
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?} as nobody: {}", String::from_utf8_lossy(&out.stderr));
        let trace = std::fs::read_to_string(&log).unwrap();
        for line in trace.lines() {
            let Some(path) = line.split('"').nth(1) else { continue };
            // The dynamic loader's look-ups and the binary itself.
            let loader = path.starts_with("/etc/ld.so") || path.starts_with("/lib") || path.starts_with("/usr/lib");
            // The allocator (mimalloc) asks the kernel how it commits memory and whether it
            // has huge pages, before main: how memory is obtained, never what is printed.
            let allocator = path == "/proc/sys/vm/overcommit_memory" || path == "/sys/kernel/mm/transparent_hugepage/enabled";
            let allowed = loader || allocator || path.starts_with("/proc/self/") || path == bin() || path.is_empty();
            assert!(allowed, "{args:?} opened {path}: {line}");
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid only reads the process's credentials.
    unsafe { libc::geteuid() == 0 }
}
