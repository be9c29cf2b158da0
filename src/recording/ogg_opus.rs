//! Stereo 20 ms blocks → Opus packets (libopus through `audiopus`) → Ogg pages in memory.
//!
//! No I/O: pages collect in a buffer that the caller takes and writes. Only the two Opus
//! header packets are written by hand (RFC 7845 §5: `OpusHead`, `OpusTags`); the Ogg framing,
//! CRCs and lacing are the `ogg` crate's.
//!
//! The settings were chosen by measuring (`benches/recording.rs` `opus_mode`, libopus 1.3.1,
//! speech at 8 and 16 kHz, complexity 0, on a shared 2-core machine): SILK (`Voip`) costs
//! 2.0 ms of CPU per call-second on 8 kHz stereo and 3.5 ms on 16 kHz; CELT
//! (`RestrictedLowDelay`) 0.66 and 0.77 ms, almost regardless of bitrate. But below 40 kbit/s CELT codes the two channels together (intensity
//! stereo, or mono outright): the caller's voice leaks into the agent's channel (0 dB apart at
//! 16 kbit/s, 15 dB at 24, 30 dB at 32, complete separation from 40). Two channels that keep
//! apart are the point of the recording, so: CELT, complexity 0, 40 kbit/s, stereo forced,
//! the bandwidth capped at what the stream carries (5 KB a second of call). 20 ms packets
//! match the stream's frames, so nothing waits to fill a longer one.
//!
//! Weighed and left (`opus_layout`, same session, 8 kHz): two mono streams in one Ogg stream
//! (RFC 7845 mapping family 1, nothing coupled) keep the channels apart at any bitrate, but a
//! mono CELT encoder costs 0.37 ms per second of speech (0.34 at 12 kbit/s) and 0.28 on exact
//! zeros, so two cost 0.65–0.73 ms (one side silent, both speaking) against the stereo
//! encoder's 0.68, and hold 82 KiB of state against 47. libopus 1.3.1 has no cheap path for
//! silence: digital silence still costs 0.28 ms a channel, and its DTX never engages in CELT
//! (every packet stays 3 bytes). Even a silent channel made free would leave 0.55 ms (the
//! caller's line is never exact zeros). 60 ms packets save 4 %.

use std::borrow::Cow;

use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate, coder::Encoder};
use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};

/// Opus always counts granules at 48 kHz.
const GRANULE_RATE: u64 = 48_000;
/// One packet is 20 ms: 960 granules.
const GRANULES_PER_PACKET: u64 = GRANULE_RATE / 50;
/// Packets per Ogg page: a page (one write to the file) every 200 ms. Longer pages cost
/// memory (the page's packets wait in it: 25 of them measured 3 KiB more per call than 10,
/// and 50 4 KiB more than 25), shorter ones a write each and 27 bytes of header.
pub const PACKETS_PER_PAGE: u64 = 10;
/// Room for one packet: at 40 kbit/s a 20 ms packet averages 100 bytes; libopus never writes
/// more than the room it is given (it spends fewer bits instead).
const MAX_PACKET_BYTES: usize = 400;
/// Complexity 0: the cheapest analysis (see the module's documentation).
const COMPLEXITY: u8 = 0;

