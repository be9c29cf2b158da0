//! The local pipeline's conversation flow: a deterministic state machine driven by the
//! campaign's script. Pure: it gets the caller's words with their intent and answers with what
//! the agent says and the tool calls a model would make, so the call bridge treats it exactly
//! like OpenAI Realtime.
//!
//! Flow: greeting → pitch and qualifying questions → hand-off to a human when the caller is
//! interested (or asks for one); answers to questions from the campaign's and project's facts;
//! one objection reply; callbacks with the time the caller names; polite closes for "not
//! interested", wrong persons and voicemail greetings; at any point, a caller who asks never to
//! be called again is confirmed and opted out. Below the intent threshold the agent asks again,
//! twice at most.
//!
//! A callback takes two replies, because the gateway resolves the caller's words into a time
//! (or cannot): "Let me note that." with `schedule_callback`, then, after the tool's result and
//! the gateway's `Continue`, the confirmation of the time the gateway read (and goodbye), a
//! second request for the time, or an apology that no callback can be arranged then.

use serde_json::{Value, json};
use speech::intent::Intent;

use crate::ai::prompt::CallContext;

/// The campaign's script for the local pipeline, from `campaigns.settings.script`, with
/// defaults drawn from the project. Every field is optional in the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// What the agent says after the caller agrees to listen.
    pub pitch: String,
    /// Qualifying questions, asked one at a time; a caller who says yes to all is handed over.
    pub questions: Vec<String>,
    /// The one reply to a first "not interested" (ends with a question), if any.
    pub objection_reply: Option<String>,
    /// Left on a voicemail greeting.
    pub voicemail_message: String,
    /// Said before hanging up on a caller who declined.
    pub goodbye: String,
    /// Words Whisper should expect (project and place names), its prompt.
    pub vocabulary: Vec<String>,
    /// `{"topic": "answer"}`: the project's facts overlaid with the script's.
    pub facts: Vec<(String, String)>,
    /// Extra example phrases per intent for this campaign's classifier.
    pub examples: Vec<(Intent, String)>,
}

impl Script {
    /// The script for a call: `context.script` (the campaign's JSON) over defaults.
    pub fn for_call(context: &CallContext) -> Self {
        let json = &context.script;
        let text = |key: &str| {
            json.get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let list = |key: &str| -> Option<Vec<String>> {
            json.get(key).and_then(Value::as_array).map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        };
        let project = context
            .project_name
            .clone()
            .unwrap_or_else(|| context.campaign_name.clone());
        let pitch = text("pitch").unwrap_or_else(|| match &context.project_description {
            Some(description) => format!("{project}: {}", description.trim()),
            None => format!("I'd love to tell you about {project}."),
        });
        let mut facts: Vec<(String, String)> = Vec::new();
        for source in [
            &context.project_facts,
            json.get("facts").unwrap_or(&Value::Null),
        ] {
            if let Some(map) = source.as_object() {
                for (topic, answer) in map {
                    let answer = answer
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| answer.to_string());
                    facts.retain(|(existing, _)| existing != topic);
                    facts.push((topic.clone(), answer));
                }
            }
        }
        let mut vocabulary = vec![
            project.clone(),
            context.organization_name.clone(),
            context.agent_display_name().to_owned(),
        ];
        vocabulary.extend(list("vocabulary").unwrap_or_default());
        let examples = json
            .get("examples")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(name, phrases)| {
                        let intent = Intent::ALL.iter().find(|i| i.as_str() == name)?;
                        Some(
                            phrases
                                .as_array()?
                                .iter()
                                .filter_map(Value::as_str)
                                .map(|phrase| (*intent, phrase.to_owned()))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        Self {
            pitch,
            questions: list("questions").unwrap_or_else(|| {
                vec![format!(
                    "Would you like one of my colleagues to tell you more about {project}?"
                )]
            }),
            objection_reply: text("objection_reply"),
            voicemail_message: text("voicemail_message").unwrap_or_else(|| {
                format!(
                    "Hello {}, this is {} from {}, calling about {project}. We will try you again later. Goodbye.",
                    context.lead_first_name(),
                    context.agent_display_name(),
                    context.organization_name
                )
            }),
            goodbye: text("goodbye")
                .unwrap_or_else(|| "Thank you for your time. Goodbye.".to_owned()),
            vocabulary,
            facts,
            examples,
        }
    }

    /// Whisper's prompt: the words this call is likely to contain.
    pub fn stt_prompt(&self) -> String {
        format!("Phone call about {}.", self.vocabulary.join(", "))
    }
}

/// A tool call the flow makes, as a model would.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: &'static str,
    pub arguments: Value,
}

/// One turn of the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub tools: Vec<ToolCall>,
}

