//! Where a state document comes from: a path, standard input, or a URL; and its pinned digest.

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::state::MAX_DOCUMENT_BYTES;

#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Expected hex SHA-256 of the document's bytes.
    pub sha256: Option<String>,
    pub allow_insecure_http: bool,
    pub ca_file: Option<PathBuf>,
}

/// The document's bytes, read whole (bounded by the size limit) before anything else happens.
pub fn read(spec: &str, opts: &SourceOptions) -> Result<Vec<u8>> {
    let bytes = if spec == "-" {
        read_bounded(std::io::stdin().lock(), "standard input")?
    } else if spec.starts_with("https://") || spec.starts_with("http://") {
        return Err(Error::Unsupported(format!("{spec}: reading the document from a URL is not implemented yet")));
    } else {
        let file = std::fs::File::open(spec).map_err(|e| Error::Load(format!("{spec}: cannot read the state document: {e}")))?;
        read_bounded(file, spec)?
    };
    if let Some(want) = &opts.sha256 {
        check_digest(&bytes, want, spec)?;
    }
    Ok(bytes)
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
