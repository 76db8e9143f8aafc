//! `jsonb_out`: parse JSON text and print it the way jsonb stores and shows it (keys sorted by
//! length then bytes, duplicate keys keep the last value, numbers as numeric, `": "` / `", "`).

use bytes::{BufMut, BytesMut};

use crate::EncodeError;
use crate::numeric::Numeric;

enum Json {
    Null,
    Bool(bool),
    Number(Numeric),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> EncodeError {
    EncodeError::InvalidValue(format!("invalid input syntax for type json: {what}"))
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, EncodeError> {
        if depth > 6400 {
            return Err(bad("nesting too deep"));
        }
        self.ws();
        match self.s.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut pairs = Vec::new();
                if self.eat(b'}') {
                    return Ok(Json::Object(pairs));
                }
                loop {
                    self.ws();
                    if self.s.get(self.pos) != Some(&b'"') {
                        return Err(bad("expected object key"));
                    }
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return Err(bad("expected \":\""));
                    }
                    pairs.push((key, self.value(depth + 1)?));
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(b'}') {
                        return Ok(Json::Object(pairs));
                    }
                    return Err(bad("expected \",\" or \"}\""));
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(b']') {
                        return Ok(Json::Array(items));
                    }
                    return Err(bad("expected \",\" or \"]\""));
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while matches!(self.s.get(self.pos), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| bad("number"))?;
                if !valid_json_number(text) {
                    return Err(bad(text));
                }
                Ok(Json::Number(Numeric::parse(text)?))
            }
            _ => {
                for (word, v) in [("true", Json::Bool(true)), ("false", Json::Bool(false)), ("null", Json::Null)] {
                    if self.s[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(bad("unexpected token"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, EncodeError> {
        let h = self.s.get(self.pos..self.pos + 4).ok_or_else(|| bad("\\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| bad("\\u escape"))?;
        self.pos += 4;
        u32::from_str_radix(h, 16).map_err(|_| bad("\\u escape"))
    }

    fn string(&mut self) -> Result<String, EncodeError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.pos).ok_or_else(|| bad("unterminated string"))?;
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.pos).ok_or_else(|| bad("escape"))?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(bad("unpaired surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(bad("unpaired surrogate"));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(bad("unpaired surrogate"));
                            }
                            if cp == 0 {
                                return Err(EncodeError::InvalidValue(
                                    "unsupported Unicode escape sequence: \\u0000 cannot be converted to text".into(),
                                ));
                            }
                            let ch = char::from_u32(cp).ok_or_else(|| bad("\\u escape"))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(bad("escape")),
                    }
                }
                0..=0x1f => return Err(bad("control character in string")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| bad("invalid UTF-8"))
    }
}

fn valid_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[i - n] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn escape(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    for &c in s.as_bytes() {
        match c {
            8 => out.put_slice(b"\\b"),
            12 => out.put_slice(b"\\f"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            b'"' => out.put_slice(b"\\\""),
            b'\\' => out.put_slice(b"\\\\"),
            0..=0x1f => out.put_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.put_u8(c),
        }
    }
    out.put_u8(b'"');
}

fn print(out: &mut BytesMut, v: Json) {
    match v {
        Json::Null => out.put_slice(b"null"),
        Json::Bool(b) => out.put_slice(if b { b"true" } else { b"false" }),
        Json::Number(n) => n.write_text(out),
        Json::String(s) => escape(out, &s),
        Json::Array(items) => {
            out.put_u8(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.put_slice(b", ");
                }
                print(out, item);
            }
            out.put_u8(b']');
        }
        Json::Object(pairs) => {
            // Stable sort by (length, bytes), then keep the last of equal keys.
            let mut pairs: Vec<(usize, (String, Json))> = pairs.into_iter().enumerate().collect();
            pairs.sort_by(|(ia, (a, _)), (ib, (b, _))| {
                a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())).then(ib.cmp(ia))
            });
            pairs.dedup_by(|later, first| later.1.0 == first.1.0);
            out.put_u8(b'{');
            for (i, (_, (k, v))) in pairs.into_iter().enumerate() {
                if i > 0 {
                    out.put_slice(b", ");
                }
                escape(out, &k);
                out.put_slice(b": ");
                print(out, v);
            }
            out.put_u8(b'}');
        }
    }
}

/// Writes the jsonb text form of the JSON document `src`.
pub(crate) fn write_jsonb(out: &mut BytesMut, src: &str) -> Result<(), EncodeError> {
    let mut p = Parser { s: src.as_bytes(), pos: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(bad("trailing characters"));
    }
    print(out, v);
    Ok(())
}
