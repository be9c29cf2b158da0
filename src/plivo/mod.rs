//! The phone side: Plivo's wire formats (pure) and, later, its REST client.
//!
//! - [`rest`]: the REST client (call transfer, hang-up), the only Plivo HTTP caller.
//! - [`signature`]: X-Plivo-Signature-V3 (and V2) validation.
//! - [`stream`]: the Audio Streams WebSocket messages, both directions.
//! - [`xml`]: the XML documents we answer webhooks with.

pub mod rest;
pub mod signature;
pub mod stream;
pub mod xml;
