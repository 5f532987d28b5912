//! `--report-url`: a real collector on 127.0.0.1 receives the report that `plan` and `apply`
//! print; a collector that is down, failing or hanging costs a warning and never the exit code.

use crate::remote_support;

use std::time::{Duration, Instant};

use remote_support::*;

const DOC: &str = r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 10}}}"#;

struct Fixture {
    root: FakeRoot,
    state: String,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        root: FakeRoot::new(&[("vm.swappiness", "60")]),
        state: file(dir.path(), "state.json", DOC),
        dir,
    }
}

impl Fixture {
    fn run(&self, command: &str, extra: &[&str]) -> std::process::Output {
        let root = self.root.arg();
        let mut args = vec!["--root", &root, command, "--format", "json"];
        args.extend_from_slice(extra);
        args.push(&self.state);
        run(&args)
    }
}

fn posted_report(req: &Request) -> serde_json::Value {
    assert_eq!(req.method, "POST");
    assert_eq!(req.headers.get("content-type").map(String::as_str), Some("application/json"));
    serde_json::from_slice(&req.body).expect("the body is the JSON report")
}

#[test]
fn the_collector_receives_the_plan_and_apply_reports() {
    let f = fixture();
    let collector = Server::start(None, |_| Reply::Full(202, vec![], Vec::new()));
    let url = collector.url("/reports/web1");
    let flags = ["--allow-insecure-http", "--report-url", &url, "--report-header", "Authorization: Bearer t0ken", "--report-header", "X-Fleet: eu-1"];

    let plan = f.run("plan", &flags);
    assert_eq!(plan.status.code(), Some(2), "drift");
    let apply = f.run("apply", &flags);
    assert_eq!(apply.status.code(), Some(2), "changed");
    assert!(!stderr(&plan).contains("warning") && !stderr(&apply).contains("warning"));

    let reqs = collector.requests();
    assert_eq!(reqs.len(), 2, "one POST per run");
    for (req, out, command) in [(&reqs[0], &plan, "plan"), (&reqs[1], &apply, "apply")] {
        assert_eq!(req.path, "/reports/web1");
        assert_eq!(req.headers["authorization"], "Bearer t0ken");
        assert_eq!(req.headers["x-fleet"], "eu-1");
        let posted = posted_report(req);
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(posted, printed, "the collector gets the report the run printed");
        assert_eq!(posted["command"], command);
        assert_eq!(posted["state_sha256"], sha256_hex(DOC.as_bytes()).as_str());
    }
    assert_eq!(posted_report(&reqs[0])["summary"]["drift"], 1);
    assert_eq!(posted_report(&reqs[1])["summary"]["changed"], 1);
}

#[test]
fn an_https_collector_with_a_private_ca() {
    let f = fixture();
    let ca = test_ca();
    let ca_file = file(f.dir.path(), "ca.pem", &ca.ca_pem);
    let collector = Server::start(Some(ca.server.clone()), |_| Reply::Full(200, vec![], Vec::new()));
    let out = f.run("plan", &["--ca-file", &ca_file, "--report-url", &collector.url("/r")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(collector.requests().len(), 1);
    assert_eq!(posted_report(&collector.requests()[0])["command"], "plan");
}

#[test]
fn with_the_collector_down_the_exit_code_is_unchanged_and_a_warning_is_printed() {
    let f = fixture();
    let url = format!("http://127.0.0.1:{}/reports", closed_port());
    let started = Instant::now();
    let out = f.run("plan", &["--allow-insecure-http", "--report-url", &url]);
    assert_eq!(out.status.code(), Some(2), "drift is still exit 2");
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains(&url) && err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("exit code is unaffected"), "{err}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["summary"]["drift"], 1, "the report is still printed");
    assert!(started.elapsed() < Duration::from_secs(15), "bounded: {:?}", started.elapsed());

    let out = f.run("apply", &["--allow-insecure-http", "--report-url", &url]);
    assert_eq!(out.status.code(), Some(2), "changes made is still exit 2");
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(f.root.sysctl("vm.swappiness"), "10");

    let out = f.run("plan", &["--allow-insecure-http", "--report-url", &url]);
    assert_eq!(out.status.code(), Some(0), "in sync is still exit 0");
    assert!(stderr(&out).contains("warning"));
}

#[test]
fn a_failing_collector_is_retried_then_accepts() {
    let f = fixture();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let collector = Server::start(None, move |_| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            status(503)
        } else {
            Reply::Full(200, vec![], Vec::new())
        }
    });
    let out = f.run("plan", &["--allow-insecure-http", "--report-url", &collector.url("/r")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let reqs = collector.requests();
    assert_eq!(reqs.len(), 2, "one failure, one retry");
    assert_eq!(posted_report(&reqs[0]), posted_report(&reqs[1]), "the same report again");
}

#[test]
fn a_collector_that_refuses_the_report_is_not_retried() {
    let f = fixture();
    let collector = Server::start(None, |_| status(401));
    let out = f.run("plan", &["--allow-insecure-http", "--report-url", &collector.url("/r")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("warning") && err.contains("401"), "{err}");
    assert_eq!(collector.requests().len(), 1);
}

#[test]
fn a_hanging_collector_is_bounded_by_the_timeout() {
    let f = fixture();
    let collector = Server::start(None, |_| Reply::Stall(Duration::from_secs(60)));
    let started = Instant::now();
    let out = f.run("plan", &["--allow-insecure-http", "--timeout", "1", "--report-url", &collector.url("/r")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(collector.requests().len(), 3, "three attempts");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_bad_report_url_or_header_is_refused_before_anything_is_touched() {
    let f = fixture();
    let before = f.root.snapshot();
    let collector = Server::start(None, |_| Reply::Full(200, vec![], Vec::new()));
    for (flags, why) in [
        (vec!["--report-url".to_string(), collector.url("/r")], "--allow-insecure-http"),
        (vec!["--report-url".into(), "ftp://127.0.0.1/r".into()], "unsupported scheme"),
        (
            vec!["--allow-insecure-http".into(), "--report-url".into(), collector.url("/r"), "--report-header".into(), "Authorization Bearer s3cret".into()],
            "'Name: value'",
        ),
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = f.run("apply", &flags);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(why), "{why:?} in {err}");
        assert!(!err.contains("s3cret"), "a header value is never echoed: {err}");
    }
    assert_eq!(f.root.snapshot(), before);
    assert!(collector.requests().is_empty());
    let out = f.run("plan", &["--report-header", "X-A: b"]);
    assert_eq!(out.status.code(), Some(1), "--report-header needs --report-url");
}
