//! A synthetic Plivo call, exactly as Plivo places it: the signed answer webhook, then the
//! media WebSocket (signed upgrade, `start`, 20 ms `media` frames at real-time pace, `dtmf`,
//! `playedStream` when a checkpoint's audio has played, `clearedAudio` after `clearAudio`),
//! and the hang-up. It models Plivo's playout buffer to tell when the agent's audio is heard,
//! and records what arrived when, for tests and `loadtest`.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

use crate::{
    audio::{AudioFormat, Encoding, FRAME_MS, mulaw},
    plivo::{
        signature::{self, Method},
        stream::{self, OutboundMessage, SimulatedEvent},
    },
};

/// Who is calling whom, and where.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// `http://127.0.0.1:port`: where the gateway really listens.
    pub gateway: String,
    /// The public base the gateway signs against (`VG_PUBLIC_URL`).
    pub public_url: String,
    pub auth_token: String,
    pub call_sid: String,
    /// Query of the answer URL (`lead_id=…&campaign_id=…` for outbound calls).
    pub answer_query: String,
    pub from: String,
    pub to: String,
    /// Keep every byte of agent audio in [`CallReport::agent_audio`] (to transcribe it back).
    pub keep_agent_audio: bool,
}

/// One step of the caller's script.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Until an agent frame arrives after this step began.
    WaitForAgentAudio,
    /// Until the agent's audio has played out and nothing arrived for this long.
    WaitForAgentSilence(Duration),
    /// Until this much agent audio has been heard since the step began.
    WaitForAgentAudioFor(Duration),
    /// Talk (a 300 Hz tone) for this long.
    Speak(Duration),
    /// Say this audio, in the stream's format, at real-time pace (a synthesised utterance).
    Say(std::sync::Arc<[u8]>),
    /// Send silence for this long.
    Silence(Duration),
    Dtmf(String),
    /// Send this text frame as is (malformed input tests).
    SendRaw(String),
    /// Send this many media frames of silence back to back, as fast as the socket takes them
    /// (a flooding peer).
    Flood(usize),
    /// Send a `stop` and close the socket.
    HangUp,
    /// Until the gateway closes the socket.
    WaitForClose,
    /// Silence until the test opens this gate (a fault injected at a known point of the call).
    WaitForGate(Gate),
}

/// A point in a caller's script that the test opens, so a fault lands exactly between two
/// steps (checked on the caller's 20 ms tick).
#[derive(Debug, Clone, Default)]
pub struct Gate(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_open(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What happened on the call, with times since the WebSocket opened.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub answer_status: u16,
    pub answer_xml: String,
    pub answer_latency: Duration,
    pub stream_url: Option<String>,
    /// Every `playAudio` frame: arrival time and payload size.
    pub frames: Vec<(Duration, usize)>,
    pub content_types: Vec<(String, u32)>,
    pub clears: Vec<Duration>,
    pub checkpoints: Vec<String>,
    /// When the first loud frame of each `Speak` was sent.
    pub speech_starts: Vec<Duration>,
    /// When the caller ended each `Speak`.
    pub speech_ends: Vec<Duration>,
    /// Times the agent's audio ran dry for more than 60 ms in the middle of an item.
    pub playback_gaps: u32,
    pub malformed: u32,
    pub closed_by_gateway: bool,
    /// The code of the gateway's close frame, when it sent one.
    pub close_code: Option<u16>,
    /// When the gateway's close was seen.
    pub closed_at: Option<Duration>,
    /// Every `playedStream` sent: when, and the checkpoint's name.
    pub played: Vec<(Duration, String)>,
    pub duration: Duration,
    /// The agent's audio as received, when [`CallerConfig::keep_agent_audio`] is set.
    pub agent_audio: Vec<u8>,
}

impl CallReport {
    pub fn first_audio(&self) -> Option<Duration> {
        self.frames.first().map(|(at, _)| *at)
    }

    /// The first agent frame after `after`.
    pub fn first_frame_after(&self, after: Duration) -> Option<Duration> {
        self.frames.iter().map(|(at, _)| *at).find(|at| *at > after)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("answer webhook failed: {0}")]
    Answer(String),
    #[error("the answer XML has no <Stream>: {0}")]
    NoStream(String),
    #[error("media WebSocket refused: {0}")]
    Connect(String),
    /// The gateway answered the upgrade with this HTTP status.
    #[error("media WebSocket refused with HTTP {0}")]
    Refused(u16),
}

/// Posts the signed answer webhook and returns the status, the body and the latency.
pub async fn answer(
    config: &CallerConfig,
    http: &reqwest::Client,
) -> Result<(u16, String, Duration), CallerError> {
    let path = format!("/plivo/answer?{}", config.answer_query);
    let form = vec![
        ("CallUUID".to_owned(), config.call_sid.clone()),
        ("From".to_owned(), config.from.clone()),
        ("To".to_owned(), config.to.clone()),
        ("Direction".to_owned(), "outbound".to_owned()),
        ("CallStatus".to_owned(), "in-progress".to_owned()),
    ];
    let started = Instant::now();
    let response = signed_post(config, http, &path, &form).await?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|error| CallerError::Answer(error.to_string()))?;
    Ok((status, body, started.elapsed()))
}

