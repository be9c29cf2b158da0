//! The organization's do-not-call (suppression) list and its audit trail.
//!
//! A number on the list is never dialled by any campaign of the organization. Three places
//! hold that, each in its own transaction:
//! - adding a number (one, a batch of an import, or from a live call) cancels that number's
//!   scheduled attempts in every campaign of the organization (`error = 'do_not_call'`);
//! - the dialer's claim (`db::dialer`) reads the list in the statement that locks its
//!   candidates, and cancels a suppressed one instead of placing it;
//! - enrolling a lead (`db::leads`) stores a suppressed number's lead without an attempt, and
//!   a test call of it is refused.
//!
//! **Ordering with the claim.** Every add locks the organization's row, as a claim does, last,
//! just before it commits: a claim in progress commits before the add does, and any claim
//! after it sees the number. So once an add has committed, no claim that commits later places
//! the number; a call claimed before is a call in flight. Last, not first: an import's upload
//! must not hold up the organization's dialer, and two adds waiting on each other's new row
//! never hold the lock the other needs.
//!
//! **Audit.** Every change writes its `do_not_call_audit` row (who: a token, a call or the
//! system; what: add or remove; before and after as JSON; when) in the statement that makes
//! it. Adding a number already listed changes nothing and writes nothing. The audit table
//! refuses UPDATE and DELETE.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{Database, DbError};
use crate::phone::E164;

/// The `error` of an attempt cancelled because its number is on the list.
pub const DO_NOT_CALL_ERROR: &str = "do_not_call";

/// Where an entry came from (`do_not_call.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressionSource {
    /// The caller asked, during a call.
    CallerRequest,
    Api,
    Import,
    Complaint,
}

impl SuppressionSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CallerRequest => "caller_request",
            Self::Api => "api",
            Self::Import => "import",
            Self::Complaint => "complaint",
        }
    }
}

/// Who changes the list, as the audit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API token (its id).
    Token(Uuid),
    /// A live call (its Plivo CallUUID): the caller opted out.
    Call(String),
    /// The gateway itself (maintenance, tools).
    System,
}

impl Actor {
    const fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Call(_) => "call",
            Self::System => "system",
        }
    }

    fn token_id(&self) -> Option<Uuid> {
        match self {
            Self::Token(id) => Some(*id),
            _ => None,
        }
    }

    fn call_sid(&self) -> Option<&str> {
        match self {
            Self::Call(call_sid) => Some(call_sid),
            _ => None,
        }
    }
}

/// A number to add.
#[derive(Debug, Clone)]
pub struct NewSuppression {
    pub phone_number: E164,
    pub reason: Option<String>,
    pub source: SuppressionSource,
}

/// An entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionRow {
    pub organization_id: Uuid,
    pub phone_number: String,
    pub reason: Option<String>,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub created_by_token: Option<Uuid>,
    pub call_sid: Option<String>,
}

/// What adding a number did.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressOutcome {
    /// The entry as stored: the first one, when the number was already listed.
    pub entry: SuppressionRow,
    /// Whether this call added it (false: it was already on the list, nothing changed).
    pub created: bool,
    /// Scheduled attempts of the number cancelled now, in every campaign.
    pub attempts_cancelled: u64,
}

/// One row of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressionAuditRow {
    pub id: i64,
    pub phone_number: String,
    pub action: String,
    pub actor: String,
    pub actor_token_id: Option<Uuid>,
    pub actor_call_sid: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Rows of an import, column by column, as `UNNEST` takes them.
#[derive(Debug, Default)]
pub struct SuppressionBatch {
    phones: Vec<String>,
    reasons: Vec<Option<String>>,
    lines: Vec<i64>,
}

impl SuppressionBatch {
    /// Adds a number read at `line` of the file.
    pub fn push(&mut self, line: u64, phone_number: E164, reason: Option<String>) {
        self.phones.push(phone_number.into_string());
        self.reasons.push(reason);
        self.lines.push(i64::try_from(line).unwrap_or(i64::MAX));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn clear(&mut self) {
        self.phones.clear();
        self.reasons.clear();
        self.lines.clear();
    }
}

/// What one batch of an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Lines whose number was already listed (before the import, or earlier in the file).
    pub already_listed: Vec<u64>,
    pub attempts_cancelled: u64,
}

