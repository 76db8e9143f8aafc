//! Incremental frame scanning over a read buffer.
//!
//! A v3 frame is a one-byte tag, a big-endian i32 length that counts itself but not the tag, and
//! the body. The scanner keeps a single piece of state between reads: how many bytes of the
//! current pass-through frame are still to come. That lets a 1 GB DataRow stream through a 64 KB
//! buffer while small control frames are handed over whole.

/// What the scanner found at the current position of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    /// `len` bytes from the current position can be forwarded as they are. They belong to frames
    /// the caller did not ask to inspect (or to the rest of one), and were already reported by
    /// [`Scanned::Header`] when their header was seen.
    Pass { len: usize },
    /// The header of a pass-through frame starts here; its bytes follow as [`Scanned::Pass`].
    /// Reported so the caller can count frames by tag without buffering them.
    Header { tag: u8, frame_len: usize },
    /// A whole frame the caller asked to inspect: `frame_len` bytes (tag and length included)
    /// starting at the current position.
    Whole { tag: u8, frame_len: usize },
    /// Nothing more can be decided until more bytes arrive. `need` is the total number of bytes
    /// from the current position that the next decision requires (a header, or a whole frame).
    NeedMore { need: usize },
}

/// Why a frame cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below 4, so the stream can no longer be framed.
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    InvalidLength { tag: u8, len: i64 },
    /// The frame is longer than the configured maximum.
    #[error("message of type '{}' is {len} bytes, over the {max}-byte limit", char::from(*tag))]
    TooLong { tag: u8, len: usize, max: usize },
}

/// Walks frame boundaries; see the module doc.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    /// Bytes of the current pass-through frame not seen yet.
    remaining: usize,
    /// Frames longer than this are refused, inspected or not.
    max_frame: usize,
}

impl FrameScanner {
    pub fn new(max_frame: usize) -> Self {
        Self { remaining: 0, max_frame }
    }

    /// True when the next byte starts a new frame, so a message of pgfed's own may be inserted.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Decides what the bytes at the start of `buf` are. `inspect(tag)` says which frame types
    /// must be delivered whole. The caller advances past `Pass`/`Whole` bytes and calls again; a
    /// `Header` is consumed by the scanner itself (its bytes then come back as `Pass`).
    pub fn next(&mut self, buf: &[u8], inspect: impl Fn(u8) -> bool) -> Result<Scanned, FrameError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(Scanned::NeedMore { need: 1 });
            }
            let len = self.remaining.min(buf.len());
            self.remaining -= len;
            return Ok(Scanned::Pass { len });
        }
        if buf.len() < 5 {
            return Ok(Scanned::NeedMore { need: 5 });
        }
        let tag = buf[0];
        let raw = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if raw < 4 {
            return Err(FrameError::InvalidLength { tag, len: i64::from(raw) });
        }
        // i32 is positive here, so the conversion is lossless on every supported target.
        let frame_len = raw as usize + 1;
        if frame_len - 1 > self.max_frame {
            return Err(FrameError::TooLong { tag, len: frame_len - 1, max: self.max_frame });
        }
        if inspect(tag) {
            if buf.len() < frame_len {
                return Ok(Scanned::NeedMore { need: frame_len });
            }
            return Ok(Scanned::Whole { tag, frame_len });
        }
        self.remaining = frame_len;
        Ok(Scanned::Header { tag, frame_len })
    }
}

/// Splits a whole frame into tag and body. `frame` must be a complete frame as delivered by
/// [`Scanned::Whole`].
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Feeds `input` in chunks of `chunk` bytes and returns (tag, whole?) per frame seen.
    fn scan_all(input: &[u8], chunk: usize, inspect: fn(u8) -> bool) -> Result<Vec<(u8, bool, usize)>, FrameError> {
        let mut s = FrameScanner::new(1 << 20);
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = Vec::new();
        let mut fed = 0;
        let mut passed = 0;
        loop {
            match s.next(&buf, inspect)? {
                Scanned::Pass { len } => {
                    passed += len;
                    buf.drain(..len);
                }
                Scanned::Header { tag, frame_len } => seen.push((tag, false, frame_len)),
                Scanned::Whole { tag, frame_len } => {
                    seen.push((tag, true, frame_len));
                    passed += frame_len;
                    buf.drain(..frame_len);
                }
                Scanned::NeedMore { .. } => {
                    if fed >= input.len() {
                        break;
                    }
                    let end = (fed + chunk).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
        assert_eq!(passed + buf.len(), input.len());
        Ok(seen)
    }

    #[test]
    fn passes_large_frames_through_small_chunks_and_delivers_inspected_ones_whole() {
        let mut input = frame(b'D', &vec![7u8; 10_000]);
        input.extend(frame(b'Z', b"I"));
        input.extend(frame(b'C', b"SELECT 1\0"));
        for chunk in [1, 3, 5, 64, 100_000] {
            let seen = scan_all(&input, chunk, |t| t == b'Z').expect("valid stream");
            assert_eq!(seen, vec![(b'D', false, 10_005), (b'Z', true, 6), (b'C', false, 14)], "chunk {chunk}");
        }
    }

    #[test]
    fn rejects_lengths_below_four() {
        let input = [b'Q', 0, 0, 0, 3];
        assert_eq!(scan_all(&input, 5, |_| true), Err(FrameError::InvalidLength { tag: b'Q', len: 3 }));
        let input = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(scan_all(&input, 5, |_| true), Err(FrameError::InvalidLength { len: -1, .. })));
    }

    #[test]
    fn rejects_frames_over_the_limit_before_buffering_them() {
        let mut s = FrameScanner::new(100);
        let input = frame(b'Q', &[b'x'; 200]);
        assert_eq!(s.next(&input[..5], |_| true), Err(FrameError::TooLong { tag: b'Q', len: 204, max: 100 }));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// However bytes are split across reads, the scanner sees the same frames and accounts
        /// for every byte; arbitrary input never panics.
        #[test]
        fn chunking_never_changes_what_is_seen(data in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
            let whole = scan(&data, data.len().max(1));
            let chunked = scan(&data, chunk);
            prop_assert_eq!(whole, chunked);
        }

        /// Valid streams of frames always come out frame by frame, tags intact.
        #[test]
        fn valid_streams_round_trip(frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20), chunk in 1usize..97) {
            let mut input = Vec::new();
            for (tag, body) in &frames {
                input.push(*tag);
                input.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                input.extend_from_slice(body);
            }
            let (seen, err) = scan(&input, chunk);
            prop_assert!(err.is_none());
            let tags: Vec<u8> = seen.iter().map(|(t, _)| *t).collect();
            prop_assert_eq!(tags, frames.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        }
    }

    fn scan(input: &[u8], chunk: usize) -> (Vec<(u8, usize)>, Option<FrameError>) {
        let mut s = FrameScanner::new(1 << 16);
        let mut buf: Vec<u8> = Vec::new();
        let (mut fed, mut seen) = (0, Vec::new());
        loop {
            match s.next(&buf, |t| t % 2 == 0) {
                Ok(Scanned::Pass { len }) => {
                    buf.drain(..len);
                }
                Ok(Scanned::Header { tag, frame_len }) | Ok(Scanned::Whole { tag, frame_len }) => {
                    seen.push((tag, frame_len));
                    if tag % 2 == 0 {
                        buf.drain(..frame_len);
                    }
                }
                Ok(Scanned::NeedMore { .. }) => {
                    if fed >= input.len() {
                        return (seen, None);
                    }
                    let end = (fed + chunk).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Err(e) => return (seen, Some(e)),
            }
        }
    }
}
