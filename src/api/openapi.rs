//! The OpenAPI 3.1 document of the API, generated from the route table (paths, methods,
//! parameters, scopes) and the schemas below, served at `GET /api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{Map, Value, json};

use super::{BASE_PATH, Operation, operations, tokens::Scope};

/// `GET /api/v1/openapi.json`: no token needed.
pub async fn serve() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in operations() {
        let path = format!("{BASE_PATH}{}", operation.path);
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[operation.method.as_str().to_ascii_lowercase()] = describe(&operation);
    }
    let scopes: Map<String, Value> = Scope::ALL
        .iter()
        .map(|scope| {
            (
                scope.as_str().to_owned(),
                Value::String(scope_text(*scope).to_owned()),
            )
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "voice-gateway campaign API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Campaigns, leads, calls and organization settings of one organization, \
                chosen by the bearer token. Another organization's objects answer 404. Errors are \
                {\"error\": {\"code\", \"message\", \"field\"}} with stable codes.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": format!("`voice-gateway token create` prints a token once. Scopes: {}",
                        Scope::ALL.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(", ")),
                },
            },
            "x-scopes": scopes,
            "schemas": schemas(),
        },
    })
}

fn scope_text(scope: Scope) -> &'static str {
    match scope {
        Scope::CampaignsRead => "read campaigns and their statistics",
        Scope::CampaignsWrite => "create, change, start, pause, resume and cancel campaigns",
        Scope::LeadsRead => "read leads and the do-not-call list",
        Scope::LeadsWrite => "create and import leads; change the do-not-call list",
        Scope::CallsRead => "read calls, transcripts and events",
        Scope::CallsWrite => "hang up calls and place test calls",
        Scope::SettingsRead => "read transfer targets and caller IDs",
        Scope::SettingsWrite => "change transfer targets and caller IDs",
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("Error")}},
    })
}

