//! The dialer's loop inside `serve`: every poll interval it finishes attempts nobody heard
//! back about (by their call's log when there is one), claims due attempts organization by organization (see `db::dialer` for the
//! locks), places the claimed calls through `plivo::rest` (each in its own tracked task, with a
//! span per attempt), and completes campaigns with nothing left. It stops claiming as soon as
//! the gateway drains; calls already claimed are still placed.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Semaphore;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    callbacks,
    clock::Clock,
    pacing,
    plan::{Placement, plan_claim},
    retry::{self, AttemptClass, PlaceFailure},
};
use crate::{
    config::DialerSettings,
    db::{Database, DbError, dialer::AttemptEnd},
    lifecycle::Lifecycle,
    plivo::rest::{OutboundCall, PlivoRest},
};

/// Calls being placed at once by this gateway (REST requests in flight); a claim takes no more
/// than the free places.
pub const MAX_PLACING: usize = 64;
/// Candidates a claim locks beyond what it can place, so that attempts outside their window
/// get moved out of the way.
const RESCHEDULE_ROOM: i64 = 20;
/// At most this many candidates per claim.
const MAX_CANDIDATES: i64 = 500;
/// Stuck attempts finished per pass.
const STUCK_BATCH: i64 = 100;
/// How long an attempt Plivo throttled (429, 503) waits before it is claimed again.
const THROTTLED_RETRY: TimeDelta = TimeDelta::seconds(30);

/// The campaign dialer of one gateway.
#[derive(Clone)]
pub struct Dialer {
    db: Database,
    plivo: PlivoRest,
    /// The pacing row's key: the Plivo account (its auth ID).
    account: String,
    server_name: String,
    /// `VG_PUBLIC_URL` without its trailing slash: Plivo's callbacks go there.
    public_base: String,
    settings: DialerSettings,
    clock: Clock,
    placing: Arc<Semaphore>,
}

/// What one pass did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub placed: usize,
    pub rescheduled: usize,
    pub unplaceable: usize,
    /// Attempts cancelled because their number is on the do-not-call list.
    pub suppressed: usize,
    pub recovered: usize,
    pub completed_campaigns: Vec<Uuid>,
}

impl Dialer {
    pub fn new(
        db: Database,
        plivo: PlivoRest,
        account: String,
        server_name: String,
        public_url: &url::Url,
        settings: DialerSettings,
        clock: Clock,
    ) -> Self {
        Self {
            db,
            plivo,
            account,
            server_name,
            public_base: public_url.as_str().trim_end_matches('/').to_owned(),
            settings,
            clock,
            placing: Arc::new(Semaphore::new(MAX_PLACING)),
        }
    }

    /// Runs as a tracked background task until the drain begins or background work stops.
    pub fn spawn(self, lifecycle: &Lifecycle) {
        let lifecycle = lifecycle.clone();
        let task_lifecycle = lifecycle.clone();
        lifecycle.spawn_background(async move { self.run(task_lifecycle).await });
    }

    async fn run(self, lifecycle: Lifecycle) {
        let stop = lifecycle.background_stop_token();
        let mut ticker = tokio::time::interval(self.settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(cps = self.settings.cps, poll = ?self.settings.poll_interval, "dialer started");
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = lifecycle.draining() => break,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.pass(&lifecycle).await {
                tracing::warn!(%error, "dialer pass failed");
            }
        }
        tracing::info!("dialer stopped claiming");
    }