impl Reply {
    fn say(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tools: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, arguments: Value) -> Self {
        self.tools.push(ToolCall { name, arguments });
        self
    }
}

/// Where the conversation stands: what the agent's last question was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The greeting asked whether the caller has a minute.
    Opening,
    /// Qualifying question `n` was asked.
    Qualifying(usize),
    /// The agent asked when to call back.
    CallbackTime,
    /// The agent asked the gateway to schedule a callback and waits for its answer.
    NotingCallback,
    /// The agent offered a colleague (after a question it could not answer).
    OfferedHuman(usize),
    /// No colleague was free; the agent offered a callback.
    OfferedCallback,
    /// The agent handed the call over; it only waits.
    Transferring,
    /// The agent said goodbye and ended the call.
    Closed,
}

/// How the call went, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Transferred,
    /// The caller asked for a callback `asked` (their words); `scheduled` is the gateway's
    /// reading of them once it has scheduled it, `moved` whether that was moved into the
    /// calling window.
    Callback {
        asked: String,
        scheduled: Option<String>,
        moved: bool,
    },
    /// The caller asked for a callback that cannot be arranged, and why.
    NoCallback {
        asked: String,
        why: &'static str,
    },
    NotInterested,
    /// The caller asked never to be called again.
    OptedOut,
    WrongPerson,
    Voicemail,
    NotUnderstood,
}

/// The gateway's answer to `schedule_callback`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallbackAnswer {
    /// Scheduled; `say` is the time as the agent should say it.
    Scheduled { say: String, moved: bool },
    /// No time could be read from the caller's words.
    AskAgain,
    /// The time cannot be served (the campaign ends before then).
    Impossible,
}

impl CallbackAnswer {
    fn read(output: &Value) -> Self {
        let flag = |key: &str| output.get(key).and_then(Value::as_bool);
        match (flag("ok"), flag("ask_again")) {
            (Some(true), _) => Self::Scheduled {
                say: output
                    .get("say")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|say| !say.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_default(),
                moved: flag("moved") == Some(true),
            },
            (_, Some(true)) => Self::AskAgain,
            _ => Self::Impossible,
        }
    }
}

/// What an analysis of the call needs from the conversation, as the dialogue saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogueOutcome {
    /// The interest level of the last `record_outcome` the agent made: high, medium, low or
    /// none.
    pub interest: Option<&'static str>,
    /// Reasons the caller gave for declining ("price", "already has one", "no need"), in the
    /// order first heard; "price" also when the caller asked the price and then declined.
    pub objections: Vec<String>,
    /// The caller asked never to be called again.
    pub opted_out: bool,
    /// When to call back: the gateway's reading once scheduled, the caller's words while the
    /// gateway had not answered; `None` when no callback was asked for or none can be made.
    pub callback_when: Option<String>,
    /// The call closed on the caller's refusal (an opt-out is one too).
    pub not_interested: bool,
    /// The caller asked for a person, or accepted the agent's offer of a colleague.
    pub wants_human: bool,
}

/// Unreadable callback times the agent asks again about before giving up.
const MAX_TIME_REPROMPTS: u32 = 2;