/// Posts Plivo's hangup callback for a call that was answered and lasted `duration`, retrying
/// (as a platform retries a callback) while the gateway is unreachable or answers 5xx, until
/// `give_up_after`. Returns the final status.
pub async fn hangup_callback(
    config: &CallerConfig,
    http: &reqwest::Client,
    duration: Duration,
    give_up_after: Duration,
) -> Result<u16, CallerError> {
    let path = format!("/plivo/hangup?{}", config.answer_query);
    let seconds = duration.as_secs().max(1).to_string();
    let form = vec![
        ("CallUUID".to_owned(), config.call_sid.clone()),
        ("From".to_owned(), config.from.clone()),
        ("To".to_owned(), config.to.clone()),
        ("Direction".to_owned(), "outbound".to_owned()),
        ("CallStatus".to_owned(), "completed".to_owned()),
        ("Duration".to_owned(), seconds.clone()),
        ("BillDuration".to_owned(), seconds),
        ("HangupCause".to_owned(), "NORMAL_CLEARING".to_owned()),
    ];
    let deadline = Instant::now() + give_up_after;
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = signed_post(config, http, &path, &form)
            .await
            .map(|response| response.status().as_u16());
        match outcome {
            Ok(status) if status < 500 => return Ok(status),
            _ if Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
            other => return other,
        }
    }
}

/// Posts a form to `path` signed as Plivo signs it.
pub async fn signed_post(
    config: &CallerConfig,
    http: &reqwest::Client,
    path: &str,
    form: &[(String, String)],
) -> Result<reqwest::Response, CallerError> {
    let nonce = crate::config::random_hex(10);
    let public = format!("{}{path}", config.public_url.trim_end_matches('/'));
    let signature = signature::v3_signature(
        config.auth_token.as_bytes(),
        Method::Post,
        &public,
        form,
        &nonce,
    );
    http.post(format!("{}{path}", config.gateway))
        .header("X-Plivo-Signature-V3", signature)
        .header("X-Plivo-Signature-V3-Nonce", nonce)
        .form(form)
        .send()
        .await
        .map_err(|error| CallerError::Answer(error.to_string()))
}

/// The `<Stream>` URL of an answer XML document.
pub fn stream_url_of(xml: &str) -> Option<String> {
    let start = xml.find("<Stream")?;
    let body_start = start + xml[start..].find('>')? + 1;
    let body_end = body_start + xml[body_start..].find("</Stream>")?;
    Some(xml[body_start..body_end].trim().replace("&amp;", "&"))
}

/// Places a whole call: answer, stream, script.
pub async fn place_call(
    config: &CallerConfig,
    http: &reqwest::Client,
    script: &[Step],
) -> Result<CallReport, CallerError> {
    let (status, xml, latency) = answer(config, http).await?;
    let mut report = CallReport {
        answer_status: status,
        answer_xml: xml.clone(),
        answer_latency: latency,
        ..CallReport::default()
    };
    let stream_url = stream_url_of(&xml).ok_or_else(|| CallerError::NoStream(xml.clone()))?;
    report.stream_url = Some(stream_url.clone());
    run_stream(config, &stream_url, script, AudioFormat::MULAW_8K, report).await
}

