//! Closed vocabularies shared by the call, the data layer and the metrics: why a call ended,
//! what its outcome was, what a call event is. Each maps to exactly one string that the
//! database's CHECK constraints accept and metric labels use.

use std::fmt;

/// Generates `as_str`, `ALL`, `Display` and serde spellings (the spool stores them) for a
/// fieldless enum with fixed spellings.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The spelling stored in the database and used as a metric label.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }

            /// The value spelled `text`, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Why a call ended: exactly one per call (`call_logs.end_reason`).
    EndReason {
        /// The caller hung up.
        CallerHangup => "caller_hangup",
        /// The agent ended the call (its `end_call` tool).
        AgentEnded => "agent_ended",
        /// The call left the AI for a human.
        Transferred => "transferred",
        /// The AI provider refused, dropped or stalled.
        ProviderError => "provider_error",
        /// The campaign's maximum call duration was reached.
        MaxDuration => "max_duration",
        /// Nobody spoke for the campaign's silence timeout.
        Silence => "silence",
        /// The gateway shut down before the call finished.
        Shutdown => "shutdown",
        /// A fault of the gateway itself.
        InternalError => "internal_error",
        /// Not answered (from Plivo's hangup callback).
        NoAnswer => "no_answer",
        /// The line was busy.
        Busy => "busy",
        /// The call could not be placed or connected.
        Failed => "failed",
        /// Cancelled before it was answered.
        Canceled => "canceled",
        /// A machine answered.
        Voicemail => "voicemail",
        /// Hung up on request (the API's hang-up, reaching the holder through NOTIFY).
        HangupRequested => "hangup_requested",
        /// The gateway holding the call died (a crash, a kill, a lost host): closed when it
        /// started again, or by another gateway once its heartbeat was stale.
        GatewayRestart => "gateway_restart",
        /// The carrier broke the media stream's limits (a message over 64 KiB): the socket
        /// was closed with code 1009.
        ProtocolError => "protocol_error",
    }
}

vocabulary! {
    /// What a call achieved, as `call_logs.call_status` and the lead's `call_status` know it.
    CallOutcome {
        /// Someone answered and the AI talked with them.
        Called => "called",
        /// A human accepted the transfer.
        Transferred => "transferred",
        /// Nobody answered (busy and failed calls count here too).
        NoAnswer => "no_answer",
        /// A machine answered.
        Voicemail => "voicemail",
    }
}

vocabulary! {
    /// Direction of a call.
    Direction {
        Outbound => "outbound",
        Inbound => "inbound",
    }
}

vocabulary! {
    /// A per-turn call event (`call_events.kind`).
    EventKind {
        CallerSpeech => "caller_speech",
        AgentSpeech => "agent_speech",
        ToolCall => "tool_call",
        ToolResult => "tool_result",
        Dtmf => "dtmf",
        BargeIn => "barge_in",
        TransferDecision => "transfer_decision",
        TransferAttempt => "transfer_attempt",
        TransferOutcome => "transfer_outcome",
        CallbackScheduled => "callback_scheduled",
        Outcome => "outcome",
        ProviderError => "provider_error",
        Note => "note",
        /// The call's recording stopped (storage unwritable, full or stalled); the call went
        /// on unrecorded.
        RecordingFailed => "recording_failed",
    }
}

impl EndReason {
    /// The outcome a call that never reached the media stream ended with.
    pub const fn unreached_outcome(self) -> CallOutcome {
        match self {
            Self::Voicemail => CallOutcome::Voicemail,
            _ => CallOutcome::NoAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_are_unique() {
        fn check<T: Copy + PartialEq + fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &value in all {
                assert!(
                    seen.insert(as_str(value)),
                    "duplicate spelling {}",
                    as_str(value)
                );
                assert_eq!(parse(as_str(value)), Some(value));
            }
            assert_eq!(parse("nonsense"), None);
        }
        check(EndReason::ALL, EndReason::as_str, EndReason::parse);
        check(CallOutcome::ALL, CallOutcome::as_str, CallOutcome::parse);
        check(Direction::ALL, Direction::as_str, Direction::parse);
        check(EventKind::ALL, EventKind::as_str, EventKind::parse);
    }

    #[test]
    fn unreached_calls_are_no_answer_unless_a_machine_answered() {
        assert_eq!(
            EndReason::Voicemail.unreached_outcome(),
            CallOutcome::Voicemail
        );
        assert_eq!(EndReason::Busy.unreached_outcome(), CallOutcome::NoAnswer);
        assert_eq!(
            EndReason::NoAnswer.unreached_outcome(),
            CallOutcome::NoAnswer
        );
    }
}
