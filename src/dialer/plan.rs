//! Which due attempts one claim places, moves or finishes (pure).
//!
//! Given the organization's and its campaigns' free capacity (calls in flight, not calls
//! started) and the candidates locked for this claim, in priority order (test calls first, then
//! the longest due): an attempt outside its calling window is moved to the window's next
//! opening (or cancelled once the campaign's end date has passed); one without a number, or
//! without a caller ID to call from, is finished; the rest are placed while every limit has
//! room, one per lead. The account's calls per second are applied afterwards, to this list's
//! head, under the pacing row's lock.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    retry::AttemptClass,
    window::{CallingWindow, Opening, RejectedZone, resolve_zone},
};

/// A campaign that has due attempts, as the claim sees it under its lock.
#[derive(Debug, Clone)]
pub struct CampaignSlot {
    pub id: Uuid,
    pub running: bool,
    pub timezone: String,
    pub window: CallingWindow,
    /// The campaign's caller ID, else the organization's.
    pub caller_id: Option<String>,
    pub max_concurrent_calls: i64,
    pub calls_per_minute: i64,
    /// Attempts of this campaign dialing, ringing or in progress.
    pub in_flight: i64,
    /// Attempts of this campaign claimed in the last minute.
    pub claimed_last_minute: i64,
    pub ring_timeout_seconds: i32,
    pub max_call_duration_seconds: i32,
}

/// A scheduled, due attempt locked by the claim.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub attempt_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub attempt_number: i32,
    pub is_test: bool,
    pub phone: Option<String>,
    pub lead_timezone: Option<String>,
}

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub attempt_id: Uuid,
    pub campaign_id: Uuid,
    pub lead_id: Uuid,
    pub attempt_number: i32,
    pub is_test: bool,
    pub from: String,
    pub to: String,
    pub ring_timeout_seconds: i32,
    pub time_limit_seconds: i32,
}

/// An attempt that ends without a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub attempt_id: Uuid,
    pub class: AttemptClass,
    pub error: String,
}

/// A configured timezone that was not understood (logged, never fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneWarning {
    pub attempt_id: Uuid,
    pub which: RejectedZone,
}

/// The claim's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In priority order; the pacing bucket may cut the tail.
    pub place: Vec<Placement>,
    /// Attempts outside their window, moved to its next opening.
    pub reschedule: Vec<(Uuid, DateTime<Utc>)>,
    pub finish: Vec<Unplaceable>,
    pub warnings: Vec<ZoneWarning>,
}

