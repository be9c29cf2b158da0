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
               VALUES ($1, $2, 'Synthetic campaign', 'running', $3, 10000, 600, 3600) RETURNING id"#,
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
        let names: Vec<String> = (0..leads).map(|index| format!("Lead {index}")).collect();
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
