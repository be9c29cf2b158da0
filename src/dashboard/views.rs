//! The dashboard's pages as data: askama templates and the pure functions that turn database
//! rows into what a page shows (labels, marks, the actions a campaign allows, paging). No I/O
//! here, so every choice a page makes is testable without a server.

use askama::Template;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    api::{leads::ImportReport, tokens::Scope},
    db::{
        call_queries::{CallEventRow, CallSummary},
        campaigns::{CampaignAction, CampaignRow},
        dashboard::{CallTransfer, CampaignFigures, CampaignLead, CampaignTarget, LeadsFrom},
        suppression::SuppressionRow,
        tokens::TokenSummary,
    },
};

/// Rows a page of leads shows.
pub const LEADS_PAGE: i64 = 50;

/// The lead statuses a campaign page filters by (`leads.call_status`).
pub const LEAD_STATUSES: &[&str] = &[
    "not_called",
    "called",
    "transferred",
    "no_answer",
    "voicemail",
];

/// A campaign as the campaigns page and the campaign page show it.
pub struct CampaignCard {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub calls: i32,
    pub transferred: i32,
    pub conversion: String,
    pub live_calls: i64,
    pub attempts_pending: i64,
    pub callbacks_pending: i64,
    pub leads: i64,
    /// What the buttons offer: the actions allowed from the campaign's status.
    pub actions: Vec<&'static str>,
}

impl CampaignCard {
    pub fn new(campaign: &CampaignRow, figures: &CampaignFigures) -> Self {
        Self {
            id: campaign.id,
            name: campaign.fields.name.clone(),
            status: campaign.status.clone(),
            calls: figures.total_calls,
            transferred: figures.transferred_calls,
            conversion: format!("{:.1} %", figures.conversion_rate),
            live_calls: figures.live_calls,
            attempts_pending: figures.attempts_pending,
            callbacks_pending: figures.callbacks_pending,
            leads: figures.leads,
            actions: actions_from(&campaign.status),
        }
    }
}

const ACTIONS: [CampaignAction; 4] = [
    CampaignAction::Start,
    CampaignAction::Pause,
    CampaignAction::Resume,
    CampaignAction::Cancel,
];

/// The transitions a campaign in `status` allows, in button order.
pub fn actions_from(status: &str) -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|action| action.allowed_from().contains(&status))
        .map(|action| action.as_str())
        .collect()
}

/// The action a form names, if it is one.
pub fn parse_action(text: &str) -> Option<CampaignAction> {
    ACTIONS.into_iter().find(|action| action.as_str() == text)
}

/// A call in a list.
pub struct CallRow {
    pub id: Uuid,
    pub call_sid: String,
    pub campaign_id: Uuid,
    pub status: String,
    pub started: String,
    pub gateway: String,
}

impl CallRow {
    pub fn new(call: &CallSummary) -> Self {
        Self {
            id: call.id,
            call_sid: call.call_sid.clone().unwrap_or_default(),
            campaign_id: call.campaign_id,
            status: call.call_status.clone(),
            started: time(call.call_timestamp),
            gateway: call.server_name.clone().unwrap_or_default(),
        }
    }
}

/// One line of a call's transcript.
pub struct Line {
    pub seq: i32,
    pub at: String,
    pub who: String,
    pub text: String,
    /// A CSS class marking barge-ins and transfer decisions (empty: an ordinary line).
    pub mark: &'static str,
}

