//! HTTP(S) for running across a fleet: one client configuration shared by the remote state
//! document and report delivery — rustls with the ring provider (no OpenSSL), bounded time,
//! bounded redirects that never downgrade to plain http, and errors that name the URL.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{redirect, Url};

use crate::error::{Error, Result};

/// How long a URL may take by default: connect, redirects, headers and the whole body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Redirects followed before giving up; a loop is an error, not a hang.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Accept plain `http://` (and a redirect to it). Off by default: a document that converges
    /// a firewall must not be replaceable by anyone on the path.
    pub allow_insecure_http: bool,
    /// PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Overall limit for one request; `None` means `DEFAULT_TIMEOUT`.
    pub timeout: Option<Duration>,
}

impl HttpOptions {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// True when `spec` names a URL rather than a path.
pub fn is_url(spec: &str) -> bool {
    let lower = spec.get(..8).unwrap_or(spec).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Parse a URL and refuse a scheme this run does not allow. `what` says which flag it came from.
pub fn parse_url(spec: &str, opts: &HttpOptions, what: &str) -> Result<Url> {
    let url = Url::parse(spec).map_err(|e| Error::Load(format!("{what} {}: not a valid URL: {e}", redact_str(spec))))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if opts.allow_insecure_http => Ok(url),
        "http" => Err(Error::Load(format!(
            "{what} {}: plain http:// is refused because anyone on the path could read or change it; \
             use https://, or pass --allow-insecure-http on a network you trust",
            redact(&url)
        ))),
        other => Err(Error::Load(format!("{what} {}: unsupported scheme {other:?}; use https://", redact(&url)))),
    }
}

/// A URL as it may be shown in messages and logs: any password is replaced.
pub fn redact(url: &Url) -> String {
    if url.password().is_some() {
        let mut u = url.clone();
        let _ = u.set_password(Some("REDACTED"));
        u.to_string()
    } else {
        url.to_string()
    }
}

fn redact_str(spec: &str) -> String {
    match Url::parse(spec) {
        Ok(u) => redact(&u),
        // An unparsable URL may still hold `user:pass@`: show only up to the authority.
        Err(_) => match spec.find('@') {
            Some(at) => format!("(URL with credentials){}", &spec[at..]),
            None => spec.to_string(),
        },
    }
}

/// A client for this run. `follow_redirects` is false for POSTs, which must reach the URL given.
pub fn client(opts: &HttpOptions, follow_redirects: bool) -> Result<Client> {
    // reqwest is built without a default crypto provider (its default is aws-lc, which needs a C
    // toolchain and doubles the binary); ring is installed once per process. A second call finds
    // it installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let allow_http = opts.allow_insecure_http;
    let policy = if follow_redirects {
        redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                let msg = format!("more than {MAX_REDIRECTS} redirects (a redirect loop?)");
                attempt.error(msg)
            } else if attempt.url().scheme() == "https" || (allow_http && attempt.url().scheme() == "http") {
                attempt.follow()
            } else {
                let msg = format!("refused a redirect to {} (only https:// is followed)", redact(attempt.url()));
                attempt.error(msg)
            }
        })
    } else {
        redirect::Policy::none()
    };
    let mut builder = Client::builder()
        .user_agent(concat!("hostguard/", env!("CARGO_PKG_VERSION")))
        .timeout(opts.timeout())
        .connect_timeout(opts.timeout().min(Duration::from_secs(10)))
        .redirect(policy)
        .http1_only();
    if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Load(format!("--ca-file {}: cannot read: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Load(format!("--ca-file {}: not PEM certificates: {}", path.display(), reason(&e))))?;
        if certs.is_empty() {
            return Err(Error::Load(format!("--ca-file {}: holds no PEM certificate", path.display())));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::Load(format!("cannot set up HTTPS: {}", reason(&e))))
}

/// What went wrong with a request, without the URL (the caller names it once) and with the
/// causes that reqwest keeps in its source chain ("connection refused", "invalid peer
/// certificate: UnknownIssuer").
pub fn reason(e: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    if let Some(r) = e.downcast_ref::<reqwest::Error>() {
        if r.is_timeout() {
            out.push_str("timed out");
        }
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let mut s = err.to_string();
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            if let Some(u) = r.url() {
                s = s.replace(&format!(" for url ({u})"), "").replace(&format!(" ({u})"), "");
            }
        }
        if !s.is_empty() && !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_the_flag_and_other_schemes_are_refused() {
        let strict = HttpOptions::default();
        let e = parse_url("http://h/x.json", &strict, "STATE").unwrap_err().to_string();
        assert!(e.contains("http://h/x.json") && e.contains("--allow-insecure-http"), "{e}");
        let lax = HttpOptions { allow_insecure_http: true, ..HttpOptions::default() };
        parse_url("http://h/x.json", &lax, "STATE").unwrap();
        parse_url("https://h/x.json", &strict, "STATE").unwrap();
        assert!(parse_url("ftp://h/x", &lax, "STATE").is_err());
        assert!(is_url("HTTPS://h/") && is_url("http://h") && !is_url("./https.json") && !is_url("-"));
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        let u = Url::parse("https://user:s3cret@h/doc").unwrap();
        assert!(!redact(&u).contains("s3cret"));
        let e = parse_url("http://user:s3cret@h/doc", &HttpOptions::default(), "STATE").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!redact_str("https://user:s3cret@[bad/doc").contains("s3cret"));
    }
}
