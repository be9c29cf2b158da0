//! The XML documents the gateway answers Plivo webhooks with (pure).
//!
//! Documents are built by hand rather than with an XML library: they are tiny, fixed in shape,
//! and byte-for-byte determinism keeps them easy to test. Every text node and attribute value
//! goes through `escape`, so caller-supplied URLs and messages cannot break the markup.

/// The answer to /plivo/answer: a bidirectional stream, then a redirect that runs when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAnswer<'a> {
    /// `wss://…/plivo/stream?token=…`, the body of `<Stream>`.
    pub stream_url: &'a str,
    /// Where Plivo posts stream status events (`statusCallbackUrl`, method POST).
    pub status_callback_url: &'a str,
    /// The body of `<Redirect method="POST">`, fetched when the stream ends.
    pub after_stream_url: &'a str,
    /// The media format Plivo sends and expects, e.g. `audio/x-mulaw;rate=8000`.
    pub content_type: &'a str,
}

/// Renders the `<Stream>` + `<Redirect>` answer document.
pub fn stream_answer(answer: &StreamAnswer<'_>) -> String {
    document(&[
        format!(
            r#"<Stream bidirectional="true" keepCallAlive="true" contentType="{}" statusCallbackUrl="{}" statusCallbackMethod="POST">{}</Stream>"#,
            escape(answer.content_type),
            escape(answer.status_callback_url),
            escape(answer.stream_url),
        ),
        format!(
            r#"<Redirect method="POST">{}</Redirect>"#,
            escape(answer.after_stream_url)
        ),
    ])
}

/// A polite message then hang up (unknown calls, refusals).
///
/// `voice` is e.g. `WOMAN`, `language` e.g. `en-US`.
pub fn speak_and_hangup(text: &str, voice: &str, language: &str) -> String {
    document(&[
        format!(
            r#"<Speak voice="{}" language="{}">{}</Speak>"#,
            escape(voice),
            escape(language),
            escape(text),
        ),
        HANGUP.to_owned(),
    ])
}

/// The transfer's `<Dial>`: an optional hand-off line for the caller, then one number, with the
/// whisper as `confirmSound` and key 1 to accept. `<Number>` has no `url` attribute in Plivo's
/// XML; the human's briefing is the Dial's `confirmSound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialTransfer<'a> {
    pub handoff_line: Option<&'a str>,
    /// Where Plivo posts the dial's outcome (`action`, method POST).
    pub action_url: &'a str,
    pub caller_id: Option<&'a str>,
    pub timeout_secs: u32,
    /// The whisper document's URL.
    pub confirm_sound_url: &'a str,
    /// E.164; written as digits, as Plivo's examples do.
    pub number: &'a str,
}

/// Renders the transfer document.
pub fn dial_transfer(dial: &DialTransfer<'_>) -> String {
    let mut elements = Vec::new();
    if let Some(line) = dial.handoff_line {
        elements.push(format!(
            r#"<Speak voice="WOMAN" language="en-US">{}</Speak>"#,
            escape(line)
        ));
    }
    let caller_id = dial
        .caller_id
        .map(|caller_id| {
            format!(
                r#" callerId="{}""#,
                escape(caller_id.trim_start_matches('+'))
            )
        })
        .unwrap_or_default();
    elements.push(format!(
        r#"<Dial action="{}" method="POST"{caller_id} timeout="{}" confirmSound="{}" confirmKey="1" redirect="true"><Number>{}</Number></Dial>"#,
        escape(dial.action_url),
        dial.timeout_secs,
        escape(dial.confirm_sound_url),
        escape(dial.number.trim_start_matches('+')),
    ));
    document(&elements)
}

/// What the human hears before pressing 1: a `<Speak>` only (Plivo allows Play, Wait, Speak).
pub fn speak(text: &str) -> String {
    document(&[format!(
        r#"<Speak voice="WOMAN" language="en-US">{}</Speak>"#,
        escape(text)
    )])
}

