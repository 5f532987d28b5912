//! Where a state document comes from: a path, standard input, or a URL; and its pinned digest.
//!
//! The document is read whole, bounded by `MAX_DOCUMENT_BYTES`, before anything else happens: a
//! download that fails half-way, runs out of time or grows past the limit is an error, never a
//! partial document.

use std::io::Read;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::http::{self, HttpOptions};
use crate::state::MAX_DOCUMENT_BYTES;

#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Expected hex SHA-256 of the document's bytes.
    pub sha256: Option<String>,
    /// How a URL is fetched: scheme policy, extra CA, timeout.
    pub http: HttpOptions,
}

/// The document's bytes, read whole (bounded by the size limit) before anything else happens.
pub fn read(spec: &str, opts: &SourceOptions) -> Result<Vec<u8>> {
    let (bytes, shown) = if spec == "-" {
        (read_bounded(std::io::stdin().lock(), "standard input")?, spec.to_string())
    } else if http::is_url(spec) {
        fetch(spec, &opts.http)?
    } else {
        (read_bounded(open_document(spec)?, spec)?, spec.to_string())
    };
    if let Some(want) = &opts.sha256 {
        check_digest(&bytes, want, &shown)?;
    }
    Ok(bytes)
}

/// GET a document over HTTPS: a non-2xx answer, a timeout (for the whole download, not only
/// each read, so a server that drips a byte at a time cannot hold the run), a body over the
/// limit (checked against Content-Length first, then while streaming) are each an error that
/// names the URL. Returns the bytes and the URL as it may be shown.
fn fetch(spec: &str, opts: &HttpOptions) -> Result<(Vec<u8>, String)> {
    let url = http::parse_url(spec, opts, "STATE")?;
    let shown = http::redact(&url);
    let fail = |why: String| Error::Load(format!("{shown}: cannot fetch the state document: {why}; nothing was touched"));
    let client = http::client(opts, true)?;
    let started = Instant::now();
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .map_err(|e| match e.is_timeout() {
            true => fail(format!("no answer within {} s (--timeout)", opts.timeout().as_secs())),
            false => fail(http::reason(&e)),
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("the server answered {status}")));
    }
    if let Some(len) = resp.content_length() {
        if len > MAX_DOCUMENT_BYTES as u64 {
            return Err(fail(format!("the server announced {len} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)")));
        }
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = resp.read(&mut chunk).map_err(|e| fail(io_reason(&e)))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_DOCUMENT_BYTES {
            return Err(fail(format!("the body grew past the limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)")));
        }
        if started.elapsed() > opts.timeout() {
            return Err(fail(format!("timed out: the body took over {} s (--timeout)", opts.timeout().as_secs())));
        }
    }
    Ok((buf, shown))
}

/// An I/O error from a response body usually wraps reqwest's error, which knows the cause.
fn io_reason(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => http::reason(inner),
        None => e.to_string(),
    }
}

/// Open a document file without blocking, and only when it is a regular file within the limit: a
/// FIFO would wait for a writer forever (holding nothing yet, but never running either), a device
/// or a sparse file of gigabytes would be read to the limit for nothing. Standard input (`-`) is
/// the way to pipe a document in.
fn open_document(spec: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let fail = |why: String| Error::Load(format!("{spec}: cannot read the state document: {why}; nothing was touched"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(spec)
        .map_err(|e| match std::fs::metadata(spec) {
            // Opening a socket fails (ENXIO); say what it is rather than the errno.
            Ok(m) if m.file_type().is_socket() => fail("it is a socket, not a regular file (use - to read standard input)".into()),
            _ => fail(e.to_string()),
        })?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let t = meta.file_type();
    let what = if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_dir() {
        Some("a directory")
    } else if !t.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(fail(format!("it is {what}, not a regular file (to pipe a document in, use - and standard input)")));
    }
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(fail(format!("it is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)", meta.len())));
    }
    Ok(file)
}

fn read_bounded(r: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Load(format!("{what}: cannot read the state document: {e}")))?;
    if buf.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::Load(format!(
            "{what}: the document is over the limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)"
        )));
    }
    Ok(buf)
}

/// Refuse a document whose digest is not the pinned one, showing both.
pub fn check_digest(bytes: &[u8], want: &str, what: &str) -> Result<()> {
    let want = want.trim().to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Load(format!("--sha256 {want:?}: expected 64 hex digits")));
    }
    let got = hex::encode(Sha256::digest(bytes));
    if got != want {
        return Err(Error::Load(format!(
            "{what}: SHA-256 mismatch: expected {want}, got {got}; the document was not used and nothing was touched"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_pin_shows_both_digests() {
        let e = check_digest(b"x", &"0".repeat(64), "doc").unwrap_err().to_string();
        assert!(e.contains(&"0".repeat(64)), "{e}");
        assert!(e.contains(&hex::encode(Sha256::digest(b"x"))), "{e}");
        check_digest(b"x", &hex::encode(Sha256::digest(b"x")).to_uppercase(), "doc").unwrap();
        assert!(check_digest(b"x", "abc", "doc").is_err());
    }
}
