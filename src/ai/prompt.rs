//! The agent's instructions and greeting, built from the lead, the campaign and the project.

use serde_json::Value;

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
        match &self.agent_greeting {
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
        if let Some(extra) = &self.agent_instructions {
            text.push_str("\nCampaign notes:\n");
            text.push_str(extra);
            text.push('\n');
        }
        text.push_str(
            "\nTools: when the caller wants a person or is interested and agrees, say a short hand-off \
             line and call transfer_to_human. When the conversation is over, say goodbye and call end_call. \
             If the caller asks to be called later, call schedule_callback. Before ending, call \
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