/// The conversation state of one call.
#[derive(Debug)]
pub struct Dialogue {
    script: Script,
    lead_first_name: String,
    greeting: String,
    stage: Stage,
    unknown_in_row: u32,
    objection_used: bool,
    /// The session already apologised for the missing colleague (its `Say`).
    apology_said: bool,
    intents: Vec<Option<Intent>>,
    topics_asked: Vec<String>,
    questions_answered_yes: usize,
    ending: Option<Ending>,
    /// The gateway's answer to the pending `schedule_callback`, said on the next `Continue`.
    callback_answer: Option<CallbackAnswer>,
    /// Times the gateway could not read a callback time from the caller's words.
    unreadable_times: u32,
    /// The opt-out's reason, as sent with `opt_out`.
    opt_out_reason: Option<String>,
    /// The gateway answered `opt_out`: it ran, and must not run again.
    opt_out_answered: bool,
    /// The closing reply was cancelled before its tools ran (see [`Dialogue::on_cut_short`]).
    closing_cut_short: bool,
    /// The interest level of the last `record_outcome`.
    interest: Option<&'static str>,
    objections: Vec<String>,
    wants_human: bool,
}

impl Dialogue {
    pub fn new(context: &CallContext, script: Script) -> Self {
        Self {
            script,
            lead_first_name: context.lead_first_name().to_owned(),
            greeting: context.greeting(),
            stage: Stage::Opening,
            unknown_in_row: 0,
            objection_used: false,
            apology_said: false,
            intents: Vec::new(),
            topics_asked: Vec::new(),
            questions_answered_yes: 0,
            ending: None,
            callback_answer: None,
            unreadable_times: 0,
            opt_out_reason: None,
            opt_out_answered: false,
            closing_cut_short: false,
            interest: None,
            objections: Vec::new(),
            wants_human: false,
        }
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The agent's first words.
    pub fn greeting(&self) -> Reply {
        Reply::say(self.greeting.clone())
    }

    /// The caller said `words`, understood as `intent` (`None`: below the threshold).
    pub fn on_caller(&mut self, words: &str, intent: Option<Intent>) -> Option<Reply> {
        if words.trim().is_empty() {
            return None;
        }
        self.intents.push(intent);
        if matches!(intent, Some(Intent::NotInterested | Intent::OptOut)) {
            self.note_objections(words);
        }
        // Never call again is honoured whatever the agent was doing: during a hand-off the
        // transfer goes on (the session has decided it), but the number is suppressed; after a
        // closing the call is ending anyway. A voicemail greeting cannot opt anyone out.
        let opting_out = intent == Some(Intent::OptOut)
            && !matches!(self.ending, Some(Ending::Voicemail | Ending::OptedOut));
        match self.stage {
            _ if opting_out => return Some(self.opt_out(words)),
            Stage::Transferring => {
                return Some(Reply::say("Please hold while I connect you."));
            }
            Stage::Closed => return Some(self.close_again()),
            // The gateway's answer is on its way (the caller spoke on): the reply to it is
            // the answer to these words too.
            Stage::NotingCallback => return None,
            _ => {}
        }
        // Asked when to call back, anything but a refusal names the time.
        if self.stage == Stage::CallbackTime
            && !matches!(
                intent,
                Some(
                    Intent::WantsHuman
                        | Intent::NotInterested
                        | Intent::WrongPerson
                        | Intent::OptOut
                )
            )
        {
            self.unknown_in_row = 0;
            return Some(self.schedule(find_time(words)));
        }
        let Some(intent) = intent else {
            return Some(self.not_understood());
        };
        self.unknown_in_row = 0;
        let reply = match (self.stage, intent) {
            (_, Intent::OptOut) => self.opt_out(words),
            (_, Intent::Voicemail) if self.intents.len() <= 2 => self.voicemail(),
            (_, Intent::WrongPerson) => self.wrong_person(),
            (_, Intent::WantsHuman) => {
                self.wants_human = true;
                self.hand_over("the caller asked for a person", "medium")
            }
            (Stage::CallbackTime, _) => self.decline(),
            (_, Intent::CallBack) => match find_time(words) {
                Some(when) => self.schedule(Some(when)),
                None => {
                    self.stage = Stage::CallbackTime;
                    Reply::say("Of course. When would be a better time to call you?")
                }
            },
            (_, Intent::AsksPrice | Intent::Question) => self.answer(words, intent),
            (Stage::OfferedCallback, Intent::Interested) => {
                self.stage = Stage::CallbackTime;
                Reply::say("Great. When would suit you best?")
            }
            (Stage::OfferedCallback, _) => self.decline(),
            (Stage::OfferedHuman(_), Intent::Interested) => {
                self.wants_human = true;
                self.hand_over("the caller has a question for a colleague", "medium")
            }
            (Stage::OfferedHuman(question), _) => {
                self.stage = Stage::Qualifying(question);
                Reply::say(format!("No problem. {}", self.question(question)))
            }
            (Stage::Opening, Intent::Interested) => {
                self.stage = Stage::Qualifying(0);
                Reply::say(format!("{} {}", self.script.pitch, self.question(0)))
            }
            (Stage::Qualifying(n), Intent::Interested) => {
                self.questions_answered_yes += 1;
                if n + 1 < self.script.questions.len() {
                    self.stage = Stage::Qualifying(n + 1);
                    Reply::say(format!("Great. {}", self.question(n + 1)))
                } else {
                    self.hand_over("the caller is interested", "high")
                }
            }
            (Stage::Opening | Stage::Qualifying(_), Intent::NotInterested) => {
                match (&self.script.objection_reply, self.objection_used) {
                    (Some(objection), false) => {
                        self.objection_used = true;
                        Reply::say(objection.clone())
                    }
                    _ => self.decline(),
                }
            }
            // Transferring, Closed and NotingCallback returned above; a late voicemail intent
            // is a no.
            (Stage::Transferring | Stage::Closed | Stage::NotingCallback, _)
            | (_, Intent::Voicemail) => self.decline(),
        };
        Some(reply)
    }

    /// The session asked the agent to say `text` itself (no colleague free: a callback offer).
    pub fn on_say(&mut self, text: &str) -> Reply {
        self.apology_said = true;
        self.stage = Stage::OfferedCallback;
        Reply::say(text)
    }

    /// A tool's result came back. A refused hand-off turns into a callback offer, and a
    /// callback's answer into its confirmation, a second request for the time or an apology,
    /// said on the following `Continue` (unless the session already said the offer).
    pub fn on_tool_result(&mut self, name: &str, output: &Value) {
        let refused = output.get("ok").and_then(Value::as_bool) == Some(false);
        match name {
            "transfer_to_human" if refused && self.stage == Stage::Transferring => {
                self.stage = Stage::OfferedCallback;
                self.ending = None;
            }
            "schedule_callback" if self.stage == Stage::NotingCallback => {
                self.callback_answer = Some(CallbackAnswer::read(output));
            }
            "opt_out" => self.opt_out_answered = true,
            _ => {}
        }
    }

    /// The session lets the agent speak again after tool results.
    pub fn on_continue(&mut self) -> Option<Reply> {
        if self.stage == Stage::OfferedCallback && !self.apology_said {
            self.apology_said = true;
            return Some(Reply::say(
                "I'm sorry, none of my colleagues can take your call right now. Shall I arrange for someone to call you back?",
            ));
        }
        if self.stage == Stage::NotingCallback {
            let answer = self.callback_answer.take()?;
            return Some(self.callback_answered(answer));
        }
        None
    }

    /// The agent's last reply, which carried tool calls, was cancelled (the caller barged in)
    /// before its tools ran: a callback request never reached the gateway, so the caller's
    /// next words name the time again; a cut-short opt-out is sent again by
    /// [`close_again`](Self::close_again).
    pub fn on_cut_short(&mut self) {
        match self.stage {
            Stage::NotingCallback if self.callback_answer.is_none() => {
                self.stage = Stage::CallbackTime;
                self.ending = None;
            }
            Stage::Closed => self.closing_cut_short = true,
            _ => {}
        }
    }

    /// What an analysis of the call needs: interest, objections, opt-out, callback, refusal,
    /// a wish for a person.
    pub fn outcome(&self) -> DialogueOutcome {
        let opted_out = self.ending == Some(Ending::OptedOut);
        let not_interested = opted_out || self.ending == Some(Ending::NotInterested);
        let mut objections = self.objections.clone();
        let asked_price = self.intents.contains(&Some(Intent::AsksPrice));
        if not_interested && asked_price && !objections.iter().any(|o| o == "price") {
            objections.push("price".to_owned());
        }
        let callback_when = match &self.ending {
            Some(Ending::Callback {
                asked, scheduled, ..
            }) => Some(scheduled.clone().unwrap_or_else(|| asked.clone())),
            _ => None,
        };
        DialogueOutcome {
            interest: self.interest,
            objections,
            opted_out,
            callback_when,
            not_interested,
            wants_human: self.wants_human,
        }
    }

    /// A deterministic summary of the call from its turns and intents.
    pub fn summary(&self) -> String {
        let understood: Vec<&str> = self
            .intents
            .iter()
            .map(|intent| intent.map_or("unclear", |intent| intent.as_str()))
            .collect();
        let outcome = match &self.ending {
            Some(Ending::Transferred) => "was handed over to a colleague".to_owned(),
            Some(Ending::Callback {
                asked,
                scheduled,
                moved,
            }) => match scheduled {
                // The gateway's reading, when it says more than the caller's words.
                Some(say) if say != asked => format!(
                    "asked to be called back {asked}; the callback is set for {say}{}",
                    if *moved {
                        " (moved into the calling window)"
                    } else {
                        ""
                    }
                ),
                _ => format!("asked to be called back {asked}"),
            },
            Some(Ending::NoCallback { asked, why }) => {
                format!("asked to be called back {asked}, but {why}")
            }
            Some(Ending::NotInterested) => "was not interested".to_owned(),
            Some(Ending::OptedOut) => "asked not to be called again".to_owned(),
            Some(Ending::WrongPerson) => "was the wrong person".to_owned(),
            Some(Ending::Voicemail) => "did not answer: a voicemail greeting did".to_owned(),
            Some(Ending::NotUnderstood) => "could not be understood".to_owned(),
            None => "hung up before the conversation ended".to_owned(),
        };
        let mut text = format!(
            "{} {outcome}. Caller turns: {}",
            self.lead_first_name,
            understood.len()
        );
        if !understood.is_empty() {
            text.push_str(&format!(" ({})", understood.join(", ")));
        }
        text.push('.');
        if !self.topics_asked.is_empty() {
            text.push_str(&format!(" Asked about: {}.", self.topics_asked.join(", ")));
        }
        if self.questions_answered_yes > 0 {
            text.push_str(&format!(
                " Said yes to {} of {} qualifying questions.",
                self.questions_answered_yes,
                self.script.questions.len()
            ));
        }
        text
    }

    fn question(&self, n: usize) -> &str {
        self.script
            .questions
            .get(n)
            .map(String::as_str)
            .unwrap_or("Would you like to hear more?")
    }

    /// What the agent asked last, to ask it again.
    fn current_question(&self) -> String {
        match self.stage {
            Stage::Opening => "Do you have a minute to talk?".to_owned(),
            Stage::Qualifying(n) => self.question(n).to_owned(),
            Stage::CallbackTime => "When would be a good time to call you back?".to_owned(),
            Stage::NotingCallback => String::new(),
            Stage::OfferedHuman(_) => {
                "Would you like me to connect you with a colleague?".to_owned()
            }
            Stage::OfferedCallback => "Shall I arrange a callback?".to_owned(),
            Stage::Transferring | Stage::Closed => String::new(),
        }
    }

    fn not_understood(&mut self) -> Reply {
        self.unknown_in_row += 1;
        if self.unknown_in_row > 2 {
            self.stage = Stage::Closed;
            self.ending = Some(Ending::NotUnderstood);
            let reply = Reply::say(
                "I'm sorry, the line seems to be bad. We will try you again another time. Goodbye.",
            );
            return self
                .record_outcome(reply, "low", "the caller could not be understood")
                .with(
                    "end_call",
                    json!({"reason": "the caller could not be understood"}),
                );
        }
        Reply::say(format!(
            "Sorry, I didn't catch that. {}",
            self.current_question()
        ))
    }

    fn answer(&mut self, words: &str, intent: Intent) -> Reply {
        let fact = if intent == Intent::AsksPrice {
            self.find_fact_by(&["price", "cost", "pricing", "rent", "fee"])
                .or_else(|| self.find_fact(words))
        } else {
            self.find_fact(words)
        };
        let back_to = match self.stage {
            Stage::Qualifying(n) | Stage::OfferedHuman(n) => n,
            _ => 0,
        };
        match fact {
            Some((topic, answer)) => {
                if !self.topics_asked.contains(&topic) {
                    self.topics_asked.push(topic.clone());
                }
                self.stage = Stage::Qualifying(back_to);
                Reply::say(format!(
                    "{} {}",
                    state_fact(&topic, &answer),
                    self.question(back_to)
                ))
            }
            None => {
                self.topics_asked
                    .push("something the agent could not answer".to_owned());
                self.stage = Stage::OfferedHuman(back_to);
                Reply::say(
                    "That's a good question. I don't have that detail, but a colleague can tell you. Would you like me to connect you?",
                )
            }
        }
    }

    fn find_fact_by(&self, keys: &[&str]) -> Option<(String, String)> {
        self.script
            .facts
            .iter()
            .find(|(topic, _)| {
                let topic = topic.to_ascii_lowercase();
                keys.iter().any(|key| topic.contains(key))
            })
            .cloned()
    }

    /// The fact whose topic shares the most words with the question.
    fn find_fact(&self, words: &str) -> Option<(String, String)> {
        let asked = content_words(words);
        self.script
            .facts
            .iter()
            .map(|(topic, answer)| {
                let topic_words = content_words(&topic.replace(['_', '-'], " "));
                let score = topic_words
                    .iter()
                    .filter(|word| asked.iter().any(|asked| same_word(asked, word)))
                    .count();
                (score, topic, answer)
            })
            .filter(|(score, _, _)| *score > 0)
            .max_by_key(|(score, _, _)| *score)
            .map(|(_, topic, answer)| (topic.clone(), answer.clone()))
    }

    /// `reply` with a `record_outcome`, remembered for [`outcome`](Self::outcome).
    fn record_outcome(&mut self, reply: Reply, level: &'static str, notes: &str) -> Reply {
        self.interest = Some(level);
        reply.with(
            "record_outcome",
            json!({"interest_level": level, "notes": notes}),
        )
    }

    fn hand_over(&mut self, reason: &str, interest: &'static str) -> Reply {
        self.stage = Stage::Transferring;
        self.ending = Some(Ending::Transferred);
        let reply = Reply::say("Wonderful. Let me connect you with a colleague now. Please hold.");
        self.record_outcome(reply, interest, reason).with(
            "transfer_to_human",
            json!({"department": "sales", "reason": reason}),
        )
    }

    /// The first half of a callback: the gateway reads `when` and answers (see
    /// [`callback_answered`](Self::callback_answered)).
    fn schedule(&mut self, when: Option<String>) -> Reply {
        let when = when.unwrap_or_else(|| "later".to_owned());
        self.stage = Stage::NotingCallback;
        self.callback_answer = None;
        self.ending = Some(Ending::Callback {
            asked: when.clone(),
            scheduled: None,
            moved: false,
        });
        let reply =
            Reply::say("Let me note that.").with("schedule_callback", json!({"when": when}));
        self.record_outcome(reply, "medium", &format!("asked for a callback {when}"))
    }

    /// The second half of a callback, once the gateway has answered.
    fn callback_answered(&mut self, answer: CallbackAnswer) -> Reply {
        let asked = match &self.ending {
            Some(Ending::Callback { asked, .. }) => asked.clone(),
            _ => "later".to_owned(),
        };
        match answer {
            CallbackAnswer::Scheduled { say, moved } => {
                // An older gateway answers without `say`: the caller's own words, then.
                let say = if say.is_empty() { asked.clone() } else { say };
                self.stage = Stage::Closed;
                self.ending = Some(Ending::Callback {
                    asked,
                    scheduled: Some(say.clone()),
                    moved,
                });
                Reply::say(format!(
                    "Great, I'll call you back {say}. Thank you, {}. Goodbye.",
                    self.lead_first_name
                ))
                .with("end_call", json!({"reason": "callback scheduled"}))
            }
            CallbackAnswer::AskAgain if self.unreadable_times < MAX_TIME_REPROMPTS => {
                self.unreadable_times += 1;
                self.stage = Stage::CallbackTime;
                self.ending = None;
                Reply::say(
                    "Sorry, I didn't catch the time. When would suit you, for example tomorrow at 11?",
                )
            }
            CallbackAnswer::AskAgain => {
                self.stage = Stage::Closed;
                self.ending = Some(Ending::NoCallback {
                    asked,
                    why: "no time could be read from it",
                });
                Reply::say(format!(
                    "I'm sorry, I couldn't note a time. We will try you again another time. Thank you, {}. Goodbye.",
                    self.lead_first_name
                ))
                .with("end_call", json!({"reason": "no callback time understood"}))
            }
            CallbackAnswer::Impossible => {
                self.stage = Stage::Closed;
                self.ending = Some(Ending::NoCallback {
                    asked,
                    why: "the campaign ends before then",
                });
                Reply::say(format!(
                    "I'm sorry, we can't arrange a call back then. Thank you for your time, {}. Goodbye.",
                    self.lead_first_name
                ))
                .with("end_call", json!({"reason": "no callback possible then"}))
            }
        }
    }

    /// Never call again: confirmed, the number suppressed, the outcome recorded, the call
    /// ended, in one reply.
    fn opt_out(&mut self, words: &str) -> Reply {
        self.unknown_in_row = 0;
        self.stage = Stage::Closed;
        self.ending = Some(Ending::OptedOut);
        self.closing_cut_short = false;
        let reason = self
            .opt_out_reason
            .get_or_insert_with(|| short(words))
            .clone();
        let reply = Reply::say(
            "I understand. I've taken your number off our list, and you won't be called again. Goodbye.",
        )
        .with("opt_out", json!({"reason": reason}));
        self.record_outcome(reply, "none", "asked not to be called again")
            .with("end_call", json!({"reason": "the caller opted out"}))
    }

    /// Remembers the reasons a refusal gives ("too expensive" → price).
    fn note_objections(&mut self, words: &str) {
        const REASONS: &[(&str, &[&str])] = &[
            (
                "price",
                &[
                    "price",
                    "expensive",
                    "afford",
                    "cost",
                    "costs",
                    "money",
                    "budget",
                    "cheaper",
                ],
            ),
            (
                "already has one",
                &[
                    "already have",
                    "already got",
                    "already bought",
                    "happy with",
                ],
            ),
            (
                "no need",
                &["don't need", "do not need", "no need", "not looking"],
            ),
        ];
        let text = format!(" {} ", content_text(words));
        for (objection, cues) in REASONS {
            let heard = cues.iter().any(|cue| text.contains(&format!(" {cue} ")));
            if heard && !self.objections.iter().any(|o| o == objection) {
                self.objections.push((*objection).to_owned());
            }
        }
    }

    fn decline(&mut self) -> Reply {
        let level = if self.objection_used || self.questions_answered_yes > 0 {
            "low"
        } else {
            "none"
        };
        self.stage = Stage::Closed;
        self.ending = Some(Ending::NotInterested);
        let reply = Reply::say(format!("I understand. {}", self.script.goodbye));
        self.record_outcome(reply, level, "not interested").with(
            "end_call",
            json!({"reason": "the caller is not interested"}),
        )
    }

    fn wrong_person(&mut self) -> Reply {
        self.stage = Stage::Closed;
        self.ending = Some(Ending::WrongPerson);
        let reply = Reply::say("I'm sorry for the trouble. I'll update our records. Goodbye.");
        self.record_outcome(reply, "none", "wrong person")
            .with("end_call", json!({"reason": "wrong person"}))
    }

    fn voicemail(&mut self) -> Reply {
        self.stage = Stage::Closed;
        self.ending = Some(Ending::Voicemail);
        let reply = Reply::say(self.script.voicemail_message.clone());
        self.record_outcome(reply, "none", "voicemail").with(
            "end_call",
            json!({"reason": "voicemail", "voicemail": true}),
        )
    }

    /// The caller spoke after the closing (which may have been interrupted before its tools
    /// ran): say goodbye again, end again. Only `end_call` is repeated: a callback is
    /// scheduled before its closing is said, and the gateway deduplicates nothing, so a
    /// second `opt_out` is sent only when the first one's reply was cut short before it ran
    /// (and the gateway has not answered it): a lost opt-out would be worse than a repeat.
    fn close_again(&mut self) -> Reply {
        if self.ending == Some(Ending::OptedOut)
            && std::mem::take(&mut self.closing_cut_short)
            && !self.opt_out_answered
        {
            let words = self.opt_out_reason.clone().unwrap_or_default();
            return self.opt_out(&words);
        }
        let reply = Reply::say(self.script.goodbye.clone());
        match &self.ending {
            Some(Ending::Callback { .. }) => {
                reply.with("end_call", json!({"reason": "callback scheduled"}))
            }
            Some(Ending::OptedOut) => {
                reply.with("end_call", json!({"reason": "the caller opted out"}))
            }
            Some(Ending::Voicemail) => reply.with(
                "end_call",
                json!({"reason": "voicemail", "voicemail": true}),
            ),
            _ => reply.with("end_call", json!({"reason": "conversation finished"})),
        }
    }
}

/// A callback time named in the caller's words ("tomorrow evening", "monday at 5 pm").
pub fn find_time(words: &str) -> Option<String> {
    const TIME_WORDS: &[&str] = &[
        "today",
        "tonight",
        "tomorrow",
        "morning",
        "afternoon",
        "evening",
        "weekend",
        "week",
        "month",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "hour",
        "hours",
        "minutes",
        "later",
        "noon",
        "o'clock",
    ];
    const JOINERS: &[&str] = &["next", "this", "at", "in", "an", "a", "the", "on", "after"];
    let tokens: Vec<String> = words
        .split_whitespace()
        .map(|word| {
            word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != ':')
                .to_lowercase()
        })
        .filter(|word| !word.is_empty())
        .collect();
    let starts_with_digit = |word: &str| word.chars().next().is_some_and(|c| c.is_ascii_digit());
    // "am"/"pm" only count after a number: "I am busy" names no time.
    let is_time = |i: usize| {
        let word = tokens[i].as_str();
        TIME_WORDS.contains(&word)
            || starts_with_digit(word)
            || matches!(word, "am" | "pm") && i > 0 && starts_with_digit(&tokens[i - 1])
    };
    let first = (0..tokens.len()).find(|&i| is_time(i))?;
    let last = (0..tokens.len()).rev().find(|&i| is_time(i))?;
    let mut start = first;
    while start > 0 && JOINERS.contains(&tokens[start - 1].as_str()) {
        start -= 1;
    }
    Some(tokens[start..=last].join(" "))
}