/// An import in progress: one transaction (dropping it rolls back, leaving nothing). Source
/// `import`, by the importing token.
#[derive(Debug)]
pub struct SuppressionImport {
    transaction: Transaction<'static, Postgres>,
    organization_id: Uuid,
    actor: Actor,
}

impl SuppressionImport {
    /// Adds a batch (the first line of a number wins) with its audit rows, and cancels the
    /// scheduled attempts of every number of the batch. Those attempts stay locked until the
    /// import ends, so no claim takes them meanwhile.
    pub async fn insert(&mut self, batch: &SuppressionBatch) -> Result<BatchOutcome, DbError> {
        let already = sqlx::query_scalar!(
            r#"WITH input AS (
                   SELECT * FROM UNNEST($2::text[], $3::text[], $4::int8[]) AS t(phone, reason, line)
               ), first_lines AS (
                   SELECT DISTINCT ON (phone) * FROM input ORDER BY phone, line
               ), inserted AS (
                   INSERT INTO do_not_call (organization_id, phone_number, reason, source,
                                            created_by_token)
                   SELECT $1, phone, reason, 'import', $6 FROM first_lines ORDER BY line
                   ON CONFLICT (organization_id, phone_number) DO NOTHING
                   RETURNING *
               ), audit AS (
                   INSERT INTO do_not_call_audit (organization_id, phone_number, action, actor,
                                                  actor_token_id, actor_call_sid, after)
                   SELECT organization_id, phone_number, 'add', $5, $6, $7, to_jsonb(inserted)
                   FROM inserted
               )
               SELECT i.line AS "line!" FROM input i
               WHERE i.line NOT IN (SELECT f.line FROM first_lines f
                                    JOIN inserted n ON n.phone_number = f.phone)
               ORDER BY i.line"#,
            self.organization_id,
            &batch.phones,
            &batch.reasons as &[Option<String>],
            &batch.lines,
            self.actor.kind(),
            self.actor.token_id(),
            self.actor.call_sid(),
        )
        .fetch_all(&mut *self.transaction)
        .await?;
        let attempts_cancelled =
            cancel_scheduled(&mut self.transaction, self.organization_id, &batch.phones).await?;
        Ok(BatchOutcome {
            already_listed: already
                .into_iter()
                .map(|line| u64::try_from(line).unwrap_or(0))
                .collect(),
            attempts_cancelled,
        })
    }

    /// Commits, after locking the organization's row: a claim in progress commits first, a
    /// later one sees the whole list (see the module's documentation).
    pub async fn commit(mut self) -> Result<(), DbError> {
        lock_organization(&mut self.transaction, self.organization_id).await?;
        self.transaction.commit().await?;
        Ok(())
    }
}

impl Database {
    /// Adds a number to the organization's list, idempotently: a number already listed keeps
    /// its first entry (`created: false`, no audit row). Either way its scheduled attempts in
    /// every campaign of the organization are cancelled, in the same transaction.
    pub async fn suppress(
        &self,
        organization_id: Uuid,
        entry: &NewSuppression,
        actor: &Actor,
    ) -> Result<SuppressOutcome, DbError> {
        let mut transaction = self.pool.begin().await?;
        let outcome = insert_one(&mut transaction, organization_id, entry, actor).await?;
        lock_organization(&mut transaction, organization_id).await?;
        transaction.commit().await?;
        Ok(outcome)
    }

