//! `/campaigns`: create (a draft), update, get with live statistics, list, and the status
//! transitions start, pause, resume and cancel.

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{
    auth::Auth,
    error::ApiError,
    input::{
        ApiJson, ApiQuery, Page, check_days, check_timezone, in_range, nullable, parse_time,
        required_text,
    },
};
use crate::{
    db::campaigns::{
        CampaignAction, CampaignFields, CampaignRow, CampaignStats, TransitionOutcome,
        UpdateOutcome,
    },
    http::AppState,
    phone::E164,
};

/// A campaign's fields as a client writes them: every field optional (a create needs `name`);
/// in an update, a field left out keeps its value and `null` clears a nullable one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    project_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "nullable")]
    ai_provider: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    agent_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    agent_instructions: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    agent_greeting: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    agent_voice: Option<Option<String>>,
    language: Option<String>,
    turn_detection: Option<String>,
    timezone: Option<String>,
    calling_window_start: Option<String>,
    calling_window_end: Option<String>,
    calling_days: Option<Vec<i16>>,
    #[serde(default, deserialize_with = "nullable")]
    starts_on: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "nullable")]
    ends_on: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "nullable")]
    caller_id: Option<Option<String>>,
    max_concurrent_calls: Option<i32>,
    calls_per_minute: Option<i32>,
    ring_timeout_seconds: Option<i32>,
    max_call_duration_seconds: Option<i32>,
    silence_timeout_seconds: Option<i32>,
    max_attempts: Option<i32>,
    retry_backoff_seconds: Option<i32>,
    settings: Option<serde_json::Value>,
}

/// A campaign with its live statistics.
#[derive(Debug, Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: CampaignRow,
    pub stats: CampaignStats,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const STATUSES: &[&str] = &[
    "draft",
    "scheduled",
    "running",
    "paused",
    "completed",
    "cancelled",
    "archived",
    "failed",
];

/// The defaults of a new campaign (the columns' own defaults, and the organization's timezone).
fn new_campaign_defaults(timezone: String) -> CampaignFields {
    CampaignFields {
        name: String::new(),
        description: None,
        project_id: None,
        ai_provider: None,
        agent_name: None,
        agent_instructions: None,
        agent_greeting: None,
        agent_voice: None,
        language: "en".to_owned(),
        turn_detection: "server_vad".to_owned(),
        timezone,
        calling_window_start: chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("a valid time"),
        calling_window_end: chrono::NaiveTime::from_hms_opt(20, 0, 0).expect("a valid time"),
        calling_days: vec![1, 2, 3, 4, 5],
        starts_on: None,
        ends_on: None,
        caller_id: None,
        max_concurrent_calls: 5,
        calls_per_minute: 60,
        ring_timeout_seconds: 30,
        max_call_duration_seconds: 600,
        silence_timeout_seconds: 20,
        max_attempts: 3,
        retry_backoff_seconds: 3600,
        settings: json!({}),
    }
}

