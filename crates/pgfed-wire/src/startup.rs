//! The packets a client may send before the first tagged message: they carry a length and a
//! 32-bit code instead of a tag.

/// PostgreSQL refuses startup packets longer than this (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// A protocol version as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolVersion {
    pub major: u16,
    pub minor: u16,
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Startup parameters as (name, value) pairs, in the order the client sent them.
pub type StartupParams = Vec<(Vec<u8>, Vec<u8>)>;

/// A decoded pre-startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// `secret` is 4 bytes in protocol 3.0 and up to 256 in 3.2.
    CancelRequest {
        pid: i32,
        secret: Vec<u8>,
    },
    /// Parameters are kept as bytes: Postgres does not require them to be UTF-8, and pgfed must
    /// forward them exactly.
    Startup {
        version: ProtocolVersion,
        params: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    InvalidLength(i64),
    #[error("invalid startup packet layout: expected terminator as last byte")]
    Layout,
    #[error("invalid cancel request length {0}")]
    CancelLength(usize),
}

impl StartupPacket {
    /// Decodes one packet from the start of `buf`. `Ok(None)` means more bytes are needed;
    /// otherwise returns the packet and the number of bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, StartupError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len < 8 || len as usize > MAX_STARTUP_PACKET {
            return Err(StartupError::InvalidLength(i64::from(len)));
        }
        let len = len as usize;
        if buf.len() < len {
            return Ok(None);
        }
        let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let rest = &buf[8..len];
        let packet = match code {
            SSL_REQUEST => StartupPacket::SslRequest,
            GSSENC_REQUEST => StartupPacket::GssEncRequest,
            CANCEL_REQUEST => {
                if rest.len() < 8 || rest.len() > 4 + 256 {
                    return Err(StartupError::CancelLength(len));
                }
                let pid = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                StartupPacket::CancelRequest { pid, secret: rest[4..].to_vec() }
            }
            _ => {
                let version = ProtocolVersion { major: (code >> 16) as u16, minor: (code & 0xffff) as u16 };
                StartupPacket::Startup { version, params: decode_params(rest)? }
            }
        };
        Ok(Some((packet, len)))
    }

    /// Encodes a StartupMessage with the given version and parameters.
    pub fn encode_startup(version: ProtocolVersion, params: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0u8; 4];
        out.extend_from_slice(&((u32::from(version.major) << 16) | u32::from(version.minor)).to_be_bytes());
        for (k, v) in params {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out.push(0);
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out
    }

    pub fn encode_ssl_request() -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&8u32.to_be_bytes());
        out[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
        out
    }

    pub fn encode_cancel(pid: i32, secret: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + secret.len());
        out.extend_from_slice(&((12 + secret.len()) as u32).to_be_bytes());
        out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(secret);
        out
    }
}

/// Parses `name\0value\0...\0`. Like Postgres, a packet that is just the terminator is valid.
fn decode_params(mut rest: &[u8]) -> Result<StartupParams, StartupError> {
    let mut params = Vec::new();
    loop {
        let Some(end) = memchr::memchr(0, rest) else { return Err(StartupError::Layout) };
        if end == 0 {
            // The final terminator must be the last byte of the packet.
            return if rest.len() == 1 { Ok(params) } else { Err(StartupError::Layout) };
        }
        let name = rest[..end].to_vec();
        rest = &rest[end + 1..];
        let Some(vend) = memchr::memchr(0, rest) else { return Err(StartupError::Layout) };
        params.push((name, rest[..vend].to_vec()));
        rest = &rest[vend + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trips() {
        let params =
            vec![(b"user".to_vec(), b"alice".to_vec()), (b"database".to_vec(), "d\u{e9}b".as_bytes().to_vec())];
        let v = ProtocolVersion { major: 3, minor: 0 };
        let bytes = StartupPacket::encode_startup(v, &params);
        let (p, used) = StartupPacket::decode(&bytes).expect("valid").expect("complete");
        assert_eq!(used, bytes.len());
        assert_eq!(p, StartupPacket::Startup { version: v, params });
        assert_eq!(StartupPacket::decode(&bytes[..bytes.len() - 1]), Ok(None));
    }

    #[test]
    fn recognises_request_codes() {
        let ssl = StartupPacket::encode_ssl_request();
        assert_eq!(StartupPacket::decode(&ssl), Ok(Some((StartupPacket::SslRequest, 8))));
        let cancel = StartupPacket::encode_cancel(42, &[1, 2, 3, 4]);
        assert_eq!(
            StartupPacket::decode(&cancel),
            Ok(Some((StartupPacket::CancelRequest { pid: 42, secret: vec![1, 2, 3, 4] }, 16)))
        );
    }

    #[test]
    fn rejects_bad_lengths_and_layouts() {
        assert_eq!(StartupPacket::decode(&[0, 0, 0, 4, 0, 3, 0, 0]), Err(StartupError::InvalidLength(4)));
        assert_eq!(StartupPacket::decode(&[0, 1, 0, 0]), Err(StartupError::InvalidLength(65536)));
        // "user\0bob" without the terminators.
        let mut bad = vec![0, 0, 0, 16, 0, 3, 0, 0];
        bad.extend_from_slice(b"user\0bo");
        bad.push(b'b');
        assert_eq!(StartupPacket::decode(&bad), Err(StartupError::Layout));
    }
}
