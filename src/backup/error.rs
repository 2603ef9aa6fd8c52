//! What can go wrong with a snapshot, and the status each failure is answered with.

use std::path::Path;

use crate::error::{Classify, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file is not a whole, unchanged snapshot; the message says what is wrong.
    #[error("{0}")]
    Corrupt(String),
    #[error("no such snapshot: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
    #[error("store: {0}")]
    Store(String),
    /// Another snapshot is being taken.
    #[error("{0}")]
    Busy(String),
    /// The disk the snapshot (or the scratch store verifying it) is written to is full.
    #[error("out of disk space: {0}")]
    Full(String),
}

impl BackupError {
    /// An I/O error on `path`; a full disk is [`BackupError::Full`].
    pub fn io(path: &Path, e: std::io::Error) -> BackupError {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            BackupError::Full(format!("{}: {e}", path.display()))
        } else {
            BackupError::Io(format!("{}: {e}", path.display()))
        }
    }

    /// The same error with `context` before its message.
    pub fn context(self, context: &str) -> BackupError {
        let with = |m: String| format!("{context}: {m}");
        match self {
            BackupError::Corrupt(m) => BackupError::Corrupt(with(m)),
            BackupError::NotFound(m) => BackupError::NotFound(m),
            BackupError::Invalid(m) => BackupError::Invalid(with(m)),
            BackupError::Io(m) => BackupError::Io(with(m)),
            BackupError::Store(m) => BackupError::Store(with(m)),
            BackupError::Busy(m) => BackupError::Busy(with(m)),
            BackupError::Full(m) => BackupError::Full(with(m)),
        }
    }
}

impl Classify for BackupError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackupError::NotFound(_) => ErrorKind::NotFound,
            BackupError::Invalid(_) => ErrorKind::Invalid,
            BackupError::Busy(_) => ErrorKind::Conflict,
            BackupError::Full(_) => ErrorKind::Unavailable,
            BackupError::Corrupt(_) => ErrorKind::Unprocessable,
            BackupError::Io(_) | BackupError::Store(_) => ErrorKind::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            // Paths and the system's words stay in the log.
            BackupError::Full(_) => "out of disk space for the snapshot (BACKUP_DIR, or the \
                                     data disk for the scratch store that verifies it); free \
                                     space and try again"
                .to_string(),
            BackupError::Io(_) | BackupError::Store(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }
}
