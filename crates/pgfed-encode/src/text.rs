//! Text output as Postgres's `*_out` functions produce it.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use crate::EncodeError;
use crate::settings::{ByteaOutput, DateOrder, DateStyle, IntervalStyle, TextSettings, TimeZone};

pub(crate) const USECS_PER_SEC: i64 = 1_000_000;
pub(crate) const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
pub(crate) const EPOCH_DIFF_DAYS: i64 = 10_957;
pub(crate) const EPOCH_DIFF_USECS: i64 = EPOCH_DIFF_DAYS * USECS_PER_DAY;
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
/// First Julian day past Postgres's date range (5874898-01-01).
const DATE_END_JULIAN: i64 = 2_147_483_494;
/// Postgres timestamps end at 294277-01-01 00:00:00 (µs since 2000-01-01).
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
/// Postgres timestamps start at Julian day 0 (4714-11-24 BC), µs since 2000-01-01.
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn put(out: &mut BytesMut, args: std::fmt::Arguments<'_>) {
    let mut s = String::new();
    let _ = s.write_fmt(args);
    out.put_slice(s.as_bytes());
}

// ---- floats ------------------------------------------------------------------------------------

/// `float4out` / `float8out`. `dig` is FLT_DIG (6) or DBL_DIG (15); `sci` is Rust's `{:e}` or
/// `{:.N e}` rendering of the value.
fn float_layout(out: &mut BytesMut, sci: &str, dig: i32) {
    let (neg, rest) = match sci.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, sci),
    };
    let (mant, exp) = rest.split_once('e').unwrap_or((rest, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if neg {
        out.put_u8(b'-');
    }
    let olen = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if exp < -4 || exp >= dig {
        out.put_slice(&digits.as_bytes()[..1]);
        if digits.len() > 1 {
            out.put_u8(b'.');
            out.put_slice(&digits.as_bytes()[1..]);
        }
        put(out, format_args!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    } else if exp >= 0 {
        if olen <= exp + 1 {
            out.put_slice(digits.as_bytes());
            for _ in olen..=exp {
                out.put_u8(b'0');
            }
        } else {
            let p = usize::try_from(exp + 1).unwrap_or(0);
            out.put_slice(&digits.as_bytes()[..p]);
            out.put_u8(b'.');
            out.put_slice(&digits.as_bytes()[p..]);
        }
    } else {
        out.put_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.put_u8(b'0');
        }
        out.put_slice(digits.as_bytes());
    }
}

fn float_special(out: &mut BytesMut, nan: bool, inf: bool, neg: bool) -> bool {
    if nan {
        out.put_slice(b"NaN");
    } else if inf {
        out.put_slice(if neg { b"-Infinity" } else { b"Infinity" });
    } else {
        return false;
    }
    true
}

pub(crate) fn float8(out: &mut BytesMut, v: f64, extra_float_digits: i32) {
    if float_special(out, v.is_nan(), v.is_infinite(), v < 0.0) {
        return;
    }
    if extra_float_digits > 0 {
        float_layout(out, &format!("{v:e}"), 15);
    } else {
        let p = (15 + extra_float_digits).max(1);
        float_layout(out, &format!("{:.*e}", usize::try_from(p - 1).unwrap_or(0), v), p);
    }
}

pub(crate) fn float4(out: &mut BytesMut, v: f32, extra_float_digits: i32) {
    if float_special(out, v.is_nan(), v.is_infinite(), v < 0.0) {
        return;
    }
    if extra_float_digits > 0 {
        float_layout(out, &format!("{v:e}"), 6);
    } else {
        let p = (6 + extra_float_digits).max(1);
        float_layout(out, &format!("{:.*e}", usize::try_from(p - 1).unwrap_or(0), f64::from(v)), p);
    }
}

// ---- dates and times ---------------------------------------------------------------------------

/// Postgres's `j2date`: Julian day to proleptic Gregorian (year 0 = 1 BC).
fn j2date(jd: i64) -> (i64, u32, u32) {
    let mut julian = jd + 32044;
    let mut quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 { (julian + 305) % 365 } else { (julian + 306) % 366 } + 123;
    y += quad * 4;
    let quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (y - 4800, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

fn put_year(out: &mut BytesMut, year: i64) {
    put(out, format_args!("{:04}", if year > 0 { year } else { 1 - year }));
}

fn put_date_part(out: &mut BytesMut, y: i64, m: u32, d: u32, s: &TextSettings) {
    match s.date_style {
        DateStyle::Iso => {
            put_year(out, y);
            put(out, format_args!("-{m:02}-{d:02}"));
        }
        DateStyle::Sql => {
            if s.date_order == DateOrder::Dmy {
                put(out, format_args!("{d:02}/{m:02}/"));
            } else {
                put(out, format_args!("{m:02}/{d:02}/"));
            }
            put_year(out, y);
        }
        DateStyle::German => {
            put(out, format_args!("{d:02}.{m:02}."));
            put_year(out, y);
        }
        DateStyle::Postgres => {
            if s.date_order == DateOrder::Dmy {
                put(out, format_args!("{d:02}-{m:02}-"));
            } else {
                put(out, format_args!("{m:02}-{d:02}-"));
            }
            put_year(out, y);
        }
    }
}

/// `date_out`; `days` counts from 1970-01-01.
pub(crate) fn date(out: &mut BytesMut, days: i64, s: &TextSettings) -> Result<(), EncodeError> {
    let jd = days - EPOCH_DIFF_DAYS + POSTGRES_EPOCH_JDATE;
    if !(0..DATE_END_JULIAN).contains(&jd) {
        return Err(EncodeError::OutOfRange("date out of range".into()));
    }
    let (y, m, d) = j2date(jd);
    put_date_part(out, y, m, d, s);
    if y <= 0 {
        out.put_slice(b" BC");
    }
    Ok(())
}

/// `HH:MM:SS` plus the fraction with trailing zeros removed (`AppendSeconds`).
fn put_hms(out: &mut BytesMut, hour: i64, min: i64, sec: i64, fsec: i64) {
    put(out, format_args!("{:02}:{:02}:{:02}", hour.abs(), min.abs(), sec.abs()));
    if fsec != 0 {
        let f = format!("{:06}", fsec.abs());
        out.put_u8(b'.');
        out.put_slice(f.trim_end_matches('0').as_bytes());
    }
}

/// `time_out`; `us` since midnight.
pub(crate) fn time(out: &mut BytesMut, us: i64) -> Result<(), EncodeError> {
    if !(0..=USECS_PER_DAY).contains(&us) {
        return Err(EncodeError::OutOfRange("time out of range".into()));
    }
    let sec = us / USECS_PER_SEC;
    put_hms(out, sec / 3600, sec / 60 % 60, sec % 60, us % USECS_PER_SEC);
    Ok(())
}

/// Checks an Arrow timestamp (µs since 1970) against Postgres's range; returns µs since 2000.
pub(crate) fn pg_timestamp(unix_us: i64) -> Result<i64, EncodeError> {
    unix_us
        .checked_sub(EPOCH_DIFF_USECS)
        .filter(|t| (MIN_TIMESTAMP..END_TIMESTAMP).contains(t))
        .ok_or_else(|| EncodeError::OutOfRange("timestamp out of range".into()))
}

/// The session zone's offset (seconds east of UTC) and abbreviation at an instant.
fn zone_at(tz: &TimeZone, unix_us: i64) -> Result<(i32, Option<String>), EncodeError> {
    match tz {
        TimeZone::Fixed(secs) => Ok((*secs, None)),
        TimeZone::Named(tz) => {
            // jiff covers years -9999..=9999; zone rules repeat every 400 Gregorian years
            // (146097 days) once the POSIX rule applies, so shift far instants into range.
            const CYCLE: i64 = 146_097 * USECS_PER_DAY;
            const LIMIT: i64 = 9_000 * 365 * USECS_PER_DAY;
            let mut t = unix_us;
            if t > LIMIT {
                t -= (t - LIMIT).div_euclid(CYCLE).saturating_add(1).saturating_mul(CYCLE);
            } else if t < -LIMIT {
                t += (-LIMIT - t).div_euclid(CYCLE).saturating_add(1).saturating_mul(CYCLE);
            }
            let ts = jiff::Timestamp::from_microsecond(t)
                .map_err(|_| EncodeError::OutOfRange("timestamp out of range for time zone conversion".into()))?;
            let info = tz.to_offset_info(ts);
            Ok((info.offset().seconds(), Some(info.abbreviation().to_string())))
        }
    }
}

/// `EncodeTimezone`: offset east of UTC as `+HH`, `+HH:MM` or `+HH:MM:SS`.
fn put_offset(out: &mut BytesMut, east: i32) {
    let sign = if east >= 0 { '+' } else { '-' };
    let a = east.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    if s != 0 {
        put(out, format_args!("{sign}{h:02}:{m:02}:{s:02}"));
    } else if m != 0 {
        put(out, format_args!("{sign}{h:02}:{m:02}"));
    } else {
        put(out, format_args!("{sign}{h:02}"));
    }
}

/// `timestamp_out` (`with_zone` false) and `timestamptz_out` (true); `unix_us` since 1970 UTC.
pub(crate) fn timestamp(
    out: &mut BytesMut,
    unix_us: i64,
    with_zone: bool,
    s: &TextSettings,
) -> Result<(), EncodeError> {
    let pg = pg_timestamp(unix_us)?;
    let (offset, abbrev) = if with_zone { zone_at(&s.time_zone, unix_us)? } else { (0, None) };
    let local = pg + i64::from(offset) * USECS_PER_SEC;
    let date = local.div_euclid(USECS_PER_DAY);
    let t = local.rem_euclid(USECS_PER_DAY);
    let jd = date + POSTGRES_EPOCH_JDATE;
    let (y, m, d) = j2date(jd);
    let sec = t / USECS_PER_SEC;
    let (hh, mi, ss, fsec) = (sec / 3600, sec / 60 % 60, sec % 60, t % USECS_PER_SEC);
    let put_tz = |out: &mut BytesMut| {
        if !with_zone {
            return;
        }
        match (&abbrev, s.date_style) {
            (_, DateStyle::Iso) => put_offset(out, offset),
            (Some(a), _) => put(out, format_args!(" {a}")),
            (None, _) => {
                out.put_u8(b' ');
                put_offset(out, offset);
            }
        }
    };
    match s.date_style {
        DateStyle::Iso | DateStyle::Sql | DateStyle::German => {
            put_date_part(out, y, m, d, s);
            out.put_u8(b' ');
            put_hms(out, hh, mi, ss, fsec);
            put_tz(out);
        }
        DateStyle::Postgres => {
            let wday = usize::try_from((jd + 1).rem_euclid(7)).unwrap_or(0);
            let mon = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
            out.put_slice(DAYS[wday].as_bytes());
            if s.date_order == DateOrder::Dmy {
                put(out, format_args!(" {d:02} {mon} "));
            } else {
                put(out, format_args!(" {mon} {d:02} "));
            }
            put_hms(out, hh, mi, ss, fsec);
            out.put_u8(b' ');
            put_year(out, y);
            put_tz(out);
        }
    }
    if y <= 0 {
        out.put_slice(b" BC");
    }
    Ok(())
}

/// `interval_out` (IntervalStyle `postgres` only).
pub(crate) fn interval(
    out: &mut BytesMut,
    months: i32,
    days: i32,
    us: i64,
    s: &TextSettings,
) -> Result<(), EncodeError> {
    if s.interval_style != IntervalStyle::Postgres {
        return Err(EncodeError::Setting(format!("IntervalStyle {:?} is not supported", s.interval_style)));
    }
    let (year, mon) = (i64::from(months / 12), i64::from(months % 12));
    let hour = us / 3_600_000_000;
    let rest = us - hour * 3_600_000_000;
    let min = rest / 60_000_000;
    let rest = rest - min * 60_000_000;
    let sec = rest / USECS_PER_SEC;
    let fsec = rest - sec * USECS_PER_SEC;
    let mut is_zero = true;
    let mut is_before = false;
    for (value, unit) in [(year, "year"), (mon, "mon"), (i64::from(days), "day")] {
        if value == 0 {
            continue;
        }
        put(
            out,
            format_args!(
                "{}{}{value} {unit}{}",
                if is_zero { "" } else { " " },
                if is_before && value > 0 { "+" } else { "" },
                if value != 1 { "s" } else { "" }
            ),
        );
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || hour != 0 || min != 0 || sec != 0 || fsec != 0 {
        let minus = hour < 0 || min < 0 || sec < 0 || fsec < 0;
        put(
            out,
            format_args!(
                "{}{}",
                if is_zero { "" } else { " " },
                if minus {
                    "-"
                } else if is_before {
                    "+"
                } else {
                    ""
                }
            ),
        );
        put_hms(out, hour, min, sec, fsec);
    }
    Ok(())
}

// ---- bytes -------------------------------------------------------------------------------------

pub(crate) fn bytea(out: &mut BytesMut, b: &[u8], s: &TextSettings) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match s.bytea_output {
        ByteaOutput::Hex => {
            out.reserve(2 + b.len() * 2);
            out.put_slice(b"\\x");
            for byte in b {
                out.put_u8(HEX[usize::from(byte >> 4)]);
                out.put_u8(HEX[usize::from(byte & 15)]);
            }
        }
        ByteaOutput::Escape => {
            for &byte in b {
                if byte == b'\\' {
                    out.put_slice(b"\\\\");
                } else if !(0x20..=0x7e).contains(&byte) {
                    put(out, format_args!("\\{byte:03o}"));
                } else {
                    out.put_u8(byte);
                }
            }
        }
    }
}

pub(crate) fn uuid(out: &mut BytesMut, b: &[u8]) {
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.put_u8(b'-');
        }
        put(out, format_args!("{byte:02x}"));
    }
}

/// Appends one array element's text, quoted as `array_out` does when needed.
pub(crate) fn array_element(out: &mut BytesMut, text: &[u8]) {
    let needs_quote = text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text
            .iter()
            .any(|c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if !needs_quote {
        out.put_slice(text);
        return;
    }
    out.put_u8(b'"');
    for &c in text {
        if c == b'"' || c == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(c);
    }
    out.put_u8(b'"');
}
