//! The campaign API under `/api/v1`: JSON over HTTP for campaign managers and dashboards.
//!
//! One route table ([`table`]) is the truth: it builds the router (each route wrapped in the
//! bearer check for its scope) and the OpenAPI document (`GET /api/v1/openapi.json`), so the
//! two cannot disagree on which paths, methods and scopes exist. Handlers are thin: parse,
//! call `db`, map the outcome. Every query is scoped to the token's organization; another
//! organization's object is a 404, like a missing one.
//!
//! Errors are `{"error": {"code", "message", "field"?, "details"?}}` ([`error::ApiError`]).

pub mod auth;
mod callbacks;
mod calls;
mod campaigns;
pub(crate) mod csv_upload;
pub(crate) mod do_not_call;
pub mod error;
pub mod hangup;
mod input;
pub(crate) mod leads;
pub mod openapi;
mod organization;
pub(crate) mod recordings;
pub mod tokens;

use axum::{
    Router,
    extract::Request,
    http::{Method, StatusCode},
    middleware::{Next, from_fn},
    routing::{MethodFilter, MethodRouter, on},
};

use crate::http::AppState;
use error::ApiError;
use tokens::Scope;

pub use hangup::spawn_hangup_listener;

/// Where the API is mounted.
pub const BASE_PATH: &str = "/api/v1";

/// What the OpenAPI document says about one route.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// Relative to [`BASE_PATH`], with `{name}` path parameters.
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// `None`: no token needed.
    pub scope: Option<Scope>,
    /// Query parameters: name, JSON type, description.
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// The request body: a schema name, or `"csv"`.
    pub body: Option<&'static str>,
    /// The success status and its schema name (`None`: no body).
    pub success: (u16, Option<&'static str>),
}

const PAGE: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 500 (50)"),
    ("offset", "integer", "rows to skip (0)"),
];
const CAMPAIGN_LIST: &[(&str, &str, &str)] = &[
    ("status", "string", "only campaigns in this status"),
    ("limit", "integer", "page size, 1 to 500 (50)"),
    ("offset", "integer", "rows to skip (0)"),
];
const COUNTRY: &[(&str, &str, &str)] = &[(
    "default_country_code",
    "string",
    "calling code for numbers written without + or 00 (else the organization's settings.default_country_code)",
)];
const IMPORT: &[(&str, &str, &str)] = &[
    (
        "default_country_code",
        "string",
        "calling code for numbers written without + or 00 (else the organization's settings.default_country_code)",
    ),
    (
        "skip_invalid",
        "boolean",
        "import the valid rows and report the bad ones (default: refuse the file if any row is bad)",
    ),
];
const DO_NOT_CALL_LIST: &[(&str, &str, &str)] = &[
    (
        "phone",
        "string",
        "only this number (normalised like the others; exact)",
    ),
    (
        "default_country_code",
        "string",
        "calling code for a phone filter written without + or 00",
    ),
    ("limit", "integer", "page size, 1 to 500 (50)"),
    ("offset", "integer", "rows to skip (0)"),
];
const SIGNED_LINK: &[(&str, &str, &str)] = &[
    ("exp", "integer", "when the link expires (Unix seconds)"),
    ("sig", "string", "the link's signature"),
];
const CALL_FILTERS: &[(&str, &str, &str)] = &[
    ("campaign_id", "string", "only this campaign's calls (uuid)"),
    (
        "status",
        "string",
        "call_status: called, transferred, no_answer, voicemail",
    ),
    ("end_reason", "string", "why the call ended"),
    ("from", "string", "started at or after (RFC 3339)"),
    ("to", "string", "started before (RFC 3339)"),
    ("live", "boolean", "only live (true) or ended (false) calls"),
    ("limit", "integer", "page size, 1 to 500 (50)"),
    ("offset", "integer", "rows to skip (0)"),
];

struct Entry {
    operation: Operation,
    handler: MethodRouter<AppState>,
}

