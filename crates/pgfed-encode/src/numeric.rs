//! `numeric` values: Postgres's text form (`numeric_out`) and binary form (`numeric_send`).

use bytes::{BufMut, BytesMut};

use crate::EncodeError;

/// A numeric value as Postgres holds it: sign, digits and display scale, or a special value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    NaN,
    PosInf,
    NegInf,
    Finite {
        neg: bool,
        /// Integer digits without leading zeros (empty for values below 1).
        int: String,
        /// Exactly `dscale` fraction digits.
        frac: String,
    },
}

impl Numeric {
    /// `digits` (ASCII decimal, any leading zeros) times 10^-`scale`; a negative scale multiplies.
    pub(crate) fn from_digits(neg: bool, digits: &str, scale: i32) -> Numeric {
        let (int, frac) = if scale <= 0 {
            let zeros = usize::try_from(-i64::from(scale)).unwrap_or(0);
            (format!("{digits}{}", "0".repeat(zeros)), String::new())
        } else {
            let scale = usize::try_from(scale).unwrap_or(0);
            if digits.len() > scale {
                let (i, f) = digits.split_at(digits.len() - scale);
                (i.to_string(), f.to_string())
            } else {
                (String::new(), format!("{}{digits}", "0".repeat(scale - digits.len())))
            }
        };
        let int = int.trim_start_matches('0').to_string();
        let zero = int.is_empty() && frac.bytes().all(|b| b == b'0');
        Numeric::Finite { neg: neg && !zero, int, frac }
    }

    /// Parses numeric input as `numeric_in` accepts it (Postgres 15: no underscores).
    pub(crate) fn parse(s: &str) -> Result<Numeric, EncodeError> {
        let bad = || EncodeError::InvalidValue(format!("invalid input syntax for type numeric: {s:?}"));
        let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Ok(Numeric::NaN),
            "infinity" | "+infinity" | "inf" | "+inf" => return Ok(Numeric::PosInf),
            "-infinity" | "-inf" => return Ok(Numeric::NegInf),
            _ => {}
        }
        let (neg, rest) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(p) => {
                let e: i64 = rest[p + 1..].parse().map_err(|_| bad())?;
                (&rest[..p], e)
            }
            None => (rest, 0),
        };
        let (ip, fp) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (ip.is_empty() && fp.is_empty()) || !ip.bytes().chain(fp.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if exp.abs() > 1000 {
            return Err(EncodeError::OutOfRange(format!("numeric exponent in {s:?}")));
        }
        let frac_len = i64::try_from(fp.len()).map_err(|_| bad())?;
        let dscale = (frac_len - exp).max(0);
        let digits = format!("{ip}{fp}");
        // value = digits * 10^(exp - frac_len); shown with dscale fraction digits.
        let scale = i32::try_from(frac_len - exp).map_err(|_| bad())?;
        let mut n = Numeric::from_digits(neg, &digits, scale);
        if let Numeric::Finite { frac, .. } = &mut n {
            let want = usize::try_from(dscale).unwrap_or(0);
            // from_digits keeps exactly `scale` fraction digits, which equals dscale when scale >= 0.
            debug_assert!(frac.len() == want || scale < 0);
            frac.truncate(want);
        }
        Ok(n)
    }

    pub(crate) fn write_text(&self, out: &mut BytesMut) {
        match self {
            Numeric::NaN => out.put_slice(b"NaN"),
            Numeric::PosInf => out.put_slice(b"Infinity"),
            Numeric::NegInf => out.put_slice(b"-Infinity"),
            Numeric::Finite { neg, int, frac } => {
                if *neg {
                    out.put_u8(b'-');
                }
                if int.is_empty() {
                    out.put_u8(b'0');
                } else {
                    out.put_slice(int.as_bytes());
                }
                if !frac.is_empty() {
                    out.put_u8(b'.');
                    out.put_slice(frac.as_bytes());
                }
            }
        }
    }

    pub(crate) fn write_binary(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        // numeric_send reads the display scale of a special value out of its short header
        // (`(header & 0x1F80) >> 7`): 0 for NaN, 32 for the infinities.
        let special = |out: &mut BytesMut, sign: u16| {
            out.put_i16(0);
            out.put_i16(0);
            out.put_u16(sign);
            out.put_u16((sign & 0x1F80) >> 7);
        };
        match self {
            Numeric::NaN => special(out, 0xC000),
            Numeric::PosInf => special(out, 0xD000),
            Numeric::NegInf => special(out, 0xF000),
            Numeric::Finite { neg, int, frac } => {
                let int_groups = int.len().div_ceil(4);
                let mut padded = "0".repeat(int_groups * 4 - int.len());
                padded.push_str(int);
                padded.push_str(frac);
                padded.push_str(&"0".repeat((4 - frac.len() % 4) % 4));
                let mut groups: Vec<i16> = padded
                    .as_bytes()
                    .chunks(4)
                    .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
                    .collect();
                let mut weight = i64::try_from(int_groups).unwrap_or(i64::MAX) - 1;
                let lead = groups.iter().take_while(|g| **g == 0).count();
                groups.drain(..lead);
                weight -= i64::try_from(lead).unwrap_or(0);
                while groups.last() == Some(&0) {
                    groups.pop();
                }
                let (weight, sign) = if groups.is_empty() { (0, 0) } else { (weight, if *neg { 0x4000 } else { 0 }) };
                let too_big = || EncodeError::OutOfRange("numeric value too large for the binary format".into());
                out.put_i16(i16::try_from(groups.len()).map_err(|_| too_big())?);
                out.put_i16(i16::try_from(weight).map_err(|_| too_big())?);
                out.put_u16(sign);
                out.put_i16(i16::try_from(frac.len()).map_err(|_| too_big())?);
                for g in groups {
                    out.put_i16(g);
                }
            }
        }
        Ok(())
    }
}