    /// The live call's path: the caller asked not to be called again. Suppresses the phone
    /// number of `lead_id` in the lead's organization (derived from the lead, so the call needs
    /// nothing more than it holds), with source `caller_request`, `call_sid` recorded on the
    /// entry and as the audit's actor. Cancels the number's scheduled attempts in every
    /// campaign. Idempotent: a second request (the same call or another) reports
    /// `created: false` and writes nothing.
    ///
    /// Errors: [`DbError::NotSuppressible`] when the lead does not exist or has no E.164 phone
    /// number; otherwise the database's (see [`DbError::is_transient`] for a retry).
    pub async fn suppress_from_call(
        &self,
        lead_id: Uuid,
        call_sid: &str,
        reason: &str,
    ) -> Result<SuppressOutcome, DbError> {
        let mut transaction = self.pool.begin().await?;
        let lead = sqlx::query!(
            "SELECT organization_id, phone FROM leads WHERE id = $1",
            lead_id
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(lead) = lead else {
            return Err(DbError::NotSuppressible {
                lead_id,
                why: "no such lead",
            });
        };
        let phone_number = lead
            .phone
            .as_deref()
            .and_then(|phone| E164::parse_strict(phone).ok())
            .ok_or(DbError::NotSuppressible {
                lead_id,
                why: "the lead has no E.164 phone number",
            })?;
        let entry = NewSuppression {
            phone_number,
            reason: Some(reason.to_owned()),
            source: SuppressionSource::CallerRequest,
        };
        let actor = Actor::Call(call_sid.to_owned());
        let outcome = insert_one(&mut transaction, lead.organization_id, &entry, &actor).await?;
        lock_organization(&mut transaction, lead.organization_id).await?;
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Removes a number from the list, with its audit row. `None`: it was not listed. Nothing
    /// cancelled is scheduled again.
    pub async fn unsuppress(
        &self,
        organization_id: Uuid,
        phone_number: &E164,
        actor: &Actor,
    ) -> Result<Option<SuppressionRow>, DbError> {
        let row = sqlx::query_as!(
            SuppressionRow,
            r#"WITH removed AS (
                   DELETE FROM do_not_call WHERE organization_id = $1 AND phone_number = $2
                   RETURNING *
               ), audit AS (
                   INSERT INTO do_not_call_audit (organization_id, phone_number, action, actor,
                                                  actor_token_id, actor_call_sid, before)
                   SELECT organization_id, phone_number, 'remove', $3, $4, $5, to_jsonb(removed)
                   FROM removed
               )
               SELECT organization_id AS "organization_id!", phone_number AS "phone_number!",
                      reason, source AS "source!", created_at AS "created_at!",
                      created_by_token, call_sid
               FROM removed"#,
            organization_id,
            phone_number.as_str(),
            actor.kind(),
            actor.token_id(),
            actor.call_sid(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Whether the number is on the organization's list.
    pub async fn is_suppressed(
        &self,
        organization_id: Uuid,
        phone_number: &E164,
    ) -> Result<bool, DbError> {
        let listed = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM do_not_call
                              WHERE organization_id = $1 AND phone_number = $2) AS "listed!""#,
            organization_id,
            phone_number.as_str(),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(listed)
    }

    /// The organization's list, newest first; `phone_number` narrows it to that number.
    pub async fn suppressions(
        &self,
        organization_id: Uuid,
        phone_number: Option<&E164>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SuppressionRow>, DbError> {
        let rows = sqlx::query_as!(
            SuppressionRow,
            r#"SELECT organization_id, phone_number, reason, source, created_at, created_by_token,
                      call_sid
               FROM do_not_call
               WHERE organization_id = $1 AND ($2::text IS NULL OR phone_number = $2)
               ORDER BY created_at DESC, phone_number
               LIMIT $3 OFFSET $4"#,
            organization_id,
            phone_number.map(E164::as_str),
            limit,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The organization's audit trail, newest first.
    pub async fn suppression_audit(
        &self,
        organization_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<SuppressionAuditRow>, DbError> {
        let rows = sqlx::query_as!(
            SuppressionAuditRow,
            r#"SELECT id, phone_number, action, actor, actor_token_id, actor_call_sid, before,
                      after, at
               FROM do_not_call_audit WHERE organization_id = $1
               ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3"#,
            organization_id,
            limit,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Begins an import into the organization's list (source `import`).
    pub async fn begin_suppression_import(
        &self,
        organization_id: Uuid,
        actor: Actor,
    ) -> Result<SuppressionImport, DbError> {
        let mut transaction = self.pool.begin().await?;
        // Plan each batch for its own numbers (see `begin_lead_import`).
        sqlx::query!("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *transaction)
            .await?;
        Ok(SuppressionImport {
            transaction,
            organization_id,
            actor,
        })
    }
}

/// Locks the organization's row as a claim does (`db::dialer::begin_claim`).
async fn lock_organization(
    transaction: &mut Transaction<'static, Postgres>,
    organization_id: Uuid,
) -> Result<(), DbError> {
    sqlx::query!(
        "SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE",
        organization_id
    )
    .fetch_optional(&mut **transaction)
    .await?;
    Ok(())
}

/// Inserts one entry (or finds the first), writes its audit row, cancels its attempts.
async fn insert_one(
    transaction: &mut Transaction<'static, Postgres>,
    organization_id: Uuid,
    entry: &NewSuppression,
    actor: &Actor,
) -> Result<SuppressOutcome, DbError> {
    // ON CONFLICT waits for a concurrent insert of the number to commit; the lookup after it
    // is a new statement and sees that row, unless a remove committed in between: then try
    // again.
    let mut tries = 0;
    let (entry_row, created) = loop {
        tries += 1;
        let inserted = sqlx::query_as!(
            SuppressionRow,
            r#"WITH inserted AS (
                   INSERT INTO do_not_call (organization_id, phone_number, reason, source,
                                            created_by_token, call_sid)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (organization_id, phone_number) DO NOTHING
                   RETURNING *
               ), audit AS (
                   INSERT INTO do_not_call_audit (organization_id, phone_number, action, actor,
                                                  actor_token_id, actor_call_sid, after)
                   SELECT organization_id, phone_number, 'add', $7, $5, $6, to_jsonb(inserted)
                   FROM inserted
               )
               SELECT organization_id AS "organization_id!", phone_number AS "phone_number!",
                      reason, source AS "source!", created_at AS "created_at!",
                      created_by_token, call_sid
               FROM inserted"#,
            organization_id,
            entry.phone_number.as_str(),
            entry.reason,
            entry.source.as_str(),
            actor.token_id(),
            actor.call_sid(),
            actor.kind(),
        )
        .fetch_optional(&mut **transaction)
        .await?;
        if let Some(row) = inserted {
            break (row, true);
        }
        let existing = sqlx::query_as!(
            SuppressionRow,
            r#"SELECT organization_id, phone_number, reason, source, created_at,
                      created_by_token, call_sid
               FROM do_not_call WHERE organization_id = $1 AND phone_number = $2"#,
            organization_id,
            entry.phone_number.as_str(),
        )
        .fetch_optional(&mut **transaction)
        .await?;
        match existing {
            Some(row) => break (row, false),
            None if tries < 3 => continue,
            None => return Err(DbError::ConcurrentChange("the do-not-call entry")),
        }
    };
    let phones = [entry.phone_number.as_str().to_owned()];
    let attempts_cancelled = cancel_scheduled(transaction, organization_id, &phones).await?;
    Ok(SuppressOutcome {
        entry: entry_row,
        created,
        attempts_cancelled,
    })
}

/// Cancels the scheduled attempts (test calls included) of leads of the organization with
/// these numbers, in every campaign; locks them in id order first, so two adds never deadlock.
async fn cancel_scheduled(
    transaction: &mut Transaction<'static, Postgres>,
    organization_id: Uuid,
    phones: &[String],
) -> Result<u64, DbError> {
    let result = sqlx::query!(
        r#"WITH doomed AS (
               SELECT a.id FROM dial_attempts a JOIN leads l ON l.id = a.lead_id
               WHERE l.organization_id = $1 AND l.phone = ANY($2)
                 AND a.organization_id = $1 AND a.status = 'scheduled'
               ORDER BY a.id
               FOR UPDATE OF a
           )
           UPDATE dial_attempts a SET status = 'canceled', error = $3, ended_at = now()
           FROM doomed WHERE a.id = doomed.id AND a.status = 'scheduled'"#,
        organization_id,
        phones,
        DO_NOT_CALL_ERROR,
    )
    .execute(&mut **transaction)
    .await?;
    Ok(result.rows_affected())
}
