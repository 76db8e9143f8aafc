//! Feeds arbitrary bytes, in arbitrary chunk sizes, to every decoder pgfed runs on input from a
//! client: startup packets, the frame scanner (as both relay directions use it) and the readers
//! for the frames it inspects. Any panic is a bug. Run: `scripts/fuzz` (or `cargo fuzz run
//! wire_decoder` in fuzz/).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgfed_wire::message::{self, ErrorFields};
use pgfed_wire::{FrameScanner, Scanned, StartupPacket};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_seed, input)) = data.split_first() else { return };
    let chunk = usize::from(chunk_seed % 64) + 1;

    let _ = StartupPacket::decode(input);

    let mut scanner = FrameScanner::new(1 << 16);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut accounted = 0;
    loop {
        match scanner.next(&buf, |t| matches!(t, b'Q' | b'P' | b'Z' | b'E' | b'R' | b'K')) {
            Ok(Scanned::Pass { len }) => {
                assert!(len > 0 && len <= buf.len());
                accounted += len;
                buf.drain(..len);
            }
            Ok(Scanned::Header { .. }) => {}
            Ok(Scanned::Whole { frame_len, .. }) => {
                let frame = &buf[..frame_len];
                let _ = message::query_text(frame);
                let _ = message::parse_query_text(frame);
                let _ = ErrorFields::sqlstate(frame);
                let _ = ErrorFields::severity(frame);
                let _ = ErrorFields::new(frame).count();
                let _ = message::auth_code(frame);
                let _ = message::parse_backend_key_data(frame);
                let _ = message::filter_sasl_mechanisms(frame, |m| m.ends_with(b"-PLUS"));
                accounted += frame_len;
                buf.drain(..frame_len);
            }
            Ok(Scanned::NeedMore { .. }) => {
                if fed >= input.len() {
                    break;
                }
                let end = (fed + chunk).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Err(_) => return,
        }
    }
    assert_eq!(accounted + buf.len(), fed);
});
