//! The extended-query messages a client sends, read whole (for statements pgfed answers itself).
//! Each parser takes a whole frame (tag and length included) and returns `None` when the body is
//! malformed; the caller answers that with 08P01, as Postgres does.

/// A reader over a message body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn cstr(&mut self) -> Option<&'a str> {
        let end = memchr::memchr(0, self.0)?;
        let s = std::str::from_utf8(&self.0[..end]).ok()?;
        self.0 = &self.0[end + 1..];
        Some(s)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }
}

fn body(frame: &[u8]) -> Body<'_> {
    Body(frame.get(5..).unwrap_or(&[]))
}

/// `Parse`: a statement name, its SQL and any parameter types the client fixed (0: unspecified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    pub fn read(frame: &'a [u8]) -> Option<Self> {
        let mut b = body(frame);
        let name = b.cstr()?;
        let query = b.cstr()?;
        let n = b.count()?;
        let param_types = (0..n).map(|_| b.i32().map(|t| t as u32)).collect::<Option<_>>()?;
        Some(Parse { name, query, param_types })
    }
}

/// `Bind`: a portal from a statement with parameter values and result formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Format codes as sent: none (all text), one (for all), or one per parameter.
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    pub fn read(frame: &'a [u8]) -> Option<Self> {
        let mut b = body(frame);
        let portal = b.cstr()?;
        let statement = b.cstr()?;
        let n = b.count()?;
        let param_formats = (0..n).map(|_| b.i16()).collect::<Option<_>>()?;
        let n = b.count()?;
        let mut params = Vec::with_capacity(n);
        for _ in 0..n {
            let len = b.i32()?;
            params.push(if len < 0 { None } else { Some(b.take(len as usize)?) });
        }
        let n = b.count()?;
        let result_formats = (0..n).map(|_| b.i16()).collect::<Option<_>>()?;
        Some(Bind { portal, statement, param_formats, params, result_formats })
    }

    /// The format code of parameter `i` (0 text, 1 binary).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.as_slice() {
            [] => 0,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(0),
        }
    }
}

/// Reads only the portal and statement names of a Bind (the relay's routing check).
pub fn bind_names(frame: &[u8]) -> Option<(&str, &str)> {
    let mut b = body(frame);
    Some((b.cstr()?, b.cstr()?))
}

/// Reads only the statement name of a Parse.
pub fn bind_names_of_parse(frame: &[u8]) -> Option<&str> {
    body(frame).cstr()
}

/// `Describe` and `Close`: `S` (statement) or `P` (portal), and a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a str,
}

impl<'a> Target<'a> {
    pub fn read(frame: &'a [u8]) -> Option<Self> {
        let mut b = body(frame);
        let kind = b.u8()?;
        if kind != b'S' && kind != b'P' {
            return None;
        }
        Some(Target { kind, name: b.cstr()? })
    }
}

/// `Execute`: a portal and a row limit (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn read(frame: &'a [u8]) -> Option<Self> {
        let mut b = body(frame);
        Some(Execute { portal: b.cstr()?, max_rows: b.i32()? })
    }
}

/// Backend messages pgfed writes when it answers a statement itself.
pub mod reply {
    use bytes::{BufMut, BytesMut};

    fn msg(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
        out.put_u8(tag);
        let at = out.len();
        out.put_u32(0);
        body(out);
        let len = (out.len() - at) as u32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn parse_complete(out: &mut BytesMut) {
        msg(out, b'1', |_| {});
    }
    pub fn bind_complete(out: &mut BytesMut) {
        msg(out, b'2', |_| {});
    }
    pub fn close_complete(out: &mut BytesMut) {
        msg(out, b'3', |_| {});
    }
    pub fn no_data(out: &mut BytesMut) {
        msg(out, b'n', |_| {});
    }
    pub fn portal_suspended(out: &mut BytesMut) {
        msg(out, b's', |_| {});
    }
    pub fn empty_query(out: &mut BytesMut) {
        msg(out, b'I', |_| {});
    }
    pub fn command_complete(out: &mut BytesMut, tag: &str) {
        msg(out, b'C', |b| {
            b.put_slice(tag.as_bytes());
            b.put_u8(0);
        });
    }
    pub fn parameter_description(out: &mut BytesMut, oids: &[u32]) {
        msg(out, b't', |b| {
            b.put_i16(oids.len() as i16);
            oids.iter().for_each(|o| b.put_u32(*o));
        });
    }
    pub fn ready_for_query(out: &mut BytesMut, status: u8) {
        msg(out, b'Z', |b| b.put_u8(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn parse_bind_describe_execute_close_read_back() {
        let mut b = BytesMut::new();
        b.put_slice(b"s1\0select $1\0");
        b.put_i16(1);
        b.put_u32(23);
        let f = frame(b'P', &b);
        assert_eq!(Parse::read(&f), Some(Parse { name: "s1", query: "select $1", param_types: vec![23] }));

        let mut b = BytesMut::new();
        b.put_slice(b"p\0s1\0");
        b.put_i16(1);
        b.put_i16(1);
        b.put_i16(2);
        b.put_i32(2);
        b.put_slice(b"hi");
        b.put_i32(-1);
        b.put_i16(0);
        let f = frame(b'B', &b);
        let bind = Bind::read(&f).expect("bind");
        assert_eq!(bind.params, vec![Some(&b"hi"[..]), None]);
        assert_eq!(bind.param_format(1), 1);
        assert_eq!(bind_names(&f), Some(("p", "s1")));

        assert_eq!(Target::read(&frame(b'D', b"Sx\0")), Some(Target { kind: b'S', name: "x" }));
        assert_eq!(Target::read(&frame(b'D', b"Qx\0")), None);
        let mut b = BytesMut::new();
        b.put_slice(b"p\0");
        b.put_i32(50);
        assert_eq!(Execute::read(&frame(b'E', &b)), Some(Execute { portal: "p", max_rows: 50 }));
    }

    #[test]
    fn truncated_bodies_are_rejected() {
        assert_eq!(Parse::read(&frame(b'P', b"s1\0select")), None);
        let mut b = BytesMut::new();
        b.put_slice(b"p\0s\0");
        b.put_i16(0);
        b.put_i16(1);
        b.put_i32(10);
        b.put_slice(b"abc");
        assert_eq!(Bind::read(&frame(b'B', &b)), None);
        assert_eq!(Execute::read(&frame(b'E', b"p\0\0")), None);
    }
}
