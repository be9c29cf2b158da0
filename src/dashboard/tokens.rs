//! The tokens page (`/app/tokens`): the organization's API tokens, creating one and revoking
//! one. Listing needs `settings:read` and changing `settings:write`, as the API's settings
//! routes do. A token is issued by the API's own [`create_token`]; its secret is shown once,
//! in the answer to the form (never in a URL, never logged: the request spans carry only the
//! route), and only its hash is kept.
//!
//! **No escalation:** a token made here may carry only scopes the session's own token holds,
//! so signing in to the dashboard never yields more than the token it was opened with.
//! Revoking the session's own token signs it out at its next request, as any revoked token's
//! session is.

use askama::Template;
use axum::{
    Form,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use chrono::{DateTime, Days, NaiveDate, Utc};
use uuid::Uuid;

use super::{
    CsrfForm, DashError,
    session::Session,
    views::{CreatedToken, TokenView, TokensPage, scope_options},
};
use crate::{
    api::tokens::{Scope, TokenError, TokenRequest, create_token},
    http::AppState,
};

/// The create form as posted (`scope` repeats, once per checked box).
#[derive(Debug, Default, PartialEq, Eq)]
struct CreateForm {
    csrf: String,
    name: String,
    scopes: Vec<String>,
    expires_on: String,
}

impl CreateForm {
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "csrf" => form.csrf = value.into_owned(),
                "name" => form.name = value.into_owned(),
                "scope" => form.scopes.push(value.into_owned()),
                "expires_on" => form.expires_on = value.trim().to_owned(),
                _ => {}
            }
        }
        form
    }
}

/// The scopes asked for, if every one exists and the session's token holds it; else what to
/// tell the manager.
fn granted_scopes(requested: &[String], held: &[String]) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::with_capacity(requested.len());
    for name in requested {
        let scope = Scope::parse(name).ok_or_else(|| format!("there is no scope {name:?}"))?;
        if !held.iter().any(|own| own == scope.as_str()) {
            return Err(format!(
                "your token lacks {name}, so a token made here cannot have it"
            ));
        }
        scopes.push(scope);
    }
    Ok(scopes)
}

/// The expiry of a token valid through `date` (UTC): the start of the next day. Empty: never.
fn expiry(date: &str) -> Result<Option<DateTime<Utc>>, String> {
    if date.is_empty() {
        return Ok(None);
    }
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| format!("{date:?} is not a date (YYYY-MM-DD)"))?;
    let next = day
        .checked_add_days(Days::new(1))
        .ok_or_else(|| format!("{date:?} is too far away"))?;
    Ok(Some(next.and_time(chrono::NaiveTime::MIN).and_utc()))
}

/// A token made from the dashboard lives no longer than the session's own: without a date it
/// takes the session token's expiry, and a later date is refused (a short-lived token must not
/// mint a lasting one).
fn within_own_expiry(
    wanted: Option<DateTime<Utc>>,
    own: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, String> {
    match (wanted, own) {
        (_, None) => Ok(wanted),
        (None, Some(own)) => Ok(Some(own)),
        (Some(wanted), Some(own)) if wanted <= own => Ok(Some(wanted)),
        (Some(_), Some(own)) => Err(format!(
            "your token expires at {}, so a token made here cannot last longer",
            own.format("%Y-%m-%d %H:%M UTC")
        )),
    }
}

/// The page with the organization's tokens; `form` keeps what a refused form held.
async fn render(
    state: &AppState,
    session: &Session,
    created: Option<CreatedToken>,
    error: Option<String>,
    form: &CreateForm,
) -> Result<String, DashError> {
    let now = Utc::now();
    let tokens = state
        .db
        .api_tokens_of(session.organization_id)
        .await?
        .iter()
        .map(|token| TokenView::new(token, session.token_id, now))
        .collect();
    let page = TokensPage {
        csrf: session.csrf().to_owned(),
        tokens,
        can_write: session.allows(Scope::SettingsWrite),
        scopes: scope_options(session.scopes(), &form.scopes),
        created,
        error,
        name: form.name.clone(),
        expires_on: form.expires_on.clone(),
    };
    Ok(page.render()?)
}

/// `GET /app/tokens`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Html<String>, DashError> {
    session.require(Scope::SettingsRead)?;
    let html = render(&state, &session, None, None, &CreateForm::default()).await?;
    Ok(Html(html))
}