/// The transcript line of an event; tool traffic is not part of what was said.
pub fn line(event: &CallEventRow) -> Option<Line> {
    let text = event.text.clone().unwrap_or_default();
    let field = |name: &str| {
        event
            .data
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (who, text, mark) = match event.kind.as_str() {
        "caller_speech" => ("Caller".to_owned(), text, ""),
        "agent_speech" => ("Agent".to_owned(), text, ""),
        "barge_in" => (
            "Barge-in".to_owned(),
            "the caller spoke over the agent".to_owned(),
            "barge-in",
        ),
        "transfer_decision" => (
            format!("Transfer decision: {}", field("decision").replace('_', " ")),
            text,
            "transfer",
        ),
        "transfer_attempt" | "transfer_outcome" => (event.kind.replace('_', " "), text, "transfer"),
        "dtmf" | "callback_scheduled" | "outcome" | "note" => {
            (event.kind.replace('_', " "), text, "note")
        }
        _ => return None,
    };
    Some(Line {
        seq: event.seq,
        at: event.occurred_at.format("%H:%M:%S").to_string(),
        who,
        text,
        mark,
    })
}

/// One step of a call's transfer: decided, a target dialled and its outcome, connected,
/// the fallback.
#[derive(Debug, PartialEq, Eq)]
pub struct TrailStep {
    pub at: String,
    pub what: String,
    pub detail: String,
}

/// The name and number of `targets[index]` (a transfer's targets, in the order tried).
fn target_label(targets: &serde_json::Value, index: i64) -> String {
    let target = usize::try_from(index)
        .ok()
        .and_then(|index| targets.get(index));
    let field = |name: &str| {
        target
            .and_then(|target| target.get(name))
            .and_then(|value| value.as_str())
            .unwrap_or_default()
    };
    match (field("name"), field("phone_number")) {
        ("", "") => format!("target {}", index + 1),
        (name, "") => name.to_owned(),
        ("", number) => number.to_owned(),
        (name, number) => format!("{name} ({number})"),
    }
}

/// A call's transfer trail in time order, from its events (the decision, each dial's outcome,
/// a callback after nobody took it) and its transfer's row (connected, or the fallback once the
/// list was exhausted). Empty when the call had no transfer.
pub fn transfer_trail(events: &[CallEventRow], transfer: Option<&CallTransfer>) -> Vec<TrailStep> {
    let no_targets = serde_json::Value::Array(Vec::new());
    let targets = transfer.map_or(&no_targets, |transfer| &transfer.targets);
    let text = |event: &CallEventRow| event.text.clone().unwrap_or_default();
    let field = |event: &CallEventRow, name: &str| {
        event
            .data
            .get(name)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .replace('_', " ")
    };
    let mut steps: Vec<(DateTime<Utc>, i32, TrailStep)> = Vec::new();
    for event in events {
        let step = match event.kind.as_str() {
            "transfer_decision" => {
                let department = field(event, "department");
                TrailStep {
                    at: String::new(),
                    what: format!("Decided: {}", field(event, "decision")),
                    detail: match department.as_str() {
                        "" => text(event),
                        department => format!("{} (to {department})", text(event)),
                    },
                }
            }
            "transfer_attempt" => {
                let attempt = event
                    .data
                    .get("attempt")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0);
                let accepted = event
                    .data
                    .get("accepted")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let status = field(event, "dial_status");
                TrailStep {
                    at: String::new(),
                    what: format!("Dialled {}", target_label(targets, attempt)),
                    detail: if accepted {
                        "accepted".to_owned()
                    } else {
                        match field(event, "hangup_cause").as_str() {
                            "" => status,
                            cause => format!("{status} ({cause})"),
                        }
                    },
                }
            }
            "transfer_outcome" => TrailStep {
                at: String::new(),
                what: "Outcome".to_owned(),
                detail: text(event),
            },
            "callback_scheduled" if field(event, "reason") == "transfer exhausted" => TrailStep {
                at: String::new(),
                what: "Fallback: a callback".to_owned(),
                detail: text(event),
            },
            _ => continue,
        };
        steps.push((event.occurred_at, event.seq, step));
    }
    if let Some(transfer) = transfer {
        if !events.iter().any(|event| event.kind == "transfer_decision") {
            steps.push((
                transfer.created_at,
                -1,
                TrailStep {
                    at: String::new(),
                    what: "Decided: transfer".to_owned(),
                    detail: format!("{} (to {})", transfer.reason, transfer.department),
                },
            ));
        }
        let current = target_label(targets, i64::from(transfer.attempt));
        let last = match transfer.status.as_str() {
            "connected" => Some((
                transfer.connected_at.unwrap_or(transfer.updated_at),
                "Connected".to_owned(),
                current,
            )),
            "exhausted" | "callback" => Some((
                transfer.updated_at,
                "Nobody accepted".to_owned(),
                match transfer.fallback.as_str() {
                    "back_to_ai" => "fallback: back to the AI agent, which offers a callback",
                    _ => "fallback: a callback, and the call ended",
                }
                .to_owned(),
            )),
            "pending" | "dialing" => Some((
                transfer.updated_at,
                "In progress".to_owned(),
                format!("dialling {current}"),
            )),
            _ => None,
        };
        if let Some((at, what, detail)) = last {
            steps.push((
                at,
                i32::MAX,
                TrailStep {
                    at: String::new(),
                    what,
                    detail,
                },
            ));
        }
    }
    steps.sort_by_key(|(at, seq, _)| (*at, *seq));
    steps
        .into_iter()
        .map(|(at, _, step)| TrailStep {
            at: at.format("%H:%M:%S").to_string(),
            ..step
        })
        .collect()
}

