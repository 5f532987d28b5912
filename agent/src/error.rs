//! The errors a run can end with, each naming the thing it concerns.

use std::path::PathBuf;

use crate::state::ValidationErrors;

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
            size.map(|s| format!("is {s} bytes, ")).unwrap_or_default(), crate::host::human_bytes(*limit))]
    TooLarge { path: PathBuf, what: &'static str, limit: u64, size: Option<u64> },
    #[error("`{argv}` did not finish within {secs} s and was killed")]
    Timeout { argv: String, secs: u64 },
    #[error("`{argv}` printed more than {} on its standard output and was killed", crate::host::human_bytes(*limit))]
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
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
