//! Calendar dates and UTC timestamps, hand-written: the few conversions Treaty needs do
//! not justify a date-time dependency in the vocabulary crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A calendar date, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    pub fn new(year: i32, month: u8, day: u8) -> Result<Self, String> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(format!("{year:04}-{month:02}-{day:02} is not a calendar date"));
        }
        Ok(Self { year, month, day })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a date; write it as YYYY-MM-DD");
        let mut parts = text.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse()) else {
            return Err(bad());
        };
        Self::new(y, m, d)
    }

    pub fn year(&self) -> i32 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }
    pub fn day(&self) -> u8 {
        self.day
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

crate::string_schema!(Date, "A calendar date, YYYY-MM-DD.", "2026-01-31");

impl TryFrom<String> for Date {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Date> for String {
    fn from(value: Date) -> Self {
        value.to_string()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        Timestamp(since_epoch.map(|d| d.as_millis() as i64).unwrap_or(0))
    }

    /// RFC 3339 with milliseconds, e.g. `2026-11-22T01:38:21.123Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (min, rest) = (rest / 60_000, rest % 60_000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{:02}.{:03}Z", rest / 1000, rest % 1000)
    }
}

impl Timestamp {
    /// Parses RFC 3339, e.g. `2026-11-22T01:38:21.123Z` or `2026-11-22T02:38:21+01:00`
    /// (fractions beyond milliseconds are truncated).
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an RFC 3339 time such as 2026-11-22T01:38:21.123Z");
        let (date, time) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
        let date = Date::parse(date).map_err(|_| bad())?;
        let (clock, offset_minutes) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
            (clock, 0i64)
        } else {
            let at = time.rfind(['+', '-']).ok_or_else(bad)?;
            let (clock, offset) = time.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':').ok_or_else(bad)?;
            let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            (clock, sign * (h * 60 + m))
        };
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut parts = hms.split(':');
        let mut field = |max: i64| -> Result<i64, String> {
            let part = parts.next().ok_or_else(bad)?;
            let value: i64 = if part.len() == 2 { part.parse().map_err(|_| bad())? } else { return Err(bad()) };
            if value > max { Err(bad()) } else { Ok(value) }
        };
        let (h, min, sec) = (field(23)?, field(59)?, field(60)?);
        if parts.next().is_some() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let millis: i64 = format!("{:0<3}", &fraction[..fraction.len().min(3)]).parse().map_err(|_| bad())?;
        let days = days_from_civil(i64::from(date.year()), u32::from(date.month()), u32::from(date.day()));
        let seconds = days * 86_400 + h * 3600 + min * 60 + sec - offset_minutes * 60;
        Ok(Timestamp(seconds * 1000 + millis))
    }
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(Date::parse("2024-02-29").map(|d| d.to_string()), Ok("2024-02-29".into()));
        assert!(Date::parse("2023-02-29").is_err());
        assert!(Date::parse("2023-13-01").is_err());
        assert!(Date::parse("23-01-01").is_err());
        assert!(Date::parse("2023-1-01").is_err());
        assert!(
            Date::parse("2023-01-01").unwrap_or_else(|e| panic!("{e}"))
                < Date::parse("2023-01-02").unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_795_311_501_123).to_rfc3339(), "2026-11-22T01:38:21.123Z");
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(951_782_400_000).to_rfc3339(), "2000-02-29T00:00:00.000Z");
        for ms in [0, 1_795_311_501_123, -1, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(Timestamp::parse_rfc3339(&Timestamp(ms).to_rfc3339()), Ok(Timestamp(ms)));
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-11-22T02:38:21.1234+01:00"), Ok(Timestamp(1_795_311_501_123)));
        assert_eq!(Timestamp::parse_rfc3339("2026-11-22T01:38:21Z"), Ok(Timestamp(1_795_311_501_000)));
        for bad in ["2026-11-22", "2026-11-22T1:38:21Z", "2026-11-22T01:38:21", "2026-11-22T25:00:00Z", "x"] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