/// Paging of a list that fetched one row more than it shows.
#[derive(Debug, PartialEq, Eq)]
pub struct Pager {
    pub page: i64,
    pub previous: Option<i64>,
    pub next: Option<i64>,
}

impl Pager {
    /// `fetched` rows came back for page `page` (0-based) when asking for `page_size + 1`.
    pub fn new(page: i64, page_size: i64, fetched: usize) -> Self {
        Self {
            page,
            previous: (page > 0).then(|| page - 1),
            next: (i64::try_from(fetched).unwrap_or(i64::MAX) > page_size).then_some(page + 1),
        }
    }
}

/// A lead's place in a campaign's list, `created_at` in microseconds and the id, as the
/// paging links carry it (`1733580000123456.0b5e…`).
pub fn lead_cursor(created_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{id}", created_at.timestamp_micros())
}

/// The place a paging link carried; `None` for anything else.
pub fn parse_lead_cursor(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = text.split_once('.')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// Keyset paging of a campaign's leads: the links' query strings to the neighbouring pages
/// (`after=`/`before=` a lead, and the page's number for display).
#[derive(Debug, PartialEq, Eq)]
pub struct LeadsPager {
    /// 0-based, for display only: the cursor decides what is shown.
    pub page: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl LeadsPager {
    /// The page `shown` (already cut to the page size) read from `from`, which found `more`
    /// rows beyond it in the direction it read.
    pub fn new(page: i64, from: LeadsFrom, more: bool, shown: &[CampaignLead]) -> Self {
        let (has_previous, has_next) = match from {
            LeadsFrom::Start => (false, more),
            LeadsFrom::After(..) => (true, more),
            LeadsFrom::Before(..) => (more, true),
        };
        // Backwards to the start is the first page, whatever number the link said.
        let page = if has_previous { page.max(1) } else { 0 };
        let link = |direction: &str, lead: &CampaignLead, number: i64| {
            format!(
                "{direction}={}&page={number}",
                lead_cursor(lead.created_at, lead.id)
            )
        };
        Self {
            page,
            previous: shown
                .first()
                .filter(|_| has_previous)
                .map(|lead| link("before", lead, page - 1)),
            next: shown
                .last()
                .filter(|_| has_next)
                .map(|lead| link("after", lead, page + 1)),
        }
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A transfer target on a campaign's page.
pub struct TargetView {
    pub name: String,
    pub department: String,
    pub phone_number: String,
    pub priority: i32,
    pub active: bool,
    /// When it takes transfers, in words.
    pub hours: String,
}

impl TargetView {
    pub fn new(target: &CampaignTarget) -> Self {
        Self {
            name: target.name.clone(),
            department: target.department.clone(),
            phone_number: target.phone_number.clone(),
            priority: target.priority,
            active: target.is_active,
            hours: working_hours(target),
        }
    }
}

/// A target's working days and hours in its timezone, e.g. "Mon Tue 09:00–17:00 Europe/Lisbon".
fn working_hours(target: &CampaignTarget) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut days: Vec<i16> = target.working_days.clone();
    days.sort_unstable();
    let days = if days.len() == 7 {
        "every day".to_owned()
    } else {
        days.iter()
            .filter_map(|day| DAYS.get(usize::try_from(*day - 1).ok()?))
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let hours = match (target.working_hours_start, target.working_hours_end) {
        (Some(start), Some(end)) => {
            format!("{}–{}", start.format("%H:%M"), end.format("%H:%M"))
        }
        _ => "all day".to_owned(),
    };
    format!("{days}, {hours} ({})", target.timezone)
}

/// The title of an error page for a refusal's status.
pub fn status_title(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        403 => "Not allowed",
        404 => "Not found",
        408 => "Too slow",
        409 => "Not possible now",
        413 => "Too large",
        422 => "Not accepted",
        429 => "Busy",
        _ => "Refused",
    }
}

/// An entry of the do-not-call list.
pub struct SuppressionView {
    pub phone_number: String,
    pub reason: String,
    /// Where it came from, in words.
    pub source: &'static str,
    pub created: String,
}

impl SuppressionView {
    pub fn new(row: &SuppressionRow) -> Self {
        Self {
            phone_number: row.phone_number.clone(),
            reason: row.reason.clone().unwrap_or_default(),
            source: match row.source.as_str() {
                "caller_request" => "the caller asked, on a call",
                "api" => "added by hand",
                "import" => "imported",
                "complaint" => "a complaint",
                _ => "other",
            },
            created: time(row.created_at),
        }
    }
}

/// A token as the tokens page lists it: never its secret or its hash.
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    /// The secret's first characters, so a human can tell tokens apart.
    pub prefix: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    pub revoked: String,
    /// `live`, `expired` or `revoked`.
    pub state: &'static str,
    /// The token this session signed in with.
    pub own: bool,
}

impl TokenView {
    pub fn new(token: &TokenSummary, own_id: Uuid, now: DateTime<Utc>) -> Self {
        let state = match (token.revoked_at, token.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(expires_at)) if expires_at <= now => "expired",
            _ => "live",
        };
        Self {
            id: token.id,
            name: token.name.clone(),
            prefix: token.prefix.clone(),
            scopes: token.scopes.join(", "),
            created: time(token.created_at),
            last_used: token.last_used_at.map_or("never".to_owned(), time),
            expires: token.expires_at.map_or("never".to_owned(), time),
            revoked: token.revoked_at.map(time).unwrap_or_default(),
            state,
            own: token.id == own_id,
        }
    }
}

/// A scope's checkbox on the form that creates a token.
pub struct ScopeOption {
    pub name: &'static str,
    /// Whether the session's own token holds it (a token made here may carry no other).
    pub allowed: bool,
    pub checked: bool,
}

/// Every scope, in the API's order, each allowed when `held` has it and checked when
/// `checked` names it.
pub fn scope_options(held: &[String], checked: &[String]) -> Vec<ScopeOption> {
    Scope::ALL
        .iter()
        .map(|scope| ScopeOption {
            name: scope.as_str(),
            allowed: held.iter().any(|name| name == scope.as_str()),
            checked: checked.iter().any(|name| name == scope.as_str()),
        })
        .collect()
}

/// A token just created, shown on the answer to the form and nowhere else.
pub struct CreatedToken {
    pub name: String,
    pub secret: String,
    pub scopes: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
pub struct LoginPage {
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/campaigns.html")]
pub struct CampaignsPage {
    pub csrf: String,
    pub campaigns: Vec<CampaignCard>,
}

#[derive(Template)]
#[template(path = "dashboard/campaign.html")]
pub struct CampaignPage {
    pub csrf: String,
    pub campaign: CampaignCard,
    /// `None`: the token may not read leads.
    pub leads: Option<Vec<CampaignLead>>,
    pub status: String,
    pub statuses: &'static [&'static str],
    pub pager: LeadsPager,
    /// The transfer targets it uses; `None`: the token may not read them (`settings:read`).
    pub targets: Option<Vec<TargetView>>,
    /// Whether they are the campaign's own choice (else all the organization's).
    pub targets_named: bool,
    /// Whether the session may upload leads (`leads:write`).
    pub can_import: bool,
}

/// What a CSV upload did: its report, or why the file was refused whole.
#[derive(Template)]
#[template(path = "dashboard/import.html")]
pub struct ImportPage {
    pub csrf: String,
    pub campaign_id: Uuid,
    pub campaign_name: String,
    /// The file was refused whole (nothing imported): why.
    pub refused: Option<String>,
    /// The import's report, when the file was read through (refused for bad rows, or imported).
    pub report: Option<ImportReport>,
    /// Refused lines beyond those listed.
    pub unlisted: u64,
}

#[derive(Template)]
#[template(path = "dashboard/live.html")]
pub struct LivePage {
    pub csrf: String,
    pub rows: LiveRows,
}

/// The live calls' table body: rendered in the page and re-sent by the SSE stream.
#[derive(Template)]
#[template(path = "dashboard/live_rows.html")]
pub struct LiveRows {
    pub calls: Vec<CallRow>,
}

/// One transcript line as the SSE stream appends it.
#[derive(Template)]
#[template(path = "dashboard/line.html")]
pub struct LineFragment {
    pub line: Line,
}

#[derive(Template)]
#[template(path = "dashboard/call.html")]
pub struct CallPage {
    pub csrf: String,
    pub call: CallRow,
    pub live: bool,
    pub end_reason: String,
    pub lines: Vec<Line>,
    /// The last event's `seq` (-1: none yet): where the live stream picks up.
    pub last_seq: i32,
    pub summary: Option<String>,
    /// `metadata.analysis`, pretty-printed.
    pub analysis: Option<String>,
    /// The recording's signed link, relative to this origin.
    pub recording: Option<String>,
    /// The campaign's name (its id when it cannot be read).
    pub campaign_name: String,
    /// The transfer's steps in time order; empty: no transfer.
    pub trail: Vec<TrailStep>,
}

#[derive(Template)]
#[template(path = "dashboard/do_not_call.html")]
pub struct DoNotCallPage {
    pub csrf: String,
    pub entries: Vec<SuppressionView>,
    pub pager: Pager,
    /// Whether the session may add and remove (`leads:write`).
    pub can_write: bool,
    pub error: Option<String>,
    /// The add form's values, kept when it is refused.
    pub phone_number: String,
    pub reason: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "dashboard/tokens.html")]
pub struct TokensPage {
    pub csrf: String,
    pub tokens: Vec<TokenView>,
    /// Whether the session may create and revoke (`settings:write`).
    pub can_write: bool,
    pub scopes: Vec<ScopeOption>,
    pub created: Option<CreatedToken>,
    pub error: Option<String>,
    /// The form's values, kept when it is refused.
    pub name: String,
    pub expires_on: String,
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, text: Option<&str>, data: serde_json::Value) -> CallEventRow {
        CallEventRow {
            seq: 3,
            kind: kind.to_owned(),
            occurred_at: DateTime::parse_from_rfc3339("2026-12-07T10:11:12Z")
                .unwrap()
                .with_timezone(&Utc),
            ended_at: None,
            text: text.map(str::to_owned),
            data,
        }
    }

    #[test]
    fn actions_follow_the_status() {
        assert_eq!(actions_from("draft"), ["start", "cancel"]);
        assert_eq!(actions_from("running"), ["pause", "cancel"]);
        assert_eq!(actions_from("paused"), ["resume", "cancel"]);
        assert!(actions_from("cancelled").is_empty());
        assert_eq!(parse_action("pause"), Some(CampaignAction::Pause));
        assert_eq!(parse_action("delete"), None);
    }

    #[test]
    fn lines_mark_barge_ins_and_transfer_decisions_and_skip_tools() {
        let said = line(&event("caller_speech", Some("Hello"), json!({}))).unwrap();
        assert_eq!(
            (said.who.as_str(), said.text.as_str(), said.mark),
            ("Caller", "Hello", "")
        );
        assert_eq!(said.at, "10:11:12");
        assert_eq!(
            line(&event("barge_in", None, json!({}))).unwrap().mark,
            "barge-in"
        );
        let decision = line(&event(
            "transfer_decision",
            Some("asked for a human"),
            json!({"decision": "offer_callback"}),
        ))
        .unwrap();
        assert_eq!(decision.who, "Transfer decision: offer callback");
        assert_eq!(decision.mark, "transfer");
        assert!(line(&event("tool_call", None, json!({}))).is_none());
    }

    #[test]
    fn the_transfer_trail_follows_the_dials_in_time_order() {
        let at = |second: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-12-07T10:00:{second:02}Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut decided = event(
            "transfer_decision",
            Some("the caller asked for a human"),
            json!({"decision": "transfer", "department": "sales"}),
        );
        decided.occurred_at = at(1);
        let dial = |attempt: i64, second: u32, data: serde_json::Value| {
            let mut dial = event("transfer_attempt", None, data);
            dial.seq = 1_000_000 + attempt as i32;
            dial.occurred_at = at(second);
            dial
        };
        let events = [
            // Out of order on purpose: the trail sorts by time.
            dial(
                1,
                30,
                json!({"attempt": 1, "dial_status": "completed", "accepted": true}),
            ),
            dial(
                0,
                20,
                json!({"attempt": 0, "dial_status": "no-answer", "accepted": false}),
            ),
            decided,
            event("caller_speech", Some("Hello"), json!({})),
        ];
        let transfer = CallTransfer {
            trigger: "caller_request".to_owned(),
            reason: "the caller asked for a human".to_owned(),
            department: "sales".to_owned(),
            targets: json!([
                {"name": "Sales desk", "phone_number": "+14155550900"},
                {"name": "Night line", "phone_number": "+14155550901"},
            ]),
            attempt: 1,
            status: "connected".to_owned(),
            fallback: "back_to_ai".to_owned(),
            created_at: at(2),
            updated_at: at(31),
            connected_at: Some(at(31)),
        };
        let trail = transfer_trail(&events, Some(&transfer));
        let steps: Vec<(&str, &str, &str)> = trail
            .iter()
            .map(|step| (step.at.as_str(), step.what.as_str(), step.detail.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "10:00:01",
                    "Decided: transfer",
                    "the caller asked for a human (to sales)"
                ),
                ("10:00:20", "Dialled Sales desk (+14155550900)", "no-answer"),
                ("10:00:30", "Dialled Night line (+14155550901)", "accepted"),
                ("10:00:31", "Connected", "Night line (+14155550901)"),
            ]
        );
        let exhausted = CallTransfer {
            status: "callback".to_owned(),
            ..transfer
        };
        let last = transfer_trail(&[], Some(&exhausted)).pop().unwrap();
        assert_eq!(last.what, "Nobody accepted");
        assert!(
            last.detail.contains("back to the AI agent"),
            "{}",
            last.detail
        );
        assert!(transfer_trail(&events[3..], None).is_empty());
    }

    #[test]
    fn a_lead_cursor_round_trips_and_refuses_anything_else() {
        let at = DateTime::from_timestamp_micros(1_733_580_000_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(parse_lead_cursor(&lead_cursor(at, id)), Some((at, id)));
        for bad in [
            "",
            "1.2",
            "x.00000000-0000-0000-0000-000000000000",
            "12345",
            "1.2.3",
        ] {
            assert_eq!(parse_lead_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leads_pager_links_from_the_first_and_last_row_shown() {
        let lead = |micros: i64| CampaignLead {
            id: Uuid::from_u128(micros as u128),
            name: String::new(),
            phone: None,
            call_status: "called".to_owned(),
            updated_at: DateTime::from_timestamp_micros(micros).unwrap(),
            created_at: DateTime::from_timestamp_micros(micros).unwrap(),
        };
        let shown = [lead(10), lead(20)];
        let first = format!(
            "before={}&page=",
            lead_cursor(shown[0].created_at, shown[0].id)
        );
        let last = format!(
            "after={}&page=",
            lead_cursor(shown[1].created_at, shown[1].id)
        );
        let start = LeadsPager::new(0, LeadsFrom::Start, true, &shown);
        assert_eq!(start.page, 0);
        assert_eq!(start.previous, None);
        assert_eq!(start.next, Some(format!("{last}1")));
        let at = shown[0].created_at;
        let middle = LeadsPager::new(3, LeadsFrom::After(at, Uuid::nil()), false, &shown);
        assert_eq!(middle.previous, Some(format!("{first}2")));
        assert_eq!(middle.next, None);
        let back_to_start = LeadsPager::new(1, LeadsFrom::Before(at, Uuid::nil()), false, &shown);
        assert_eq!(back_to_start.page, 0);
        assert_eq!(back_to_start.previous, None);
        assert_eq!(back_to_start.next, Some(format!("{last}1")));
        assert_eq!(LeadsPager::new(0, LeadsFrom::Start, false, &[]).next, None);
    }

    #[test]
    fn pager_knows_its_neighbours_from_the_extra_row() {
        assert_eq!(
            Pager::new(0, 50, 51),
            Pager {
                page: 0,
                previous: None,
                next: Some(1)
            }
        );
        assert_eq!(
            Pager::new(2, 50, 50),
            Pager {
                page: 2,
                previous: Some(1),
                next: None
            }
        );
    }

    #[test]
    fn fragments_escape_what_was_said() {
        let html = LineFragment {
            line: line(&event(
                "caller_speech",
                Some("<script>x</script>"),
                json!({}),
            ))
            .unwrap(),
        }
        .render()
        .unwrap();
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
