//! A client for the pytrickle worker HTTP API (start, stop, params, status,
//! health), with a timeout on every call.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::{BodyExt, Full};

use super::error::JobError;
use crate::trickle::HttpClient;
use crate::trickle::client::RequestBody;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerClient {
    base: String,
    http: HttpClient,
}

fn json_body(v: &serde_json::Value) -> RequestBody {
    Full::new(Bytes::from(v.to_string()))
        .map_err(|never| match never {})
        .boxed()
}

impl WorkerClient {
    pub fn new(base: &str, http: HttpClient) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    fn err(&self, reason: impl Into<String>) -> JobError {
        JobError::Worker {
            url: self.base.clone(),
            reason: reason.into(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
    ) -> Result<serde_json::Value, JobError> {
        let url = format!("{}{path}", self.base);
        let headers = [("content-type", HeaderValue::from_static("application/json"))];
        let fut = async {
            let resp = self.http.send(method.clone(), &url, &headers, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.err(format!("{method} {path}: reading the answer: {e}")))?
                .to_bytes();
            let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if !status.is_success() {
                return Err(JobError::Status {
                    url: self.base.clone(),
                    method: method.clone(),
                    path: path.to_string(),
                    status,
                    body: String::from_utf8_lossy(&bytes).trim().to_string(),
                });
            }
            Ok(value)
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| self.err(format!("{path}: no answer within {CALL_TIMEOUT:?}")))?
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        self.call(Method::POST, path, json_body(body)).await
    }

    /// POSTs `body` to each path in turn until one is not a 404; answers
    /// the path that took it. A 404 on every path is [`JobError::NoStreamApi`]
    /// naming them all.
    pub async fn post_first<'p>(
        &self,
        paths: &[&'p str],
        body: &serde_json::Value,
    ) -> Result<(&'p str, serde_json::Value), JobError> {
        for path in paths {
            match self.post(path, body).await {
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
                Ok(v) => return Ok((path, v)),
            }
        }
        Err(JobError::NoStreamApi {
            url: self.base.clone(),
            tried: paths.join(", "),
        })
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, JobError> {
        self.call(Method::GET, path, crate::trickle::client::empty_body())
            .await
    }
}