    /// One pass: recovery, claims, completion. Placing runs on in spawned tasks.
    pub async fn pass(&self, lifecycle: &Lifecycle) -> Result<Pass, DbError> {
        let now = self.clock.now();
        let mut pass = Pass {
            recovered: self.recover_stuck(now).await?,
            ..Pass::default()
        };
        let cancelled = self.db.cancel_orphaned_attempts().await?;
        if cancelled > 0 {
            tracing::info!(cancelled, "scheduled attempts of cancelled campaigns ended");
        }
        let organizations = self.db.organizations_with_due_attempts(now).await?;
        for organization_id in organizations {
            if lifecycle.is_draining() {
                break;
            }
            match self.claim(lifecycle, organization_id, now).await {
                Ok(claimed) => {
                    pass.placed += claimed.placed;
                    pass.rescheduled += claimed.rescheduled;
                    pass.unplaceable += claimed.unplaceable;
                    pass.suppressed += claimed.suppressed;
                }
                // One organization's failure (a deadlock with an API transaction, say) does not
                // hold up the others; the next pass tries again.
                Err(error) => tracing::warn!(%organization_id, %error, "claim failed"),
            }
        }
        pass.completed_campaigns = self.db.complete_finished_campaigns().await?;
        metrics::counter!(crate::metrics::DIALER_CAMPAIGNS_COMPLETED)
            .increment(pass.completed_campaigns.len() as u64);
        metrics::counter!(crate::metrics::DIALER_RECOVERED).increment(pass.recovered as u64);
        for campaign_id in &pass.completed_campaigns {
            tracing::info!(%campaign_id, "campaign completed: nothing left to dial");
        }
        Ok(pass)
    }

