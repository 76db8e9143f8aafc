//! The messages pgfed writes itself, and readers for the few it looks inside.

use crate::frame::body;

/// Severity of an error or notice. FATAL ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
    Warning,
    Info,
    Debug,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
            Severity::Debug => "DEBUG",
        }
    }
}

/// An error (or notice) raised by pgfed itself, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    /// The SQLSTATE: usually one of [`crate::sqlstate`], or a code passed on from elsewhere (an
    /// engine or connector error).
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn new(
        severity: Severity,
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self { severity, code: code.into(), message: message.into(), detail: None, hint: None }
    }

    pub fn fatal(code: impl Into<std::borrow::Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn error(code: impl Into<std::borrow::Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends the ErrorResponse (or NoticeResponse for notice severities) frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = match self.severity {
            Severity::Error | Severity::Fatal => b'E',
            Severity::Notice | Severity::Warning | Severity::Info | Severity::Debug => b'N',
        };
        let start = out.len();
        out.push(tag);
        out.extend_from_slice(&[0; 4]);
        let sev = self.severity.as_str();
        for (field, value) in
            [(b'S', Some(sev)), (b'V', Some(sev)), (b'C', Some(&*self.code)), (b'M', Some(self.message.as_str()))]
                .into_iter()
                .chain([(b'D', self.detail.as_deref()), (b'H', self.hint.as_deref())])
        {
            if let Some(v) = value {
                out.push(field);
                push_cstr(out, v);
            }
        }
        out.push(0);
        let len = (out.len() - start - 1) as u32;
        out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends the ErrorResponse frame to `out`.
    pub fn to_frame_into(&self, out: &mut bytes::BytesMut) {
        out.extend_from_slice(&self.to_frame());
    }

    pub fn to_frame(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.message.len());
        self.encode(&mut v);
        v
    }
}

/// Postgres strings cannot hold NUL; pgfed's own messages never need one, so drop any.
fn push_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != 0));
    out.push(0);
}

/// Fields of an ErrorResponse or NoticeResponse frame, as (field type, value) pairs.
#[derive(Debug)]
pub struct ErrorFields<'a> {
    rest: &'a [u8],
}

impl<'a> ErrorFields<'a> {
    pub fn new(frame: &'a [u8]) -> Self {
        Self { rest: body(frame) }
    }

    /// The SQLSTATE (field 'C'), if present and ASCII.
    pub fn sqlstate(frame: &'a [u8]) -> Option<&'a str> {
        Self::new(frame).find(|(t, _)| *t == b'C').and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The severity, non-localized ('V') if present, else 'S'.
    pub fn severity(frame: &'a [u8]) -> Option<&'a [u8]> {
        let mut s = None;
        for (t, v) in Self::new(frame) {
            match t {
                b'V' => return Some(v),
                b'S' => s = Some(v),
                _ => {}
            }
        }
        s
    }
}

impl<'a> Iterator for ErrorFields<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&t, rest) = self.rest.split_first()?;
        if t == 0 {
            return None;
        }
        let end = memchr::memchr(0, rest)?;
        let v = &rest[..end];
        self.rest = &rest[end + 1..];
        Some((t, v))
    }
}

/// ReadyForQuery with the given transaction status ('I', 'T' or 'E').
pub fn ready_for_query(status: u8) -> [u8; 6] {
    [b'Z', 0, 0, 0, 5, status]
}

/// BackendKeyData carrying pgfed's own key for the session.
pub fn backend_key_data(pid: i32, secret: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + secret.len());
    v.push(b'K');
    v.extend_from_slice(&((8 + secret.len()) as u32).to_be_bytes());
    v.extend_from_slice(&pid.to_be_bytes());
    v.extend_from_slice(secret);
    v
}

/// Reads BackendKeyData: the process id and the secret (4 bytes in 3.0, longer in 3.2).
pub fn parse_backend_key_data(frame: &[u8]) -> Option<(i32, Vec<u8>)> {
    let b = body(frame);
    if b.len() < 8 {
        return None;
    }
    Some((i32::from_be_bytes([b[0], b[1], b[2], b[3]]), b[4..].to_vec()))
}

/// The authentication request code of an 'R' frame (0 = ok, 3 = cleartext, 5 = MD5, 10 = SASL,
/// 11 = SASL continue, 12 = SASL final).
pub fn auth_code(frame: &[u8]) -> Option<i32> {
    let b = body(frame);
    (b.len() >= 4).then(|| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Rebuilds an AuthenticationSASL frame without the mechanisms `drop` rejects. Returns `None` when
/// the frame is not a well-formed AuthenticationSASL.
pub fn filter_sasl_mechanisms(frame: &[u8], drop: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    if auth_code(frame)? != 10 {
        return None;
    }
    let mut rest = &body(frame)[4..];
    let mut out = vec![b'R', 0, 0, 0, 0];
    out.extend_from_slice(&10i32.to_be_bytes());
    loop {
        let end = memchr::memchr(0, rest)?;
        if end == 0 {
            break;
        }
        let mech = &rest[..end];
        if !drop(mech) {
            out.extend_from_slice(mech);
            out.push(0);
        }
        rest = &rest[end + 1..];
    }
    out.push(0);
    let len = (out.len() - 1) as u32;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// The SQL text of a Query frame (without its terminator). `None` if malformed.
pub fn query_text(frame: &[u8]) -> Option<&[u8]> {
    let b = body(frame);
    let end = memchr::memchr(0, b)?;
    Some(&b[..end])
}

/// The SQL text of a Parse frame (statement name, then query). `None` if malformed.
pub fn parse_query_text(frame: &[u8]) -> Option<&[u8]> {
    let b = body(frame);
    let name_end = memchr::memchr(0, b)?;
    let q = &b[name_end + 1..];
    let end = memchr::memchr(0, q)?;
    Some(&q[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_carry_every_field_and_read_back() {
        let e = PgError::fatal("53300", "sorry, too many clients already").with_detail("d").with_hint("h");
        let f = e.to_frame();
        assert_eq!(f[0], b'E');
        assert_eq!(u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize, f.len() - 1);
        assert_eq!(ErrorFields::sqlstate(&f), Some("53300"));
        assert_eq!(ErrorFields::severity(&f), Some(&b"FATAL"[..]));
        let fields: Vec<_> = ErrorFields::new(&f).map(|(t, _)| t).collect();
        assert_eq!(fields, b"SVCMDH".to_vec());
    }

    #[test]
    fn sasl_filter_drops_channel_binding() {
        let mut f = vec![b'R', 0, 0, 0, 0];
        f.extend_from_slice(&10i32.to_be_bytes());
        f.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let len = (f.len() - 1) as u32;
        f[1..5].copy_from_slice(&len.to_be_bytes());
        let out = filter_sasl_mechanisms(&f, |m| m.ends_with(b"-PLUS")).expect("sasl");
        assert_eq!(&out[9..], b"SCRAM-SHA-256\0\0");
        assert_eq!(auth_code(&out), Some(10));
        assert_eq!(u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize, out.len() - 1);
    }

    #[test]
    fn reads_query_texts() {
        let q = [b'Q', 0, 0, 0, 13, b's', b'e', b'l', b'e', b'c', b't', b' ', b'1', 0];
        assert_eq!(query_text(&q), Some(&b"select 1"[..]));
        let p = [b'P', 0, 0, 0, 12, b's', 0, b's', b'e', b'l', 0, 0, 0];
        assert_eq!(parse_query_text(&p), Some(&b"sel"[..]));
        assert_eq!(query_text(&[b'Q', 0, 0, 0, 5, b'x']), None);
    }
}