/// `POST /app/tokens`: issues a token and answers the page with its secret, once (201). A refused
/// form (no name, no scope, a scope the session lacks, a past expiry) is the page again with
/// the reason, 422, and nothing created.
pub(super) async fn create(
    State(state): State<AppState>,
    session: Session,
    body: Bytes,
) -> Result<Response, DashError> {
    let form = CreateForm::parse(&body);
    session.check_csrf(&form.csrf)?;
    session.require(Scope::SettingsRead)?;
    session.require(Scope::SettingsWrite)?;
    let scopes = match granted_scopes(&form.scopes, session.scopes()) {
        Ok(scopes) => scopes,
        Err(message) => return refused(&state, &session, &form, message).await,
    };
    let expires_at = match expiry(&form.expires_on)
        .and_then(|wanted| within_own_expiry(wanted, session.token_expires_at))
    {
        Ok(expires_at) => expires_at,
        Err(message) => return refused(&state, &session, &form, message).await,
    };
    let request = TokenRequest {
        organization_id: session.organization_id,
        name: &form.name,
        scopes: &scopes,
        expires_at,
    };
    let issued = match create_token(&state.db, &request, Utc::now()).await {
        Ok(issued) => issued,
        Err(TokenError::Db(error)) => return Err(error.into()),
        Err(TokenError::UnknownOrganization(_)) => return Err(DashError::NotFound("organization")),
        Err(error) => return refused(&state, &session, &form, error.to_string()).await,
    };
    tracing::info!(token_id = %issued.id, prefix = %issued.prefix, "token created from the dashboard");
    let created = CreatedToken {
        name: form.name.trim().to_owned(),
        secret: issued.secret,
        scopes: issued
            .scopes
            .iter()
            .map(|scope| scope.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        expires: issued.expires_at.map_or("never".to_owned(), |at| {
            at.format("%Y-%m-%d %H:%M UTC").to_string()
        }),
    };
    let html = render(
        &state,
        &session,
        Some(created),
        None,
        &CreateForm::default(),
    )
    .await?;
    Ok((StatusCode::CREATED, Html(html)).into_response())
}

/// The page again with why the form was refused: 422, nothing created.
async fn refused(
    state: &AppState,
    session: &Session,
    form: &CreateForm,
    message: String,
) -> Result<Response, DashError> {
    let html = render(state, session, None, Some(message), form).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response())
}

/// `POST /app/tokens/{id}/revoke`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    session.require(Scope::SettingsWrite)?;
    if !state
        .db
        .revoke_organization_token(session.organization_id, id)
        .await?
    {
        return Err(DashError::NotFound("token"));
    }
    tracing::info!(token_id = %id, "token revoked from the dashboard");
    // Revoking the session's own token: this redirect is its next request, which signs it out.
    Ok(Redirect::to("/app/tokens").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_keeps_every_checked_scope() {
        let form = CreateForm::parse(
            b"csrf=ab&name=CI+deploy&scope=campaigns%3Aread&scope=leads%3Awrite&expires_on=+2027-01-31",
        );
        assert_eq!(
            form,
            CreateForm {
                csrf: "ab".to_owned(),
                name: "CI deploy".to_owned(),
                scopes: vec!["campaigns:read".to_owned(), "leads:write".to_owned()],
                expires_on: "2027-01-31".to_owned(),
            }
        );
    }

    #[test]
    fn a_token_gets_only_scopes_the_session_holds() {
        let held = ["campaigns:read".to_owned(), "settings:write".to_owned()];
        assert_eq!(
            granted_scopes(&["campaigns:read".to_owned()], &held),
            Ok(vec![Scope::CampaignsRead])
        );
        let refused = granted_scopes(
            &["campaigns:read".to_owned(), "calls:write".to_owned()],
            &held,
        )
        .unwrap_err();
        assert!(refused.contains("calls:write"), "{refused}");
        assert!(granted_scopes(&["root".to_owned()], &held).is_err());
    }

    #[test]
    fn a_token_made_here_never_outlives_the_sessions_own() {
        let own = Utc::now() + chrono::Duration::days(3);
        let sooner = own - chrono::Duration::days(1);
        let later = own + chrono::Duration::days(1);
        assert_eq!(within_own_expiry(None, None), Ok(None));
        assert_eq!(within_own_expiry(Some(later), None), Ok(Some(later)));
        assert_eq!(within_own_expiry(None, Some(own)), Ok(Some(own)));
        assert_eq!(within_own_expiry(Some(sooner), Some(own)), Ok(Some(sooner)));
        assert!(within_own_expiry(Some(later), Some(own)).is_err());
    }

    #[test]
    fn a_date_expires_at_the_end_of_that_day() {
        assert_eq!(expiry(""), Ok(None));
        assert_eq!(
            expiry("2027-01-31").unwrap().unwrap().to_rfc3339(),
            "2027-02-01T00:00:00+00:00"
        );
        assert!(expiry("31/01/2027").is_err());
    }
}
