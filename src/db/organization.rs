//! An organization's settings the API manages: its transfer targets and its caller IDs (the
//! default `organizations.caller_id` and the numbers of `organization_phone_numbers`).

use chrono::{DateTime, NaiveTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Database, DbError};

/// What a campaign manager sets on a transfer target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferTargetFields {
    pub name: String,
    pub department: String,
    pub phone_number: String,
    pub priority: i32,
    pub timezone: String,
    pub working_days: Vec<i16>,
    pub working_hours_start: Option<NaiveTime>,
    pub working_hours_end: Option<NaiveTime>,
    pub is_active: bool,
}

/// A transfer target as stored.
#[derive(Debug, Clone, Serialize)]
pub struct TransferTargetRow {
    pub id: Uuid,
    #[serde(flatten)]
    pub fields: TransferTargetFields,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A number the organization owns.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneNumberRow {
    pub id: Uuid,
    pub phone_number: String,
    pub label: Option<String>,
    pub inbound_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// The organization's caller IDs.
#[derive(Debug, Clone, Serialize)]
pub struct CallerIds {
    /// Used when a campaign sets none.
    pub default_caller_id: Option<String>,
    pub numbers: Vec<PhoneNumberRow>,
}

/// An organization's defaults the API applies.
#[derive(Debug, Clone)]
pub struct OrganizationDefaults {
    pub timezone: String,
    /// `settings.default_country_code`, for phone numbers written without one.
    pub default_country_code: Option<String>,
}

impl Database {
    pub async fn organization_defaults(
        &self,
        organization_id: Uuid,
    ) -> Result<Option<OrganizationDefaults>, DbError> {
        let row = sqlx::query_as!(
            OrganizationDefaults,
            r#"SELECT timezone, settings->>'default_country_code' AS default_country_code
               FROM organizations WHERE id = $1"#,
            organization_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    pub async fn transfer_targets(
        &self,
        organization_id: Uuid,
    ) -> Result<Vec<TransferTargetRow>, DbError> {
        let rows = sqlx::query!(
            r#"SELECT id, name, department, phone_number, priority, timezone, working_days,
                      working_hours_start, working_hours_end, is_active, created_at, updated_at
               FROM transfer_targets WHERE organization_id = $1
               ORDER BY department, priority, name, id"#,
            organization_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TransferTargetRow {
                id: r.id,
                fields: TransferTargetFields {
                    name: r.name,
                    department: r.department,
                    phone_number: r.phone_number,
                    priority: r.priority,
                    timezone: r.timezone,
                    working_days: r.working_days,
                    working_hours_start: r.working_hours_start,
                    working_hours_end: r.working_hours_end,
                    is_active: r.is_active,
                },
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect())
    }

    pub async fn transfer_target(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<TransferTargetRow>, DbError> {
        let rows = self.transfer_targets(organization_id).await?;
        Ok(rows.into_iter().find(|row| row.id == id))
    }

    pub async fn create_transfer_target(
        &self,
        organization_id: Uuid,
        fields: &TransferTargetFields,
    ) -> Result<Uuid, DbError> {
        let f = fields;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO transfer_targets (organization_id, name, department, phone_number, priority,
                   timezone, working_days, working_hours_start, working_hours_end, is_active)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id"#,
            organization_id,
            f.name,
            f.department,
            f.phone_number,
            f.priority,
            f.timezone,
            &f.working_days,
            f.working_hours_start,
            f.working_hours_end,
            f.is_active,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Replaces a target's fields; `false` if the organization has no such target.
    pub async fn update_transfer_target(
        &self,
        organization_id: Uuid,
        id: Uuid,
        fields: &TransferTargetFields,
    ) -> Result<bool, DbError> {
        let f = fields;
        let result = sqlx::query!(
            r#"UPDATE transfer_targets SET name = $3, department = $4, phone_number = $5,
                   priority = $6, timezone = $7, working_days = $8, working_hours_start = $9,
                   working_hours_end = $10, is_active = $11
               WHERE organization_id = $1 AND id = $2"#,
            organization_id,
            id,
            f.name,
            f.department,
            f.phone_number,
            f.priority,
            f.timezone,
            &f.working_days,
            f.working_hours_start,
            f.working_hours_end,
            f.is_active,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete_transfer_target(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            "DELETE FROM transfer_targets WHERE organization_id = $1 AND id = $2",
            organization_id,
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn caller_ids(&self, organization_id: Uuid) -> Result<Option<CallerIds>, DbError> {
        let Some(default_caller_id) = sqlx::query_scalar!(
            "SELECT caller_id FROM organizations WHERE id = $1",
            organization_id,
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let numbers = sqlx::query_as!(
            PhoneNumberRow,
            r#"SELECT id, phone_number, label, inbound_enabled, created_at
               FROM organization_phone_numbers WHERE organization_id = $1
               ORDER BY created_at, phone_number"#,
            organization_id,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(CallerIds {
            default_caller_id,
            numbers,
        }))
    }

    pub async fn set_default_caller_id(
        &self,
        organization_id: Uuid,
        caller_id: Option<&str>,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            "UPDATE organizations SET caller_id = $2 WHERE id = $1",
            organization_id,
            caller_id,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Adds a number; a number is owned by one organization (unique), so a taken one fails
    /// with a unique violation.
    pub async fn add_phone_number(
        &self,
        organization_id: Uuid,
        phone_number: &str,
        label: Option<&str>,
        inbound_enabled: bool,
    ) -> Result<PhoneNumberRow, DbError> {
        let row = sqlx::query_as!(
            PhoneNumberRow,
            r#"INSERT INTO organization_phone_numbers (organization_id, phone_number, label, inbound_enabled)
               VALUES ($1, $2, $3, $4)
               RETURNING id, phone_number, label, inbound_enabled, created_at"#,
            organization_id,
            phone_number,
            label,
            inbound_enabled,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    pub async fn delete_phone_number(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<bool, DbError> {
        let result = sqlx::query!(
            "DELETE FROM organization_phone_numbers WHERE organization_id = $1 AND id = $2",
            organization_id,
            id,
        )
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
