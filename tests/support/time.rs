//! Bounds and polling for anything a test awaits. A bound here is never a
//! timing assertion: it only turns a hang into a failure that names what
//! never happened.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// Generous upper bound for anything a test awaits: the machine is shared.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a condition is looked at again. Short, so a state that holds
/// only briefly (a GPIO pulse) is still seen.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `fut`; panics naming `what` after [`PATIENCE`].
pub async fn within<F: Future>(what: impl Display, fut: F) -> F::Output {
    within_for(PATIENCE, what, fut).await
}

/// Awaits `fut`; panics naming `what` after `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: impl Display, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `cond` until it holds; panics naming `what` after [`PATIENCE`].
pub async fn wait_until(what: impl Display, cond: impl FnMut() -> bool) {
    wait_until_for(PATIENCE, what, cond).await
}

/// Polls `cond` until it holds; panics naming `what` after `limit`.
pub async fn wait_until_for(limit: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    within_for(limit, what, async {
        while !cond() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}

/// Polls the async `probe` until it gives a value and returns that value;
/// panics naming `what` after [`PATIENCE`]. For conditions that need an
/// await to look (an HTTP status call, an async lock).
///
/// `probe` is a closure returning a future (`|| async { … }`) rather than
/// an async closure: the futures of async closures are not yet provably
/// `Send`, which a caller inside `tokio::spawn` needs.
pub async fn wait_for_some<T, F>(what: impl Display, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
}
