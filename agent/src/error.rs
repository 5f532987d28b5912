//! The errors a run can end with, each naming the thing it concerns.

use std::fmt;
use std::path::PathBuf;

/// A failure of the one door to the host: a file or a command, always named.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: is a symbolic link; hostguard never writes through a link (remove it, or point the document elsewhere)", path.display())]
    Symlink { path: PathBuf },
    #[error("could not run `{argv}`: {source}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{argv}` failed ({status}): {stderr}")]
    Command {
        argv: String,
        status: String,
        stderr: String,
    },
    #[error("{}: {what}, not a regular file; hostguard reads only regular files there (remove it or replace it by a file)", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{}: {}over the {} limit for {what}; hostguard does not read it (README \"Bounded reads\")", path.display(),
            size.map(|s| format!("is {s} bytes, ")).unwrap_or_default(), human_bytes(*limit))]
    TooLarge { path: PathBuf, what: &'static str, limit: u64, size: Option<u64> },
    #[error("`{argv}` did not finish within {secs} s and was killed")]
    Timeout { argv: String, secs: u64 },
    #[error("`{argv}` printed more than {} on its standard output and was killed", human_bytes(*limit))]
    OutputTooLarge { argv: String, limit: u64 },
    #[error("{0}")]
    Other(String),
}

impl HostError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HostError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when a host file is not one hostguard reads: not a regular file, or over its limit.
    /// Such a file is a `failed` resource (or a check not made), never a reason to stop the run.
    pub fn is_unreadable_kind(&self) -> bool {
        matches!(self, HostError::NotRegular { .. } | HostError::TooLarge { .. })
    }

    /// True when the error is a missing file or directory.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HostError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Why a whole run stopped before or instead of converging: every variant exits 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0}")]
    Lock(String),
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One validation problem: where in the document, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

/// Every problem found in a document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was pushed, else every error.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the state document is invalid ({n} error{}); nothing was touched:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

/// `1048576` -> "1 MiB".
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= (1 << 20) && n % (1 << 20) == 0 => format!("{} MiB", n / (1 << 20)),
        n if n >= (1 << 10) && n % (1 << 10) == 0 => format!("{} KiB", n / (1 << 10)),
        n => format!("{n} bytes"),
    }
}