/// Decides one claim. `org_free` is the organization's free concurrency.
pub fn plan_claim(
    now: DateTime<Utc>,
    org_free: i64,
    campaigns: &[CampaignSlot],
    candidates: &[Candidate],
) -> Plan {
    let campaigns: HashMap<Uuid, &CampaignSlot> = campaigns.iter().map(|c| (c.id, c)).collect();
    let mut free: HashMap<Uuid, i64> = campaigns
        .values()
        .map(|c| {
            let concurrent = c.max_concurrent_calls - c.in_flight;
            let per_minute = c.calls_per_minute - c.claimed_last_minute;
            (c.id, concurrent.min(per_minute).max(0))
        })
        .collect();
    let mut org_free = org_free.max(0);
    let mut leads = HashSet::new();
    let mut plan = Plan::default();
    for candidate in candidates {
        let Some(campaign) = campaigns.get(&candidate.campaign_id) else {
            continue; // Not locked by this claim (its campaign stopped running): left as it is.
        };
        if !candidate.is_test && !campaign.running {
            continue;
        }
        if !candidate.is_test {
            let zone = resolve_zone(candidate.lead_timezone.as_deref(), &campaign.timezone);
            if let Some(which) = zone.rejected {
                plan.warnings.push(ZoneWarning {
                    attempt_id: candidate.attempt_id,
                    which,
                });
            }
            match campaign.window.next_opening(zone.tz, now) {
                Opening::Now => {}
                Opening::At(at) => {
                    plan.reschedule.push((candidate.attempt_id, at));
                    continue;
                }
                Opening::Never => {
                    plan.finish.push(Unplaceable {
                        attempt_id: candidate.attempt_id,
                        class: AttemptClass::Canceled,
                        error: "the campaign's end date has passed".to_owned(),
                    });
                    continue;
                }
            }
        }
        let Some(to) = candidate
            .phone
            .clone()
            .filter(|phone| !phone.trim().is_empty())
        else {
            plan.finish.push(Unplaceable {
                attempt_id: candidate.attempt_id,
                class: AttemptClass::InvalidNumber,
                error: "the lead has no phone number".to_owned(),
            });
            continue;
        };
        let Some(from) = campaign.caller_id.clone() else {
            plan.finish.push(Unplaceable {
                attempt_id: candidate.attempt_id,
                class: AttemptClass::Failed,
                error: "no caller ID: set the campaign's caller_id or the organization's"
                    .to_owned(),
            });
            continue;
        };
        let campaign_free = free.entry(campaign.id).or_default();
        if org_free == 0 || *campaign_free == 0 || !leads.insert(candidate.lead_id) {
            continue; // Stays scheduled for a later claim.
        }
        org_free -= 1;
        *campaign_free -= 1;
        plan.place.push(Placement {
            attempt_id: candidate.attempt_id,
            campaign_id: campaign.id,
            lead_id: candidate.lead_id,
            attempt_number: candidate.attempt_number,
            is_test: candidate.is_test,
            from,
            to,
            ring_timeout_seconds: campaign.ring_timeout_seconds,
            time_limit_seconds: campaign.max_call_duration_seconds,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use chrono::NaiveTime;

    use super::*;

    fn campaign(id: Uuid, max_concurrent: i64, in_flight: i64) -> CampaignSlot {
        CampaignSlot {
            id,
            running: true,
            timezone: "UTC".to_owned(),
            window: CallingWindow {
                start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                days: vec![1, 2, 3, 4, 5, 6, 7],
                starts_on: None,
                ends_on: None,
            },
            caller_id: Some("+14155550100".to_owned()),
            max_concurrent_calls: max_concurrent,
            calls_per_minute: 1000,
            in_flight,
            claimed_last_minute: 0,
            ring_timeout_seconds: 30,
            max_call_duration_seconds: 600,
        }
    }

    fn candidate(campaign_id: Uuid) -> Candidate {
        Candidate {
            attempt_id: Uuid::new_v4(),
            campaign_id,
            lead_id: Uuid::new_v4(),
            attempt_number: 1,
            is_test: false,
            phone: Some("+14155551234".to_owned()),
            lead_timezone: None,
        }
    }

    fn noon() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn limits_count_calls_in_flight() {
        let id = Uuid::new_v4();
        let candidates: Vec<_> = (0..10).map(|_| candidate(id)).collect();
        let plan = plan_claim(noon(), 100, &[campaign(id, 5, 3)], &candidates);
        assert_eq!(plan.place.len(), 2, "5 allowed, 3 in flight");
        let plan = plan_claim(noon(), 1, &[campaign(id, 5, 0)], &candidates);
        assert_eq!(plan.place.len(), 1, "the organization's limit");
        let mut slot = campaign(id, 50, 0);
        slot.calls_per_minute = 10;
        slot.claimed_last_minute = 7;
        let plan = plan_claim(noon(), 100, &[slot], &candidates);
        assert_eq!(plan.place.len(), 3, "calls per minute");
        assert_eq!(plan.place[0].attempt_id, candidates[0].attempt_id);
    }

    #[test]
    fn one_attempt_per_lead_per_claim() {
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let a = candidate(first);
        let mut b = candidate(second);
        b.lead_id = a.lead_id;
        let plan = plan_claim(
            noon(),
            10,
            &[campaign(first, 5, 0), campaign(second, 5, 0)],
            &[a.clone(), b],
        );
        assert_eq!(plan.place.len(), 1);
        assert_eq!(plan.place[0].attempt_id, a.attempt_id);
    }

    #[test]
    fn outside_the_window_moves_inside_it_places_and_tests_ignore_it() {
        let id = Uuid::new_v4();
        let mut tokyo = candidate(id);
        tokyo.lead_timezone = Some("Asia/Tokyo".to_owned()); // 21:00 there.
        let mut broken = candidate(id);
        broken.lead_timezone = Some("Nowhere/Special".to_owned()); // Falls back to UTC: noon.
        let mut test_call = candidate(id);
        test_call.is_test = true;
        test_call.lead_timezone = Some("Asia/Tokyo".to_owned());
        let mut paused = campaign(id, 5, 0);
        let plan = plan_claim(
            noon(),
            10,
            &[paused.clone()],
            &[tokyo.clone(), broken.clone(), test_call.clone()],
        );
        assert_eq!(
            plan.reschedule,
            vec![(
                tokyo.attempt_id,
                DateTime::parse_from_rfc3339("2026-06-16T00:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )]
        );
        let placed: Vec<_> = plan.place.iter().map(|p| p.attempt_id).collect();
        assert_eq!(placed, vec![broken.attempt_id, test_call.attempt_id]);
        assert_eq!(plan.warnings.len(), 1);
        // A campaign that is not running places its test calls only.
        paused.running = false;
        let plan = plan_claim(noon(), 10, &[paused], &[tokyo, broken, test_call.clone()]);
        let placed: Vec<_> = plan.place.iter().map(|p| p.attempt_id).collect();
        assert_eq!(placed, vec![test_call.attempt_id]);
        assert!(plan.reschedule.is_empty());
    }

    #[test]
    fn no_number_or_no_caller_id_finishes_the_attempt() {
        let id = Uuid::new_v4();
        let mut no_phone = candidate(id);
        no_phone.phone = None;
        let plan = plan_claim(noon(), 10, &[campaign(id, 5, 0)], &[no_phone]);
        assert_eq!(plan.finish[0].class, AttemptClass::InvalidNumber);
        let mut silent = campaign(id, 5, 0);
        silent.caller_id = None;
        let plan = plan_claim(noon(), 10, &[silent], &[candidate(id)]);
        assert_eq!(plan.finish[0].class, AttemptClass::Failed);
        assert!(plan.finish[0].error.contains("caller ID"));
        assert!(plan.place.is_empty());
    }
}
