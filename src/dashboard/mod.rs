//! The dashboard for campaign managers under `/app`: server-rendered pages (askama templates
//! in `templates/dashboard/`, the CSS and the small script inside the binary), signed in with
//! an API token once ([`session`]), every query scoped to the session's organization like the
//! API's, and live pages fed by PostgreSQL `LISTEN/NOTIFY` through Server-Sent Events
//! ([`live`]). Handlers are thin: check the session, call `db`, build a view ([`views`]).
//!
//! Every response carries a strict Content-Security-Policy (no inline script: the script is a
//! file), `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`; every form a CSRF token.

mod do_not_call;
mod import;
pub mod live;
pub mod session;
mod tokens;
pub mod views;

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    time::Duration,
};

use askama::Template;
use axum::{
    Form, Router,
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{Next, from_fn},
    response::{
        Html, IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use chrono::Utc;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    api::tokens::{Scope, hash_secret},
    db::{
        DbError,
        call_queries::CallFilter,
        campaigns::TransitionOutcome,
        dashboard::{CampaignFigures, LeadsFrom, NewSession},
    },
    http::AppState,
    recording::link::LINK_TTL,
};
use live::{Notice, What};
use session::Session;
use views::{
    CallPage, CallRow, CampaignCard, CampaignPage, CampaignsPage, ErrorPage, LEAD_STATUSES,
    LEADS_PAGE, LeadsPager, LineFragment, LivePage, LiveRows, LoginPage, TargetView,
    parse_lead_cursor,
};

pub use live::Live;

/// Where the dashboard is mounted.
pub const BASE_PATH: &str = "/app";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'; object-src 'none'";
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");
/// Live calls a page lists.
const LIVE_LIMIT: i64 = 200;

/// Why a dashboard request failed, as a page.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// No session, or one that no longer stands: sign in (again).
    #[error("signed out")]
    SignedOut,
    #[error("{0}")]
    Forbidden(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// Refused by the API's own code the page shares (its status and message).
    #[error("{}", .0.message)]
    Api(crate::api::error::ApiError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("rendering a page failed: {0}")]
    Render(#[from] askama::Error),
}

impl From<crate::api::error::ApiError> for DashError {
    fn from(error: crate::api::error::ApiError) -> Self {
        Self::Api(error)
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            Self::SignedOut => return Redirect::to("/app/login").into_response(),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "Not possible now"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            Self::Api(error) if error.status.is_client_error() => {
                (error.status, views::status_title(error.status))
            }
            Self::Api(_) | Self::Db(_) | Self::Render(_) => {
                tracing::error!(error = %self, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
            }
        };
        let message = match &self {
            Self::Api(error) if error.status.is_client_error() => error.message.clone(),
            Self::Api(_) | Self::Db(_) | Self::Render(_) => {
                "The gateway could not answer; try again.".to_owned()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            title: title.to_owned(),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}

/// The dashboard's routes, to nest under [`BASE_PATH`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(campaigns_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
        .route("/campaigns/{id}", get(campaign_page))
        .route("/campaigns/{id}/{action}", post(campaign_action))
        .route(
            "/campaigns/{id}/leads/import",
            post(import::import).layer(DefaultBodyLimit::max(import::MAX_FORM_BYTES)),
        )
        .route("/calls/live", get(live_page))
        .route("/calls/live/events", get(live_events))
        .route("/calls/{id}", get(call_page))
        .route("/calls/{id}/events", get(call_events))
        .route("/calls/{id}/hangup", post(hangup))
        .route(
            "/do-not-call",
            get(do_not_call::page).post(do_not_call::add),
        )
        .route("/do-not-call/remove", post(do_not_call::remove))
        .route("/tokens", get(tokens::page).post(tokens::create))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .layer(from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Pages show one organization's data: no shared cache keeps them.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        JS,
    )
}

fn secure(state: &AppState) -> bool {
    state.settings.server.public_url.scheme() == "https"
}

async fn login_page() -> Result<Html<String>, DashError> {
    Ok(Html(LoginPage { error: None }.render()?))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /app/login`: the token is checked as the API's bearer check does, then forgotten;
/// the session keeps its id. A request from another origin is 403.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, DashError> {
    // No session yet, so no CSRF token: a cross-site form must not sign a browser in to
    // someone else's session. Browsers send Origin on every POST.
    if !same_origin(&headers) {
        return Err(DashError::Forbidden(
            "sign in from the dashboard's own page".to_owned(),
        ));
    }
    let refuse = |message: &str| -> Result<Response, DashError> {
        let page = LoginPage {
            error: Some(message.to_owned()),
        };
        Ok((StatusCode::UNAUTHORIZED, Html(page.render()?)).into_response())
    };
    let secret = form.token.trim();
    if secret.is_empty() {
        return refuse("Paste an API token.");
    }
    let Some(token) = state.db.api_token_by_hash(&hash_secret(secret)).await? else {
        return refuse("That token is not valid.");
    };
    let now = Utc::now();
    if token.revoked_at.is_some() {
        return refuse("That token was revoked.");
    }
    if token.expires_at.is_some_and(|expires_at| expires_at <= now) {
        return refuse("That token has expired.");
    }
    if !token
        .scopes
        .iter()
        .any(|scope| scope == Scope::CampaignsRead.as_str())
    {
        return refuse("The dashboard needs a token with the scope campaigns:read.");
    }
    let (id, id_hash) = session::new_session_id();
    let csrf_secret = session::random_bytes();
    let expires_at = token
        .expires_at
        .map_or(now + session::SESSION_TTL, |expires| {
            expires.min(now + session::SESSION_TTL)
        });
    state
        .db
        .insert_dashboard_session(&NewSession {
            id_hash: &id_hash,
            token_id: token.id,
            organization_id: token.organization_id,
            csrf_secret: &csrf_secret,
            expires_at,
        })
        .await?;
    if let Err(error) = state.db.touch_api_token(token.id).await {
        tracing::warn!(%error, "could not record the token's use");
    }
    Ok((
        [(
            header::SET_COOKIE,
            session::session_cookie(&id, secure(&state)),
        )],
        Redirect::to("/app"),
    )
        .into_response())
}

/// Whether a request comes from this site's own pages. Fetch metadata (`Sec-Fetch-Site`) when
/// the browser sends it; else `Origin` against `Host`. Our `Referrer-Policy: no-referrer` makes
/// browsers send `Origin: null` on form posts, so `null` only passes with fetch metadata.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text(header::ORIGIN) else {
        // Not a browser, or one older than both headers: nothing to check against.
        return true;
    };
    let origin_host = url::Url::parse(origin).ok().and_then(|url| {
        url.host_str().map(|host| match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    });
    matches!((origin_host, text(header::HOST)), (Some(origin), Some(host)) if origin == host)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    state.db.delete_dashboard_session(&session.id_hash).await?;
    Ok((
        [(header::SET_COOKIE, session::cleared_cookie(secure(&state)))],
        Redirect::to("/app/login"),
    )
        .into_response())
}

async fn card(
    state: &AppState,
    organization_id: Uuid,
    id: Uuid,
) -> Result<CampaignCard, DashError> {
    let campaign = state
        .db
        .campaign(organization_id, id)
        .await?
        .ok_or(DashError::NotFound("campaign"))?;
    let figures = state
        .db
        .campaign_figures(organization_id, &[id])
        .await?
        .pop()
        .ok_or(DashError::NotFound("campaign"))?;
    Ok(CampaignCard::new(&campaign, &figures))
}

/// `GET /app`: every campaign with its live statistics and its actions.
async fn campaigns_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>, DashError> {
    session.require(Scope::CampaignsRead)?;
    // The API's page cap: a manager with more campaigns pages through the API for now.
    let campaigns = state
        .db
        .list_campaigns(session.organization_id, None, 500, 0)
        .await?;
    let ids: Vec<Uuid> = campaigns.iter().map(|campaign| campaign.id).collect();
    // One statement for every card's figures, not one per campaign.
    let figures: HashMap<Uuid, CampaignFigures> = state
        .db
        .campaign_figures(session.organization_id, &ids)
        .await?
        .into_iter()
        .map(|figures| (figures.id, figures))
        .collect();
    let cards = campaigns
        .iter()
        .filter_map(|campaign| {
            let figures = figures.get(&campaign.id)?;
            Some(CampaignCard::new(campaign, figures))
        })
        .collect();
    let page = CampaignsPage {
        csrf: session.csrf().to_owned(),
        campaigns: cards,
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
struct LeadsQuery {
    #[serde(default)]
    status: String,
    /// For display; `after` or `before` says where the page is.
    #[serde(default)]
    page: i64,
    after: Option<String>,
    before: Option<String>,
}

impl LeadsQuery {
    fn from(&self) -> Result<LeadsFrom, DashError> {
        let cursor = |text: &str| {
            parse_lead_cursor(text).ok_or_else(|| DashError::BadRequest("no such page".to_owned()))
        };
        match (self.after.as_deref(), self.before.as_deref()) {
            (None, None) => Ok(LeadsFrom::Start),
            (Some(after), None) => cursor(after).map(|(at, id)| LeadsFrom::After(at, id)),
            (None, Some(before)) => cursor(before).map(|(at, id)| LeadsFrom::Before(at, id)),
            (Some(_), Some(_)) => Err(DashError::BadRequest("no such page".to_owned())),
        }
    }
}

/// `GET /app/campaigns/{id}`: the statistics and the leads by status, a page at a time.
async fn campaign_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Query(query): Query<LeadsQuery>,
) -> Result<Html<String>, DashError> {
    session.require(Scope::CampaignsRead)?;
    let campaign = card(&state, session.organization_id, id).await?;
    let status = query.status.trim().to_owned();
    if !status.is_empty() && !LEAD_STATUSES.contains(&status.as_str()) {
        return Err(DashError::BadRequest(format!(
            "status is one of {}",
            LEAD_STATUSES.join(", ")
        )));
    }
    let from = query.from()?;
    let (leads, pager) = if session.allows(Scope::LeadsRead) {
        let mut leads = state
            .db
            .campaign_leads_by_status(
                session.organization_id,
                id,
                (!status.is_empty()).then_some(status.as_str()),
                LEADS_PAGE + 1,
                from,
            )
            .await?;
        // One row more than a page says whether there is more in the direction read.
        let page_size = usize::try_from(LEADS_PAGE).unwrap_or(usize::MAX);
        let more = leads.len() > page_size;
        if more {
            match from {
                LeadsFrom::Before(..) => drop(leads.remove(0)),
                LeadsFrom::Start | LeadsFrom::After(..) => leads.truncate(page_size),
            }
        }
        let pager = LeadsPager::new(query.page.clamp(0, i64::MAX / 2), from, more, &leads);
        (Some(leads), pager)
    } else {
        (None, LeadsPager::new(0, LeadsFrom::Start, false, &[]))
    };
    let targets = if session.allows(Scope::SettingsRead) {
        Some(
            state
                .db
                .campaign_transfer_targets(session.organization_id, id)
                .await?,
        )
    } else {
        None
    };
    let page = CampaignPage {
        csrf: session.csrf().to_owned(),
        campaign,
        leads,
        status,
        statuses: LEAD_STATUSES,
        pager,
        targets_named: targets
            .as_ref()
            .is_some_and(|targets| targets.iter().any(|target| target.named_by_campaign)),
        targets: targets.map(|targets| targets.iter().map(TargetView::new).collect()),
        can_import: session.allows(Scope::LeadsWrite),
    };
    Ok(Html(page.render()?))
}

/// `POST /app/campaigns/{id}/{start|pause|resume|cancel}`: the API's transitions.
async fn campaign_action(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(Uuid, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    session.require(Scope::CampaignsWrite)?;
    let action = views::parse_action(&action).ok_or(DashError::NotFound("action"))?;
    match state
        .db
        .transition_campaign(session.organization_id, id, action)
        .await?
    {
        TransitionOutcome::Applied => {}
        TransitionOutcome::NotFound => return Err(DashError::NotFound("campaign")),
        TransitionOutcome::Illegal { status } => {
            return Err(DashError::Conflict(format!(
                "cannot {} a {status} campaign",
                action.as_str()
            )));
        }
    }
    let to = match form.back.as_deref() {
        Some("campaign") => format!("/app/campaigns/{id}"),
        _ => "/app".to_owned(),
    };
    Ok(Redirect::to(&to).into_response())
}

async fn live_rows(state: &AppState, organization_id: Uuid) -> Result<LiveRows, DashError> {
    let filter = CallFilter {
        live: Some(true),
        limit: LIVE_LIMIT,
        offset: 0,
        ..CallFilter::default()
    };
    let calls = state.db.list_calls(organization_id, &filter).await?;
    Ok(LiveRows {
        calls: calls.iter().map(CallRow::new).collect(),
    })
}

/// `GET /app/calls/live`.
async fn live_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>, DashError> {
    session.require(Scope::CallsRead)?;
    let page = LivePage {
        csrf: session.csrf().to_owned(),
        rows: live_rows(&state, session.organization_id).await?,
    };
    Ok(Html(page.render()?))
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Waits for the next notice that `relevant` selects (a lag or a resync always is); `None`
/// when the stream must end (shutdown).
async fn next_notice(
    receiver: &mut tokio::sync::broadcast::Receiver<Notice>,
    stop: &tokio_util::sync::CancellationToken,
    relevant: impl Fn(&Notice) -> bool,
) -> Option<()> {
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return None,
            notice = receiver.recv() => notice,
        };
        match notice {
            Ok(notice) if notice == Notice::Resync || relevant(&notice) => return Some(()),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return Some(()),
            Err(RecvError::Closed) => return None,
        }
    }
}

/// `GET /app/calls/live/events`: the live calls' rows, again each time a call opens or ends.
async fn live_events(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, DashError> {
    session.require(Scope::CallsRead)?;
    let org = session.organization_id;
    // Subscribed before the first read, so nothing between the two is missed.
    let receiver = state.dashboard.subscribe();
    let stop = state.lifecycle.background_stop_token();
    let stream = stream::unfold(
        (state, receiver, stop, true),
        move |(state, mut receiver, stop, first)| async move {
            if !first {
                next_notice(&mut receiver, &stop, |notice| {
                    matches!(notice, Notice::Call { org: o, what, .. } if *o == org && *what != What::Event)
                })
                .await?;
            }
            let html = match live_rows(&state, org)
                .await
                .and_then(|rows| Ok(rows.render()?))
            {
                Ok(html) => html,
                Err(error) => {
                    tracing::warn!(%error, "live calls stream ends");
                    return None;
                }
            };
            let event = Event::default().event("calls").data(html);
            Some((Ok(event), (state, receiver, stop, false)))
        },
    );
    Ok(sse(stream))
}

async fn call_row(
    state: &AppState,
    organization_id: Uuid,
    id: Uuid,
) -> Result<(CallRow, crate::db::call_queries::CallDetail), DashError> {
    let call = state
        .db
        .call_detail(organization_id, id)
        .await?
        .ok_or(DashError::NotFound("call"))?;
    Ok((CallRow::new(&call.summary), call))
}

/// `GET /app/calls/{id}`: the transcript (live while the call runs), and once it ended its
/// summary, analysis and recording.
async fn call_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
) -> Result<Html<String>, DashError> {
    session.require(Scope::CallsRead)?;
    let (row, call) = call_row(&state, session.organization_id, id).await?;
    let events = state.db.call_events(id).await?;
    let last_seq = events.last().map_or(-1, |event| event.seq);
    let live = call.summary.ended_at.is_none();
    let recording = if !live && call.recording_url.is_some() {
        let expires_at = Utc::now() + LINK_TTL;
        let query = crate::api::recordings::link_key(&state).sign(id, expires_at);
        // Relative: the page's own origin, which the CSP's media-src allows.
        Some(format!("{}/recordings/{id}?{query}", crate::api::BASE_PATH))
    } else {
        None
    };
    let transfer = state.db.call_transfer(session.organization_id, id).await?;
    let campaign_name = state
        .db
        .campaign(session.organization_id, call.summary.campaign_id)
        .await?
        .map_or_else(
            || call.summary.campaign_id.to_string(),
            |campaign| campaign.fields.name,
        );
    let analysis = call
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get("analysis"))
        .and_then(|analysis| serde_json::to_string_pretty(analysis).ok());
    let page = CallPage {
        csrf: session.csrf().to_owned(),
        call: row,
        live,
        end_reason: call.summary.end_reason.clone().unwrap_or_default(),
        lines: events.iter().filter_map(views::line).collect(),
        last_seq,
        summary: call.conversation_summary,
        analysis,
        recording,
        campaign_name,
        trail: views::transfer_trail(&events, transfer.as_ref()),
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
struct AfterQuery {
    #[serde(default = "none_yet")]
    after: i32,
}

const fn none_yet() -> i32 {
    -1
}

struct CallStream {
    state: AppState,
    receiver: tokio::sync::broadcast::Receiver<Notice>,
    stop: tokio_util::sync::CancellationToken,
    call: Uuid,
    org: Uuid,
    after: i32,
    pending: VecDeque<Event>,
    first: bool,
    ended: bool,
}

impl CallStream {
    /// Queues the lines after `after`, and "ended" once the call has.
    async fn refresh(&mut self) -> Result<(), DashError> {
        let live = self
            .state
            .db
            .dashboard_call_state(self.org, self.call)
            .await?
            .ok_or(DashError::NotFound("call"))?;
        // Events are read after the call's state: a call that ended has written its lines.
        for event in self.state.db.call_events(self.call).await? {
            if event.seq <= self.after {
                continue;
            }
            self.after = event.seq;
            if let Some(line) = views::line(&event) {
                let html = LineFragment { line }.render()?;
                self.pending.push_back(
                    Event::default()
                        .event("line")
                        .id(event.seq.to_string())
                        .data(html),
                );
            }
        }
        if !live {
            self.pending
                .push_back(Event::default().event("ended").data("ended"));
            self.ended = true;
        }
        Ok(())
    }
}

/// `GET /app/calls/{id}/events?after=seq`: the transcript's next lines as they are written
/// (a reconnecting browser resumes after its `Last-Event-ID`), then "ended".
async fn call_events(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Query(query): Query<AfterQuery>,
    headers: HeaderMap,
) -> Result<Response, DashError> {
    session.require(Scope::CallsRead)?;
    state
        .db
        .dashboard_call_state(session.organization_id, id)
        .await?
        .ok_or(DashError::NotFound("call"))?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok());
    let receiver = state.dashboard.subscribe();
    let stop = state.lifecycle.background_stop_token();
    let call_stream = CallStream {
        state,
        receiver,
        stop,
        call: id,
        org: session.organization_id,
        after: resumed.unwrap_or(query.after).max(query.after),
        pending: VecDeque::new(),
        first: true,
        ended: false,
    };
    let stream = stream::unfold(call_stream, |mut this| async move {
        loop {
            if let Some(event) = this.pending.pop_front() {
                return Some((Ok(event), this));
            }
            if this.ended {
                return None;
            }
            if !this.first {
                let call = this.call;
                next_notice(
                    &mut this.receiver,
                    &this.stop,
                    |notice| matches!(notice, Notice::Call { call: c, .. } if *c == call),
                )
                .await?;
            }
            this.first = false;
            if let Err(error) = this.refresh().await {
                tracing::warn!(%error, "call transcript stream ends");
                return None;
            }
        }
    });
    Ok(sse(stream))
}

/// `POST /app/calls/{id}/hangup`: the API's hang-up, which reaches whichever gateway holds
/// the call.
async fn hangup(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    session.require(Scope::CallsWrite)?;
    let call_sid = state
        .db
        .live_call_sid(session.organization_id, id)
        .await?
        .ok_or(DashError::NotFound("live call"))?;
    state.db.notify_hangup(&call_sid).await?;
    tracing::info!(%call_sid, "hang-up requested from the dashboard");
    Ok(Redirect::to(&format!("/app/calls/{id}")).into_response())
}
