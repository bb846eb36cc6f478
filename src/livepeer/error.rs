//! What went wrong talking to an orchestrator, a remote signer or a
//! discovery endpoint, naming the peer.

use std::path::PathBuf;

use crate::trickle::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum LivepeerError {
    #[error("orchestrator {url}: {reason}")]
    Orchestrator { url: String, reason: String },
    /// A peer answered with an error status; the body is plain text, shown
    /// as the peer wrote it (cut to a readable length).
    #[error("{method} {url} answered {status}: {body}")]
    Refused {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("remote signer {url}: {reason}")]
    Signer { url: String, reason: String },
    #[error("discovery {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("invalid Livepeer token: {0}")]
    Token(String),
    #[error("certificate pin store {path}: {source}")]
    PinStore {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::trickle::tls::TlsError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl LivepeerError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            LivepeerError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