/// A provider the campaign names must be one a call can run on here: accepted and then failing
/// every call would be a promise we do not keep.
fn check_provider(
    ai: &crate::config::AiSettings,
    requested: Option<&Option<String>>,
) -> Result<(), ApiError> {
    let Some(Some(name)) = requested else {
        return Ok(());
    };
    let configured = ai.configured();
    match crate::config::AiProviderKind::parse(name) {
        Some(provider) if configured.contains(&provider) => Ok(()),
        Some(provider) => Err(ApiError::invalid(
            "ai_provider",
            format!(
                "`{provider}` is not configured on this gateway (configured: {})",
                configured
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        None => Err(ApiError::invalid(
            "ai_provider",
            "ai_provider is local, openai or gemini",
        )),
    }
}

fn optional_text(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

impl CampaignInput {
    /// The fields after applying this input onto `base`, validated as a whole.
    pub fn apply(self, base: CampaignFields) -> Result<CampaignFields, ApiError> {
        let mut fields = base;
        if let Some(name) = self.name {
            fields.name = required_text("name", &name)?;
        }
        if fields.name.is_empty() {
            return Err(ApiError::invalid("name", "a campaign needs a name"));
        }
        if let Some(description) = self.description {
            fields.description = optional_text(description);
        }
        if let Some(project_id) = self.project_id {
            fields.project_id = project_id;
        }
        if let Some(provider) = self.ai_provider {
            if let Some(name) = &provider
                && !["local", "openai", "gemini"].contains(&name.as_str())
            {
                return Err(ApiError::invalid(
                    "ai_provider",
                    "ai_provider is local, openai or gemini",
                ));
            }
            fields.ai_provider = provider;
        }
        for (target, value) in [
            (&mut fields.agent_name, self.agent_name),
            (&mut fields.agent_instructions, self.agent_instructions),
            (&mut fields.agent_greeting, self.agent_greeting),
            (&mut fields.agent_voice, self.agent_voice),
        ] {
            if let Some(value) = value {
                *target = optional_text(value);
            }
        }
        if let Some(language) = self.language {
            fields.language = required_text("language", &language)?;
        }
        if let Some(turn_detection) = self.turn_detection {
            if !["server_vad", "semantic_vad"].contains(&turn_detection.as_str()) {
                return Err(ApiError::invalid(
                    "turn_detection",
                    "turn_detection is server_vad or semantic_vad",
                ));
            }
            fields.turn_detection = turn_detection;
        }
        if let Some(timezone) = self.timezone {
            fields.timezone = check_timezone("timezone", &timezone)?;
        }
        if let Some(start) = self.calling_window_start {
            fields.calling_window_start = parse_time("calling_window_start", &start)?;
        }
        if let Some(end) = self.calling_window_end {
            fields.calling_window_end = parse_time("calling_window_end", &end)?;
        }
        if fields.calling_window_start >= fields.calling_window_end {
            return Err(ApiError::invalid(
                "calling_window_end",
                "the calling window ends after it starts (same day)",
            ));
        }
        if let Some(days) = self.calling_days {
            fields.calling_days = check_days("calling_days", &days)?;
        }
        if let Some(starts_on) = self.starts_on {
            fields.starts_on = starts_on;
        }
        if let Some(ends_on) = self.ends_on {
            fields.ends_on = ends_on;
        }
        if let (Some(starts_on), Some(ends_on)) = (fields.starts_on, fields.ends_on)
            && starts_on > ends_on
        {
            return Err(ApiError::invalid(
                "ends_on",
                "ends_on is not before starts_on",
            ));
        }
        if let Some(caller_id) = self.caller_id {
            fields.caller_id = match caller_id {
                None => None,
                Some(number) => Some(
                    E164::parse_strict(number.trim())
                        .map_err(|error| ApiError::invalid("caller_id", error.to_string()))?
                        .into_string(),
                ),
            };
        }
        let limits = [
            (
                "max_concurrent_calls",
                self.max_concurrent_calls,
                &mut fields.max_concurrent_calls,
                1,
                10_000,
            ),
            (
                "calls_per_minute",
                self.calls_per_minute,
                &mut fields.calls_per_minute,
                1,
                10_000,
            ),
            (
                "ring_timeout_seconds",
                self.ring_timeout_seconds,
                &mut fields.ring_timeout_seconds,
                5,
                120,
            ),
            (
                "max_call_duration_seconds",
                self.max_call_duration_seconds,
                &mut fields.max_call_duration_seconds,
                30,
                14_400,
            ),
            (
                "silence_timeout_seconds",
                self.silence_timeout_seconds,
                &mut fields.silence_timeout_seconds,
                3,
                600,
            ),
            (
                "max_attempts",
                self.max_attempts,
                &mut fields.max_attempts,
                1,
                20,
            ),
            (
                "retry_backoff_seconds",
                self.retry_backoff_seconds,
                &mut fields.retry_backoff_seconds,
                60,
                30 * 86_400,
            ),
        ];
        for (field, value, target, low, high) in limits {
            if let Some(value) = value {
                *target = in_range(field, value, low, high)?;
            }
        }
        if let Some(settings) = self.settings {
            if !settings.is_object() {
                return Err(ApiError::invalid("settings", "settings is a JSON object"));
            }
            fields.settings = settings;
        }
        Ok(fields)
    }
}

/// Checks what only the database can tell: the project and the caller ID are the
/// organization's.
async fn check_ownership(
    state: &AppState,
    organization_id: Uuid,
    fields: &CampaignFields,
) -> Result<(), ApiError> {
    if let Some(project_id) = fields.project_id
        && !state
            .db
            .project_in_organization(organization_id, project_id)
            .await?
    {
        return Err(ApiError::invalid(
            "project_id",
            "no such project in this organization",
        ));
    }
    if let Some(caller_id) = &fields.caller_id
        && !state.db.caller_id_owned(organization_id, caller_id).await?
    {
        return Err(ApiError::invalid(
            "caller_id",
            "the caller ID is neither the organization's default nor one of its numbers",
        ));
    }
    Ok(())
}

async fn view(state: &AppState, organization_id: Uuid, id: Uuid) -> Result<CampaignView, ApiError> {
    let campaign = state
        .db
        .campaign(organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let stats = state
        .db
        .campaign_stats(organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok(CampaignView { campaign, stats })
}

/// `POST /campaigns`: a new draft campaign.
pub async fn create(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiJson(input): ApiJson<CampaignInput>,
) -> Result<impl IntoResponse, ApiError> {
    let organization = state
        .db
        .organization_defaults(auth.organization_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    check_provider(&state.settings.ai, input.ai_provider.as_ref())?;
    let fields = input.apply(new_campaign_defaults(organization.timezone))?;
    check_ownership(&state, auth.organization_id, &fields).await?;
    let id = state
        .db
        .create_campaign(auth.organization_id, &fields)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, auth.organization_id, id).await?),
    ))
}

/// `PATCH /campaigns/{id}`: changes the given fields; refused once the campaign is finished.
pub async fn update(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
    ApiJson(input): ApiJson<CampaignInput>,
) -> Result<Json<CampaignView>, ApiError> {
    let current = state
        .db
        .campaign(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    check_provider(&state.settings.ai, input.ai_provider.as_ref())?;
    let fields = input.apply(current.fields.clone())?;
    check_ownership(&state, auth.organization_id, &fields).await?;
    match state
        .db
        .update_campaign(auth.organization_id, id, current.updated_at, &fields)
        .await?
    {
        UpdateOutcome::Applied => {}
        UpdateOutcome::NotFound => return Err(ApiError::not_found("campaign")),
        UpdateOutcome::Finished { status } => {
            return Err(ApiError::conflict(
                "campaign_finished",
                format!("a {status} campaign cannot be changed"),
            ));
        }
        UpdateOutcome::Concurrent => {
            return Err(ApiError::conflict(
                "concurrent_update",
                "the campaign changed while this update was applied; read it and retry",
            ));
        }
    }
    Ok(Json(view(&state, auth.organization_id, id).await?))
}

/// `GET /campaigns/{id}`: the campaign and its live statistics.
pub async fn get(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(view(&state, auth.organization_id, id).await?))
}

/// `GET /campaigns`: newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(status) = &query.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            format!("status is one of {}", STATUSES.join(", ")),
        ));
    }
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let (limit, offset) = (page.limit()?, page.offset()?);
    let campaigns = state
        .db
        .list_campaigns(auth.organization_id, query.status.as_deref(), limit, offset)
        .await?;
    Ok(Json(
        json!({"campaigns": campaigns, "limit": limit, "offset": offset}),
    ))
}

