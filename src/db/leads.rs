//! Leads for the API: one at a time or imported in batches, each enrolled in a campaign by its
//! first dial attempt (`dial_attempts`, attempt 1, `scheduled`, due now); test calls.
//!
//! A phone number is enrolled in a campaign at most once: a lead whose number is already a
//! lead of the campaign is refused (one) or skipped and reported (import), so nobody is
//! dialed twice by the same campaign because a list was uploaded twice.
//!
//! A number on the organization's do-not-call list (`db::suppression`) is stored as a lead
//! but not enrolled (no attempt), and reported so; a test call of it is refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{Database, DbError, campaigns::FINISHED_STATUSES};

/// A lead to create; `phone` is already E.164.
#[derive(Debug, Clone)]
pub struct NewLead {
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
    pub timezone: Option<String>,
    pub notes: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// A lead as stored.
#[derive(Debug, Clone, Serialize)]
pub struct LeadRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub source: String,
    pub status: String,
    pub call_status: String,
    pub transferred_to_human: bool,
    pub call_date: Option<DateTime<Utc>>,
    pub timezone: Option<String>,
    pub notes: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One dial attempt of a lead.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRow {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub attempt_number: i32,
    pub status: String,
    pub is_test: bool,
    pub due_at: DateTime<Utc>,
    pub placed_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub call_sid: Option<String>,
    pub hangup_cause: Option<String>,
}

/// Why a lead or a test call could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadRefusal {
    CampaignNotFound,
    LeadNotFound,
    /// The campaign is finished (completed, cancelled...) and takes no new work.
    CampaignFinished {
        status: String,
    },
    /// The number is already a lead of this campaign.
    Duplicate {
        lead_id: Uuid,
    },
    /// The lead is being dialed or talking right now.
    InFlight,
    /// A test call of this lead is already waiting to be placed.
    TestCallPending,
    /// The lead's number is on the organization's do-not-call list.
    DoNotCall,
}

/// A lead created by [`Database::create_lead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedLead {
    pub lead_id: Uuid,
    /// Its number is on the do-not-call list: stored, not enrolled.
    pub suppressed: bool,
}

/// What one batch of an import did, by the file's lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadBatchOutcome {
    /// Skipped: the number is already a lead of the campaign (or earlier in the file).
    pub duplicates: Vec<u64>,
    /// Stored but not enrolled: the number is on the do-not-call list.
    pub suppressed: Vec<u64>,
}

/// A scheduled test call.
#[derive(Debug, Clone, Serialize)]
pub struct TestCall {
    pub attempt_id: Uuid,
    pub attempt_number: i32,
}

/// Rows of an import, column by column, as `UNNEST` takes them.
#[derive(Debug, Default)]
pub struct LeadBatch {
    names: Vec<String>,
    phones: Vec<String>,
    emails: Vec<Option<String>>,
    timezones: Vec<Option<String>>,
    notes: Vec<Option<String>>,
    metadata: Vec<serde_json::Value>,
    lines: Vec<i64>,
}

