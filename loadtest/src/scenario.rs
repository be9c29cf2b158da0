//! The call mix: what each synthetic caller does, bounded by the hold time.

use std::time::Duration;

use voice_gateway::simulators::plivo_caller::Step;

/// Kinds of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Listens, then answers after each agent turn.
    Talkative,
    /// Never speaks.
    Silent,
    /// Interrupts the agent mid-answer.
    BargeIn,
    /// Presses 0 for a person.
    TransferSeeking,
}

impl Behaviour {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "talkative" => Some(Self::Talkative),
            "silent" => Some(Self::Silent),
            "barge_in" | "barge-in" => Some(Self::BargeIn),
            "transfer" | "transfer_seeking" => Some(Self::TransferSeeking),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Talkative => "talkative",
            Self::Silent => "silent",
            Self::BargeIn => "barge_in",
            Self::TransferSeeking => "transfer_seeking",
        }
    }

    /// The caller's script for a call held about `hold`.
    pub fn script(self, hold: Duration) -> Vec<Step> {
        let quiet = Duration::from_millis(300);
        let mut steps = vec![Step::WaitForAgentAudio];
        match self {
            Self::Silent => steps.push(Step::Silence(hold)),
            Self::TransferSeeking => {
                steps.push(Step::WaitForAgentSilence(quiet));
                steps.push(Step::Dtmf("0".to_owned()));
                steps.push(Step::WaitForClose);
                return steps;
            }
            Self::Talkative | Self::BargeIn => {
                // The first turn answers the greeting; then about one turn per 3 s. A barge-in
                // caller talks over each reply 400 ms into it; a talkative one waits for its end.
                let turns = (hold.as_millis() / 3000).max(1);
                steps.push(Step::WaitForAgentSilence(quiet));
                steps.push(Step::Speak(Duration::from_millis(600)));
                for _ in 1..turns {
                    steps.push(Step::WaitForAgentAudio);
                    match self {
                        Self::BargeIn => {
                            steps.push(Step::WaitForAgentAudioFor(Duration::from_millis(400)))
                        }
                        _ => steps.push(Step::WaitForAgentSilence(quiet)),
                    }
                    steps.push(Step::Speak(Duration::from_millis(600)));
                }
                steps.push(Step::WaitForAgentAudio);
                steps.push(Step::WaitForAgentSilence(quiet));
            }
        }
        steps.push(Step::HangUp);
        steps
    }
}

/// Picks behaviours in proportion to a mix such as `talkative=4,silent=1,barge_in=1,transfer=1`.
#[derive(Debug, Clone)]
pub struct Mix {
    weighted: Vec<Behaviour>,
}

impl Mix {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut weighted = Vec::new();
        for part in text.split(',').filter(|part| !part.trim().is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let behaviour = Behaviour::parse(name.trim())
                .ok_or_else(|| format!("unknown caller kind {name:?}"))?;
            let weight: usize = weight
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {part:?}"))?;
            weighted.extend(std::iter::repeat_n(behaviour, weight.min(100)));
        }
        if weighted.is_empty() {
            return Err("the mix is empty".to_owned());
        }
        Ok(Self { weighted })
    }

    /// The behaviour of call number `index` (deterministic, spread evenly).
    pub fn pick(&self, index: usize) -> Behaviour {
        self.weighted[index % self.weighted.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_spread() {
        let mix = Mix::parse("talkative=2,silent=1").unwrap();
        let picked: Vec<Behaviour> = (0..6).map(|index| mix.pick(index)).collect();
        assert_eq!(
            picked
                .iter()
                .filter(|b| **b == Behaviour::Talkative)
                .count(),
            4
        );
        assert!(Mix::parse("dancing=1").is_err());
        assert!(Mix::parse("").is_err());
    }

    #[test]
    fn scripts_end_and_scale_with_the_hold_time() {
        for behaviour in [
            Behaviour::Talkative,
            Behaviour::Silent,
            Behaviour::BargeIn,
            Behaviour::TransferSeeking,
        ] {
            let script = behaviour.script(Duration::from_secs(9));
            assert!(
                matches!(script.last(), Some(Step::HangUp | Step::WaitForClose)),
                "{behaviour:?}"
            );
        }
        let speaks = |hold| {
            Behaviour::Talkative
                .script(Duration::from_secs(hold))
                .iter()
                .filter(|s| matches!(s, Step::Speak(_)))
                .count()
        };
        assert_eq!(speaks(3), 1);
        assert_eq!(speaks(12), 4);
        let script = Behaviour::BargeIn.script(Duration::from_secs(6));
        assert!(
            script.contains(&Step::WaitForAgentAudioFor(Duration::from_millis(400))),
            "{script:?}"
        );
    }
}