/// Opens the media WebSocket at `stream_url` (public form; connected at the real gateway) and
/// runs the script.
pub async fn run_stream(
    config: &CallerConfig,
    stream_url: &str,
    script: &[Step],
    format: AudioFormat,
    mut report: CallReport,
) -> Result<CallReport, CallerError> {
    let mut socket = connect_stream(config, stream_url).await?;
    let opened = Instant::now();
    let stream_id = format!("stream-{}", config.call_sid);
    let mut sequence = 1;
    let mut out = String::new();
    stream::write_start(&mut out, sequence, &config.call_sid, &stream_id, format);
    socket
        .send(Message::text(out.clone()))
        .await
        .map_err(|error| CallerError::Connect(error.to_string()))?;

    let (speech, speech_end, silence) = caller_frames(format);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut playout_end = opened;
    let mut last_frame_at: Option<Instant> = None;
    // Whether the last frame belongs to an item still being sent (no checkpoint or clear since).
    let mut within_item = false;
    let mut pending_checkpoints: VecDeque<(Instant, String)> = VecDeque::new();
    let mut step_index = 0;
    let mut step_started = Instant::now();
    let mut frames_at_step_start = 0;
    let mut heard_in_step = Duration::ZERO;
    let mut chunk = 0u64;
    let mut speaking_until: Option<Instant> = None;
    // The utterance being said and how many of its bytes were sent.
    let mut saying: Option<(std::sync::Arc<[u8]>, usize)> = None;
    let mut said = vec![0u8; format.frame_bytes()];
    // The start of speech is the moment its first loud frame leaves.
    let mut speech_pending = false;

    'call: loop {
        // Step bookkeeping.
        let now = Instant::now();
        while let Some(step) = script.get(step_index) {
            let done = match step {
                Step::WaitForAgentAudio => report.frames.len() > frames_at_step_start,
                Step::WaitForAgentSilence(quiet) => {
                    playout_end <= now
                        && last_frame_at.is_none_or(|at| now.duration_since(at) >= *quiet)
                        && !report.frames.is_empty()
                }
                Step::WaitForAgentAudioFor(wanted) => heard_in_step >= *wanted,
                Step::Speak(length) => {
                    if speaking_until.is_none() {
                        speaking_until = Some(now + *length);
                        speech_pending = true;
                    }
                    if speaking_until.is_some_and(|until| now >= until) {
                        speaking_until = None;
                        report.speech_ends.push(now.duration_since(opened));
                        true
                    } else {
                        false
                    }
                }
                Step::Say(audio) => {
                    if saying.is_none() {
                        saying = Some((std::sync::Arc::clone(audio), 0));
                        speech_pending = true;
                    }
                    if saying
                        .as_ref()
                        .is_some_and(|(audio, sent)| *sent >= audio.len())
                    {
                        saying = None;
                        report.speech_ends.push(now.duration_since(opened));
                        true
                    } else {
                        false
                    }
                }
                Step::Silence(length) => now.duration_since(step_started) >= *length,
                Step::Dtmf(digit) => {
                    sequence += 1;
                    out.clear();
                    stream::write_event(
                        &mut out,
                        sequence,
                        &stream_id,
                        &SimulatedEvent::Dtmf(digit),
                    );
                    let _ = socket.send(Message::text(out.clone())).await;
                    true
                }
                Step::SendRaw(text) => {
                    let _ = socket.send(Message::text(text.clone())).await;
                    true
                }
                Step::Flood(count) => {
                    for _ in 0..*count {
                        sequence += 1;
                        chunk += 1;
                        out.clear();
                        let timestamp = now.duration_since(opened).as_millis() as u64;
                        stream::write_media(
                            &mut out, sequence, &stream_id, timestamp, chunk, &silence,
                        );
                        if socket.feed(Message::text(out.clone())).await.is_err() {
                            break;
                        }
                    }
                    let _ = socket.flush().await;
                    true
                }
                Step::HangUp => {
                    sequence += 1;
                    out.clear();
                    stream::write_event(&mut out, sequence, &stream_id, &SimulatedEvent::Stop);
                    let _ = socket.send(Message::text(out.clone())).await;
                    let _ = socket.close(None).await;
                    break 'call;
                }
                Step::WaitForClose => false,
                Step::WaitForGate(gate) => gate.is_open(),
            };
            if !done {
                break;
            }
            step_index += 1;
            step_started = Instant::now();
            frames_at_step_start = report.frames.len();
            heard_in_step = Duration::ZERO;
        }
        if step_index >= script.len() {
            let _ = socket.close(None).await;
            break;
        }

        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                // Checkpoints whose audio has played.
                while let Some((due, _)) = pending_checkpoints.front() {
                    if *due > now {
                        break;
                    }
                    let (_, name) = pending_checkpoints.pop_front().expect("checked");
                    sequence += 1;
                    out.clear();
                    stream::write_event(&mut out, sequence, &stream_id, &SimulatedEvent::PlayedStream(&name));
                    report.played.push((now.duration_since(opened), name.clone()));
                    if socket.send(Message::text(out.clone())).await.is_err() {
                        report.closed_by_gateway = true;
                        report.closed_at = Some(opened.elapsed());
                        break 'call;
                    }
                }
                sequence += 1;
                chunk += 1;
                let audio = match &mut saying {
                    Some((utterance, sent)) if *sent < utterance.len() => {
                        let end = (*sent + said.len()).min(utterance.len());
                        let piece = &utterance[*sent..end];
                        said[..piece.len()].copy_from_slice(piece);
                        said[piece.len()..].copy_from_slice(&silence[piece.len()..]);
                        *sent = end;
                        &said
                    }
                    // The utterance's last frame fades out, as speech does.
                    _ if speaking_until.is_some_and(|until| {
                        until.saturating_duration_since(now) <= Duration::from_millis(FRAME_MS)
                    }) => &speech_end,
                    _ if speaking_until.is_some() => &speech,
                    _ => &silence,
                };
                out.clear();
                let timestamp = now.duration_since(opened).as_millis() as u64;
                stream::write_media(&mut out, sequence, &stream_id, timestamp, chunk, audio);
                if socket.send(Message::text(out.clone())).await.is_err() {
                    report.closed_by_gateway = true;
                        report.closed_at = Some(opened.elapsed());
                    break 'call;
                }
                if speech_pending && (speaking_until.is_some() || saying.is_some()) {
                    speech_pending = false;
                    report.speech_starts.push(Instant::now().duration_since(opened));
                }
            }
            message = socket.next() => {
                let now = Instant::now();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        report.closed_by_gateway = true;
                        report.close_code = frame.map(|frame| u16::from(frame.code));
                        report.closed_at = Some(opened.elapsed());
                        break 'call;
                    }
                    None | Some(Err(_)) => {
                        report.closed_by_gateway = true;
                        report.closed_at = Some(opened.elapsed());
                        break 'call;
                    }
                    Some(Ok(_)) => continue,
                };
                match stream::parse_outbound(text.as_str()) {
                    Ok(OutboundMessage::PlayAudio { content_type, sample_rate, payload }) => {
                        let at = now.duration_since(opened);
                        // A gap: the buffer ran dry in the middle of an item (no checkpoint or
                        // clear since its previous frame).
                        if within_item && playout_end + Duration::from_millis(60) < now {
                            report.playback_gaps += 1;
                        }
                        within_item = true;
                        let frame_ms = Duration::from_millis(format.bytes_to_ms(payload.len()));
                        playout_end = playout_end.max(now) + frame_ms;
                        heard_in_step += frame_ms;
                        last_frame_at = Some(now);
                        report.frames.push((at, payload.len()));
                        if config.keep_agent_audio {
                            report.agent_audio.extend_from_slice(&payload);
                        }
                        if report.content_types.last() != Some(&(content_type.clone(), sample_rate)) {
                            report.content_types.push((content_type, sample_rate));
                        }
                    }
                    Ok(OutboundMessage::Checkpoint { name, .. }) => {
                        within_item = false;
                        report.checkpoints.push(name.clone());
                        pending_checkpoints.push_back((playout_end.max(now), name));
                    }
                    Ok(OutboundMessage::ClearAudio { .. }) => {
                        within_item = false;
                        report.clears.push(now.duration_since(opened));
                        playout_end = now;
                        pending_checkpoints.clear();
                        sequence += 1;
                        out.clear();
                        stream::write_event(&mut out, sequence, &stream_id, &SimulatedEvent::ClearedAudio);
                        let _ = socket.send(Message::text(out.clone())).await;
                    }
                    Ok(OutboundMessage::SendDtmf { .. }) | Ok(OutboundMessage::Unknown { .. }) => {}
                    Err(_) => report.malformed += 1,
                }
            }
        }
    }
    report.duration = opened.elapsed();
    Ok(report)
}

