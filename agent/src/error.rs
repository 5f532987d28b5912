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
