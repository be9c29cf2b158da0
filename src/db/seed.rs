//! Synthetic data for `loadtest` and `demo`: an organization with a project, a running
//! campaign, transfer targets and many leads, inserted in bulk.

use uuid::Uuid;

use super::{Database, DbError};

/// What was created.
#[derive(Debug, Clone)]
pub struct SeededCampaign {
    pub organization_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_ids: Vec<Uuid>,
}

impl Database {
    /// Creates an organization, a project, a running campaign (with `settings`), one
    /// always-open sales target, and `leads` leads with distinct phone numbers.
    pub async fn seed_campaign(
        &self,
        name: &str,
        leads: usize,
        settings: &serde_json::Value,
    ) -> Result<SeededCampaign, DbError> {
        let names: Vec<String> = (0..leads).map(|index| format!("Lead {index}")).collect();
        self.seed_campaign_with_leads(name, &names, settings).await
    }

    /// [`Database::seed_campaign`] with the leads' names given.
    pub async fn seed_campaign_with_leads(
        &self,
        name: &str,
        names: &[String],
        settings: &serde_json::Value,
    ) -> Result<SeededCampaign, DbError> {
        let leads = names.len();
        let mut tx = self.pool.begin().await?;
        let organization_id = sqlx::query_scalar!(
            "INSERT INTO organizations (name, caller_id) VALUES ($1, '+14155550100') RETURNING id",
            name
        )
        .fetch_one(&mut *tx)
        .await?;
        let project_id = sqlx::query_scalar!(
            r#"INSERT INTO projects (organization_id, name, description, facts)
               VALUES ($1, 'Lakeside Towers', 'Two- and three-bedroom flats by the lake.',
                       '{"price": "from 80 lakh", "possession": "December 2027"}')
               RETURNING id"#,
            organization_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let campaign_id = sqlx::query_scalar!(
            r#"INSERT INTO campaigns (organization_id, project_id, name, status, settings, max_concurrent_calls,
                                     silence_timeout_seconds, max_call_duration_seconds)
               VALUES ($1, $2, 'Spring launch', 'running', $3, 10000, 600, 3600) RETURNING id"#,
            organization_id,
            project_id,
            settings
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO transfer_targets (organization_id, name, department, phone_number, priority, working_days)
               VALUES ($1, 'Sales desk', 'sales', '+14155550199', 1, '{1,2,3,4,5,6,7}')"#,
            organization_id
        )
        .execute(&mut *tx)
        .await?;
        let phones: Vec<String> = (0..leads).map(|index| format!("+1555{index:07}")).collect();
        let lead_ids = sqlx::query_scalar!(
            r#"INSERT INTO leads (organization_id, project_id, name, phone)
               SELECT $1, $2, name, phone FROM unnest($3::text[], $4::text[]) AS t(name, phone)
               RETURNING id"#,
            organization_id,
            project_id,
            &names,
            &phones
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SeededCampaign {
            organization_id,
            campaign_id,
            lead_ids,
        })
    }
}

/// One lead's line in a campaign's report.
#[derive(Debug, Clone)]
pub struct LeadReport {
    pub lead_name: String,
    pub lead_status: String,
    pub transferred: bool,
    pub end_reason: Option<String>,
    pub duration_secs: Option<i32>,
    pub summary: Option<String>,
}

/// A campaign's counters.
#[derive(Debug, Clone)]
pub struct CampaignCounters {
    pub total_calls: i32,
    pub transferred_calls: i32,
    pub conversion_rate: String,
}

/// One line of a call's live transcript.
#[derive(Debug, Clone)]
pub struct TranscriptLine {
    pub seq: i32,
    pub kind: String,
    pub text: Option<String>,
}

impl Database {
    /// Every lead of a campaign's organization with its call's outcome, by name.
    pub async fn campaign_report(
        &self,
        campaign_id: Uuid,
    ) -> Result<(Vec<LeadReport>, CampaignCounters), DbError> {
        let leads = sqlx::query_as!(
            LeadReport,
            r#"SELECT l.name AS lead_name, l.call_status AS lead_status,
                      l.transferred_to_human AS transferred,
                      cl.end_reason AS "end_reason?", cl.duration AS "duration_secs?",
                      cl.conversation_summary AS "summary?"
               FROM campaigns c
               JOIN leads l ON l.organization_id = c.organization_id
               LEFT JOIN call_logs cl ON cl.id = l.call_log_id
               WHERE c.id = $1
               ORDER BY l.name"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?;
        let counters = sqlx::query_as!(
            CampaignCounters,
            r#"SELECT total_calls, transferred_calls, conversion_rate::text AS "conversion_rate!"
               FROM campaigns WHERE id = $1"#,
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((leads, counters))
    }

    /// A call's events after `after_seq`, for printing a transcript as it happens.
    pub async fn transcript_since(
        &self,
        call_sid: &str,
        after_seq: i32,
    ) -> Result<Vec<TranscriptLine>, DbError> {
        let lines = sqlx::query_as!(
            TranscriptLine,
            r#"SELECT e.seq, e.kind, e.text
               FROM call_events e JOIN call_logs cl ON cl.id = e.call_log_id
               WHERE cl.call_sid = $1 AND e.seq > $2
               ORDER BY e.seq"#,
            call_sid,
            after_seq
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(lines)
    }
}

/// What the database holds about a load test's calls, for `loadtest --chaos`'s audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTestAudit {
    /// `call_logs` rows of the campaign.
    pub rows: i64,
    /// Of those, rows still open (no `ended_at`).
    pub rows_open: i64,
    /// Calls the load test placed (their stream started) with no row at all.
    pub calls_without_row: i64,
    /// The campaign's `total_calls` counter.
    pub total_calls: i64,
    /// `call_events` rows of the campaign's calls.
    pub events: i64,
}

impl Database {
    /// Counts what the database holds about a load test campaign and the calls it placed.
    pub async fn load_test_audit(
        &self,
        campaign_id: Uuid,
        placed_call_sids: &[String],
    ) -> Result<LoadTestAudit, DbError> {
        let row = sqlx::query!(
            r#"SELECT
                 (SELECT count(*) FROM call_logs WHERE campaign_id = $1) AS "rows!",
                 (SELECT count(*) FROM call_logs WHERE campaign_id = $1 AND ended_at IS NULL) AS "rows_open!",
                 (SELECT count(*) FROM unnest($2::text[]) AS placed(sid)
                  WHERE NOT EXISTS (SELECT 1 FROM call_logs cl WHERE cl.call_sid = placed.sid)) AS "without_row!",
                 (SELECT total_calls::int8 FROM campaigns WHERE id = $1) AS "total_calls!",
                 (SELECT count(*) FROM call_events e JOIN call_logs cl ON cl.id = e.call_log_id
                  WHERE cl.campaign_id = $1) AS "events!""#,
            campaign_id,
            placed_call_sids,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LoadTestAudit {
            rows: row.rows,
            rows_open: row.rows_open,
            calls_without_row: row.without_row,
            total_calls: row.total_calls,
            events: row.events,
        })
    }
}
