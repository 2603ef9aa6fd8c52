//! How a domain error is classified, so the web layer can answer it without knowing the
//! domain: each domain's error enum implements [`Classify`], and `web::error::AppError`
//! converts anything that does (no `From` block per domain). No HTTP here.

use crate::store::StoreError;

/// The kinds of failure a domain can report; the web layer maps each onto a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing asked for does not exist (404).
    NotFound,
    /// The input is wrong; the message names the field (400).
    Invalid,
    /// The thing is not in a state that allows this (409).
    Conflict,
    /// Cannot be served right now; try again later (503).
    Unavailable,
    /// Understood, but what it names fails its own checks (a damaged file) (422).
    Unprocessable,
    /// Our fault; the message is logged, the client sees only a generic one (500).
    Internal,
}

/// A domain error the web layer can answer.
pub trait Classify: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;

    /// What the client is told. For [`ErrorKind::Internal`] keep it generic: the full
    /// error is logged, never shown.
    fn public_message(&self) -> String {
        match self.kind() {
            ErrorKind::Internal => "internal error".to_string(),
            _ => self.to_string(),
        }
    }
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        if self.is_full() {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        }
    }
    fn public_message(&self) -> String {
        if self.is_full() {
            FULL_MESSAGE.to_string()
        } else {
            "store error".to_string()
        }
    }
}

/// What a client is told when a change cannot be made durable for lack of space: plain,
/// without paths or the system's words.
pub const FULL_MESSAGE: &str =
    "storage full: the server's data disk is out of space; changes resume once space is freed";
