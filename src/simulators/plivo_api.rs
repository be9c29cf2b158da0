//! A fake of Plivo's REST API: records every request (method, path, basic-auth user, body,
//! arrival time) and answers as Plivo does, or fails on purpose.
//!
//! `POST /v1/Account/{id}/Call/` (make a call) answers 201 `{"message": "call fired",
//! "request_uuid", "api_id"}` and then plays the call's callbacks to the gateway, signed with
//! `X-Plivo-Signature-V3` exactly as Plivo signs them (on the public URL the call named): by
//! destination, a scripted outcome (answered and held, no answer, busy, failed, invalid number,
//! a machine). It counts the calls live at once (from the request's arrival to the moment the
//! hangup callback is sent), and a test waits on its state changes rather than sleeping.
//! `DELETE …/Call/{uuid}/` hangs a live call up (204), `POST …/Call/{uuid}/` (transfer) 202:
//! the transfer is recorded, and a machine's call follows it as Plivo does (it fetches the
//! `aleg_url`, signed, and ends when the document hangs up).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant},
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
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::plivo::signature;

/// How long the phone "rings" before any outcome.
const RING_TIME: Duration = Duration::from_millis(20);
/// A machine's call waits this long at most for the gateway to hang it up.
const MACHINE_HOLD_LIMIT: Duration = Duration::from_secs(10);
/// Transfers queued for one live call before more are dropped (a call follows one at a time).
const TRANSFER_QUEUE: usize = 4;
/// Callback deliveries refused by the gateway (5xx, connection) are retried this often, as
/// Plivo retries.
const CALLBACK_ATTEMPTS: u32 = 3;
const CALLBACK_RETRY_DELAY: Duration = Duration::from_millis(200);

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// `user:password` from the Basic authorization header.
    pub basic_auth: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    pub received_at: Instant,
}

/// How a placed call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (the answer URL is fetched), held, then hung up by the callee.
    Answer {
        hold: Duration,
    },
    NoAnswer,
    Busy,
    /// The carrier could not connect it.
    Failed,
    /// The destination does not exist (cause code 2000).
    InvalidNumber,
    /// Answered by a machine: the machine-detection URL hears `Machine=true`; the call lasts
    /// until the gateway hangs it up.
    Machine,
}

/// What a script sees of a new call.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub to: String,
    /// The call's number among all calls the fake placed, from 0.
    pub index: usize,
    /// The call's number among the calls to this destination, from 0.
    pub nth_to_number: usize,
}

/// Decides each call's outcome.
pub type Script = Arc<dyn Fn(&CallRequest) -> Outcome + Send + Sync>;

/// Where callbacks go: Plivo calls the public URL; behind it, any of the gateways (round robin,
/// as a load balancer would spread them).
#[derive(Clone, Debug)]
pub struct CallbackTarget {
    /// The auth token callbacks are signed with.
    pub auth_token: String,
    /// The gateways' real base URLs (`http://127.0.0.1:port`).
    pub gateways: Vec<String>,
}

/// A call the fake placed.
#[derive(Debug, Clone)]
pub struct PlacedCall {
    pub index: usize,
    pub from: String,
    pub to: String,
    pub request_uuid: String,
    pub call_uuid: String,
    pub outcome: Outcome,
    pub body: Value,
    pub received_at: Instant,
    /// When its hangup callback was sent (the call is no longer live).
    pub ended_at: Option<Instant>,
}

/// A callback the fake delivered.
#[derive(Debug, Clone)]
pub struct DeliveredCallback {
    pub call_uuid: String,
    /// `answer`, `machine`, `transfer` (the fetch of a transfer's `aleg_url`) or `hangup`.
    pub kind: &'static str,
    /// The gateway's final HTTP status (0: unreachable).
    pub status: u16,
    /// The document the gateway answered a `transfer` fetch with.
    pub document: Option<String>,
}

/// A transfer the API was asked for (`POST …/Call/{uuid}/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedTransfer {
    pub call_uuid: String,
    pub legs: Option<String>,
    pub aleg_url: Option<String>,
    pub aleg_method: Option<String>,
}