/// One 20 ms frame of "speech" (a 300 Hz tone at half scale), the same frame fading out over
/// its last 10 ms (an utterance's last frame: speech decays rather than stopping at full
/// amplitude on a frame boundary, where any filter's tail would spill into the next frame),
/// and one of silence, in `format`.
fn caller_frames(format: AudioFormat) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let samples = format.frame_samples();
    let fade = samples / 2;
    let tone = |index: usize, fading: bool| -> i16 {
        let phase = std::f64::consts::TAU * 300.0 * index as f64 / f64::from(format.sample_rate);
        let envelope = match index.checked_sub(samples - fade) {
            Some(into) if fading => {
                0.5 + 0.5 * (std::f64::consts::PI * (into + 1) as f64 / fade as f64).cos()
            }
            _ => 1.0,
        };
        (0.5 * 32767.0 * envelope * phase.sin()).round() as i16
    };
    let frame = |fading: bool| -> Vec<u8> {
        let pcm: Vec<i16> = (0..samples).map(|index| tone(index, fading)).collect();
        match format.encoding {
            Encoding::Mulaw => pcm.iter().map(|&s| mulaw::encode_sample(s)).collect(),
            Encoding::L16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    };
    let silence = match format.encoding {
        Encoding::Mulaw => vec![0xFF; format.frame_bytes()],
        Encoding::L16 => vec![0; format.frame_bytes()],
    };
    (frame(false), frame(true), silence)
}

type CallerSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the gateway for a public stream URL, signing the upgrade as Plivo does.
pub async fn connect_stream(
    config: &CallerConfig,
    stream_url: &str,
) -> Result<CallerSocket, CallerError> {
    connect_stream_with_nonce(config, stream_url, &crate::config::random_hex(10)).await
}

/// [`connect_stream`] with a given signature nonce (a replay, in tests).
pub async fn connect_stream_with_nonce(
    config: &CallerConfig,
    stream_url: &str,
    nonce: &str,
) -> Result<CallerSocket, CallerError> {
    let signature = signature::v3_signature(
        config.auth_token.as_bytes(),
        Method::Get,
        stream_url,
        &[],
        nonce,
    );
    // The URL names the public host; connect to where the gateway really listens.
    let path_start = stream_url
        .find("://")
        .and_then(|scheme| {
            stream_url[scheme + 3..]
                .find('/')
                .map(|slash| scheme + 3 + slash)
        })
        .unwrap_or(stream_url.len());
    let local = config.gateway.replacen("http://", "ws://", 1);
    let target = format!("{local}{}", &stream_url[path_start..]);
    let mut request = target
        .into_client_request()
        .map_err(|error| CallerError::Connect(error.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(
        "X-Plivo-Signature-V3",
        HeaderValue::from_str(&signature).expect("base64 is a header value"),
    );
    headers.insert(
        "X-Plivo-Signature-V3-Nonce",
        HeaderValue::from_str(nonce).map_err(|error| CallerError::Connect(error.to_string()))?,
    );
    // tungstenite zero-fills its whole read buffer on every read (128 KiB by default): at a
    // thousand sockets that memset was a third of the load generator's CPU.
    let websocket = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(crate::http::SOCKET_BUFFER_BYTES)
        .write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(websocket), true)
        .await
        .map_err(|error| match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                CallerError::Refused(response.status().as_u16())
            }
            error => CallerError::Connect(error.to_string()),
        })?;
    Ok(socket)
}
