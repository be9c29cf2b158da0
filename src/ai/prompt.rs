//! The agent's instructions and greeting, built from the lead, the campaign and the project.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::dialer::window::CallingWindow;

/// Everything the agent knows about the call before it starts, loaded once per call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallContext {
    pub organization_name: String,
    pub lead_name: String,
    pub campaign_name: String,
    pub agent_name: Option<String>,
    pub agent_instructions: Option<String>,
    pub agent_greeting: Option<String>,
    pub agent_voice: Option<String>,
    /// BCP 47-ish language code, e.g. `en`.
    pub language: String,
    /// `server_vad` or `semantic_vad`.
    pub turn_detection: String,
    pub project_name: Option<String>,
    pub project_description: Option<String>,
    /// `{"topic": "answer"}` facts the agent may state.
    pub project_facts: Value,
    pub silence_timeout_secs: u32,
    pub max_call_duration_secs: u32,
    /// The local pipeline's script, `campaigns.settings.script` (`null` when unset).
    pub script: Value,
    /// Where and when the lead may be called back.
    pub schedule: CallSchedule,
    /// Set when this call is a callback the lead asked for.
    pub callback: Option<CallbackNote>,
    /// The campaign's own provider (`campaigns.ai_provider`); `None` runs the gateway's
    /// default (`VG_AI_PROVIDER`).
    pub provider: Option<crate::config::AiProviderKind>,
    /// Said before the greeting: the recording notice ("This call may be recorded."), when
    /// the call is recorded and the settings give one.
    pub recording_notice: Option<String>,
}

/// The lead's clock and the campaign's calling window, for callbacks the lead asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSchedule {
    pub lead_timezone: Option<String>,
    pub campaign_timezone: String,
    pub organization_timezone: String,
    /// `None`: no window is known, any time will do.
    pub window: Option<CallingWindow>,
}

impl CallSchedule {
    /// The lead's timezone, else the campaign's, else the organization's, else UTC; an
    /// unknown name is skipped.
    pub fn zone(&self) -> Tz {
        [
            self.lead_timezone.as_deref(),
            Some(self.campaign_timezone.as_str()),
            Some(self.organization_timezone.as_str()),
        ]
        .into_iter()
        .flatten()
        .find_map(|name| name.trim().parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
    }
}

/// Why this call is happening: the lead asked for it in an earlier call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackNote {
    /// When the lead asked.
    pub requested_at: DateTime<Utc>,
    /// What they said ("tomorrow at 11").
    pub phrase: Option<String>,
    /// Why: the earlier call's notes or summary.
    pub note: Option<String>,
}

impl CallContext {
    /// The first name, for a friendly greeting.
    pub fn lead_first_name(&self) -> &str {
        self.lead_name.split_whitespace().next().unwrap_or("there")
    }

    pub fn agent_display_name(&self) -> &str {
        self.agent_name.as_deref().unwrap_or("Maya")
    }

    /// The greeting the agent opens with: the campaign's, with `{name}`, `{agent}`,
    /// `{organization}` and `{project}` filled in, or a default.
    pub fn greeting(&self) -> String {
        let project = self.project_name.as_deref().unwrap_or(&self.campaign_name);
        let greeting = match &self.agent_greeting {
            Some(template) => template
                .replace("{name}", self.lead_first_name())
                .replace("{agent}", self.agent_display_name())
                .replace("{organization}", &self.organization_name)
                .replace("{project}", project),
            None => format!(
                "Hello {}, this is {} from {}. I'm calling about {}. Do you have a minute?",
                self.lead_first_name(),
                self.agent_display_name(),
                self.organization_name,
                project
            ),
        };
        match &self.recording_notice {
            Some(notice) => format!("{notice} {greeting}"),
            None => greeting,
        }
    }

