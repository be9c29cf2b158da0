//! `leads.status` after a call: what happened on the call moves the lead, by the rules of one
//! pure function, [`next_status`].
//!
//! # Rules, the first that applies wins
//!
//! 1. `converted` stays `converted`: a sale is never undone by a call. (An opt-out of a customer
//!    is a do-not-call matter, not a lost lead.)
//! 2. A call that reached nobody (voicemail, no answer, busy, failed) changes nothing, whatever
//!    else its facts say: nobody was there to say it.
//! 3. An opt-out makes the lead `lost`, even a `qualified` one: they asked us to stop, so
//!    nobody may work the lead any more.
//! 4. A positive signal makes the lead `qualified`: a human accepted the transfer, or the
//!    interest was high. It beats a "not interested" of the same call (callers often decline
//!    before the pitch and come round; the transfer and the recorded interest come after), and
//!    it revives a `lost` lead that came back.
//! 5. "Not interested" (or interest `none`) makes the lead `lost`, except that a `qualified`
//!    lead stays `qualified`: one "not now" on a follow-up does not undo what an earlier call
//!    established; sales decides.
//! 6. Otherwise a reached call moves `new` to `contacted`; `contacted`, `qualified` and `lost`
//!    stay as they are (a neutral call neither demotes a qualified lead nor revives a lost one).
//!    Interest `medium` or `low` is neutral.
//!
//! | current ↓ / call → | not reached | neutral | positive | not interested | opted out |
//! |---|---|---|---|---|---|
//! | `new` | `new` | `contacted` | `qualified` | `lost` | `lost` |
//! | `contacted` | `contacted` | `contacted` | `qualified` | `lost` | `lost` |
//! | `qualified` | `qualified` | `qualified` | `qualified` | `qualified` | `lost` |
//! | `converted` | `converted` | `converted` | `converted` | `converted` | `converted` |
//! | `lost` | `lost` | `lost` | `qualified` | `lost` | `lost` |
//!
//! Applying the same call twice changes nothing the second time, so a repeated callback that
//! re-applies a call's facts is harmless.

use super::analysis::{Interest, spelled};

spelled! {
    /// `leads.status`, spelled as its CHECK constraint.
    LeadStatus {
        /// Never reached yet.
        New => "new",
        /// Reached; nothing decided.
        Contacted => "contacted",
        /// Showed real interest: high interest, or a human took the transfer.
        Qualified => "qualified",
        /// Bought. Set by sales, never by a call; never changed by one.
        Converted => "converted",
        /// Not interested, or opted out.
        Lost => "lost",
    }
}

/// What one call established about its lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CallFacts {
    /// A person was on the line: not voicemail, not unanswered.
    pub reached: bool,
    /// A human accepted the transfer.
    pub transfer_accepted: bool,
    /// The interest recorded for the call, if any.
    pub interest: Option<Interest>,
    /// The caller asked not to be called again.
    pub opted_out: bool,
    /// The caller said they are not interested.
    pub not_interested: bool,
}

/// The lead's status after a call with `facts`, from `current` (see the module's rules).
pub fn next_status(current: LeadStatus, facts: &CallFacts) -> LeadStatus {
    if current == LeadStatus::Converted || !facts.reached {
        return current;
    }
    if facts.opted_out {
        return LeadStatus::Lost;
    }
    if facts.transfer_accepted || facts.interest == Some(Interest::High) {
        return LeadStatus::Qualified;
    }
    if facts.not_interested || facts.interest == Some(Interest::None) {
        return match current {
            LeadStatus::Qualified => LeadStatus::Qualified,
            _ => LeadStatus::Lost,
        };
    }
    match current {
        LeadStatus::New => LeadStatus::Contacted,
        other => other,
    }
}

#[cfg(test)]
mod tests;
