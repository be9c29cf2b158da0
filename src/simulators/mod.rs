//! Simulators that speak the real protocols: a synthetic Plivo caller, fake OpenAI Realtime
//! and Gemini Live servers, and a fake of Plivo's REST API. Library code, not test hacks: the tests, `loadtest` and `demo` use them.

pub mod gemini_live;
pub mod openai_realtime;
pub mod plivo_api;
pub mod plivo_caller;