fn describe(operation: &Operation) -> Value {
    let mut parameters: Vec<Value> = operation
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name.ends_with("_id") {
                json!({"type": "string", "format": "uuid"})
            } else {
                json!({"type": "string"})
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    parameters.extend(operation.query.iter().map(|(name, kind, description)| {
        json!({"name": name, "in": "query", "required": false,
               "description": description, "schema": {"type": kind}})
    }));
    let (status, schema) = operation.success;
    let mut responses = Map::new();
    let success = match schema {
        // A media type rather than a schema: the body is a file.
        Some(media) if media.contains('/') => json!({
            "description": "the file, or the range asked for (206)",
            "content": {media: {"schema": {"type": "string", "format": "binary"}}},
        }),
        Some(name) => json!({
            "description": "success",
            "content": {"application/json": {"schema": schema_ref(name)}},
        }),
        None if operation.id == "openapi" => json!({
            "description": "this document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }),
        None => json!({"description": "done, no content"}),
    };
    responses.insert(status.to_string(), success);
    if operation.body.is_some() || !operation.query.is_empty() {
        responses.insert("400".into(), error_response("malformed input"));
        responses.insert(
            "422".into(),
            error_response("invalid input; `field` names it"),
        );
    }
    let mut described = json!({
        "operationId": operation.id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": parameters,
    });
    match operation.scope {
        Some(scope) => {
            described["security"] = json!([{"bearer": [scope.as_str()]}]);
            described["x-required-scope"] = json!(scope.as_str());
            responses.insert(
                "401".into(),
                error_response("no valid token (missing, unknown, expired, revoked)"),
            );
            responses.insert("403".into(), error_response("the token lacks the scope"));
        }
        None => described["security"] = json!([]),
    }
    if operation.path.contains('{') {
        responses.insert(
            "404".into(),
            error_response("no such object in the token's organization"),
        );
    }
    if operation.method != axum::http::Method::GET && operation.scope.is_some() {
        responses.insert(
            "409".into(),
            error_response("conflicts with the object's state"),
        );
    }
    described["responses"] = Value::Object(responses);
    match operation.body {
        Some("csv") => {
            let example = if operation.tag == "do-not-call" {
                "phone,reason\n+44 20 7946 0958,asked not to be called\n"
            } else {
                "name,phone,email,timezone,notes\nAda Lovelace,+44 20 7946 0958,ada@example.com,Europe/London,prefers mornings\n"
            };
            described["requestBody"] = json!({
                "required": true,
                "content": {"text/csv": {"schema": {"type": "string"}, "example": example}},
            });
        }
        Some(name) => {
            described["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(name)}},
            });
        }
        None => {}
    }
    described
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn list_of(key: &str, item: &str) -> Value {
    object(
        json!({key: {"type": "array", "items": schema_ref(item)},
               "limit": {"type": "integer"}, "offset": {"type": "integer"}}),
        &[key],
    )
}

fn schemas() -> Value {
    let text = json!({"type": "string"});
    let nullable_text = json!({"type": ["string", "null"]});
    let uuid = json!({"type": "string", "format": "uuid"});
    let time = json!({"type": "string", "format": "date-time"});
    let campaign_fields = json!({
        "name": text, "description": nullable_text, "project_id": {"type": ["string", "null"], "format": "uuid"},
        "ai_provider": {"enum": ["local", "openai", "gemini", null]},
        "agent_name": nullable_text, "agent_instructions": nullable_text, "agent_greeting": nullable_text,
        "agent_voice": nullable_text, "language": text,
        "turn_detection": {"enum": ["server_vad", "semantic_vad"]},
        "timezone": {"type": "string", "description": "IANA name; default: the organization's"},
        "calling_window_start": {"type": "string", "description": "HH:MM in the lead's (else the campaign's) timezone"},
        "calling_window_end": {"type": "string", "description": "HH:MM, after the start"},
        "calling_days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}},
        "starts_on": {"type": ["string", "null"], "format": "date"},
        "ends_on": {"type": ["string", "null"], "format": "date"},
        "caller_id": {"type": ["string", "null"], "description": "E.164; the organization's default or one of its numbers"},
        "max_concurrent_calls": {"type": "integer", "minimum": 1},
        "calls_per_minute": {"type": "integer", "minimum": 1},
        "ring_timeout_seconds": {"type": "integer", "minimum": 5, "maximum": 120},
        "max_call_duration_seconds": {"type": "integer", "minimum": 30, "maximum": 14400},
        "silence_timeout_seconds": {"type": "integer", "minimum": 3, "maximum": 600},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
        "retry_backoff_seconds": {"type": "integer", "minimum": 60},
        "settings": {"type": "object"},
    });
    let mut campaign = campaign_fields.clone();
    for (key, value) in [
        ("id", uuid.clone()),
        ("organization_id", uuid.clone()),
        (
            "status",
            json!({"enum": ["draft", "scheduled", "running", "paused", "completed", "cancelled", "archived", "failed"]}),
        ),
        ("total_calls", json!({"type": "integer"})),
        ("transferred_calls", json!({"type": "integer"})),
        (
            "conversion_rate",
            json!({"type": "number", "description": "percent of calls transferred"}),
        ),
        (
            "started_at",
            json!({"type": ["string", "null"], "format": "date-time"}),
        ),
        (
            "paused_at",
            json!({"type": ["string", "null"], "format": "date-time"}),
        ),
        (
            "completed_at",
            json!({"type": ["string", "null"], "format": "date-time"}),
        ),
        ("created_at", time.clone()),
        ("updated_at", time.clone()),
        ("stats", schema_ref("CampaignStats")),
    ] {
        campaign[key] = value;
    }
    let call = json!({
        "id": uuid, "call_sid": nullable_text, "campaign_id": uuid, "lead_id": uuid,
        "direction": {"enum": ["outbound", "inbound"]},
        "call_status": {"enum": ["called", "transferred", "no_answer", "voicemail"]},
        "end_reason": nullable_text, "transferred": {"type": "boolean"},
        "transfer_department": nullable_text, "call_timestamp": time,
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "duration": {"type": "integer", "description": "seconds"}, "server_name": nullable_text,
    });
    let mut call_detail = call.clone();
    for key in [
        "transcript",
        "conversation_summary",
        "recording_url",
        "transfer_reason",
        "notes",
    ] {
        call_detail[key] = nullable_text.clone();
    }
    call_detail["transferred_at"] = json!({"type": ["string", "null"], "format": "date-time"});
    call_detail["metadata"] = json!({"type": ["object", "null"]});
    call_detail["events"] = json!({"type": "array", "items": schema_ref("CallEvent")});
    let target_fields = json!({
        "name": text, "department": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "phone_number": {"type": "string", "description": "E.164"},
        "priority": {"type": "integer", "description": "lower first"},
        "timezone": text,
        "working_days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}},
        "working_hours_start": {"type": ["string", "null"], "description": "HH:MM; null with end: around the clock"},
        "working_hours_end": {"type": ["string", "null"]},
        "is_active": {"type": "boolean"},
    });
    let mut target = target_fields.clone();
    target["id"] = uuid.clone();
    target["created_at"] = time.clone();
    target["updated_at"] = time.clone();
    let phone_number = json!({
        "id": uuid, "phone_number": text, "label": nullable_text,
        "inbound_enabled": {"type": "boolean"}, "created_at": time,
    });
    let do_not_call = json!({
        "organization_id": uuid, "phone_number": {"type": "string", "description": "E.164"},
        "reason": nullable_text,
        "source": {"enum": ["caller_request", "api", "import", "complaint"]},
        "created_at": time,
        "created_by_token": {"type": ["string", "null"], "format": "uuid"},
        "call_sid": {"type": ["string", "null"], "description": "the call in which the caller opted out"},
    });
    let mut do_not_call_added = do_not_call.clone();
    do_not_call_added["created"] =
        json!({"type": "boolean", "description": "false: listed already, the first entry kept"});
    do_not_call_added["attempts_cancelled"] =
        json!({"type": "integer", "description": "scheduled attempts cancelled, every campaign"});
    let row_error = json!({
        "type": "object",
        "properties": {"line": {"type": "integer"}, "field": text, "code": text, "message": text},
    });
    json!({
        "Error": object(json!({"error": object(json!({
            "code": {"type": "string", "description": "stable, machine-readable"},
            "message": text,
            "field": {"type": "string", "description": "the input field at fault"},
            "details": {"type": "object"},
        }), &["code", "message"])}), &["error"]),
        "CampaignInput": object(campaign_fields, &[]),
        "Campaign": object(campaign, &["id", "status", "name", "stats"]),
        "CampaignList": list_of("campaigns", "Campaign"),
        "CampaignStats": object(json!({
            "total_calls": {"type": "integer"}, "transferred_calls": {"type": "integer"},
            "conversion_rate": {"type": "number"}, "live_calls": {"type": "integer"},
            "leads": {"type": "integer"},
            "outcomes": {"type": "object", "additionalProperties": {"type": "integer"},
                         "description": "enrolled leads by call_status"},
            "attempts_pending": {"type": "integer"}, "attempts_in_flight": {"type": "integer"},
            "callbacks_pending": {"type": "integer", "description": "callbacks leads asked for, still waiting"},
            "attempts": {"type": "object", "additionalProperties": {"type": "integer"}},
        }), &["total_calls", "transferred_calls", "conversion_rate", "live_calls", "outcomes", "attempts_pending", "attempts_in_flight"]),
        "Callback": object(json!({
            "id": uuid, "campaign_id": uuid, "lead_id": uuid, "lead_name": text,
            "phone_number": nullable_text, "status": text, "due_at": time,
            "requested_at": {"type": ["string", "null"], "format": "date-time"},
            "requested_in_call": nullable_text, "phrase": nullable_text, "note": nullable_text,
        }), &["id", "campaign_id", "lead_id", "status", "due_at"]),
        "CallbackList": list_of("callbacks", "Callback"),
        "CallbackReschedule": object(json!({"due_at": time}), &["due_at"]),
        "LeadInput": object(json!({
            "name": text, "phone": {"type": "string", "description": "normalised to E.164"},
            "email": text, "timezone": text, "notes": text, "metadata": {"type": "object"},
        }), &["name", "phone"]),
        "Lead": object(json!({
            "id": uuid, "organization_id": uuid, "project_id": {"type": ["string", "null"]},
            "name": text, "phone": text, "email": nullable_text, "source": text, "status": text,
            "call_status": text, "transferred_to_human": {"type": "boolean"},
            "timezone": nullable_text, "notes": nullable_text, "metadata": {"type": ["object", "null"]},
            "attempts": {"type": "array", "items": {"type": "object"}},
            "enrolled": {"type": "boolean", "description": "on create: attempt 1 scheduled"},
            "suppressed": {"type": "boolean", "description": "on create: the number is on the do-not-call list, so not enrolled"},
        }), &["id", "name", "phone"]),
        "LeadList": list_of("leads", "Lead"),
        "ImportReport": object(json!({
            "rows": {"type": "integer"},
            "imported": {"type": "integer", "description": "leads stored"},
            "enrolled": {"type": "integer", "description": "leads stored and enrolled"},
            "suppressed": {"type": "integer", "description": "leads stored, not enrolled: do-not-call"},
            "suppressed_lines": {"type": "array", "items": {"type": "integer"}},
            "duplicates": {"type": "integer"}, "duplicate_lines": {"type": "array", "items": {"type": "integer"}},
            "invalid": {"type": "integer"}, "errors": {"type": "array", "items": row_error},
            "elapsed_ms": {"type": "integer"},
        }), &["rows", "imported", "duplicates", "invalid", "errors"]),
        "DoNotCallInput": object(json!({
            "phone_number": {"type": "string", "description": "normalised to E.164"},
            "reason": text,
            "source": {"enum": ["api", "complaint"], "description": "default api"},
        }), &["phone_number", "reason"]),
        "DoNotCallEntry": object(do_not_call.clone(), &["phone_number", "source", "created_at"]),
        "DoNotCallAdded": object(do_not_call_added, &["phone_number", "created", "attempts_cancelled"]),
        "DoNotCallList": list_of("entries", "DoNotCallEntry"),
        "DoNotCallAudit": object(json!({
            "id": {"type": "integer"}, "phone_number": text,
            "action": {"enum": ["add", "remove"]},
            "actor": {"enum": ["token", "call", "system"]},
            "actor_token_id": {"type": ["string", "null"], "format": "uuid"},
            "actor_call_sid": nullable_text,
            "before": {"type": ["object", "null"], "description": "the entry before the change"},
            "after": {"type": ["object", "null"], "description": "the entry after the change"},
            "at": time,
        }), &["id", "phone_number", "action", "actor", "at"]),
        "DoNotCallAuditList": list_of("audit", "DoNotCallAudit"),
        "DoNotCallImportReport": object(json!({
            "rows": {"type": "integer"}, "added": {"type": "integer"},
            "already_listed": {"type": "integer"},
            "already_listed_lines": {"type": "array", "items": {"type": "integer"}},
            "attempts_cancelled": {"type": "integer"},
            "invalid": {"type": "integer"}, "errors": {"type": "array", "items": row_error},
            "elapsed_ms": {"type": "integer"},
        }), &["rows", "added", "already_listed", "attempts_cancelled", "invalid", "errors"]),
        "TestCall": object(json!({"attempt_id": uuid, "attempt_number": {"type": "integer"}}), &["attempt_id", "attempt_number"]),
        "Call": object(call, &["id", "campaign_id", "lead_id", "call_status"]),
        "CallList": list_of("calls", "Call"),
        "CallDetail": object(call_detail, &["id", "events"]),
        "CallEvent": object(json!({
            "seq": {"type": "integer"}, "kind": text, "occurred_at": time,
            "ended_at": {"type": ["string", "null"]}, "text": nullable_text, "data": {"type": "object"},
        }), &["seq", "kind"]),
        "RecordingLink": object(json!({"url": text, "expires_at": time}), &["url", "expires_at"]),
        "HangupAccepted": object(json!({"id": uuid, "call_sid": text, "status": {"const": "hangup_requested"}}), &["id", "call_sid"]),
        "TransferTargetInput": object(target_fields, &[]),
        "TransferTarget": object(target, &["id", "name", "department", "phone_number"]),
        "TransferTargetList": list_of("transfer_targets", "TransferTarget"),
        "PhoneNumber": object(phone_number, &["id", "phone_number"]),
        "PhoneNumberInput": object(json!({"phone_number": text, "label": text, "inbound_enabled": {"type": "boolean"}}), &["phone_number"]),
        "DefaultCallerIdInput": object(json!({"caller_id": nullable_text}), &["caller_id"]),
        "CallerIds": object(json!({
            "default_caller_id": nullable_text,
            "numbers": {"type": "array", "items": schema_ref("PhoneNumber")},
        }), &["numbers"]),
    })
}
