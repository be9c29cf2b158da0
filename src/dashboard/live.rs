//! Live pages: one `LISTEN` on `vg_dashboard` per gateway (a tracked background task,
//! reconnecting with backoff), fanned out to every open page through a bounded broadcast
//! channel. The migration's triggers notify on every call opening or ending and every call
//! event, whichever gateway wrote it, so a page on any gateway sees every call.
//!
//! A notification only says *that* something changed; each stream then reads what changed
//! from the database. So a page that falls behind (the channel lagged) or a listener that
//! reconnected (notifications in between are lost: it broadcasts [`Notice::Resync`]) just
//! reads again, and nothing is shown twice or lost.

use serde::Deserialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{db::Database, lifecycle::Lifecycle};

/// Notices kept for a slow page before it lags (and rereads).
const CAPACITY: usize = 1024;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A call of `org` opened, ended, or got an event.
    Call { org: Uuid, call: Uuid, what: What },
    /// Notifications may have been missed: every page rereads.
    Resync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Open,
    Close,
    Event,
}

#[derive(Deserialize)]
struct Payload {
    org: Uuid,
    call: Uuid,
    what: What,
}

/// Parses a notification's payload; `None` for one this version does not know.
pub fn parse(payload: &str) -> Option<Notice> {
    let Payload { org, call, what } = serde_json::from_str(payload).ok()?;
    Some(Notice::Call { org, call, what })
}

/// The fan-out: cloned into the state; each page subscribes.
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<Notice>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Live {
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }

    /// Starts the gateway's listener as a tracked background task.
    pub fn spawn_listener(&self, db: Database, lifecycle: &Lifecycle) {
        let sender = self.sender.clone();
        let stop = lifecycle.background_stop_token();
        lifecycle.spawn_background(async move {
            db.listen_until(
                crate::db::dashboard::DASHBOARD_CHANNEL,
                stop,
                // Whatever happened while not listening is reread.
                || drop(sender.send(Notice::Resync)),
                |payload| match parse(payload) {
                    // No page open: nobody to tell.
                    Some(notice) => drop(sender.send(notice)),
                    None => tracing::debug!(payload, "unknown dashboard notification"),
                },
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_unknown_ones_are_skipped() {
        let org = Uuid::new_v4();
        let call = Uuid::new_v4();
        let payload = format!(r#"{{"org":"{org}","call":"{call}","what":"event","seq":3}}"#);
        assert_eq!(
            parse(&payload),
            Some(Notice::Call {
                org,
                call,
                what: What::Event
            })
        );
        assert_eq!(parse(r#"{"org":"x"}"#), None);
        assert_eq!(
            parse(&format!(
                r#"{{"org":"{org}","call":"{call}","what":"moved"}}"#
            )),
            None
        );
    }
}
