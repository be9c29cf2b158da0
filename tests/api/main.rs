//! The integration suite: one test binary, one ephemeral PostgreSQL cluster, a fresh database
//! per test. Nothing here mocks the database.

mod admission;
mod call;
mod callbacks;
mod calls;
mod campaign_api;
mod dashboard;
mod dialer;
mod do_not_call;
mod embedded;
mod gemini;
mod helpers;
mod limits;
mod local;
mod logs;
mod outage;
mod provider_limits;
mod providers;
mod recording;
mod restart;
mod rls;
mod s3_store;
mod schema;
mod serve;
mod servers;
mod transfer;
mod voicemail;
mod webhook_security;
mod webhooks;