/// The document a machine's call is moved to: wait for the beep, leave the message, hang up.
///
/// Plivo documents `beep` on `<Wait>` as "used to detect a voicemail machine, so an application
/// can leave voicemail messages", and as used only when `silence` and `minSilence` are not set:
/// the two modes exclude each other, so the wait is on the beep alone (which sounds when the
/// greeting ends), for at most `beep_wait_secs` (`length`, an integer > 0), after which the
/// message is spoken anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voicemail<'a> {
    /// The message, already personalised.
    pub message: &'a str,
    /// `WOMAN` or `MAN`.
    pub voice: &'a str,
    /// One of `<Speak>`'s language codes, e.g. `en-US` (see [`speak_language`]).
    pub language: &'a str,
    pub beep_wait_secs: u32,
}

/// Renders the voicemail document.
pub fn voicemail(voicemail: &Voicemail<'_>) -> String {
    document(&[
        format!(
            r#"<Wait length="{}" beep="true"/>"#,
            voicemail.beep_wait_secs.max(1)
        ),
        format!(
            r#"<Speak voice="{}" language="{}">{}</Speak>"#,
            escape(voicemail.voice),
            escape(voicemail.language),
            escape(voicemail.message),
        ),
        HANGUP.to_owned(),
    ])
}

/// `<Speak>`'s languages that have a `WOMAN` voice, as Plivo documents them.
const SPEAK_LANGUAGES: &[&str] = &[
    "da-DK", "nl-NL", "en-AU", "en-GB", "en-US", "fr-FR", "fr-CA", "de-DE", "it-IT", "pl-PL",
    "pt-BR", "ru-RU", "es-ES", "es-US", "sv-SE",
];

/// The `<Speak>` language for a campaign's language (`en`, `en-GB`, `es`…): the documented code
/// itself when it is one, else the usual region for the bare language, else `en-US`.
pub fn speak_language(code: &str) -> &'static str {
    let code = code.trim().replace('_', "-");
    if let Some(known) = SPEAK_LANGUAGES
        .iter()
        .copied()
        .find(|known| known.eq_ignore_ascii_case(&code))
    {
        return known;
    }
    let primary = code.split('-').next().unwrap_or("").to_ascii_lowercase();
    match primary.as_str() {
        "da" => "da-DK",
        "nl" => "nl-NL",
        "fr" => "fr-FR",
        "de" => "de-DE",
        "it" => "it-IT",
        "pl" => "pl-PL",
        "pt" => "pt-BR",
        "ru" => "ru-RU",
        "es" => "es-US",
        "sv" => "sv-SE",
        _ => "en-US",
    }
}

/// Just hang up.
pub fn hangup() -> String {
    document(&[HANGUP.to_owned()])
}

/// Escapes text and attribute values alike (quotes too, so one function serves both).
///
/// Characters XML 1.0 forbids outright are dropped, since no escape can carry them; tab, CR
/// and LF become character references so attribute-value normalisation cannot turn them
/// into spaces.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
const HANGUP: &str = "<Hangup/>";