/// Everything the fake has seen, for assertions.
#[derive(Debug, Clone, Default)]
pub struct FakeState {
    pub calls: Vec<PlacedCall>,
    pub live: usize,
    pub max_live: usize,
    pub callbacks: Vec<DeliveredCallback>,
    /// CallUUIDs the API was asked to hang up.
    pub hangups: Vec<String>,
    pub transfers: Vec<RequestedTransfer>,
}

/// A running fake.
pub struct FakePlivoApi {
    pub address: SocketAddr,
    shared: Shared,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// How the API reaches a live call's player.
struct LiveCall {
    /// Cancelled when the API is asked to hang the call up.
    hang_up: CancellationToken,
    /// The `aleg_url` of each transfer.
    transfers: tokio::sync::mpsc::Sender<String>,
}

#[derive(Clone)]
struct Shared {
    requests: Arc<StdMutex<Vec<RecordedRequest>>>,
    fail: bool,
    callbacks: Arc<StdMutex<Option<CallbackTarget>>>,
    script: Arc<StdMutex<Script>>,
    state: Arc<StdMutex<FakeState>>,
    /// Bumped on every change of `state`.
    changed: watch::Sender<u64>,
    /// Live calls by CallUUID, told when the API hangs one up or transfers it.
    live_calls: Arc<StdMutex<HashMap<String, LiveCall>>>,
    http: reqwest::Client,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl FakePlivoApi {
    /// Starts on a free port; with `fail`, every request gets a 500. Placed calls play no
    /// callbacks.
    pub async fn start(fail: bool) -> std::io::Result<Self> {
        Self::start_with(fail, None).await
    }

    /// Starts a fake that plays placed calls' callbacks to `callbacks` (every call answered
    /// and held for a second until [`FakePlivoApi::set_script`] says otherwise).
    pub async fn start_with(
        fail: bool,
        callbacks: Option<CallbackTarget>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let default_script: Script = Arc::new(|_| Outcome::Answer {
            hold: Duration::from_secs(1),
        });
        let shared = Shared {
            requests: Arc::new(StdMutex::new(Vec::new())),
            fail,
            callbacks: Arc::new(StdMutex::new(callbacks)),
            script: Arc::new(StdMutex::new(default_script)),
            state: Arc::new(StdMutex::new(FakeState::default())),
            changed: watch::Sender::new(0),
            live_calls: Arc::new(StdMutex::new(HashMap::new())),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
            tasks: tasks.clone(),
            stop: stop.clone(),
        };
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let serve_stop = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { serve_stop.cancelled().await })
                .await;
        });
        Ok(Self {
            address,
            shared,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:port`, for `PLIVO_API_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .expect("fake requests lock")
            .clone()
    }

    /// Plays the callbacks of the calls placed from now on to `target` (the gateways are often
    /// built after the fake, since they need its URL).
    pub fn set_callback_target(&self, target: CallbackTarget) {
        *self.shared.callbacks.lock().expect("fake callbacks lock") = Some(target);
    }

    /// Decides the outcome of the calls placed from now on.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().expect("fake script lock") = script;
    }

    pub fn state(&self) -> FakeState {
        self.shared.state.lock().expect("fake state lock").clone()
    }

    /// Waits until `done` holds for the fake's state, or `limit` passes (then returns the
    /// state as it is, for the assertion to report).
    pub async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&FakeState) -> bool,
    ) -> Result<FakeState, FakeState> {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let state = self.state();
            if done(&state) {
                return Ok(state);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(self.state());
            }
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut FakeState)) {
        change(&mut self.state.lock().expect("fake state lock"));
        self.changed.send_modify(|version| *version += 1);
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at = Instant::now();
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
    let body_value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    shared
        .requests
        .lock()
        .expect("fake requests lock")
        .push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            basic_auth,
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body_value.clone(),
            received_at,
        });
    if shared.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"simulated failure\"}",
        )
            .into_response();
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["v1", "Account", _, "Call"]) => make_call(&shared, body_value, received_at),
        (Method::DELETE, ["v1", "Account", _, "Call", call_uuid]) => {
            let call_uuid = (*call_uuid).to_owned();
            if let Some(call) = shared
                .live_calls
                .lock()
                .expect("fake live calls lock")
                .get(&call_uuid)
            {
                call.hang_up.cancel();
            }
            shared.update(|state| state.hangups.push(call_uuid));
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, ["v1", "Account", _, "Call", call_uuid]) => {
            let field = |name: &str| {
                body_value
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let transfer = RequestedTransfer {
                call_uuid: (*call_uuid).to_owned(),
                legs: field("legs"),
                aleg_url: field("aleg_url"),
                aleg_method: field("aleg_method"),
            };
            if let (Some(call), Some(url)) = (
                shared
                    .live_calls
                    .lock()
                    .expect("fake live calls lock")
                    .get(*call_uuid),
                transfer.aleg_url.clone(),
            ) {
                let _ = call.transfers.try_send(url);
            }
            shared.update(|state| state.transfers.push(transfer));
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"message": "call transferred", "api_id": "fake-api-id"})),
            )
                .into_response()
        }
        (Method::DELETE, _) => StatusCode::NO_CONTENT.into_response(),
        _ => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"message": "call transferred", "api_id": "fake-api-id"})),
        )
            .into_response(),
    }
}