impl LeadBatch {
    /// Adds a row read at `line` of the file.
    pub fn push(&mut self, line: u64, lead: NewLead) {
        self.names.push(lead.name);
        self.phones.push(lead.phone);
        self.emails.push(lead.email);
        self.timezones.push(lead.timezone);
        self.notes.push(lead.notes);
        self.metadata
            .push(lead.metadata.unwrap_or(serde_json::Value::Null));
        self.lines.push(i64::try_from(line).unwrap_or(i64::MAX));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn clear(&mut self) {
        self.names.clear();
        self.phones.clear();
        self.emails.clear();
        self.timezones.clear();
        self.notes.clear();
        self.metadata.clear();
        self.lines.clear();
    }
}

/// An import in progress: one transaction, so a failed or refused import leaves nothing
/// behind (dropping it rolls back).
#[derive(Debug)]
pub struct LeadImport {
    transaction: Transaction<'static, Postgres>,
    organization_id: Uuid,
    campaign_id: Uuid,
    project_id: Option<Uuid>,
}

/// Whether an import could begin.
#[derive(Debug)]
pub enum ImportStart {
    Ready(LeadImport),
    Refused(LeadRefusal),
}

impl LeadImport {
    /// Inserts a batch of leads and enrolls those whose number is not on the do-not-call list;
    /// reports the lines skipped because their number is already a lead of the campaign
    /// (earlier in this file included) and the lines stored but not enrolled.
    pub async fn insert(&mut self, batch: &LeadBatch) -> Result<LeadBatchOutcome, DbError> {
        // `enrolled_phones` probes the (organization, phone) index with the batch's numbers: a
        // join per input row was planned against the whole campaign (the statistics are stale
        // inside the import's transaction) and grew quadratic, 1 s per batch at 10k rows.
        let rows = sqlx::query!(
            r#"WITH input AS (
                   SELECT * FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                                        $9::jsonb[], $10::int8[])
                       AS t(name, phone, email, timezone, notes, metadata, line)
               ), enrolled_phones AS (
                   SELECT l.phone FROM leads l
                   WHERE l.organization_id = $1 AND l.phone = ANY($5)
                     AND EXISTS (SELECT 1 FROM dial_attempts d
                                 WHERE d.lead_id = l.id AND d.campaign_id = $2)
               ), suppressed_phones AS (
                   SELECT phone_number AS phone FROM do_not_call
                   WHERE organization_id = $1 AND phone_number = ANY($5)
               ), fresh AS (
                   SELECT DISTINCT ON (i.phone) i.* FROM input i
                   WHERE i.phone NOT IN (SELECT phone FROM enrolled_phones)
                   ORDER BY i.phone, i.line
               ), inserted AS (
                   INSERT INTO leads (organization_id, project_id, name, phone, email, timezone,
                                      notes, metadata, source)
                   SELECT $1, $3, name, phone, email, timezone, notes,
                          CASE WHEN metadata = 'null'::jsonb THEN NULL ELSE metadata END,
                          'csv_upload'
                   FROM fresh ORDER BY line
                   RETURNING id, phone
               ), enrolled AS (
                   INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number,
                                              status, due_at)
                   SELECT $1, $2, id, 1, 'scheduled', now() FROM inserted
                   WHERE phone NOT IN (SELECT phone FROM suppressed_phones)
                   ON CONFLICT DO NOTHING
                   RETURNING 1
               )
               SELECT line AS "line!", FALSE AS "suppressed!" FROM input
               WHERE line NOT IN (SELECT line FROM fresh)
               UNION ALL
               SELECT line, TRUE FROM fresh WHERE phone IN (SELECT phone FROM suppressed_phones)
               ORDER BY 1"#,
            self.organization_id,
            self.campaign_id,
            self.project_id,
            &batch.names,
            &batch.phones,
            &batch.emails as &[Option<String>],
            &batch.timezones as &[Option<String>],
            &batch.notes as &[Option<String>],
            &batch.metadata,
            &batch.lines,
        )
        .fetch_all(&mut *self.transaction)
        .await?;
        let mut outcome = LeadBatchOutcome::default();
        for row in rows {
            let line = u64::try_from(row.line).unwrap_or(0);
            match row.suppressed {
                true => outcome.suppressed.push(line),
                false => outcome.duplicates.push(line),
            }
        }
        Ok(outcome)
    }

    /// Commits, unless the campaign finished meanwhile (a cancel must leave nothing
    /// scheduled): the share lock waits for a cancel in progress and holds off the next.
    pub async fn commit(mut self) -> Result<Result<(), LeadRefusal>, DbError> {
        let status = sqlx::query_scalar!(
            "SELECT status FROM campaigns WHERE id = $1 FOR SHARE",
            self.campaign_id,
        )
        .fetch_optional(&mut *self.transaction)
        .await?;
        match status {
            None => return Ok(Err(LeadRefusal::CampaignNotFound)),
            Some(status) if FINISHED_STATUSES.contains(&status.as_str()) => {
                return Ok(Err(LeadRefusal::CampaignFinished { status }));
            }
            Some(_) => {}
        }
        self.transaction.commit().await?;
        Ok(Ok(()))
    }
}

