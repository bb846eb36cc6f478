//! Paying an orchestrator session: off-chain (no price) there is nothing to
//! pay, only `Livepeer-Segment` = base64(`SegData { auth_token }`); a priced
//! session gets each payment from the remote signer, echoing its `state`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use serde_json::Value;

use super::error::LivepeerError;
use super::proto::{Capabilities, OrchestratorInfo, SegData};
use super::signer::{LivePayment, REFRESH_SESSION, RemoteSigner, SKIP_CYCLE};

/// How many times a 480 (refresh the session) is followed in one payment.
pub const MAX_REFRESHES: usize = 3;

/// The two payment headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentHeaders {
    /// `Livepeer-Payment`: empty off-chain.
    pub payment: String,
    /// `Livepeer-Segment`.
    pub segment: String,
}

/// Whether the orchestrator charges (an off-chain one returns no price).
pub fn is_priced(info: &OrchestratorInfo) -> bool {
    info.price_info
        .as_ref()
        .is_some_and(|p| p.price_per_unit > 0)
}

/// base64(`SegData { auth_token }`): an off-chain session's credentials.
pub fn offchain_segment(info: &OrchestratorInfo, url: &str) -> Result<String, LivepeerError> {
    let token = info
        .auth_token
        .clone()
        .ok_or_else(|| LivepeerError::Orchestrator {
            url: url.to_string(),
            reason: "GetOrchestrator answered no auth_token".into(),
        })?;
    let seg = SegData {
        auth_token: Some(token),
        ..Default::default()
    };
    Ok(BASE64.encode(seg.encode_to_vec()))
}

/// What a payment attempt came to.
#[derive(Debug)]
pub enum PaymentOutcome {
    Pay(PaymentHeaders),
    /// The signer said no payment is needed this cycle (482).
    Skip,
}

/// One orchestrator session's payments.
#[derive(Debug)]
pub struct PaymentSession {
    url: String,
    info: OrchestratorInfo,
    capabilities: Capabilities,
    signer: Option<RemoteSigner>,
    manifest_id: Option<String>,
    state: Option<Value>,
}

impl PaymentSession {
    /// A session for the orchestrator at `url` that answered `info`. A
    /// priced one needs `signer`.
    pub fn new(
        url: &str,
        info: OrchestratorInfo,
        capabilities: Capabilities,
        signer: Option<RemoteSigner>,
    ) -> Result<Self, LivepeerError> {
        let signer = if is_priced(&info) {
            let price = info.price_info.clone().unwrap_or_default();
            Some(signer.ok_or_else(|| LivepeerError::Orchestrator {
                url: url.to_string(),
                reason: format!(
                    "priced at {} wei per {} pixels, and no remote signer is configured \
                     (job.signer_url) to pay it",
                    price.price_per_unit,
                    price.pixels_per_unit.max(1)
                ),
            })?)
        } else {
            // Off-chain: never call a signer.
            None
        };
        Ok(Self {
            url: url.to_string(),
            info,
            capabilities,
            signer,
            manifest_id: None,
            state: None,
        })
    }

    pub fn is_priced(&self) -> bool {
        self.signer.is_some()
    }

    pub fn info(&self) -> &OrchestratorInfo {
        &self.info
    }

    /// Later payments name the job's manifest.
    pub fn set_manifest_id(&mut self, id: &str) {
        self.manifest_id = Some(id.to_string());
    }

    /// The session's info after a 480: `refresh` asks `GetOrchestrator`
    /// again at the session's `transcoder`.
    pub fn replace_info(&mut self, info: OrchestratorInfo) {
        self.info = info;
    }

    /// The headers of the next paid request. A 480 from the signer comes
    /// back as [`LivepeerError::Refused`] with status 480 for the caller to
    /// refresh the session (see [`next_with_refresh`](Self::next_with_refresh)).
    pub async fn next(&mut self) -> Result<PaymentOutcome, LivepeerError> {
        let Some(signer) = &self.signer else {
            return Ok(PaymentOutcome::Pay(PaymentHeaders {
                payment: String::new(),
                segment: offchain_segment(&self.info, &self.url)?,
            }));
        };
        match signer
            .generate_live_payment(
                &self.info,
                &self.capabilities,
                self.manifest_id.as_deref(),
                self.state.as_ref(),
            )
            .await
        {
            Ok(LivePayment {
                payment,
                seg_creds,
                state,
            }) => {
                self.state = Some(state);
                Ok(PaymentOutcome::Pay(PaymentHeaders {
                    payment,
                    segment: seg_creds,
                }))
            }
            Err(e) if e.status() == Some(SKIP_CYCLE) => Ok(PaymentOutcome::Skip),
            Err(e) => Err(e),
        }
    }

    /// [`next`](Self::next), following up to [`MAX_REFRESHES`] 480s by
    /// asking `refresh` for fresh `OrchestratorInfo` (state kept).
    pub async fn next_with_refresh<F, Fut>(
        &mut self,
        mut refresh: F,
    ) -> Result<PaymentOutcome, LivepeerError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<OrchestratorInfo, LivepeerError>>,
    {
        let mut refreshes = 0;
        loop {
            match self.next().await {
                Err(e) if e.status() == Some(REFRESH_SESSION) && refreshes < MAX_REFRESHES => {
                    refreshes += 1;
                    tracing::info!(orchestrator = %self.url, "remote signer asked for a session refresh (480)");
                    let transcoder = if self.info.transcoder.is_empty() {
                        self.url.clone()
                    } else {
                        self.info.transcoder.clone()
                    };
                    self.info = refresh(transcoder).await?;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livepeer::proto::{AuthToken, PriceInfo};

    #[test]
    fn offchain_credentials_carry_only_the_auth_token() {
        let info = OrchestratorInfo {
            auth_token: Some(AuthToken {
                token: b"t".to_vec(),
                session_id: "s".into(),
                expiration: 9,
            }),
            ..Default::default()
        };
        let seg = SegData::decode(
            &*BASE64
                .decode(offchain_segment(&info, "u").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(seg.auth_token.unwrap().session_id, "s");
        assert!(seg.manifest_id.is_empty());
        assert!(offchain_segment(&OrchestratorInfo::default(), "u").is_err());
    }

    #[test]
    fn a_priced_session_without_a_signer_is_refused() {
        let info = OrchestratorInfo {
            price_info: Some(PriceInfo {
                price_per_unit: 3,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = PaymentSession::new("https://o", info, Capabilities::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no remote signer"), "{err}");
    }
}
