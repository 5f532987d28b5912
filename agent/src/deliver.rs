//! `--report-url`: POST the JSON report to a collector, with bounded retries and a timeout.
//!
//! The URL and headers are checked before the run starts (a typo is a usage error, exit 1,
//! nothing touched). Delivery itself happens after the host was read or changed, so its failure
//! is a warning and never the run's outcome: a report server outage must not fail a Chef run.

use std::thread::sleep;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use crate::error::{Error, Result};
use crate::http::{self, HttpOptions};

/// Tries per report. With `BACKOFF` between them, a collector that is down costs a run about
/// three seconds; one that hangs costs at most `ATTEMPTS` timeouts more.
pub const ATTEMPTS: u32 = 3;
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// Where and how the report goes, checked up front.
pub struct Delivery {
    url: Url,
    shown: String,
    headers: HeaderMap,
    client: Client,
}

/// How a delivery ended: the number of attempts it took, or why it gave up.
pub type Outcome = std::result::Result<u32, String>;

impl Delivery {
    pub fn new(url: &str, headers: &[String], opts: &HttpOptions) -> Result<Delivery> {
        let url = http::parse_url(url, opts, "--report-url")?;
        let mut map = HeaderMap::new();
        for h in headers {
            let (name, value) = parse_header(h)?;
            map.append(name, value);
        }
        Ok(Delivery {
            shown: http::redact(&url),
            url,
            headers: map,
            client: http::client(opts, false)?,
        })
    }

    pub fn url(&self) -> &str {
        &self.shown
    }

    /// POST `body` (the JSON report). Retries connection failures, timeouts, 408, 429 and 5xx;
    /// any other answer is final, since sending the same report again cannot change it.
    pub fn send(&self, body: &str) -> Outcome {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send();
            let retry = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(attempt),
                Ok(resp) => {
                    let status = resp.status();
                    last = format!("the collector answered {status}");
                    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
                }
                Err(e) => {
                    last = http::reason(&e);
                    true
                }
            };
            if !retry {
                return Err(format!("{last} (not retried)"));
            }
            if let Some(pause) = BACKOFF.get(attempt as usize - 1) {
                if attempt < ATTEMPTS {
                    sleep(*pause);
                }
            }
        }
        Err(format!("{last} (after {ATTEMPTS} attempts)"))
    }
}

/// `Name: value`, as curl's `-H`. The value is never echoed in an error: it is usually a secret.
fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(Error::Load("--report-header: no ':' between name and value; write it as 'Name: value'".into()));
    };
    let bad = |why: &str| Error::Load(format!("--report-header {:?}: {why}; write it as 'Name: value'", name.trim()));
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("not a valid header name"))?;
    let mut value = HeaderValue::from_str(value.trim()).map_err(|_| bad("the value holds characters a header cannot"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_curl_and_never_echo_the_value() {
        let (n, v) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(n.as_str(), "authorization");
        assert_eq!(v.to_str().unwrap(), "Bearer abc");
        let e = parse_header("X-Token secret").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        let e = parse_header("Bad Name: secret").unwrap_err().to_string();
        assert!(e.contains("Bad Name") && !e.contains(": secret"), "{e}");
        assert!(parse_header("X-A: line\nbreak").is_err());
    }
}
