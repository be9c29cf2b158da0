//! What a call decided: callback times, lead status rules, the post-call analysis schema; pure.

pub mod analysis;
pub mod callback_time;
pub mod lead_status;
