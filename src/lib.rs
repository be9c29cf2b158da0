//! voice-gateway: a realtime voice-AI calling gateway.
//!
//! Plivo streams a phone call's audio to our WebSocket; we bridge it to an AI voice pipeline,
//! decide when a human must take over, and write what happened to PostgreSQL.
//!
//! # Layout
//!
//! - [`config`]: the typed settings tree; the only reader of the environment.
//! - [`telemetry`], [`metrics`]: logs and Prometheus metrics.
//! - [`domain`]: closed vocabularies (end reasons, outcomes, event kinds).
//! - [`db`]: the pool, the embedded PostgreSQL, and every SQL statement.
//! - [`lifecycle`]: tracked tasks and the ordered drain on shutdown.
//! - [`http`]: the axum routes; [`api`], the campaign API under `/api/v1`; [`dashboard`], the
//!   campaign managers' pages under `/app`.
//! - [`phone`]: phone numbers normalised to E.164.
//! - [`plivo`], [`audio`], [`call`], [`ai`]: the call: carrier wire formats, audio, the call
//!   state machine and its bridge, the AI providers (among them [`ai::local`], the offline
//!   pipeline on the `speech` crate's engines).
//! - [`recording`]: every call in Ogg/Opus, stereo, its file written as the call runs.
//! - [`simulators`]: a synthetic Plivo caller and a fake OpenAI Realtime server.
//! - [`transfer`]: when a human must take over, and who.
//! - [`dialer`]: the campaign dialer (claims, pacing, calling windows, retries).
//! - [`outcome`]: what a call decided (callback times), pure.
//! - [`startup`]: building and running the application.
//! - [`demo`]: `voice-gateway demo`, the whole job offline with simulated callers.
//!
//! See `ARCHITECTURE.md` for the bird's-eye view and the invariants.

pub mod ai;
pub mod api;
pub mod audio;
pub mod call;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod dialer;
pub mod domain;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod outcome;
pub mod phone;
pub mod plivo;
pub mod recording;
pub mod simulators;
pub mod startup;
pub mod telemetry;
pub mod transfer;
