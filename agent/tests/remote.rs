//! `STATE` as an https:// URL, against a real TLS server on 127.0.0.1 whose CA the test makes:
//! a pinned document applies; every way a download can go wrong exits 1, names the URL, and
//! leaves the root exactly as it was.

use crate::remote_support;

use std::time::{Duration, Instant};

use remote_support::*;

const DOC: &str = r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 10, "vm.overcommit_memory": 1}}}"#;

struct Fixture {
    root: FakeRoot,
    ca_file: String,
    ca: TestCa,
    _ca_dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let ca = test_ca();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = file(ca_dir.path(), "ca.pem", &ca.ca_pem);
    Fixture {
        root: FakeRoot::new(&[("vm.swappiness", "60"), ("vm.overcommit_memory", "0")]),
        ca_file,
        ca,
        _ca_dir: ca_dir,
    }
}

impl Fixture {
    fn server(&self, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        Server::start(Some(self.ca.server.clone()), handler)
    }

    /// `apply` of `url` with the test CA; extra args go before the URL.
    fn apply(&self, url: &str, extra: &[&str]) -> std::process::Output {
        let root = self.root.arg();
        let mut args = vec!["--root", &root, "apply", "--format", "json", "--ca-file", &self.ca_file];
        args.extend_from_slice(extra);
        args.push(url);
        run(&args)
    }

    /// The run exited 1 with a message naming `url` and containing `why`, and touched nothing.
    fn assert_refused(&self, url: &str, extra: &[&str], why: &str) {
        let before = self.root.snapshot();
        let out = self.apply(url, extra);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(url), "the message names the URL: {err}");
        assert!(err.to_lowercase().contains(&why.to_lowercase()), "the message says {why:?}: {err}");
        assert!(stdout(&out).is_empty(), "no report for a document that was not read");
        assert_eq!(self.root.snapshot(), before, "the root was touched");
        assert_eq!(self.root.sysctl("vm.swappiness"), "60");
    }
}

#[test]
fn pinned_https_document_applies_and_reports_its_digest() {
    let f = fixture();
    let srv = f.server(|r| if r.path == "/hosts/web1.json" { ok(DOC.as_bytes()) } else { status(404) });
    let url = srv.url("/hosts/web1.json");
    let pin = sha256_hex(DOC.as_bytes());

    let out = f.apply(&url, &["--sha256", &pin]);
    assert_eq!(out.status.code(), Some(2), "changes were made");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state_sha256"], pin.as_str());
    assert_eq!(report["summary"]["changed"], 2);
    assert_eq!(f.root.sysctl("vm.swappiness"), "10");
    assert_eq!(f.root.sysctl("vm.overcommit_memory"), "1");

    let out = f.apply(&url, &["--sha256", &pin]);
    assert_eq!(out.status.code(), Some(0), "a second run has nothing to do");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].headers["user-agent"].starts_with("hostguard/"), "{:?}", reqs[0].headers);
}

