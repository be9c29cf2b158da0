//! The voicemail message a machine hears (pure): which message applies, and its text for one
//! lead.
//!
//! The message is the campaign script's (`campaigns.settings.script.voicemail_message`, the one
//! the local pipeline already reads), else the campaign's (`campaigns.settings.voicemail_message`),
//! else the organization's default (`organizations.settings.voicemail_message`). A blank one
//! counts as none. `{name}` becomes the lead's first name; a message without it is left as
//! written.

/// How long the machine's beep is waited for at most (`<Wait length>`): greetings rarely run
/// longer, and a machine without a beep still gets the message afterwards.
pub const BEEP_WAIT_SECS: u32 = 30;
/// The `<Speak>` voice of the message.
pub const VOICE: &str = "WOMAN";

/// The candidate messages, most specific first, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Messages {
    pub script: Option<String>,
    pub campaign: Option<String>,
    pub organization: Option<String>,
}

impl Messages {
    /// The message that applies, if any.
    pub fn choose(&self) -> Option<&str> {
        [&self.script, &self.campaign, &self.organization]
            .into_iter()
            .filter_map(|message| message.as_deref())
            .map(str::trim)
            .find(|message| !message.is_empty())
    }
}

/// `template` for the lead called `lead_name`: every `{name}` becomes the first name ("there"
/// when the lead has no name).
pub fn personalise(template: &str, lead_name: &str) -> String {
    let first_name = lead_name.split_whitespace().next().unwrap_or("there");
    template.replace("{name}", first_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(script: Option<&str>, campaign: Option<&str>, org: Option<&str>) -> Messages {
        Messages {
            script: script.map(str::to_owned),
            campaign: campaign.map(str::to_owned),
            organization: org.map(str::to_owned),
        }
    }

    #[test]
    fn the_most_specific_message_wins() {
        assert_eq!(
            messages(Some("script"), Some("campaign"), Some("org")).choose(),
            Some("script")
        );
        assert_eq!(
            messages(None, Some("campaign"), Some("org")).choose(),
            Some("campaign")
        );
        assert_eq!(messages(None, None, Some("org")).choose(), Some("org"));
        assert_eq!(messages(None, None, None).choose(), None);
    }

    #[test]
    fn blank_messages_count_as_none() {
        assert_eq!(
            messages(Some("  "), Some(""), Some(" Call us back. ")).choose(),
            Some("Call us back.")
        );
        assert_eq!(messages(Some("\n\t"), None, Some(" ")).choose(), None);
    }

    #[test]
    fn name_becomes_the_first_name() {
        assert_eq!(
            personalise("Hi {name}, this is Maya. Bye {name}!", "Priya Sharma"),
            "Hi Priya, this is Maya. Bye Priya!"
        );
        assert_eq!(personalise("Hello {name}.", "  "), "Hello there.");
    }

    #[test]
    fn without_a_placeholder_nothing_is_added() {
        assert_eq!(
            personalise("Please call Lakeside Towers back.", "Priya Sharma"),
            "Please call Lakeside Towers back."
        );
        // Other braces are text.
        assert_eq!(
            personalise("{agent} {Name} {}", "Priya"),
            "{agent} {Name} {}"
        );
    }
}
