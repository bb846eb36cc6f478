//! Paying for a priced BYOC stream through a remote signer, as Livepeer's
//! Python SDK pays a BYOC job (`livepeer_gateway.byoc`) and on the cadence
//! Livepeer's gateway keeps for a stream (go-livepeer
//! `byoc/stream_gateway.go`, every 50 s):
//!
//! 1. `GetOrchestrator` (gRPC, signed with the `/sign-orchestrator-info`
//!    identity) for the orchestrator's current ticket parameters; none, or
//!    a zero face value, means nothing to pay.
//! 2. `/generate-live-payment` with that info, `type = "lv2v"` and the
//!    capability (body and `Livepeer-Capability`), the previous answer's
//!    `state` echoed: `payment` → `Livepeer-Payment`, `segCreds` →
//!    `Livepeer-Segment`.
//! 3. At start those go with `/ai/stream/start`; then every
//!    `payment_interval` a fresh token (is it still priced?) and a signed
//!    `POST {service_addr}/ai/stream/payment` naming the stream, whose
//!    answer carries the balance (`Livepeer-Balance`).
//!
//! The orchestrator wants 60 s of balance at start and stops the stream
//! once the balance is negative at one of its checks (every 23 s). A failed
//! payment is therefore only warned about and counted: the stream goes on,
//! and if the balance runs out the orchestrator closes the channels, which
//! the agent's readers see, and the job is restarted with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::byoc::{Caller, JobPrice, Signing, balance_of, fetch_token, signer_error};
use super::error::JobError;
use super::watch::JobWatch;
use crate::config::ByocJob;
use crate::livepeer::grpc::get_orchestrator;
use crate::livepeer::payment::{MAX_REFRESHES, PaymentHeaders};
use crate::livepeer::proto::{OrchestratorInfo, OrchestratorRequest};
use crate::livepeer::signer::{PRICE_TOO_HIGH, REFRESH_SESSION, SKIP_CYCLE};
use crate::livepeer::tls::OrchestratorTls;
use crate::sync::LockIgnoringPoison;
use crate::trickle::TlsOptions;

/// `timeout_seconds` of a payment's job request (Livepeer's gateway: 70).
const PAYMENT_TIMEOUT_SECONDS: u32 = 70;
const GRPC_DEADLINE: Duration = Duration::from_secs(5);

/// What `/healthz` and `/metrics` show of a BYOC stream's payments.
#[derive(Debug, Default)]
pub struct ByocCounters {
    /// Payments the orchestrator accepted (the start's included).
    pub payments: AtomicU64,
    /// Payments that failed (signer, orchestrator or network).
    pub payment_failures: AtomicU64,
    balance: std::sync::Mutex<Option<String>>,
    last_payment_error: std::sync::Mutex<Option<String>>,
}

impl ByocCounters {
    /// The last `Livepeer-Balance` the orchestrator answered.
    pub fn balance(&self) -> Option<String> {
        self.balance.lock_ignoring_poison().clone()
    }

    /// The last payment's error, while payments are failing.
    pub fn last_payment_error(&self) -> Option<String> {
        self.last_payment_error.lock_ignoring_poison().clone()
    }

    /// A new stream: the last one's failing payments are not its own.
    pub(crate) fn start(&self) {
        *self.last_payment_error.lock_ignoring_poison() = None;
    }

    pub(crate) fn set_balance(&self, balance: String) {
        *self.balance.lock_ignoring_poison() = Some(balance);
    }

    pub(crate) fn paid(&self, balance: Option<String>) {
        self.payments.fetch_add(1, Ordering::Relaxed);
        *self.last_payment_error.lock_ignoring_poison() = None;
        if let Some(b) = balance {
            self.set_balance(b);
        }
    }

    fn failed(&self, error: String) {
        self.payment_failures.fetch_add(1, Ordering::Relaxed);
        *self.last_payment_error.lock_ignoring_poison() = Some(error);
    }
}

/// Whether `info`'s tickets are worth anything: ticket parameters with a
/// non-zero face value (the SDK skips the payment otherwise).
pub fn needs_payment(info: &OrchestratorInfo) -> bool {
    info.ticket_params
        .as_ref()
        .is_some_and(|t| t.face_value.iter().any(|b| *b != 0))
}

/// `Livepeer-Payment` and `Livepeer-Segment` for one request.
pub fn payment_headers(
    h: &PaymentHeaders,
    url: &str,
) -> Result<Vec<(&'static str, HeaderValue)>, JobError> {
    let value = |v: &str, what: &str| {
        HeaderValue::from_str(v).map_err(|_| JobError::Orchestrator {
            url: url.to_string(),
            reason: format!("the signer's {what} cannot be sent as an HTTP header"),
        })
    };
    Ok(vec![
        ("livepeer-payment", value(&h.payment, "payment")?),
        ("livepeer-segment", value(&h.segment, "segCreds")?),
    ])
}

/// One stream's payments: the signer, where `GetOrchestrator` goes, and
/// the signer's `state` between payments.
#[derive(Debug)]
pub struct Payer {
    signing: Signing,
    grpc_url: String,
    tls: TlsOptions,
    capability: String,
    state: Option<Value>,
}

impl Payer {
    pub fn new(signing: Signing, job: &ByocJob, tls: TlsOptions) -> Self {
        Self {
            signing,
            grpc_url: job
                .grpc_url
                .clone()
                .unwrap_or_else(|| job.orchestrator_url.clone()),
            tls,
            capability: job.capability.clone(),
            state: None,
        }
    }