    /// The system instructions for a model-based provider.
    pub fn instructions(&self) -> String {
        let mut text = format!(
            "You are {agent}, a friendly phone agent for {organization}. You are calling {lead} about \
             the campaign \"{campaign}\". Speak {language}. Keep every turn to one or two short sentences \
             and ask one question at a time. Never invent facts: if you do not know, say so and offer a \
             colleague or a callback.\n",
            agent = self.agent_display_name(),
            organization = self.organization_name,
            lead = self.lead_name,
            campaign = self.campaign_name,
            language = language_name(&self.language),
        );
        if let Some(project) = &self.project_name {
            text.push_str(&format!("\nWhat you are offering: {project}."));
            if let Some(description) = &self.project_description {
                text.push(' ');
                text.push_str(description);
            }
            text.push('\n');
        }
        if let Some(facts) = self
            .project_facts
            .as_object()
            .filter(|facts| !facts.is_empty())
        {
            text.push_str("\nFacts you may state:\n");
            for (topic, answer) in facts {
                let answer = answer
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| answer.to_string());
                text.push_str(&format!("- {topic}: {answer}\n"));
            }
        }
        if let Some(callback) = &self.callback {
            let asked = callback
                .requested_at
                .with_timezone(&self.schedule.zone())
                .format("%A %-d %B");
            text.push_str(&format!(
                "\nThis call is a callback that {lead} asked for on {asked}",
                lead = self.lead_name
            ));
            if let Some(phrase) = &callback.phrase {
                text.push_str(&format!(" (\"{phrase}\")"));
            }
            text.push('.');
            if let Some(note) = &callback.note {
                text.push_str(&format!(" From that call: {note}"));
            }
            text.push_str(" Remind them that they asked you to call back now.\n");
        }
        if let Some(extra) = &self.agent_instructions {
            text.push_str("\nCampaign notes:\n");
            text.push_str(extra);
            text.push('\n');
        }
        text.push_str(
            "\nTools: when the caller wants a person or is interested and agrees, say a short hand-off \
             line and call transfer_to_human. When the conversation is over, say goodbye and call end_call. \
             If the caller asks to be called later, call schedule_callback with their words and confirm the time \
             it gives back. If the caller asks not to be called again, call opt_out, confirm politely and end \
             the call. Before ending, call \
             record_outcome with the caller's interest level. If a voicemail greeting answers, leave a \
             one-sentence message and call end_call with voicemail true.",
        );
        text
    }
}

fn language_name(code: &str) -> &str {
    match code.split(['-', '_']).next().unwrap_or(code) {
        "en" => "English",
        "hi" => "Hindi",
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "pt" => "Portuguese",
        _ => code,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> CallContext {
        CallContext {
            organization_name: "Acme Homes".into(),
            lead_name: "Priya Sharma".into(),
            campaign_name: "Spring launch".into(),
            language: "en".into(),
            turn_detection: "server_vad".into(),
            project_name: Some("Lakeside Towers".into()),
            project_description: Some("Two- and three-bedroom flats by the lake.".into()),
            project_facts: json!({"price": "from 80 lakh", "possession": "December 2027"}),
            ..CallContext::default()
        }
    }

    #[test]
    fn the_recording_notice_comes_before_the_greeting() {
        let mut noticed = context();
        noticed.recording_notice = Some("This call may be recorded.".into());
        assert_eq!(
            noticed.greeting(),
            format!("This call may be recorded. {}", context().greeting())
        );
    }

    #[test]
    fn instructions_carry_lead_campaign_project_and_facts() {
        let text = context().instructions();
        for expected in [
            "Acme Homes",
            "Priya Sharma",
            "Spring launch",
            "English",
            "Lakeside Towers",
            "by the lake",
            "price: from 80 lakh",
            "transfer_to_human",
            "end_call",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
    }

    #[test]
    fn a_callback_call_says_who_asked_when_and_why() {
        let mut callback = context();
        callback.schedule.lead_timezone = Some("Asia/Kolkata".into());
        callback.callback = Some(CallbackNote {
            requested_at: "2026-12-07T20:00:00Z".parse().unwrap(),
            phrase: Some("tomorrow at 11".into()),
            note: Some("Wants the two-bedroom price list.".into()),
        });
        let text = callback.instructions();
        for expected in [
            "callback that Priya Sharma asked for on Tuesday 8 December",
            "(\"tomorrow at 11\")",
            "Wants the two-bedroom price list.",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        assert!(!context().instructions().contains("callback that"));
    }

    #[test]
    fn the_zone_falls_back_from_lead_to_campaign_to_organization() {
        let mut schedule = CallSchedule {
            lead_timezone: Some("Mars/Olympus".into()),
            campaign_timezone: "".into(),
            organization_timezone: "America/New_York".into(),
            window: None,
        };
        assert_eq!(schedule.zone(), Tz::America__New_York);
        schedule.campaign_timezone = "Asia/Kolkata".into();
        assert_eq!(schedule.zone(), Tz::Asia__Kolkata);
        schedule.lead_timezone = Some("Europe/Paris".into());
        assert_eq!(schedule.zone(), Tz::Europe__Paris);
        assert_eq!(CallSchedule::default().zone(), Tz::UTC);
    }

    #[test]
    fn greeting_uses_the_template_or_a_default() {
        assert_eq!(
            context().greeting(),
            "Hello Priya, this is Maya from Acme Homes. I'm calling about Lakeside Towers. Do you have a minute?"
        );
        let mut custom = context();
        custom.agent_greeting = Some("Hi {name}, {agent} here about {project}.".into());
        custom.agent_name = Some("Riya".into());
        assert_eq!(
            custom.greeting(),
            "Hi Priya, Riya here about Lakeside Towers."
        );
    }
}
