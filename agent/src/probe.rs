//! `apply --confirm SECONDS --confirm-probe TARGET`: the unattended `hostguard confirm`.
//!
//! A configuration-management run has no person to type `hostguard confirm`. After the change,
//! the target is probed — `host:port` by a TCP connect, an `https://` URL by a GET answered 2xx —
//! a few times within SECONDS, each try bounded. The first success keeps the change (as
//! `hostguard confirm` would); no success by the deadline rolls back this apply's own edits.
//! The target is the path the change could cut: the Salt master, the Puppet server, the Chef
//! server.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http::{self, HttpOptions};

/// The longest a single try may take; a dropped SYN would otherwise use the whole window.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between tries.
const PAUSE: Duration = Duration::from_secs(1);

/// What to probe, as given on the command line, and the CA (`--ca-file`) an https target is
/// checked against besides the system's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub target: String,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_insecure_http: bool,
}

enum Target {
    Tcp { host: String, port: u16 },
    Url(reqwest::Url),
}

impl Probe {
    /// Check the target (and build its client) before anything is changed: a bad target exits 1
    /// with nothing touched.
    pub fn new(target: &str, ca_file: Option<PathBuf>, allow_insecure_http: bool) -> Result<Probe> {
        let p = Probe { target: target.to_string(), ca_file, allow_insecure_http };
        if let Target::Url(_) = p.parse()? {
            http::client(&p.http_options(TRY_TIMEOUT), false)?;
        }
        Ok(p)
    }

    fn http_options(&self, timeout: Duration) -> HttpOptions {
        HttpOptions { allow_insecure_http: self.allow_insecure_http, ca_file: self.ca_file.clone(), timeout: Some(timeout) }
    }

    fn parse(&self) -> Result<Target> {
        let t = self.target.trim();
        if http::is_url(t) {
            let url = http::parse_url(t, &self.http_options(TRY_TIMEOUT), "--confirm-probe")?;
            return Ok(Target::Url(url));
        }
        let bad = |why: &str| {
            Error::Load(format!(
                "--confirm-probe {t:?}: {why}; give HOST:PORT (a TCP connect, e.g. salt:4506 or [2001:db8::1]:8140) \
                 or an https:// URL answered with 2xx"
            ))
        };
        let (host, port) = t.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(['/', ' ']) || (host.contains(':') && !t.starts_with('[')) {
            return Err(bad("not a host name or address (an IPv6 address goes in brackets)"));
        }
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?;
        Ok(Target::Tcp { host: host.to_string(), port })
    }

    /// One try, bounded by `timeout`: `Ok(what answered)` or `Err(why not)`.
    fn once(&self, timeout: Duration) -> std::result::Result<String, String> {
        match self.parse().map_err(|e| e.to_string())? {
            Target::Tcp { host, port } => {
                let addrs: Vec<_> = (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?
                    .collect();
                let mut last = format!("{host} has no address");
                for a in addrs {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(_) => return Ok(format!("TCP connect to {a}")),
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => last = format!("TCP connect to {a}: timed out after {:.1}s", timeout.as_secs_f32()),
                        Err(e) => last = format!("TCP connect to {a}: {e}"),
                    }
                }
                Err(last)
            }
            Target::Url(url) => {
                let client = http::client(&self.http_options(timeout), false).map_err(|e| e.to_string())?;
                match client.get(url.clone()).send() {
                    Ok(resp) if resp.status().is_success() => Ok(format!("GET {} answered {}", http::redact(&url), resp.status())),
                    Ok(resp) => Err(format!("GET {} answered {}", http::redact(&url), resp.status())),
                    Err(e) => Err(format!("GET {}: {}", http::redact(&url), http::reason(&e))),
                }
            }
        }
    }

    /// Try until the first success or until `deadline`. `Ok(message)` when the target answered,
    /// `Err(message)` with the number of tries and the last failure when it never did.
    pub fn until(&self, deadline: Instant) -> std::result::Result<String, String> {
        let started = Instant::now();
        let mut tries = 0;
        let mut last = String::from("no time left to try");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(100) {
                let s = if tries == 1 { "y" } else { "ies" };
                return Err(format!("{} did not answer in {tries} tr{s} within {}s: {last}", self.target, started.elapsed().as_secs()));
            }
            tries += 1;
            match self.once(left.min(TRY_TIMEOUT)) {
                Ok(what) => return Ok(format!("{what} after {:.1}s", started.elapsed().as_secs_f32())),
                Err(why) => last = why,
            }
            std::thread::sleep(PAUSE.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_before_anything_changes() {
        assert!(Probe::new("salt:4506", None, false).is_ok());
        assert!(Probe::new("[2001:db8::1]:8140", None, false).is_ok());
        assert!(Probe::new("https://chef.example/organizations/x", None, false).is_ok());
        for bad in ["salt", "salt:0", "salt:99999", "2001:db8::1:8140", "http://h/", "ftp://h/", ":22"] {
            let e = Probe::new(bad, None, false).unwrap_err().to_string();
            assert!(e.contains("--confirm-probe"), "{bad}: {e}");
        }
        assert!(Probe::new("http://h/", None, true).is_ok());
        let e = Probe::new("https://h/", Some("/nonexistent/ca.pem".into()), false).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_closed_port_fails_within_the_deadline_and_an_open_one_answers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = Probe::new(&format!("127.0.0.1:{port}"), None, false).unwrap();
        assert!(open.until(Instant::now() + Duration::from_secs(3)).is_ok());
        drop(l);
        let start = Instant::now();
        let e = open.until(Instant::now() + Duration::from_secs(2)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
        assert!(e.contains("tries within") && e.contains("refused"), "{e}");
    }
}
