//! Why a job could not start or stop.

use crate::trickle::server;

/// A job start or stop that failed, with the peer or part at fault.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot start the trickle server for the worker job: {0}")]
    Server(#[from] server::ServerError),
    #[error("worker {url}: {reason}")]
    Worker { url: String, reason: String },
    #[error("orchestrator {url}: {reason}")]
    Orchestrator { url: String, reason: String },
    /// A peer answered with an error status: shown as it wrote it.
    #[error("{method} {url} answered {status}: {body}")]
    Refused {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    /// The worker answered with an error status; kept apart so a 404 can
    /// send the caller to the next candidate path.
    #[error("worker {url}: {method} {path} answered {status}: {body}")]
    Status {
        url: String,
        method: http::Method,
        path: String,
        status: http::StatusCode,
        body: String,
    },
    #[error(
        "worker {url}: no stream API found: POST {tried} all answered 404 \
         (set job.api_prefix to the worker's route prefix)"
    )]
    NoStreamApi { url: String, tried: String },
    /// The remote signer refused or failed; `status` when it answered one
    /// (481: the orchestrator's price is above the signer's limit).
    #[error("remote signer {url}: {reason}")]
    Signer {
        url: String,
        status: Option<u16>,
        reason: String,
    },
    #[error(transparent)]
    Client(#[from] crate::trickle::ClientError),
}

impl JobError {
    /// The worker has no such path (so another may be tried).
    pub fn is_not_found(&self) -> bool {
        matches!(self, JobError::Status { status, .. } if *status == http::StatusCode::NOT_FOUND)
    }
}