fn make_call(shared: &Shared, body: Value, received_at: Instant) -> Response {
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(from), Some(to), Some(answer_url)) =
        (field("from"), field("to"), field("answer_url"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "from, to and answer_url are required"})),
        )
            .into_response();
    };
    let request_uuid = uuid::Uuid::new_v4().to_string();
    let call_uuid = uuid::Uuid::new_v4().to_string();
    let script = shared.script.lock().expect("fake script lock").clone();
    let mut placed = None;
    shared.update(|state| {
        let request = CallRequest {
            to: to.clone(),
            index: state.calls.len(),
            nth_to_number: state.calls.iter().filter(|call| call.to == to).count(),
        };
        let outcome = script(&request);
        let call = PlacedCall {
            index: request.index,
            from: from.clone(),
            to: to.clone(),
            request_uuid: request_uuid.clone(),
            call_uuid: call_uuid.clone(),
            outcome,
            body: body.clone(),
            received_at,
            ended_at: None,
        };
        state.calls.push(call.clone());
        state.live += 1;
        state.max_live = state.max_live.max(state.live);
        placed = Some(call);
    });
    let target = shared
        .callbacks
        .lock()
        .expect("fake callbacks lock")
        .clone();
    if let (Some(call), Some(target)) = (placed, target) {
        let hang_up = CancellationToken::new();
        let (transfer_sender, transfers) = tokio::sync::mpsc::channel(TRANSFER_QUEUE);
        shared
            .live_calls
            .lock()
            .expect("fake live calls lock")
            .insert(
                call.call_uuid.clone(),
                LiveCall {
                    hang_up: hang_up.clone(),
                    transfers: transfer_sender,
                },
            );
        let player = CallPlayer {
            shared: shared.clone(),
            target,
            call,
            answer_url,
            hangup_url: field("hangup_url"),
            machine_url: field("machine_detection_url"),
            hang_up,
            transfers,
        };
        let stop = shared.stop.clone();
        shared.tasks.spawn(async move {
            tokio::select! {
                _ = player.play() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "message": "call fired",
            "request_uuid": request_uuid,
            "api_id": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

/// Plays one call's callbacks.
struct CallPlayer {
    shared: Shared,
    target: CallbackTarget,
    call: PlacedCall,
    answer_url: String,
    hangup_url: Option<String>,
    machine_url: Option<String>,
    /// Cancelled when the API is asked to hang the call up.
    hang_up: CancellationToken,
    /// The `aleg_url`s the call is transferred to.
    transfers: tokio::sync::mpsc::Receiver<String>,
}

impl CallPlayer {
    async fn play(mut self) {
        tokio::time::sleep(RING_TIME).await;
        let (status, cause, code, duration) = match self.call.outcome {
            Outcome::Answer { hold } => {
                self.post("answer", &self.answer_url, self.common("in-progress"))
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(hold) => {}
                    _ = self.hang_up.cancelled() => {}
                }
                ("completed", "Normal Hangup", "4000", hold.as_secs())
            }
            Outcome::Machine => {
                self.post("answer", &self.answer_url, self.common("in-progress"))
                    .await;
                if let Some(url) = &self.machine_url {
                    let mut form = self.common("in-progress");
                    form.extend(
                        [
                            ("Machine", "true"),
                            ("IfMachine", "continue"),
                            ("Event", "MachineDetection"),
                        ]
                        .map(|(k, v)| (k.to_owned(), v.to_owned())),
                    );
                    form.push(("RequestUUID".to_owned(), self.call.request_uuid.clone()));
                    self.post("machine", url, form).await;
                }
                // Held until the gateway hangs up, or moves the call to a document that does.
                let limit = tokio::time::sleep(MACHINE_HOLD_LIMIT);
                tokio::pin!(limit);
                loop {
                    tokio::select! {
                        _ = &mut limit => break,
                        _ = self.hang_up.cancelled() => break,
                        Some(url) = self.transfers.recv() => {
                            let document = self
                                .post("transfer", &url, self.common("in-progress"))
                                .await;
                            if document.is_some_and(|xml| xml.contains("<Hangup")) {
                                break;
                            }
                        }
                    }
                }
                ("completed", "Normal Hangup", "4000", 3)
            }
            Outcome::NoAnswer => ("no-answer", "No Answer", "3000", 0),
            Outcome::Busy => ("busy", "Busy Line", "3010", 0),
            Outcome::Failed => ("failed", "Unknown", "0", 0),
            Outcome::InvalidNumber => ("failed", "Invalid Destination Address", "2000", 0),
        };
        let call_uuid = self.call.call_uuid.clone();
        self.shared
            .live_calls
            .lock()
            .expect("fake live calls lock")
            .remove(&call_uuid);
        // No longer live once Plivo reports the hangup.
        self.shared.update(|state| {
            state.live -= 1;
            if let Some(call) = state.calls.iter_mut().find(|c| c.call_uuid == call_uuid) {
                call.ended_at = Some(Instant::now());
            }
        });
        if let Some(url) = &self.hangup_url {
            let mut form = self.common(status);
            let duration = duration.to_string();
            form.extend(
                [
                    ("HangupCause", cause),
                    ("HangupCauseCode", code),
                    ("Duration", duration.as_str()),
                    ("BillDuration", duration.as_str()),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            self.post("hangup", url, form).await;
        }
    }

    /// The parameters every callback carries.
    fn common(&self, status: &str) -> Vec<(String, String)> {
        let digits = |number: &str| number.trim_start_matches('+').to_owned();
        [
            ("CallUUID", self.call.call_uuid.clone()),
            ("From", digits(&self.call.from)),
            ("To", digits(&self.call.to)),
            ("Direction", "outbound".to_owned()),
            ("CallStatus", status.to_owned()),
            ("ALegUUID", self.call.call_uuid.clone()),
            ("ALegRequestUUID", self.call.request_uuid.clone()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into()
    }

    /// POSTs a signed form to the gateway serving `public_url`, retrying as Plivo does.
    /// Returns the body of a `transfer` fetch (the document).
    async fn post(
        &self,
        kind: &'static str,
        public_url: &str,
        form: Vec<(String, String)>,
    ) -> Option<String> {
        let Ok(url) = url::Url::parse(public_url) else {
            return None;
        };
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let gateways = &self.target.gateways;
        let mut status = 0;
        let mut document = None;
        for attempt in 0..CALLBACK_ATTEMPTS {
            let gateway = &gateways[(self.call.index + attempt as usize) % gateways.len()];
            let nonce = crate::config::random_hex(10);
            let signature = signature::v3_signature(
                self.target.auth_token.as_bytes(),
                signature::Method::Post,
                public_url,
                &form,
                &nonce,
            );
            let sent = self
                .shared
                .http
                .post(format!("{gateway}{path_and_query}"))
                .header("X-Plivo-Signature-V3", signature)
                .header("X-Plivo-Signature-V3-Nonce", nonce)
                .form(&form)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(_) => {
                    status = 0;
                    tokio::time::sleep(CALLBACK_RETRY_DELAY).await;
                    continue;
                }
            };
            status = response.status().as_u16();
            if (200..500).contains(&status) {
                if kind == "transfer" {
                    document = response.text().await.ok();
                }
                break;
            }
            tokio::time::sleep(CALLBACK_RETRY_DELAY).await;
        }
        let call_uuid = self.call.call_uuid.clone();
        self.shared.update(|state| {
            state.callbacks.push(DeliveredCallback {
                call_uuid,
                kind,
                status,
                document: document.clone(),
            })
        });
        document
    }
}
