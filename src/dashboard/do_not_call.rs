//! The do-not-call page (`/app/do-not-call`): the organization's list a page at a time
//! (`leads:read`), adding one number and removing one (`leads:write`), as the API's routes
//! need. Adding and removing go through the API's own [`add_number`] and [`remove_number`],
//! so a number is normalised, audited and its scheduled calls cancelled exactly as there.

use askama::Template;
use axum::{
    Form,
    extract::{Query, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{
    DashError,
    session::Session,
    views::{DoNotCallPage, Pager, SuppressionView},
};
use crate::{
    api::{
        do_not_call::{NumberToAdd, add_number, remove_number},
        tokens::Scope,
    },
    http::AppState,
};

/// Entries a page shows.
const PAGE: i64 = 50;

#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    page: i64,
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    reason: String,
    source: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    phone_number: String,
}

/// The list's page `page`, with the add form's values and why it was refused, if it was.
async fn render(
    state: &AppState,
    session: &Session,
    page: i64,
    error: Option<String>,
    form: Option<&AddForm>,
) -> Result<String, DashError> {
    if !(0..=100_000).contains(&page) {
        return Err(DashError::BadRequest("no such page".to_owned()));
    }
    let mut rows = state
        .db
        .suppressions(session.organization_id, None, PAGE + 1, page * PAGE)
        .await?;
    let pager = Pager::new(page, PAGE, rows.len());
    rows.truncate(usize::try_from(PAGE).unwrap_or(usize::MAX));
    let page = DoNotCallPage {
        csrf: session.csrf().to_owned(),
        entries: rows.iter().map(SuppressionView::new).collect(),
        pager,
        can_write: session.allows(Scope::LeadsWrite),
        error,
        phone_number: form
            .map(|form| form.phone_number.clone())
            .unwrap_or_default(),
        reason: form.map(|form| form.reason.clone()).unwrap_or_default(),
        source: form
            .and_then(|form| form.source.clone())
            .unwrap_or_default(),
    };
    Ok(page.render()?)
}

/// `GET /app/do-not-call?page=n`: newest first.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Result<Html<String>, DashError> {
    session.require(Scope::LeadsRead)?;
    Ok(Html(
        render(&state, &session, query.page, None, None).await?,
    ))
}

/// `POST /app/do-not-call`: adds a number (one listed already keeps its first entry). A
/// refused one (a malformed number, no reason) is the page again with the API's reason.
pub(super) async fn add(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<AddForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    session.require(Scope::LeadsRead)?;
    session.require(Scope::LeadsWrite)?;
    let input = NumberToAdd {
        phone_number: &form.phone_number,
        reason: &form.reason,
        source: form.source.as_deref(),
        default_country_code: None,
    };
    match add_number(&state, session.organization_id, session.token_id, &input).await {
        Ok(_) => Ok(Redirect::to("/app/do-not-call").into_response()),
        Err(error) if error.status.is_client_error() => {
            let html = render(&state, &session, 0, Some(error.message), Some(&form)).await?;
            Ok((error.status, Html(html)).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /app/do-not-call/remove`: 404 when the number is not on the list.
pub(super) async fn remove(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<RemoveForm>,
) -> Result<Response, DashError> {
    session.check_csrf(&form.csrf)?;
    session.require(Scope::LeadsWrite)?;
    remove_number(
        &state,
        session.organization_id,
        session.token_id,
        &form.phone_number,
        None,
    )
    .await?
    .ok_or(DashError::NotFound("number on the do-not-call list"))?;
    Ok(Redirect::to("/app/do-not-call").into_response())
}
