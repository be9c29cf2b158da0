//! Live calls held by this gateway: lookup by CallUUID (to hang one up), admission limit.
//!
//! A call is admitted when its media WebSocket is accepted, before its stream token is spent
//! and before the upgrade: a full gateway refuses the stream and the token stays good. The
//! [`Admission`] travels into the call's task and holds the place until the task ends, however
//! it ends (a stream that never starts included).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A call this gateway holds.
#[derive(Debug, Clone)]
pub struct LiveCall {
    pub call_sid: String,
    pub lead_id: Uuid,
    pub campaign_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// Cancelled to hang the call up (operator or API request).
    pub hangup: CancellationToken,
}

/// The live calls; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    calls: Arc<DashMap<String, LiveCall>>,
    max_calls: usize,
}

/// Removes the call from the registry when the call's task ends, however it ends.
#[derive(Debug)]
pub struct Admission {
    calls: Arc<DashMap<String, LiveCall>>,
    call_sid: String,
    hangup: CancellationToken,
}

impl Admission {
    /// Cancelled when an operator or the API asks this call to hang up.
    pub fn hangup(&self) -> CancellationToken {
        self.hangup.clone()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.calls.remove(&self.call_sid);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("this gateway is at its limit of {0} live calls")]
    Full(usize),
    #[error("call {0} is already live here")]
    Duplicate(String),
}

impl Registry {
    pub fn new(max_calls: usize) -> Self {
        Self {
            calls: Arc::new(DashMap::new()),
            max_calls,
        }
    }

    /// Admits a call, unless the gateway already holds it or is full (in that order: a second
    /// stream of a live call is told so, full or not).
    pub fn admit(&self, call: LiveCall) -> Result<Admission, AdmissionError> {
        let call_sid = call.call_sid.clone();
        if self.calls.contains_key(&call_sid) {
            return Err(AdmissionError::Duplicate(call_sid));
        }
        if self.calls.len() >= self.max_calls {
            return Err(AdmissionError::Full(self.max_calls));
        }
        let hangup = call.hangup.clone();
        match self.calls.entry(call_sid.clone()) {
            dashmap::Entry::Occupied(_) => return Err(AdmissionError::Duplicate(call_sid)),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(call);
            }
        }
        let admission = Admission {
            calls: self.calls.clone(),
            call_sid,
            hangup,
        };
        // Two admissions racing past the first check: the later one gives its place back.
        if self.calls.len() > self.max_calls {
            return Err(AdmissionError::Full(self.max_calls));
        }
        Ok(admission)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// How many live calls this gateway accepts at once (`VG_MAX_CALLS`).
    pub fn max_calls(&self) -> usize {
        self.max_calls
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn get(&self, call_sid: &str) -> Option<LiveCall> {
        self.calls.get(call_sid).map(|entry| entry.clone())
    }

    /// Asks a live call to hang up; `false` if it is not held here.
    pub fn hang_up(&self, call_sid: &str) -> bool {
        match self.calls.get(call_sid) {
            Some(call) => {
                call.hangup.cancel();
                true
            }
            None => false,
        }
    }

    pub fn snapshot(&self) -> Vec<LiveCall> {
        self.calls.iter().map(|entry| entry.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sid: &str) -> LiveCall {
        LiveCall {
            call_sid: sid.into(),
            lead_id: Uuid::nil(),
            campaign_id: Uuid::nil(),
            started_at: Utc::now(),
            hangup: CancellationToken::new(),
        }
    }

    #[test]
    fn admission_is_limited_and_released_on_drop() {
        let registry = Registry::new(2);
        let first = registry.admit(call("a")).unwrap();
        assert_eq!(
            registry.admit(call("a")).unwrap_err(),
            AdmissionError::Duplicate("a".into())
        );
        let _second = registry.admit(call("b")).unwrap();
        assert_eq!(
            registry.admit(call("c")).unwrap_err(),
            AdmissionError::Full(2)
        );
        assert_eq!(
            registry.admit(call("b")).unwrap_err(),
            AdmissionError::Duplicate("b".into()),
            "full, but a live call's second stream is told it is live"
        );
        drop(first);
        assert_eq!(registry.len(), 1);
        assert!(registry.admit(call("c")).is_ok());
    }

    #[test]
    fn hang_up_reaches_the_call() {
        let registry = Registry::new(10);
        let _admission = registry.admit(call("a")).unwrap();
        assert!(registry.hang_up("a"));
        assert!(registry.get("a").unwrap().hangup.is_cancelled());
        assert!(!registry.hang_up("zzz"));
    }
}
