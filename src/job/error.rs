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
    #[error(transparent)]
    Client(#[from] crate::trickle::ClientError),
}
