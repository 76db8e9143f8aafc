//! Session settings that change text output.

use std::str::FromStr;

use crate::EncodeError;

/// The output part of `DateStyle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DateStyle {
    #[default]
    Iso,
    Sql,
    Postgres,
    German,
}

/// The field-order part of `DateStyle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DateOrder {
    #[default]
    Mdy,
    Dmy,
    Ymd,
}

/// `IntervalStyle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IntervalStyle {
    #[default]
    Postgres,
    PostgresVerbose,
    SqlStandard,
    Iso8601,
}

/// `bytea_output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ByteaOutput {
    #[default]
    Hex,
    Escape,
}

/// `TimeZone`: the zone timestamptz values are shown in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeZone {
    /// A fixed offset in seconds east of UTC (as `SET TIME ZONE INTERVAL '+05:30'`).
    Fixed(i32),
    /// An IANA zone (`Europe/Berlin`, `UTC`, `Etc/GMT+5`, ...), from the system zoneinfo
    /// database when there is one, else jiff's bundled copy.
    Named(jiff::tz::TimeZone),
}

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone::Named(jiff::tz::TimeZone::UTC)
    }
}

impl FromStr for TimeZone {
    type Err = EncodeError;

    /// IANA names (case-insensitively for the common `UTC`/`GMT`), as `SET TimeZone` takes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("gmt") || s.eq_ignore_ascii_case("z") {
            return Ok(TimeZone::Named(jiff::tz::TimeZone::UTC));
        }
        jiff::tz::TimeZone::get(s).map(TimeZone::Named).map_err(|_| EncodeError::Setting(format!("TimeZone {s:?}")))
    }
}

/// The settings Postgres's text output depends on. `Default` is a fresh Postgres 15 session with
/// `TimeZone = 'UTC'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextSettings {
    pub date_style: DateStyle,
    pub date_order: DateOrder,
    pub time_zone: TimeZone,
    pub interval_style: IntervalStyle,
    /// `extra_float_digits` (-15..=3); above 0 gives shortest round-trip output.
    pub extra_float_digits: i32,
    pub bytea_output: ByteaOutput,
}

impl Default for TextSettings {
    fn default() -> Self {
        TextSettings {
            date_style: DateStyle::Iso,
            date_order: DateOrder::Mdy,
            time_zone: TimeZone::default(),
            interval_style: IntervalStyle::Postgres,
            extra_float_digits: 1,
            bytea_output: ByteaOutput::Hex,
        }
    }
}

impl TextSettings {
    /// Applies one setting as Postgres reports it (ParameterStatus) or takes it in `SET`.
    /// Settings this crate does not depend on are ignored.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EncodeError> {
        let bad = || EncodeError::Setting(format!("{name} = {value:?}"));
        let v = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "datestyle" => {
                for part in v.split(',').map(|p| p.trim().to_ascii_lowercase()) {
                    match part.as_str() {
                        "iso" => self.date_style = DateStyle::Iso,
                        "sql" => self.date_style = DateStyle::Sql,
                        "postgres" => self.date_style = DateStyle::Postgres,
                        "german" => {
                            self.date_style = DateStyle::German;
                            self.date_order = DateOrder::Dmy;
                        }
                        "mdy" | "us" | "noneuropean" | "noneuro" => self.date_order = DateOrder::Mdy,
                        "dmy" | "euro" | "european" => self.date_order = DateOrder::Dmy,
                        "ymd" => self.date_order = DateOrder::Ymd,
                        "default" | "" => {}
                        _ => return Err(bad()),
                    }
                }
            }
            "timezone" => self.time_zone = v.parse()?,
            "intervalstyle" => {
                self.interval_style = match v.to_ascii_lowercase().as_str() {
                    "postgres" => IntervalStyle::Postgres,
                    "postgres_verbose" => IntervalStyle::PostgresVerbose,
                    "sql_standard" => IntervalStyle::SqlStandard,
                    "iso_8601" => IntervalStyle::Iso8601,
                    _ => return Err(bad()),
                }
            }
            "extra_float_digits" => {
                let n: i32 = v.parse().map_err(|_| bad())?;
                if !(-15..=3).contains(&n) {
                    return Err(bad());
                }
                self.extra_float_digits = n;
            }
            "bytea_output" => {
                self.bytea_output = match v.to_ascii_lowercase().as_str() {
                    "hex" => ByteaOutput::Hex,
                    "escape" => ByteaOutput::Escape,
                    _ => return Err(bad()),
                }
            }
            _ => {}
        }
        Ok(())
    }
}