impl Database {
    /// Begins an import into a campaign of the organization.
    pub async fn begin_lead_import(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<ImportStart, DbError> {
        let mut transaction = self.pool.begin().await?;
        // A generic plan of the batch insert does not know the batch's numbers and scans the
        // organization's leads per batch (0.9 s a batch at 60k rows); plan each batch afresh.
        sqlx::query!("SET LOCAL plan_cache_mode = force_custom_plan")
            .execute(&mut *transaction)
            .await?;
        let campaign = sqlx::query!(
            "SELECT status, project_id FROM campaigns WHERE organization_id = $1 AND id = $2",
            organization_id,
            campaign_id,
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(campaign) = campaign else {
            return Ok(ImportStart::Refused(LeadRefusal::CampaignNotFound));
        };
        if FINISHED_STATUSES.contains(&campaign.status.as_str()) {
            return Ok(ImportStart::Refused(LeadRefusal::CampaignFinished {
                status: campaign.status,
            }));
        }
        Ok(ImportStart::Ready(LeadImport {
            transaction,
            organization_id,
            campaign_id,
            project_id: campaign.project_id,
        }))
    }

    /// Creates one lead in the campaign's organization and project and enrolls it, unless its
    /// number is on the do-not-call list (then it is stored only, `suppressed`).
    pub async fn create_lead(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        lead: &NewLead,
    ) -> Result<Result<CreatedLead, LeadRefusal>, DbError> {
        let mut transaction = self.pool.begin().await?;
        let campaign = sqlx::query!(
            "SELECT status, project_id FROM campaigns WHERE organization_id = $1 AND id = $2 FOR SHARE",
            organization_id,
            campaign_id,
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(campaign) = campaign else {
            return Ok(Err(LeadRefusal::CampaignNotFound));
        };
        if FINISHED_STATUSES.contains(&campaign.status.as_str()) {
            return Ok(Err(LeadRefusal::CampaignFinished {
                status: campaign.status,
            }));
        }
        let existing = sqlx::query_scalar!(
            r#"SELECT l.id FROM leads l JOIN dial_attempts d ON d.lead_id = l.id
               WHERE l.organization_id = $1 AND l.phone = $2 AND d.campaign_id = $3 LIMIT 1"#,
            organization_id,
            lead.phone,
            campaign_id,
        )
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(lead_id) = existing {
            return Ok(Err(LeadRefusal::Duplicate { lead_id }));
        }
        let lead_id = sqlx::query_scalar!(
            r#"INSERT INTO leads (organization_id, project_id, name, phone, email, timezone, notes,
                                  metadata, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'manual') RETURNING id"#,
            organization_id,
            campaign.project_id,
            lead.name,
            lead.phone,
            lead.email,
            lead.timezone,
            lead.notes,
            lead.metadata,
        )
        .fetch_one(&mut *transaction)
        .await?;
        // The dialer's claim checks the list again, so an add committing after this read
        // still keeps the number from being dialled.
        let suppressed = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM do_not_call
                              WHERE organization_id = $1 AND phone_number = $2) AS "suppressed!""#,
            organization_id,
            lead.phone,
        )
        .fetch_one(&mut *transaction)
        .await?;
        if !suppressed {
            sqlx::query!(
                r#"INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number, status, due_at)
                   VALUES ($1, $2, $3, 1, 'scheduled', now()) ON CONFLICT DO NOTHING"#,
                organization_id,
                campaign_id,
                lead_id,
            )
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(Ok(CreatedLead {
            lead_id,
            suppressed,
        }))
    }

    /// One lead of the organization.
    pub async fn lead(&self, organization_id: Uuid, id: Uuid) -> Result<Option<LeadRow>, DbError> {
        let row = sqlx::query_as!(
            LeadRow,
            r#"SELECT id, organization_id, project_id, name, phone, email, source, status,
                      call_status, transferred_to_human, call_date, timezone, notes, metadata,
                      created_at, updated_at
               FROM leads WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// A lead's dial attempts, in every campaign, oldest first.
    pub async fn lead_attempts(&self, lead_id: Uuid) -> Result<Vec<AttemptRow>, DbError> {
        let rows = sqlx::query_as!(
            AttemptRow,
            r#"SELECT id, campaign_id, attempt_number, status, is_test, due_at, placed_at, ended_at,
                      call_sid, hangup_cause
               FROM dial_attempts WHERE lead_id = $1 ORDER BY created_at, attempt_number"#,
            lead_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The leads enrolled in a campaign, oldest first.
    pub async fn campaign_leads(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<LeadRow>, DbError> {
        let rows = sqlx::query_as!(
            LeadRow,
            r#"SELECT id, organization_id, project_id, name, phone, email, source, status,
                      call_status, transferred_to_human, call_date, timezone, notes, metadata,
                      created_at, updated_at
               FROM leads l
               WHERE l.organization_id = $1
                 AND EXISTS (SELECT 1 FROM dial_attempts d WHERE d.lead_id = l.id AND d.campaign_id = $2)
               ORDER BY l.created_at, l.id LIMIT $3 OFFSET $4"#,
            organization_id,
            campaign_id,
            limit,
            offset,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Schedules one test call of a lead in a campaign: the next attempt number, due now,
    /// `is_test`, which the dialer places even when the campaign is not running. A number on
    /// the do-not-call list is refused ([`LeadRefusal::DoNotCall`]).
    pub async fn schedule_test_call(
        &self,
        organization_id: Uuid,
        campaign_id: Uuid,
        lead_id: Uuid,
    ) -> Result<Result<TestCall, LeadRefusal>, DbError> {
        let mut transaction = self.pool.begin().await?;
        let status = sqlx::query_scalar!(
            "SELECT status FROM campaigns WHERE organization_id = $1 AND id = $2 FOR SHARE",
            organization_id,
            campaign_id,
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(status) = status else {
            return Ok(Err(LeadRefusal::CampaignNotFound));
        };
        if FINISHED_STATUSES.contains(&status.as_str()) {
            return Ok(Err(LeadRefusal::CampaignFinished { status }));
        }
        // The lead's row lock serialises concurrent requests for the same lead.
        let lead = sqlx::query!(
            r#"SELECT EXISTS (SELECT 1 FROM do_not_call d
                              WHERE d.organization_id = l.organization_id
                                AND d.phone_number = l.phone) AS "suppressed!"
               FROM leads l WHERE l.organization_id = $1 AND l.id = $2 FOR UPDATE OF l"#,
            organization_id,
            lead_id,
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(lead) = lead else {
            return Ok(Err(LeadRefusal::LeadNotFound));
        };
        if lead.suppressed {
            return Ok(Err(LeadRefusal::DoNotCall));
        }
        let busy = sqlx::query!(
            r#"SELECT bool_or(status IN ('dialing', 'ringing', 'in_progress')) AS in_flight,
                      bool_or(is_test AND status = 'scheduled') AS test_pending
               FROM dial_attempts WHERE lead_id = $1"#,
            lead_id,
        )
        .fetch_one(&mut *transaction)
        .await?;
        if busy.in_flight == Some(true) {
            return Ok(Err(LeadRefusal::InFlight));
        }
        if busy.test_pending == Some(true) {
            return Ok(Err(LeadRefusal::TestCallPending));
        }
        let attempt = sqlx::query!(
            r#"INSERT INTO dial_attempts (organization_id, campaign_id, lead_id, attempt_number,
                                         status, due_at, is_test)
               SELECT $1, $2, $3, COALESCE(max(attempt_number), 0) + 1, 'scheduled', now(), TRUE
               FROM dial_attempts WHERE campaign_id = $2 AND lead_id = $3
               RETURNING id, attempt_number"#,
            organization_id,
            campaign_id,
            lead_id,
        )
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Ok(TestCall {
            attempt_id: attempt.id,
            attempt_number: attempt.attempt_number,
        }))
    }
}
