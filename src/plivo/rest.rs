//! The Plivo REST client: the only place that calls Plivo's HTTP API.
//!
//! `POST …/Call/` places an outbound call (the dialer); `POST …/Call/{uuid}/` moves a live
//! call to new XML (the REST transfer strategy); `DELETE …/Call/{uuid}/` hangs a call up. Bodies are JSON, as Plivo's own SDK sends them;
//! authentication is HTTP Basic with the auth ID and token; the base URL is configurable
//! (`PLIVO_API_URL`) so tests point it at a local fake.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("refusing to address a call without an id")]
    EmptyCallUuid,
    #[error("plivo API request failed: {0}")]
    Transport(String),
    #[error("plivo API answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("plivo API answered with an unreadable body: {0}")]
    BadResponse(String),
}

impl RestError {
    /// The HTTP status Plivo answered with, if it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An outbound call to place (`POST …/Call/`, protocols.md B.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall<'a> {
    /// The caller ID.
    pub from: &'a str,
    pub to: &'a str,
    pub answer_url: &'a str,
    pub hangup_url: &'a str,
    /// Seconds the phone may ring.
    pub ring_timeout_secs: u32,
    /// Seconds the call may last once answered.
    pub time_limit_secs: u32,
    /// Where the asynchronous answering-machine detection reports.
    pub machine_detection_url: &'a str,
}

/// What Plivo answered to a new call: its request id (the CallUUID comes with the callbacks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CallFired {
    pub request_uuid: String,
    #[serde(default)]
    pub message: String,
}

/// A client for one Plivo account.
#[derive(Clone)]
pub struct PlivoRest {
    http: reqwest::Client,
    base: Url,
    auth_id: String,
    auth_token: SecretString,
}

impl PlivoRest {
    pub fn new(base: Url, auth_id: String, auth_token: SecretString) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| RestError::Transport(error.to_string()))?;
        Ok(Self {
            http,
            base,
            auth_id,
            auth_token,
        })
    }

    /// `…/v1/Account/{auth_id}/Call/{uuid}/`, refusing an empty id (an empty id would address
    /// every call on the account).
    fn call_url(&self, call_uuid: &str) -> Result<String, RestError> {
        if call_uuid.trim().is_empty() {
            return Err(RestError::EmptyCallUuid);
        }
        let base = self.base.as_str().trim_end_matches('/');
        let id: String = url::form_urlencoded::byte_serialize(call_uuid.as_bytes()).collect();
        Ok(format!("{base}/v1/Account/{}/Call/{id}/", self.auth_id))
    }

    /// Places an outbound call with asynchronous machine detection; every callback is POSTed.
    pub async fn make_call(&self, call: &OutboundCall<'_>) -> Result<CallFired, RestError> {
        let base = self.base.as_str().trim_end_matches('/');
        let url = format!("{base}/v1/Account/{}/Call/", self.auth_id);
        let body = json!({
            "from": call.from,
            "to": call.to,
            "answer_url": call.answer_url,
            "answer_method": "POST",
            "hangup_url": call.hangup_url,
            "hangup_method": "POST",
            "ring_timeout": call.ring_timeout_secs,
            "time_limit": call.time_limit_secs,
            "machine_detection": "true",
            "machine_detection_url": call.machine_detection_url,
            "machine_detection_method": "POST",
        });
        let response = self
            .http
            .post(url)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose_secret()))
            .json(&body)
            .send()
            .await
            .map_err(|error| RestError::Transport(error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(check(response).await.err().unwrap_or(RestError::Status {
                status: status.as_u16(),
                body: String::new(),
            }));
        }
        response
            .json::<CallFired>()
            .await
            .map_err(|error| RestError::BadResponse(error.to_string()))
    }

    /// Moves the caller's leg to the XML at `aleg_url` (fetched with POST).
    pub async fn transfer_call(&self, call_uuid: &str, aleg_url: &str) -> Result<(), RestError> {
        let url = self.call_url(call_uuid)?;
        let body = json!({"legs": "aleg", "aleg_url": aleg_url, "aleg_method": "POST"});
        let response = self
            .http
            .post(url)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose_secret()))
            .json(&body)
            .send()
            .await
            .map_err(|error| RestError::Transport(error.to_string()))?;
        check(response).await
    }

    /// Hangs a call up; a call that already ended (404) counts as done.
    pub async fn hangup_call(&self, call_uuid: &str) -> Result<(), RestError> {
        let url = self.call_url(call_uuid)?;
        let response = self
            .http
            .delete(url)
            .basic_auth(&self.auth_id, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|error| RestError::Transport(error.to_string()))?;
        if response.status().as_u16() == 404 {
            return Ok(());
        }
        check(response).await
    }
}

async fn check(response: reqwest::Response) -> Result<(), RestError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(RestError::Status {
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}