    async fn orchestrator_info(&self) -> Result<OrchestratorInfo, JobError> {
        let id = &self.signing.identity;
        let request = OrchestratorRequest {
            address: id.address.clone(),
            sig: id.sig.clone(),
            capabilities: None,
            ignore_capacity_check: true,
        };
        let tls = OrchestratorTls::Options(self.tls.clone());
        get_orchestrator(&self.grpc_url, &tls, request, GRPC_DEADLINE)
            .await
            .map(|a| a.info)
            .map_err(|e| JobError::Orchestrator {
                url: self.grpc_url.clone(),
                reason: format!(
                    "GetOrchestrator (gRPC, for the ticket parameters a payment needs; \
                     set `job.grpc_url` if it is not served at `orchestrator_url`): {e}"
                ),
            })
    }

    /// The next payment's headers; `None` when nothing is to be paid (no
    /// ticket parameters, or the signer's 482). A 480 is followed with
    /// fresh info up to [`MAX_REFRESHES`] times.
    pub async fn next(&mut self) -> Result<Option<PaymentHeaders>, JobError> {
        let signer = &self.signing.signer;
        let mut refreshes = 0;
        loop {
            let info = self.orchestrator_info().await?;
            if !needs_payment(&info) {
                debug!(orchestrator = %self.grpc_url, "no ticket parameters: nothing to pay");
                return Ok(None);
            }
            match signer
                .generate_byoc_payment(&info, &self.capability, self.state.as_ref())
                .await
            {
                Ok(p) => {
                    self.state = p.state.is_object().then_some(p.state);
                    return Ok(Some(PaymentHeaders {
                        payment: p.payment,
                        segment: p.seg_creds,
                    }));
                }
                Err(e) if e.status() == Some(REFRESH_SESSION) && refreshes < MAX_REFRESHES => {
                    refreshes += 1;
                    debug!("remote signer asked for fresh orchestrator info (480)");
                }
                Err(e) if e.status() == Some(SKIP_CYCLE) => return Ok(None),
                Err(e) => {
                    return Err(signer_error(
                        signer.url(),
                        "paying the orchestrator (/generate-live-payment)",
                        e,
                    ));
                }
            }
        }
    }
}

/// What the payment loop of one stream holds.
pub struct PayLoop {
    pub caller: Caller,
    pub payer: Payer,
    pub orchestrator_url: String,
    pub interval: Duration,
    pub counters: Arc<ByocCounters>,
    pub watch: Arc<JobWatch>,
}

/// One payment: a fresh token (the capability may have become free), the
/// payment, `POST /ai/stream/payment`. `Ok(None)`: nothing to pay now;
/// `Ok(Some(balance))`: paid.
async fn pay_once(l: &mut PayLoop) -> Result<Option<Option<String>>, JobError> {
    let identity = l.caller.signing.as_ref().map(|s| &s.identity);
    let token = fetch_token(
        &l.caller.http,
        &l.orchestrator_url,
        &l.caller.capability,
        identity,
    )
    .await?;
    if !token.price.is_some_and(|p: JobPrice| p.is_priced()) {
        return Ok(None);
    }
    let Some(h) = l.payer.next().await? else {
        return Ok(None);
    };
    let extra = payment_headers(&h, &l.caller.service_addr)?;
    let (resp, _) = l
        .caller
        .send(
            "/ai/stream/payment",
            &l.caller.stream_request(),
            &json!({}),
            &json!({}),
            &extra,
            PAYMENT_TIMEOUT_SECONDS,
        )
        .await?;
    Ok(Some(balance_of(&resp)))
}

/// Pays every `interval` until the stream stops (the task is aborted). A
/// failed payment is warned about and counted; a price the signer refuses
/// (481) ends the job here: it would only run out of balance.
pub async fn pay_loop(mut l: PayLoop) {
    let start = tokio::time::Instant::now() + l.interval;
    let mut tick = tokio::time::interval_at(start, l.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pay_once(&mut l).await {
            Ok(Some(balance)) => {
                debug!(stream_id = %l.caller.stream_id, balance = ?balance, "byoc payment sent");
                l.counters.paid(balance);
            }
            Ok(None) => debug!(stream_id = %l.caller.stream_id, "byoc: nothing to pay this cycle"),
            Err(e) => {
                let refused_price = matches!(&e, JobError::Signer { status, .. } if *status == Some(PRICE_TOO_HIGH));
                l.counters.failed(e.to_string());
                if refused_price {
                    let reason =
                        format!("the remote signer refuses the orchestrator's price (481): {e}");
                    warn!(stream_id = %l.caller.stream_id, %reason, "byoc stream cannot go on");
                    l.watch.fail(reason);
                    return;
                }
                warn!(
                    stream_id = %l.caller.stream_id,
                    error = %e,
                    "byoc payment failed; streaming on until the orchestrator's balance for it runs out"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livepeer::proto::TicketParams;

    #[test]
    fn only_tickets_with_a_face_value_are_paid() {
        let mut info = OrchestratorInfo::default();
        assert!(!needs_payment(&info));
        info.ticket_params = Some(TicketParams {
            face_value: vec![0],
            ..Default::default()
        });
        assert!(!needs_payment(&info));
        info.ticket_params.as_mut().unwrap().face_value = vec![1, 0];
        assert!(needs_payment(&info));
    }

    #[test]
    fn a_success_clears_the_last_failure() {
        let c = ByocCounters::default();
        c.failed("signer 500".into());
        assert_eq!(c.last_payment_error().as_deref(), Some("signer 500"));
        c.paid(Some("1200".into()));
        assert_eq!(c.last_payment_error(), None);
        assert_eq!(c.balance().as_deref(), Some("1200"));
        assert_eq!(c.payments.load(Ordering::Relaxed), 1);
        assert_eq!(c.payment_failures.load(Ordering::Relaxed), 1);
    }
}
