//! The campaign dialer: claims due attempts of running campaigns (and test calls), paces them,
//! places them through `plivo::rest`, and follows Plivo's callbacks to each attempt's end and
//! the lead's next attempt. Safe with any number of gateways on one database.
//!
//! Pure, time as a parameter: [`window`] (the calling window in the lead's timezone, DST
//! included), [`pacing`] (the account's calls per second), [`retry`] (hangup → class → retry),
//! [`plan`] (what one claim places, moves or finishes), [`voicemail`] (the message a machine
//! hears). With I/O: [`worker`] (the loop inside `serve`), [`callbacks`] (what the webhooks do
//! to an attempt), [`clock`].

pub mod callbacks;
pub mod clock;
pub mod pacing;
pub mod plan;
pub mod retry;
pub mod voicemail;
pub mod window;
pub mod worker;

pub use clock::{Clock, ManualClock};
pub use worker::Dialer;