    async fn claim(
        &self,
        lifecycle: &Lifecycle,
        organization_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Pass, DbError> {
        let Some(mut claim) = self.db.begin_claim(organization_id, now).await? else {
            return Ok(Pass::default());
        };
        let room = claim
            .org_free
            .min(i64::try_from(self.placing.available_permits()).unwrap_or(i64::MAX));
        let open: Vec<Uuid> = claim
            .campaigns
            .iter()
            .filter(|c| {
                c.max_concurrent_calls > c.in_flight && c.calls_per_minute > c.claimed_last_minute
            })
            .map(|c| c.id)
            .collect();
        if room <= 0 || open.is_empty() {
            return Ok(Pass::default()); // Dropping the claim rolls it back.
        }
        let limit = (room + RESCHEDULE_ROOM).min(MAX_CANDIDATES);
        let candidates = claim.candidates(now, &open, limit).await?;
        let suppressed = claim.suppressed();
        let mut plan = plan_claim(now, room, &claim.campaigns, &candidates);
        for warning in &plan.warnings {
            tracing::warn!(
                attempt_id = %warning.attempt_id, which = ?warning.which,
                "unknown timezone name: falling back (lead → campaign → UTC)"
            );
        }
        if !plan.place.is_empty() {
            let (recent, db_now) = claim.lock_pacing(&self.account).await?;
            let grant = pacing::take(&recent, db_now, self.settings.cps, plan.place.len());
            plan.place.truncate(grant.granted);
            if grant.granted > 0 {
                claim.store_pacing(&self.account, &grant.recent).await?;
            }
        }
        claim
            .commit(
                &self.server_name,
                now,
                &plan.place,
                &plan.reschedule,
                &plan.finish,
            )
            .await?;
        if suppressed > 0 {
            tracing::info!(
                %organization_id, suppressed,
                "attempts cancelled: their numbers are on the do-not-call list"
            );
        }
        for unplaceable in &plan.finish {
            tracing::warn!(
                attempt_id = %unplaceable.attempt_id, class = unplaceable.class.as_str(),
                error = %unplaceable.error, "attempt cannot be placed"
            );
        }
        let placed = plan.place.len();
        for placement in plan.place {
            // Free: the claim took no more than the free permits.
            let Ok(permit) = self.placing.clone().acquire_owned().await else {
                break; // Never closed.
            };
            let dialer = self.clone();
            let span = tracing::info_span!(
                "dial_attempt",
                attempt_id = %placement.attempt_id,
                campaign_id = %placement.campaign_id,
                lead_id = %placement.lead_id,
                attempt = placement.attempt_number,
                test = placement.is_test,
            );
            lifecycle.spawn_background(
                async move {
                    dialer.place(&placement).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        Ok(Pass {
            placed,
            rescheduled: plan.reschedule.len(),
            unplaceable: plan.finish.len(),
            suppressed,
            ..Pass::default()
        })
    }

    /// Places one claimed call; a refusal is classified: "later" requeues the attempt, anything
    /// else fails it (and the retry policy decides).
    async fn place(&self, placement: &Placement) {
        let query = format!(
            "lead_id={}&campaign_id={}&attempt_id={}",
            placement.lead_id, placement.campaign_id, placement.attempt_id
        );
        let base = &self.public_base;
        let answer_url = format!("{base}/plivo/answer?{query}");
        let hangup_url = format!("{base}/plivo/hangup?{query}");
        let machine_detection_url = format!("{base}/plivo/machine-detection?{query}");
        let call = OutboundCall {
            from: &placement.from,
            to: &placement.to,
            answer_url: &answer_url,
            hangup_url: &hangup_url,
            ring_timeout_secs: u32::try_from(placement.ring_timeout_seconds).unwrap_or(30),
            time_limit_secs: u32::try_from(placement.time_limit_seconds).unwrap_or(600),
            machine_detection_url: &machine_detection_url,
        };
        let placed_at = self.clock.now();
        let result = self.plivo.make_call(&call).await;
        let written = match result {
            Ok(fired) => {
                tracing::info!(request_uuid = %fired.request_uuid, "call placed");
                metrics::counter!(crate::metrics::DIALER_CALLS, "result" => "placed").increment(1);
                self.db
                    .record_placed(placement.attempt_id, &fired.request_uuid, placed_at)
                    .await
            }
            Err(error) => match retry::classify_place_error(error.status()) {
                PlaceFailure::Throttled => {
                    tracing::warn!(%error, "Plivo throttled the call: requeued");
                    metrics::counter!(crate::metrics::DIALER_CALLS, "result" => "throttled")
                        .increment(1);
                    self.db
                        .requeue_attempt(
                            placement.attempt_id,
                            self.clock.now() + THROTTLED_RETRY,
                            &error.to_string(),
                        )
                        .await
                }
                PlaceFailure::Failed => {
                    tracing::warn!(%error, "placing the call failed");
                    metrics::counter!(crate::metrics::DIALER_CALLS, "result" => "failed")
                        .increment(1);
                    let end = AttemptEnd {
                        attempt_id: placement.attempt_id,
                        class: AttemptClass::Failed,
                        call_sid: None,
                        hangup_cause: None,
                        error: Some(error.to_string()),
                    };
                    callbacks::finish(&self.db, &end).await.map(|_| ())
                }
            },
        };
        if let Err(error) = written {
            // The attempt stays in flight; its callbacks or the recovery will end it.
            tracing::error!(%error, "recording the placement failed");
        }
    }

    /// Finishes attempts in flight with no callback beyond their limit: by what the call's own
    /// log says (a call that reached the stream was answered: completed, no retry), else as
    /// failed.
    async fn recover_stuck(&self, now: DateTime<Utc>) -> Result<usize, DbError> {
        let stuck = self
            .db
            .stuck_attempts(now, self.settings.stuck_margin, STUCK_BATCH)
            .await?;
        let margin = self.settings.stuck_margin;
        for attempt in &stuck {
            let logged = attempt.logged.as_ref();
            let class = retry::recovered_class(logged.map(|call| call.call_status.as_str()));
            let end = match (class, logged) {
                (AttemptClass::Failed, _) | (_, None) => {
                    tracing::warn!(
                        attempt_id = %attempt.attempt_id, status = %attempt.status,
                        call_sid = ?attempt.call_sid, "no callback from Plivo in time: attempt failed"
                    );
                    AttemptEnd {
                        attempt_id: attempt.attempt_id,
                        class: AttemptClass::Failed,
                        call_sid: None,
                        hangup_cause: None,
                        error: Some(format!(
                            "no callback from Plivo within the ring timeout, the maximum duration and {}s (left {})",
                            margin.as_secs(),
                            attempt.status
                        )),
                    }
                }
                (class, Some(call)) => {
                    tracing::warn!(
                        attempt_id = %attempt.attempt_id, status = %attempt.status,
                        call_sid = %call.call_sid, class = class.as_str(),
                        "no hangup callback from Plivo in time: the call's log says it was reached"
                    );
                    AttemptEnd {
                        attempt_id: attempt.attempt_id,
                        class,
                        call_sid: Some(call.call_sid.clone()),
                        hangup_cause: Some(format!(
                            "no hangup callback; the call log says {}",
                            call.call_status
                        )),
                        error: None,
                    }
                }
            };
            callbacks::finish(&self.db, &end).await?;
        }
        Ok(stuck.len())
    }
}