#[test]
fn validate_and_plan_read_a_url_too() {
    let f = fixture();
    let srv = f.server(|_| ok(DOC.as_bytes()));
    let url = srv.url("/doc.json");
    let out = run(&["validate", "--format", "json", "--ca-file", &f.ca_file, &url]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state_sha256"], sha256_hex(DOC.as_bytes()).as_str());
    let root = f.root.arg();
    let out = run(&["--root", &root, "plan", "--format", "json", "--ca-file", &f.ca_file, &url]);
    assert_eq!(out.status.code(), Some(2), "drift");
    assert_eq!(f.root.sysctl("vm.swappiness"), "60", "plan changes nothing");
}

#[test]
fn wrong_pin_shows_both_digests_and_touches_nothing() {
    let f = fixture();
    let srv = f.server(|_| ok(DOC.as_bytes()));
    let url = srv.url("/doc.json");
    let wrong = "0".repeat(64);
    f.assert_refused(&url, &["--sha256", &wrong], "SHA-256 mismatch");
    let out = f.apply(&url, &["--sha256", &wrong]);
    let err = stderr(&out);
    assert!(err.contains(&wrong) && err.contains(&sha256_hex(DOC.as_bytes())), "both digests: {err}");
}

#[test]
fn server_error_exits_1_and_touches_nothing() {
    let f = fixture();
    let srv = f.server(|_| status(500));
    f.assert_refused(&srv.url("/doc.json"), &[], "500 Internal Server Error");
    let srv = f.server(|_| status(404));
    f.assert_refused(&srv.url("/doc.json"), &[], "404");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let f = fixture();
    let srv = f.server(|_| Reply::Stall(Duration::from_secs(60)));
    let started = Instant::now();
    f.assert_refused(&srv.url("/doc.json"), &["--timeout", "2"], "no answer within 2 s");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by --timeout: {:?}", started.elapsed());
}

#[test]
fn a_body_that_drips_forever_is_bounded_by_the_whole_timeout() {
    let f = fixture();
    // Every read gets a byte within the per-read timeout; only a deadline on the whole body ends it.
    let srv = f.server(|_| Reply::Drip { n: 1000, every: Duration::from_millis(300) });
    let started = Instant::now();
    f.assert_refused(&srv.url("/doc.json"), &["--timeout", "2"], "the body took over 2 s");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn an_oversized_body_is_refused_while_streaming() {
    let f = fixture();
    // No Content-Length: only counting the bytes as they arrive can catch it.
    let srv = f.server(|_| Reply::Stream(16 * 1024 * 1024 + 64 * 1024));
    f.assert_refused(&srv.url("/big.json"), &[], "past the limit of 16777216 bytes");
}

#[test]
fn an_oversized_content_length_is_refused_before_reading() {
    let f = fixture();
    let srv = f.server(|_| Reply::Truncated { announced: 64 * 1024 * 1024, sent: b"{".to_vec() });
    f.assert_refused(&srv.url("/big.json"), &[], "announced 67108864 bytes");
}

#[test]
fn a_body_cut_short_is_never_used_as_a_partial_document() {
    let f = fixture();
    // The first half of a valid document, and the connection closes: never parsed, never applied.
    let half = DOC.as_bytes()[..DOC.len() / 2].to_vec();
    let srv = f.server(move |_| Reply::Truncated { announced: DOC.len(), sent: half.clone() });
    f.assert_refused(&srv.url("/doc.json"), &[], "cannot fetch the state document");
}

#[test]
fn a_redirect_loop_is_bounded() {
    let f = fixture();
    let srv = f.server(|r| redirect(&r.path.clone()));
    let url = srv.url("/loop.json");
    f.assert_refused(&url, &[], "redirect");
    assert!(srv.requests().len() <= 8, "{} requests for one run", srv.requests().len());
}

#[test]
fn redirects_are_followed_within_https() {
    let f = fixture();
    let srv = f.server(|r| if r.path == "/new.json" { ok(DOC.as_bytes()) } else { redirect("/new.json") });
    let out = f.apply(&srv.url("/old.json"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(f.root.sysctl("vm.swappiness"), "10");
}

#[test]
fn a_redirect_to_plain_http_is_refused() {
    let f = fixture();
    let plain = Server::start(None, |_| ok(DOC.as_bytes()));
    let target = plain.url("/doc.json");
    let srv = f.server(move |_| redirect(&target));
    f.assert_refused(&srv.url("/doc.json"), &[], "refused a redirect to http://");
    assert!(plain.requests().is_empty(), "the plain-http server was never asked");
}

#[test]
fn plain_http_is_refused_unless_allowed() {
    let f = fixture();
    let plain = Server::start(None, |_| ok(DOC.as_bytes()));
    let url = plain.url("/doc.json");
    f.assert_refused(&url, &[], "--allow-insecure-http");
    assert!(plain.requests().is_empty(), "refused before connecting");
    let out = f.apply(&url, &["--allow-insecure-http"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(f.root.sysctl("vm.swappiness"), "10");
}

#[test]
fn a_server_the_system_does_not_trust_is_refused_without_ca_file() {
    let f = fixture();
    let srv = f.server(|_| ok(DOC.as_bytes()));
    let url = srv.url("/doc.json");
    let before = f.root.snapshot();
    let root = f.root.arg();
    let out = run(&["--root", &root, "apply", &url]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&url) && err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(f.root.snapshot(), before);
}

#[test]
fn a_bad_ca_file_is_named() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let junk = file(dir.path(), "junk.pem", "not a certificate\n");
    let root = f.root.arg();
    let out = run(&["--root", &root, "apply", "--ca-file", &junk, "https://127.0.0.1:1/doc.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&junk), "{}", stderr(&out));
}

#[test]
fn the_system_trust_store_is_used_without_ca_file() {
    // rustls-native-certs reads SSL_CERT_FILE in place of /etc/ssl/certs: a CA placed in the
    // system store is trusted with no --ca-file, as it would be for a public CA.
    let f = fixture();
    let srv = f.server(|_| ok(DOC.as_bytes()));
    let root = f.root.arg();
    let out = hostguard()
        .args(["--root", &root, "apply", "--format", "json", &srv.url("/doc.json")])
        .env("SSL_CERT_FILE", &f.ca_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(f.root.sysctl("vm.swappiness"), "10");
}
