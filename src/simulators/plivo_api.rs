//! A fake of Plivo's REST API: records every request (method, path, basic-auth user, body) and
//! answers as Plivo does, or fails on purpose.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// `user:password` from the Basic authorization header.
    pub basic_auth: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

/// A running fake.
pub struct FakePlivoApi {
    pub address: SocketAddr,
    requests: Arc<StdMutex<Vec<RecordedRequest>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Clone)]
struct Shared {
    requests: Arc<StdMutex<Vec<RecordedRequest>>>,
    fail: bool,
}

impl FakePlivoApi {
    /// Starts on a free port; with `fail`, every request gets a 500.
    pub async fn start(fail: bool) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let requests = Arc::new(StdMutex::new(Vec::new()));
        let shared = Shared {
            requests: requests.clone(),
            fail,
        };
        let router = Router::new().fallback(handle).with_state(shared);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let serve_stop = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        Ok(Self {
            address,
            requests,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:port`, for `PLIVO_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("fake requests lock").clone()
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let basic_auth = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let body_value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared
        .requests
        .lock()
        .expect("fake requests lock")
        .push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            basic_auth,
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body_value,
        });
    if shared.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated failure\"}",
        )
            .into_response();
    }
    match method {
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"message": "call transferred", "api_id": "fake-api-id"})),
        )
            .into_response(),
    }
}