/// Why a recording cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("opus: {0}")]
    Opus(#[from] audiopus::Error),
    #[error("{0} Hz is not a stream rate the recorder takes")]
    Rate(u32),
    #[error("ogg: {0}")]
    Ogg(#[from] std::io::Error),
}

/// One call's Ogg/Opus stream, built in memory page by page.
pub struct OggOpusEncoder {
    encoder: Encoder,
    pages: PacketWriter<'static, Vec<u8>>,
    serial: u32,
    rate: u32,
    /// The encoder's lookahead, in 48 kHz samples: decoders drop this much from the start.
    pre_skip: u64,
    /// Audio packets handed to the page writer.
    packets: u64,
    /// The last packet, held back so that the end of the stream can mark it.
    pending: Option<Vec<u8>>,
    /// Stereo samples (per channel) of real audio taken so far.
    samples: u64,
    packet: Vec<u8>,
}

/// The bitrate, both channels together: the lowest at which CELT keeps the channels apart.
pub const BITRATE: i32 = 40_000;

impl OggOpusEncoder {
    /// An encoder for `rate` (8000 or 16000) stereo; the two header pages are written at once.
    pub fn new(rate: u32, serial: u32) -> Result<Self, EncodeError> {
        let (sample_rate, bandwidth) = match rate {
            8000 => (SampleRate::Hz8000, Bandwidth::Narrowband),
            16000 => (SampleRate::Hz16000, Bandwidth::Wideband),
            other => return Err(EncodeError::Rate(other)),
        };
        let mut encoder = Encoder::new(sample_rate, Channels::Stereo, Application::LowDelay)?;
        encoder.set_complexity(COMPLEXITY)?;
        encoder.set_bitrate(Bitrate::BitsPerSecond(BITRATE))?;
        encoder.set_max_bandwidth(bandwidth)?;
        // Never downmixed to mono at a low bitrate: each side stays on its own channel.
        encoder.set_force_channels(Channels::Stereo)?;
        let pre_skip = u64::from(encoder.lookahead()?) * GRANULE_RATE / u64::from(rate);
        let mut pages = PacketWriter::new(Vec::with_capacity(1024));
        pages.write_packet(
            opus_head(rate, pre_skip as u16),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        pages.write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self {
            encoder,
            pages,
            serial,
            rate,
            pre_skip,
            packets: 0,
            pending: None,
            samples: 0,
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Samples per channel in one block (20 ms).
    pub fn block_samples(&self) -> usize {
        self.rate as usize / 50
    }

    /// Encodes one 20 ms stereo block (interleaved, left first), of which `real` samples per
    /// channel are audio (the rest padding, trimmed at the end).
    pub fn encode(&mut self, stereo: &[i16], real: usize) -> Result<(), EncodeError> {
        let length = self
            .encoder
            .encode(&stereo[..self.block_samples() * 2], &mut self.packet)?;
        self.samples += real as u64;
        if let Some(previous) = self.pending.replace(self.packet[..length].to_vec()) {
            self.write_audio(previous, PacketWriteEndInfo::NormalPacket, None)?;
        }
        Ok(())
    }

    /// Ends the stream: enough silence to flush the encoder's lookahead, then the last
    /// packet, marked as the end, with the granule that trims the padding.
    pub fn finish(&mut self) -> Result<(), EncodeError> {
        let silence = vec![0i16; self.block_samples() * 2];
        let end = self.pre_skip + self.samples * GRANULE_RATE / u64::from(self.rate);
        let encoded =
            |packets: u64, pending: bool| (packets + u64::from(pending)) * GRANULES_PER_PACKET;
        while encoded(self.packets, self.pending.is_some()) < end {
            let samples = self.samples;
            self.encode(&silence, 0)?;
            self.samples = samples;
        }
        if let Some(last) = self.pending.take() {
            self.write_audio(last, PacketWriteEndInfo::EndStream, Some(end))?;
        }
        Ok(())
    }

    /// The finished pages so far, taken out of the buffer.
    pub fn take_pages(&mut self) -> Vec<u8> {
        std::mem::take(self.pages.inner_mut())
    }

    /// Bytes of pages waiting to be taken.
    pub fn buffered_bytes(&self) -> usize {
        self.pages.inner().len()
    }

    /// Seconds of audio taken so far.
    pub fn duration_ms(&self) -> u64 {
        self.samples * 1000 / u64::from(self.rate)
    }

    fn write_audio(
        &mut self,
        packet: Vec<u8>,
        mut end: PacketWriteEndInfo,
        granule: Option<u64>,
    ) -> Result<(), EncodeError> {
        self.packets += 1;
        if end == PacketWriteEndInfo::NormalPacket && self.packets.is_multiple_of(PACKETS_PER_PAGE)
        {
            end = PacketWriteEndInfo::EndPage;
        }
        let granule = granule.unwrap_or(self.packets * GRANULES_PER_PACKET);
        self.pages
            .write_packet(Cow::Owned(packet), self.serial, end, granule)?;
        Ok(())
    }
}

/// What could be kept of a file a crash left unfinished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The file again, every valid page, the last one marked as the end of the stream.
    pub bytes: Vec<u8>,
    /// Audio packets kept (20 ms each).
    pub packets: u64,
    /// Whether the file ended cleanly already (nothing was cut).
    pub complete: bool,
}

/// Why nothing could be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalvageError {
    #[error("no Opus headers: {0}")]
    NoHeaders(String),
}

/// Rewrites an Ogg/Opus file of ours up to its last valid page (a crash leaves a torn page at
/// most; a corrupt page ends what is kept). Packets are 20 ms, so granules are recounted.
pub fn salvage(file: &[u8]) -> Result<Salvaged, SalvageError> {
    let mut reader = PacketReader::new(std::io::Cursor::new(file));
    let mut packets = Vec::new();
    let mut complete = false;
    // A torn or corrupt page ends the reading: what came before it is what is kept.
    while let Ok(Some(packet)) = reader.read_packet() {
        complete = packet.last_in_stream();
        packets.push(packet);
        if complete {
            break;
        }
    }
    let valid_head = packets
        .first()
        .is_some_and(|packet| packet.data.starts_with(b"OpusHead"));
    let valid_tags = packets
        .get(1)
        .is_some_and(|packet| packet.data.starts_with(b"OpusTags"));
    if !(valid_head && valid_tags) {
        return Err(SalvageError::NoHeaders(format!(
            "{} packets readable",
            packets.len()
        )));
    }
    let serial = packets[0].stream_serial();
    let mut writer = PacketWriter::new(Vec::with_capacity(file.len() + 64));
    let audio = packets.len() as u64 - 2;
    let last_granule = packets
        .last()
        .map(|packet| packet.absgp_page())
        .unwrap_or(0);
    for (index, packet) in packets.into_iter().enumerate() {
        let index = index as u64;
        let (end, granule) = match index {
            0 | 1 => (PacketWriteEndInfo::EndPage, 0),
            _ if index == audio + 1 => {
                // A clean file's last granule trims its padding; a cut one ends on a packet.
                let counted = (index - 1) * GRANULES_PER_PACKET;
                let granule = if complete {
                    last_granule.min(counted)
                } else {
                    counted
                };
                (PacketWriteEndInfo::EndStream, granule)
            }
            _ if (index - 1).is_multiple_of(PACKETS_PER_PAGE) => (
                PacketWriteEndInfo::EndPage,
                (index - 1) * GRANULES_PER_PACKET,
            ),
            _ => (
                PacketWriteEndInfo::NormalPacket,
                (index - 1) * GRANULES_PER_PACKET,
            ),
        };
        if audio == 0 && index == 1 {
            // Headers only: the tags page ends the stream.
            writer
                .write_packet(packet.data, serial, PacketWriteEndInfo::EndStream, 0)
                .expect("writing to memory");
            continue;
        }
        writer
            .write_packet(packet.data, serial, end, granule)
            .expect("writing to memory");
    }
    Ok(Salvaged {
        bytes: writer.into_inner(),
        packets: audio,
        complete,
    })
}

/// RFC 7845 §5.1: version 1, two channels, the pre-skip, the input rate, no gain, mapping 0.
fn opus_head(rate: u32, pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(2);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    head
}

/// RFC 7845 §5.2: the vendor string and the channel layout as a comment.
fn opus_tags() -> Vec<u8> {
    let vendor = concat!("voice-gateway ", env!("CARGO_PKG_VERSION"));
    let comments: [&str; 1] = ["CHANNELS=left caller, right agent as heard"];
    let mut tags = Vec::with_capacity(64);
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for comment in comments {
        tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        tags.extend_from_slice(comment.as_bytes());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded_seconds(seconds: usize) -> (OggOpusEncoder, Vec<u8>) {
        let mut encoder = OggOpusEncoder::new(8000, 7).unwrap();
        let mut file = encoder.take_pages();
        let block: Vec<i16> = (0..320).map(|index| ((index * 97) % 2000) as i16).collect();
        for _ in 0..seconds * 50 {
            encoder.encode(&block, 160).unwrap();
            file.extend(encoder.take_pages());
        }
        (encoder, file)
    }

    #[test]
    fn the_headers_are_rfc_7845s() {
        let head = opus_head(8000, 312);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1, "version");
        assert_eq!(head[9], 2, "channels");
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            8000
        );
        assert_eq!(head[18], 0, "mapping family");
        let tags = opus_tags();
        assert_eq!(&tags[..8], b"OpusTags");
        let vendor = u32::from_le_bytes(tags[8..12].try_into().unwrap()) as usize;
        assert!(
            std::str::from_utf8(&tags[12..12 + vendor])
                .unwrap()
                .starts_with("voice-gateway")
        );
    }

    #[test]
    fn pages_come_out_a_second_at_a_time_and_the_end_trims_to_the_input() {
        let (mut encoder, mut file) = encoded_seconds(3);
        // The header pages, then the whole audio pages of the 149 packets written (the last
        // is held back for the end).
        let pages = file.windows(4).filter(|window| *window == b"OggS").count() as u64;
        assert_eq!(pages, 2 + 149 / PACKETS_PER_PAGE);
        assert_eq!(encoder.duration_ms(), 3000);
        encoder.finish().unwrap();
        file.extend(encoder.take_pages());
        let mut reader = PacketReader::new(std::io::Cursor::new(&file[..]));
        let mut last = None;
        while let Some(packet) = reader.read_packet().unwrap() {
            last = Some(packet);
        }
        let last = last.unwrap();
        assert!(last.last_in_stream());
        let pre_skip = encoder.pre_skip;
        assert_eq!(
            last.absgp_page() - pre_skip,
            3 * 48_000,
            "the granule ends at the input's end"
        );
    }

    #[test]
    fn a_torn_file_is_kept_up_to_its_last_whole_page() {
        let (mut encoder, mut file) = encoded_seconds(3);
        encoder.finish().unwrap();
        file.extend(encoder.take_pages());
        // A crash mid-write: the last page cut short.
        let torn = &file[..file.len() - 20];
        let salvaged = salvage(torn).unwrap();
        assert!(!salvaged.complete);
        // Every whole page of the 150 packets; the last page (the end's one packet) was torn.
        assert_eq!(salvaged.packets, 150);
        let again = salvage(&salvaged.bytes).unwrap();
        assert!(again.complete, "the rewritten file ends its stream");
        assert_eq!(again.packets, 150);
    }

    #[test]
    fn a_corrupt_page_ends_what_is_kept_and_a_file_without_headers_is_refused() {
        let (_, mut file) = encoded_seconds(3);
        let second_audio_page = file
            .windows(4)
            .enumerate()
            .filter(|(_, window)| *window == b"OggS")
            .nth(3)
            .unwrap()
            .0;
        file[second_audio_page + 40] ^= 0xFF;
        let salvaged = salvage(&file).unwrap();
        assert_eq!(
            salvaged.packets, PACKETS_PER_PAGE,
            "the first audio page only"
        );
        assert!(matches!(
            salvage(b"not an ogg file"),
            Err(SalvageError::NoHeaders(_))
        ));
        assert!(matches!(
            salvage(&file[..30]),
            Err(SalvageError::NoHeaders(_))
        ));
    }

    #[test]
    fn other_rates_are_refused() {
        assert!(matches!(
            OggOpusEncoder::new(24_000, 1),
            Err(EncodeError::Rate(24_000))
        ));
    }
}