#[allow(clippy::too_many_arguments)] // A table row: positional reads best here.
fn entry<H, T>(
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    scope: Option<Scope>,
    query: &'static [(&'static str, &'static str, &'static str)],
    body: Option<&'static str>,
    success: (u16, Option<&'static str>),
    handler: H,
) -> Entry
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Entry {
        operation: Operation {
            method,
            path,
            id,
            summary,
            tag,
            scope,
            query,
            body,
            success,
        },
        handler: on(filter, handler),
    }
}

/// Every route of the API.
fn table() -> Vec<Entry> {
    use Method as M;
    use Scope as S;
    const NONE: &[(&str, &str, &str)] = &[];
    vec![
        entry(
            M::GET,
            "/openapi.json",
            "openapi",
            "This document",
            "meta",
            None,
            NONE,
            None,
            (200, None),
            openapi::serve,
        ),
        // Campaigns.
        entry(
            M::GET,
            "/campaigns",
            "listCampaigns",
            "List campaigns, newest first",
            "campaigns",
            Some(S::CampaignsRead),
            CAMPAIGN_LIST,
            None,
            (200, Some("CampaignList")),
            campaigns::list,
        ),
        entry(
            M::POST,
            "/campaigns",
            "createCampaign",
            "Create a draft campaign",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            Some("CampaignInput"),
            (201, Some("Campaign")),
            campaigns::create,
        ),
        entry(
            M::GET,
            "/campaigns/{campaign_id}",
            "getCampaign",
            "A campaign with live statistics",
            "campaigns",
            Some(S::CampaignsRead),
            NONE,
            None,
            (200, Some("Campaign")),
            campaigns::get,
        ),
        entry(
            M::PATCH,
            "/campaigns/{campaign_id}",
            "updateCampaign",
            "Change a campaign's fields (null clears a nullable one)",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            Some("CampaignInput"),
            (200, Some("Campaign")),
            campaigns::update,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/start",
            "startCampaign",
            "draft or scheduled → running",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            None,
            (200, Some("Campaign")),
            campaigns::start,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/pause",
            "pauseCampaign",
            "running → paused",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            None,
            (200, Some("Campaign")),
            campaigns::pause,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/resume",
            "resumeCampaign",
            "paused → running",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            None,
            (200, Some("Campaign")),
            campaigns::resume,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/cancel",
            "cancelCampaign",
            "Cancel; scheduled attempts are cancelled with it",
            "campaigns",
            Some(S::CampaignsWrite),
            NONE,
            None,
            (200, Some("Campaign")),
            campaigns::cancel,
        ),
        // Callbacks.
        entry(
            M::GET,
            "/campaigns/{campaign_id}/callbacks",
            "listCallbacks",
            "Callbacks leads asked for that are still waiting, soonest first",
            "callbacks",
            Some(S::CampaignsRead),
            PAGE,
            None,
            (200, Some("CallbackList")),
            callbacks::list,
        ),
        entry(
            M::PATCH,
            "/campaigns/{campaign_id}/callbacks/{callback_id}",
            "rescheduleCallback",
            "Move a waiting callback (the dialer still keeps to the calling window)",
            "callbacks",
            Some(S::CampaignsWrite),
            NONE,
            Some("CallbackReschedule"),
            (200, Some("Callback")),
            callbacks::reschedule,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/callbacks/{callback_id}/cancel",
            "cancelCallback",
            "Cancel a waiting callback",
            "callbacks",
            Some(S::CampaignsWrite),
            NONE,
            None,
            (200, Some("Callback")),
            callbacks::cancel,
        ),
        // Leads.
        entry(
            M::GET,
            "/campaigns/{campaign_id}/leads",
            "listCampaignLeads",
            "The leads enrolled in a campaign",
            "leads",
            Some(S::LeadsRead),
            PAGE,
            None,
            (200, Some("LeadList")),
            leads::list,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/leads",
            "createLead",
            "Create a lead and enroll it in the campaign",
            "leads",
            Some(S::LeadsWrite),
            COUNTRY,
            Some("LeadInput"),
            (201, Some("Lead")),
            leads::create,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/leads/import",
            "importLeads",
            "Import a CSV file of leads (streamed; one transaction)",
            "leads",
            Some(S::LeadsWrite),
            IMPORT,
            Some("csv"),
            (200, Some("ImportReport")),
            leads::import,
        ),
        entry(
            M::POST,
            "/campaigns/{campaign_id}/leads/{lead_id}/test-call",
            "testCall",
            "Place one test call to one lead",
            "calls",
            Some(S::CallsWrite),
            NONE,
            None,
            (202, Some("TestCall")),
            leads::test_call,
        ),
        entry(
            M::GET,
            "/leads/{lead_id}",
            "getLead",
            "A lead and its dial attempts",
            "leads",
            Some(S::LeadsRead),
            NONE,
            None,
            (200, Some("Lead")),
            leads::get,
        ),
        // The do-not-call list.
        entry(
            M::GET,
            "/do-not-call",
            "listDoNotCall",
            "The organization's do-not-call list, newest first",
            "do-not-call",
            Some(S::LeadsRead),
            DO_NOT_CALL_LIST,
            None,
            (200, Some("DoNotCallList")),
            do_not_call::list,
        ),
        entry(
            M::POST,
            "/do-not-call",
            "addDoNotCall",
            "Add a number (201; 200 when listed already, the first entry kept); its scheduled attempts in every campaign are cancelled",
            "do-not-call",
            Some(S::LeadsWrite),
            COUNTRY,
            Some("DoNotCallInput"),
            (201, Some("DoNotCallAdded")),
            do_not_call::add,
        ),
        entry(
            M::POST,
            "/do-not-call/import",
            "importDoNotCall",
            "Import a CSV file of numbers (phone, reason; streamed; one transaction)",
            "do-not-call",
            Some(S::LeadsWrite),
            IMPORT,
            Some("csv"),
            (200, Some("DoNotCallImportReport")),
            do_not_call::import,
        ),
        entry(
            M::GET,
            "/do-not-call/audit",
            "doNotCallAudit",
            "Every change of the list (who, what, when, before, after), newest first",
            "do-not-call",
            Some(S::LeadsRead),
            PAGE,
            None,
            (200, Some("DoNotCallAuditList")),
            do_not_call::audit,
        ),
        entry(
            M::DELETE,
            "/do-not-call/{phone}",
            "removeDoNotCall",
            "Remove a number (URL-encoded E.164, %2B for +)",
            "do-not-call",
            Some(S::LeadsWrite),
            COUNTRY,
            None,
            (204, None),
            do_not_call::remove,
        ),
        // Calls.
        entry(
            M::GET,
            "/calls",
            "listCalls",
            "Calls, newest first, filtered",
            "calls",
            Some(S::CallsRead),
            CALL_FILTERS,
            None,
            (200, Some("CallList")),
            calls::list,
        ),
        entry(
            M::GET,
            "/calls/live",
            "liveCalls",
            "Calls not ended yet, on any gateway",
            "calls",
            Some(S::CallsRead),
            PAGE,
            None,
            (200, Some("CallList")),
            calls::live,
        ),
        entry(
            M::GET,
            "/calls/{call_id}",
            "getCall",
            "A call with its transcript, summary and events",
            "calls",
            Some(S::CallsRead),
            NONE,
            None,
            (200, Some("CallDetail")),
            calls::get,
        ),
        entry(
            M::POST,
            "/calls/{call_id}/hangup",
            "hangUpCall",
            "Hang up a live call, whichever gateway holds it",
            "calls",
            Some(S::CallsWrite),
            NONE,
            None,
            (202, Some("HangupAccepted")),
            calls::hangup,
        ),
        entry(
            M::GET,
            "/calls/{call_id}/recording",
            "getCallRecording",
            "The call's recording (Ogg/Opus, left the caller, right the agent); Range requests",
            "calls",
            Some(S::CallsRead),
            NONE,
            None,
            (200, Some("audio/ogg")),
            recordings::get,
        ),
        entry(
            M::GET,
            "/calls/{call_id}/recording/link",
            "getCallRecordingLink",
            "A signed link to the recording that plays without a token for 15 minutes",
            "calls",
            Some(S::CallsRead),
            NONE,
            None,
            (200, Some("RecordingLink")),
            recordings::link,
        ),
        entry(
            M::GET,
            "/recordings/{call_id}",
            "playRecording",
            "A recording through its signed link (expired, forged or unsigned: 403)",
            "calls",
            None,
            SIGNED_LINK,
            None,
            (200, Some("audio/ogg")),
            recordings::signed,
        ),
        // The organization.
        entry(
            M::GET,
            "/organization/transfer-targets",
            "listTransferTargets",
            "Transfer targets",
            "organization",
            Some(S::SettingsRead),
            NONE,
            None,
            (200, Some("TransferTargetList")),
            organization::list_targets,
        ),
        entry(
            M::POST,
            "/organization/transfer-targets",
            "createTransferTarget",
            "Add a transfer target",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            Some("TransferTargetInput"),
            (201, Some("TransferTarget")),
            organization::create_target,
        ),
        entry(
            M::GET,
            "/organization/transfer-targets/{target_id}",
            "getTransferTarget",
            "A transfer target",
            "organization",
            Some(S::SettingsRead),
            NONE,
            None,
            (200, Some("TransferTarget")),
            organization::get_target,
        ),
        entry(
            M::PATCH,
            "/organization/transfer-targets/{target_id}",
            "updateTransferTarget",
            "Change a transfer target",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            Some("TransferTargetInput"),
            (200, Some("TransferTarget")),
            organization::update_target,
        ),
        entry(
            M::DELETE,
            "/organization/transfer-targets/{target_id}",
            "deleteTransferTarget",
            "Remove a transfer target",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            None,
            (204, None),
            organization::delete_target,
        ),
        entry(
            M::GET,
            "/organization/caller-ids",
            "callerIds",
            "The default caller ID and the organization's numbers",
            "organization",
            Some(S::SettingsRead),
            NONE,
            None,
            (200, Some("CallerIds")),
            organization::caller_ids,
        ),
        entry(
            M::POST,
            "/organization/caller-ids",
            "addCallerId",
            "Add a number the organization owns",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            Some("PhoneNumberInput"),
            (201, Some("PhoneNumber")),
            organization::add_caller_id,
        ),
        entry(
            M::PUT,
            "/organization/caller-ids/default",
            "setDefaultCallerId",
            "Set (or clear with null) the default caller ID",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            Some("DefaultCallerIdInput"),
            (200, Some("CallerIds")),
            organization::set_default_caller_id,
        ),
        entry(
            M::DELETE,
            "/organization/caller-ids/{number_id}",
            "deleteCallerId",
            "Remove a number",
            "organization",
            Some(S::SettingsWrite),
            NONE,
            None,
            (204, None),
            organization::delete_caller_id,
        ),
    ]
}

/// The route table without its handlers (for the OpenAPI document).
pub fn operations() -> Vec<Operation> {
    table().into_iter().map(|entry| entry.operation).collect()
}

/// The API's routes, to nest under [`BASE_PATH`].
pub fn router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for Entry { operation, handler } in table() {
        let handler = match operation.scope {
            // route_layer: a wrong method stays 405 rather than turning into 401.
            Some(scope) => {
                let db = state.db.clone();
                handler.route_layer(from_fn(move |request: Request, next: Next| {
                    auth::authenticate(db.clone(), scope, request, next)
                }))
            }
            None => handler,
        };
        router = router.route(operation.path, handler);
    }
    router.fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such API route")
}