/// The caller's words, short enough for a tool's argument: the first 15 words.
fn short(words: &str) -> String {
    const MAX_WORDS: usize = 15;
    let all: Vec<&str> = words.split_whitespace().collect();
    let mut text = all[..all.len().min(MAX_WORDS)].join(" ");
    if all.len() > MAX_WORDS {
        text.push('…');
    }
    text
}

/// Lowercase words without punctuation (apostrophes kept), for matching phrases.
fn content_text(words: &str) -> String {
    words
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fact as a sentence: a short answer gets its topic ("The price is from 80 lakh.").
fn state_fact(topic: &str, answer: &str) -> String {
    if answer.split_whitespace().count() >= 5 {
        sentence(answer)
    } else {
        sentence(&format!(
            "The {} is {}",
            topic.replace(['_', '-'], " "),
            answer.trim()
        ))
    }
}

fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

fn content_words(text: &str) -> Vec<String> {
    const STOP: &[&str] = &[
        "the", "a", "an", "is", "are", "what", "whats", "how", "do", "does", "you", "your", "it",
        "of", "for", "to", "in", "on", "and", "or", "can", "i", "me", "there", "any", "about",
        "tell", "much", "many", "when", "where", "will", "be", "have", "has", "this", "that",
        "with",
    ];
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|word| word.len() > 1 && !STOP.contains(&word.as_str()))
        .collect()
}

/// The same word, give or take a plural or an -ing.
fn same_word(a: &str, b: &str) -> bool {
    let stem = |w: &str| {
        w.trim_end_matches("ing")
            .trim_end_matches("es")
            .trim_end_matches('s')
            .to_owned()
    };
    a == b || stem(a) == stem(b)
}

#[cfg(test)]
mod tests;
