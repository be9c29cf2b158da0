//! One live call: the pure state machine ([`session`]) and, later, the async bridge that
//! drives it and the registry of live calls.

pub mod bridge;
pub mod flood;
pub mod registry;
pub mod session;
pub mod spool;
pub mod token;
pub mod writer;