async fn transition(
    state: AppState,
    auth: Auth,
    id: Uuid,
    action: CampaignAction,
) -> Result<Json<CampaignView>, ApiError> {
    match state
        .db
        .transition_campaign(auth.organization_id, id, action)
        .await?
    {
        TransitionOutcome::Applied => Ok(Json(view(&state, auth.organization_id, id).await?)),
        TransitionOutcome::NotFound => Err(ApiError::not_found("campaign")),
        TransitionOutcome::Illegal { status } => Err(ApiError::conflict(
            "illegal_transition",
            format!(
                "cannot {} a {status} campaign (allowed from: {})",
                action.as_str(),
                action.allowed_from().join(", ")
            ),
        )
        .with_details(json!({"status": status, "action": action.as_str()}))),
    }
}

/// `POST /campaigns/{id}/start`: draft or scheduled → running.
pub async fn start(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<CampaignView>, ApiError> {
    transition(state, auth, id, CampaignAction::Start).await
}

/// `POST /campaigns/{id}/pause`: running → paused.
pub async fn pause(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<CampaignView>, ApiError> {
    transition(state, auth, id, CampaignAction::Pause).await
}

/// `POST /campaigns/{id}/resume`: paused → running.
pub async fn resume(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<CampaignView>, ApiError> {
    transition(state, auth, id, CampaignAction::Resume).await
}

/// `POST /campaigns/{id}/cancel`: any unfinished status → cancelled; scheduled attempts are
/// cancelled with it.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(auth): Extension<Auth>,
    Path(id): Path<Uuid>,
) -> Result<Json<CampaignView>, ApiError> {
    transition(state, auth, id, CampaignAction::Cancel).await
}
