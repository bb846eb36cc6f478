//! `probe --job`: asks each endpoint the configured job would use whether it
//! answers, without starting anything. A worker's status routes, a trickle
//! channel's `next` position, an orchestrator's token for the capability:
//! read-only calls, so probing a production peer takes no capacity.

use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Method};
use http_body_util::BodyExt;

use super::byoc;
use crate::config::JobMode;
use crate::trickle::client::{ClientOptions, HttpClient, empty_body, error_chain};

/// What one call got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status { status: u16, detail: String },
    Failed(String),
}

/// One probed endpoint.
#[derive(Debug, Clone)]
pub struct Probed {
    pub what: &'static str,
    pub method: &'static str,
    pub url: String,
    pub answer: Answer,
    /// One of several routes a peer may serve (pytrickle's prefixes): a 404
    /// there means "not this one", not a failure.
    pub alternative: bool,
}

impl Probed {
    /// Answered with a success status.
    pub fn ok(&self) -> bool {
        matches!(self.answer, Answer::Status { status, .. } if (200..300).contains(&status))
    }
}

/// Every probed endpoint of one job, in the order the job would use them.
#[derive(Debug, Clone)]
pub struct JobProbe {
    pub mode: &'static str,
    pub endpoints: Vec<Probed>,
}

impl fmt::Display for JobProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job (mode = \"{}\"):", self.mode)?;
        for p in &self.endpoints {
            let not_served =
                p.alternative && matches!(p.answer, Answer::Status { status: 404, .. });
            let mark = match (p.ok(), not_served) {
                (true, _) => "ok  ",
                (false, true) => "--  ",
                (false, false) => "FAIL",
            };
            let answer = match &p.answer {
                Answer::Status { status, detail } if detail.is_empty() => format!("{status}"),
                Answer::Status { status, detail } => format!("{status} {detail}"),
                Answer::Failed(e) => e.clone(),
            };
            writeln!(
                f,
                "  {mark} {:<22} {} {} -> {answer}",
                p.what, p.method, p.url
            )?;
        }
        Ok(())
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

async fn get(
    http: &HttpClient,
    what: &'static str,
    url: String,
    headers: &[(&'static str, HeaderValue)],
    describe: impl FnOnce(&http::HeaderMap, &[u8]) -> String,
) -> Probed {
    let call = async {
        let resp = http.send(Method::GET, &url, headers, empty_body()).await?;
        let status = resp.status().as_u16();
        let head = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, crate::trickle::ClientError>((status, head, body))
    };
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Err(_) => Answer::Failed(format!("no answer within {PROBE_TIMEOUT:?}")),
        Ok(Err(e)) => Answer::Failed(error_chain(&e)),
        Ok(Ok((status, head, body))) => {
            let detail = if (200..300).contains(&status) {
                describe(&head, &body)
            } else {
                String::from_utf8_lossy(&body)
                    .trim()
                    .chars()
                    .take(200)
                    .collect()
            };
            Answer::Status { status, detail }
        }
    };
    Probed {
        what,
        method: "GET",
        url,
        answer,
        alternative: false,
    }
}

fn json_field(body: &[u8], field: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get(field).cloned())
        .map(|v| format!("{field}={v}"))
        .unwrap_or_default()
}

/// Probes `mode`'s endpoints with the agent's client settings.
pub async fn probe_job(
    mode: &JobMode,
    client: &ClientOptions,
) -> Result<JobProbe, super::JobError> {
    let http = HttpClient::new(client)?;
    let mut endpoints = Vec::new();
    match mode {
        JobMode::Static(s) => {
            let channels = [
                ("publish_url", Some(&s.publish_url)),
                ("subscribe_url", s.subscribe_url.as_ref()),
                ("control_url", s.control_url.as_ref()),
                ("events_url", s.events_url.as_ref()),
                ("data_url", s.data_url.as_ref()),
            ];
            for (what, url) in channels {
                let Some(url) = url else { continue };
                let next = format!("{}/next", url.trim_end_matches('/'));
                endpoints.push(
                    get(&http, what, next, &[], |h, _| {
                        h.get("lp-trickle-seq")
                            .and_then(|v| v.to_str().ok())
                            .map(|v| format!("next seq {v}"))
                            .unwrap_or_default()
                    })
                    .await,
                );
            }
        }
        JobMode::Worker(w) => {
            let base = w.worker_url.trim_end_matches('/');
            endpoints.push(
                get(
                    &http,
                    "worker health",
                    format!("{base}/health"),
                    &[],
                    |_, b| json_field(b, "status"),
                )
                .await,
            );
            // pytrickle serves one of these, depending on its route prefix.
            for path in ["/api/stream/status", "/stream/status"] {
                let mut p = get(
                    &http,
                    "worker stream status",
                    format!("{base}{path}"),
                    &[],
                    |_, b| json_field(b, "state"),
                )
                .await;
                p.alternative = true;
                endpoints.push(p);
            }
        }
        JobMode::Livepeer(l) => {
            // GetOrchestrator is read-only: it reserves nothing.
            let surveyed = async {
                let cfg = super::livepeer::network_config(l)?;
                let net = crate::livepeer::network::Network::new(cfg, client)?;
                super::livepeer::survey(&net).await
            };
            match surveyed.await {
                Ok(list) => {
                    for s in list {
                        let answer = match &s.refusal {
                            None => Answer::Status {
                                status: 200,
                                detail: s.to_string(),
                            },
                            Some(r) => Answer::Failed(r.clone()),
                        };
                        endpoints.push(Probed {
                            what: "orchestrator",
                            method: "gRPC GetOrchestrator",
                            url: s.url,
                            answer,
                            alternative: false,
                        });
                    }
                }
                Err(e) => endpoints.push(Probed {
                    what: "orchestrators",
                    method: "discovery",
                    url: l
                        .discovery_url
                        .clone()
                        .or(l.signer_url.clone())
                        .unwrap_or_default(),
                    answer: Answer::Failed(e.to_string()),
                    alternative: false,
                }),
            }
        }
        JobMode::Byoc(b) => {
            let orch = b.orchestrator_url.trim_end_matches('/');
            let headers = byoc::token_headers(&b.capability, None).unwrap_or_default();
            endpoints.push(
                get(
                    &http,
                    "orchestrator token",
                    format!("{orch}/process/token"),
                    &headers,
                    |_, body| match serde_json::from_slice::<byoc::JobToken>(body) {
                        Ok(t) => {
                            let price = t.price.unwrap_or_default();
                            format!(
                                "service_addr={} capacity={} price={}/{}",
                                t.service_addr.as_deref().unwrap_or("(this address)"),
                                t.available_capacity,
                                price.price_per_unit,
                                price.pixels_per_unit.max(1)
                            )
                        }
                        Err(e) => format!("not a job token: {e}"),
                    },
                )
                .await,
            );
        }
    }
    Ok(JobProbe {
        mode: mode.name(),
        endpoints,
    })
}
