//! The Plivo REST client: the only place that calls Plivo's HTTP API.
//!
//! `POST …/Call/{uuid}/` moves a live call to new XML (the REST transfer strategy);
//! `DELETE …/Call/{uuid}/` hangs a call up. Bodies are JSON, as Plivo's own SDK sends them;
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