/// Wraps already-rendered elements in the declaration and `<Response>`, one element per line.
fn document(elements: &[String]) -> String {
    let mut out = String::from(DECLARATION);
    out.push_str("\n<Response>\n");
    for element in elements {
        out.push_str(element);
        out.push('\n');
    }
    out.push_str("</Response>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> StreamAnswer<'static> {
        StreamAnswer {
            stream_url: "wss://gw.example.com/plivo/stream?token=abc",
            status_callback_url: "https://gw.example.com/plivo/stream-status",
            after_stream_url: "https://gw.example.com/plivo/after-stream",
            content_type: "audio/x-mulaw;rate=8000",
        }
    }

    /// Parses `xml` and returns the `<Response>` children as elements, checking the root.
    fn response_children<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> Vec<roxmltree::Node<'a, 'i>> {
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "Response");
        // Only whitespace may sit between elements.
        for node in root.children().filter(|n| n.is_text()) {
            assert!(node.text().unwrap_or("").trim().is_empty());
        }
        root.children().filter(|n| n.is_element()).collect()
    }

    fn attributes<'a>(node: &roxmltree::Node<'a, '_>) -> Vec<(&'a str, &'a str)> {
        node.attributes().map(|a| (a.name(), a.value())).collect()
    }

    #[test]
    fn stream_answer_exact() {
        assert_eq!(
            stream_answer(&answer()),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Response>\n\
             <Stream bidirectional=\"true\" keepCallAlive=\"true\" \
             contentType=\"audio/x-mulaw;rate=8000\" \
             statusCallbackUrl=\"https://gw.example.com/plivo/stream-status\" \
             statusCallbackMethod=\"POST\">wss://gw.example.com/plivo/stream?token=abc</Stream>\n\
             <Redirect method=\"POST\">https://gw.example.com/plivo/after-stream</Redirect>\n\
             </Response>\n"
        );
    }

    #[test]
    fn stream_answer_parses() {
        let xml = stream_answer(&answer());
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 2);

        let stream = children[0];
        assert_eq!(stream.tag_name().name(), "Stream");
        assert_eq!(
            attributes(&stream),
            vec![
                ("bidirectional", "true"),
                ("keepCallAlive", "true"),
                ("contentType", "audio/x-mulaw;rate=8000"),
                (
                    "statusCallbackUrl",
                    "https://gw.example.com/plivo/stream-status"
                ),
                ("statusCallbackMethod", "POST"),
            ]
        );
        assert_eq!(
            stream.text(),
            Some("wss://gw.example.com/plivo/stream?token=abc")
        );

        let redirect = children[1];
        assert_eq!(redirect.tag_name().name(), "Redirect");
        assert_eq!(attributes(&redirect), vec![("method", "POST")]);
        assert_eq!(
            redirect.text(),
            Some("https://gw.example.com/plivo/after-stream")
        );
    }

    #[test]
    fn stream_answer_escapes_query_strings() {
        let a = StreamAnswer {
            stream_url: "wss://gw.example.com/plivo/stream?a=1&b=2",
            status_callback_url: "https://gw.example.com/status?a=1&b=2",
            after_stream_url: "https://gw.example.com/after?x=1&y=2",
            content_type: "audio/x-l16;rate=16000",
        };
        let xml = stream_answer(&a);
        assert!(xml.contains(">wss://gw.example.com/plivo/stream?a=1&amp;b=2</Stream>"));
        assert!(xml.contains(r#"statusCallbackUrl="https://gw.example.com/status?a=1&amp;b=2""#));
        assert!(xml.contains(">https://gw.example.com/after?x=1&amp;y=2</Redirect>"));
        assert!(!xml.contains("&b=") && !xml.contains("&y="));

        // And the parser gives the original values back.
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children[0].text(), Some(a.stream_url));
        assert_eq!(
            children[0].attribute("statusCallbackUrl"),
            Some(a.status_callback_url)
        );
        assert_eq!(children[0].attribute("contentType"), Some(a.content_type));
        assert_eq!(children[1].text(), Some(a.after_stream_url));
    }

    #[test]
    fn speak_and_hangup_exact() {
        assert_eq!(
            speak_and_hangup("Sorry, this number is not in service.", "WOMAN", "en-US"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Response>\n\
             <Speak voice=\"WOMAN\" language=\"en-US\">Sorry, this number is not in service.</Speak>\n\
             <Hangup/>\n\
             </Response>\n"
        );
    }

    #[test]
    fn speak_and_hangup_parses() {
        let xml = speak_and_hangup("Goodbye.", "MAN", "en-GB");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 2);
        assert_eq!(children[0].tag_name().name(), "Speak");
        assert_eq!(
            attributes(&children[0]),
            vec![("voice", "MAN"), ("language", "en-GB")]
        );
        assert_eq!(children[0].text(), Some("Goodbye."));
        assert_eq!(children[1].tag_name().name(), "Hangup");
        assert!(children[1].attributes().next().is_none());
        assert!(!children[1].has_children());
    }

    #[test]
    fn speak_escapes_text_and_attributes() {
        let text = r#"Tom & Jerry say "1 < 2" and 'bye' >"#;
        let voice = r#"WO"MAN'<&>"#;
        let xml = speak_and_hangup(text, voice, "en-US");
        assert!(xml.contains(
            "<Speak voice=\"WO&quot;MAN&apos;&lt;&amp;&gt;\" language=\"en-US\">\
             Tom &amp; Jerry say &quot;1 &lt; 2&quot; and &apos;bye&apos; &gt;</Speak>"
        ));

        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 2);
        assert_eq!(children[0].attribute("voice"), Some(voice));
        assert_eq!(children[0].attribute("language"), Some("en-US"));
        assert_eq!(children[0].text(), Some(text));
    }

    #[test]
    fn hangup_exact_and_parses() {
        let xml = hangup();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n<Hangup/>\n</Response>\n"
        );
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].tag_name().name(), "Hangup");
    }

    #[test]
    fn escape_all_specials() {
        assert_eq!(escape(r#"&<>"'"#), "&amp;&lt;&gt;&quot;&apos;");
        assert_eq!(escape("plain text, ünïcödé ☎"), "plain text, ünïcödé ☎");
        assert_eq!(escape(""), "");
        // Already-escaped input is escaped again: callers pass raw text.
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn escape_control_characters() {
        assert_eq!(escape("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        assert_eq!(escape("a\u{0}b\u{1b}c\u{fffe}d"), "abcd");
    }

    #[test]
    fn hostile_input_stays_well_formed() {
        let nasty = "</Speak><Hangup/>]]><!-- \u{0}\u{7}\"'&\n\t";
        let xml = speak_and_hangup(nasty, nasty, nasty);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 2);
        let cleaned = "</Speak><Hangup/>]]><!-- \"'&\n\t";
        assert_eq!(children[0].text(), Some(cleaned));
        assert_eq!(children[0].attribute("voice"), Some(cleaned));
        assert_eq!(children[0].attribute("language"), Some(cleaned));

        let a = StreamAnswer {
            stream_url: nasty,
            status_callback_url: nasty,
            after_stream_url: nasty,
            content_type: nasty,
        };
        let xml = stream_answer(&a);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 2);
        assert_eq!(children[0].text(), Some(cleaned));
        assert_eq!(children[0].attribute("contentType"), Some(cleaned));
        assert_eq!(children[1].text(), Some(cleaned));
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(stream_answer(&answer()), stream_answer(&answer()));
        assert_eq!(hangup(), hangup());
    }

    /// `<Wait>`'s documented attributes: `length` (s, integer > 0), `silence` (bool),
    /// `minSilence` (ms, integer > 0), `beep` (bool, only without silence detection).
    const WAIT_ATTRIBUTES: &[&str] = &["length", "silence", "minSilence", "beep"];
    /// `<Speak>`'s documented attributes and voices.
    const SPEAK_ATTRIBUTES: &[&str] = &["voice", "language", "loop"];

    fn voicemail_message(message: &str) -> String {
        voicemail(&Voicemail {
            message,
            voice: "WOMAN",
            language: "en-US",
            beep_wait_secs: 30,
        })
    }

    #[test]
    fn voicemail_exact() {
        assert_eq!(
            voicemail_message("Hi Priya, please call us back."),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <Response>\n\
             <Wait length=\"30\" beep=\"true\"/>\n\
             <Speak voice=\"WOMAN\" language=\"en-US\">Hi Priya, please call us back.</Speak>\n\
             <Hangup/>\n\
             </Response>\n"
        );
    }

    #[test]
    fn voicemail_uses_documented_elements_and_values_only() {
        let message = r#"Hi "Priya" & <family>, it's Maya. Call 555-0100!"#;
        let xml = voicemail_message(message);
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        let names: Vec<&str> = children.iter().map(|n| n.tag_name().name()).collect();
        assert_eq!(names, ["Wait", "Speak", "Hangup"]);

        let wait = children[0];
        for (name, _) in attributes(&wait) {
            assert!(WAIT_ATTRIBUTES.contains(&name), "undocumented Wait@{name}");
        }
        let length: u32 = wait.attribute("length").unwrap().parse().unwrap();
        assert!(length >= 1, "length is an integer > 0");
        assert_eq!(wait.attribute("beep"), Some("true"));
        // Plivo uses `beep` only when silence detection is off: setting both would ignore it.
        assert_eq!(wait.attribute("silence"), None);
        assert_eq!(wait.attribute("minSilence"), None);
        assert!(!wait.has_children());

        let speak = children[1];
        for (name, _) in attributes(&speak) {
            assert!(
                SPEAK_ATTRIBUTES.contains(&name),
                "undocumented Speak@{name}"
            );
        }
        assert!(["WOMAN", "MAN"].contains(&speak.attribute("voice").unwrap()));
        assert!(SPEAK_LANGUAGES.contains(&speak.attribute("language").unwrap()));
        assert_eq!(
            speak.text(),
            Some(message),
            "escaped, and read back unchanged"
        );

        let hangup = children[2];
        assert!(hangup.attributes().next().is_none());
        assert!(!hangup.has_children());
    }

    #[test]
    fn voicemail_waits_at_least_a_second_and_survives_hostile_text() {
        let xml = voicemail(&Voicemail {
            message: "</Speak><Hangup/><Wait length=\"0\"/>",
            voice: "WOMAN",
            language: "en-US",
            beep_wait_secs: 0,
        });
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let children = response_children(&doc);
        assert_eq!(children.len(), 3);
        assert_eq!(children[0].attribute("length"), Some("1"));
        assert_eq!(
            children[1].text(),
            Some("</Speak><Hangup/><Wait length=\"0\"/>")
        );
    }

    #[test]
    fn speak_language_maps_campaign_languages_to_documented_codes() {
        assert_eq!(speak_language("en"), "en-US");
        assert_eq!(speak_language("en-GB"), "en-GB");
        assert_eq!(speak_language("en_gb"), "en-GB");
        assert_eq!(speak_language("EN-au"), "en-AU");
        assert_eq!(speak_language("es"), "es-US");
        assert_eq!(speak_language("es-ES"), "es-ES");
        assert_eq!(speak_language("fr-CA"), "fr-CA");
        assert_eq!(speak_language("fr-BE"), "fr-FR");
        assert_eq!(speak_language("de"), "de-DE");
        assert_eq!(speak_language("pt"), "pt-BR");
        assert_eq!(speak_language("xx"), "en-US");
        assert_eq!(speak_language(""), "en-US");
        for code in [
            "en", "es", "fr", "de", "it", "nl", "pl", "pt", "ru", "sv", "da", "zz",
        ] {
            assert!(SPEAK_LANGUAGES.contains(&speak_language(code)), "{code}");
        }
    }

    #[test]
    fn dial_transfer_has_the_documented_shape() {
        let xml = dial_transfer(&DialTransfer {
            handoff_line: Some("Connecting you to a colleague now."),
            action_url: "https://gw.test/plivo/dial-status?call=CA-1&attempt=0",
            caller_id: Some("+14155550100"),
            timeout_secs: 25,
            confirm_sound_url: "https://gw.test/plivo/transfer-whisper?call=CA-1",
            number: "+14155550123",
        });
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n<Speak voice=\"WOMAN\" language=\"en-US\">Connecting you to a colleague now.</Speak>\n<Dial action=\"https://gw.test/plivo/dial-status?call=CA-1&amp;attempt=0\" method=\"POST\" callerId=\"14155550100\" timeout=\"25\" confirmSound=\"https://gw.test/plivo/transfer-whisper?call=CA-1\" confirmKey=\"1\" redirect=\"true\"><Number>14155550123</Number></Dial>\n</Response>\n"
        );
        let document = roxmltree::Document::parse(&xml).unwrap();
        let dial = document
            .descendants()
            .find(|n| n.has_tag_name("Dial"))
            .unwrap();
        assert_eq!(dial.attribute("confirmKey"), Some("1"));
        assert_eq!(
            dial.children()
                .filter(|n| n.is_element())
                .map(|n| n.tag_name().name())
                .collect::<Vec<_>>(),
            ["Number"]
        );
        let bare = dial_transfer(&DialTransfer {
            handoff_line: None,
            caller_id: None,
            ..DialTransfer {
                handoff_line: None,
                action_url: "a",
                caller_id: None,
                timeout_secs: 5,
                confirm_sound_url: "b",
                number: "1",
            }
        });
        assert!(
            !bare.contains("<Speak") && !bare.contains("callerId"),
            "{bare}"
        );
        assert!(speak("Lead <Priya> & co").contains("Lead &lt;Priya&gt; &amp; co"));
    }
}
