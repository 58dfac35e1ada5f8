//! Timestamps as text flow sources write them: RFC 3339 (Hubble, generic
//! records) and decimal epoch seconds (conntrack `-o timestamp`, Calico,
//! generic records), converted to [`Micros`] without a date library.
//!
//! Fractions finer than a microsecond are truncated, not rounded, so that a
//! flow never appears to start after the packet that started it.

use crate::generic::json::Scalar;
use crate::model::Micros;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Epoch seconds beyond this (about the year 5138) are rejected: they are
/// a unit mistake (milliseconds, nanoseconds), not a time.
const MAX_EPOCH_SECONDS: i64 = 100_000_000_000;

/// Parses an RFC 3339 date-time: `2021-06-16T16:52:13.136834446Z`,
/// `2021-06-16t16:52:13+02:00`, `2021-06-16 16:52:13.5-07:30`.
pub fn parse_rfc3339(text: &str) -> Result<Micros, &'static str> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err("date-time too short");
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err("date-time separators are not YYYY-MM-DDTHH:MM:SS");
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("no 'T' between date and time");
    }
    // 60 is allowed: RFC 3339 leap seconds; it simply rolls into the next
    // minute, which is as close as a Unix time can get.
    if month == 0 || month > 12 || day == 0 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day");
    }
    let (fraction_micros, rest) = fraction(&b[19..])?;
    let offset_seconds = utc_offset(rest)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_seconds;
    Ok(seconds * MICROS_PER_SECOND + fraction_micros)
}

/// Parses decimal epoch seconds with an optional fraction, exactly (no
/// floating point): `1795345174.177649`, `1577834657`.
pub fn parse_epoch_seconds(text: &str) -> Result<Micros, &'static str> {
    let (whole, frac) = match text.split_once('.') {
        Some((whole, frac)) => (whole, frac),
        None => (text, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return Err("epoch seconds are not a decimal number");
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err("epoch seconds are not a decimal number");
    }
    let seconds: i64 = whole.parse().map_err(|_| "epoch seconds out of range")?;
    let (micros, _) = fraction_digits(frac.as_bytes());
    from_epoch_parts(seconds, micros)
}

/// Epoch seconds given as a JSON float.
pub fn epoch_seconds_f64(seconds: f64) -> Result<Micros, &'static str> {
    if !seconds.is_finite() || seconds < 0.0 || seconds >= MAX_EPOCH_SECONDS as f64 {
        return Err("epoch seconds out of range");
    }
    // In range, so the cast cannot saturate; rounding to the nearest
    // microsecond undoes the float's representation error (.177649 is
    // stored as .17764899...).
    Ok((seconds * MICROS_PER_SECOND as f64).round() as i64)
}

/// Epoch seconds given as a JSON integer.
pub fn epoch_seconds_i64(seconds: i64) -> Result<Micros, &'static str> {
    from_epoch_parts(seconds, 0)
}

/// A time given as a JSON number (epoch seconds) or as text (epoch seconds
/// or RFC 3339).
pub fn scalar_time(value: &Scalar<'_>) -> Result<Micros, &'static str> {
    match value {
        Scalar::Text(text) => {
            let text = text.trim();
            if text.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
                parse_epoch_seconds(text)
            } else {
                parse_rfc3339(text)
            }
        }
        Scalar::Unsigned(n) => i64::try_from(*n)
            .map_err(|_| "epoch seconds out of range")
            .and_then(epoch_seconds_i64),
        Scalar::Signed(n) => epoch_seconds_i64(*n),
        Scalar::Float(f) => epoch_seconds_f64(*f),
    }
}

fn from_epoch_parts(seconds: i64, micros: i64) -> Result<Micros, &'static str> {
    if !(0..MAX_EPOCH_SECONDS).contains(&seconds) {
        return Err("epoch seconds out of range");
    }
    Ok(seconds * MICROS_PER_SECOND + micros)
}

fn digits(b: &[u8], at: usize, len: usize) -> Result<i64, &'static str> {
    let field = b.get(at..at + len).ok_or("date-time too short")?;
    field.iter().try_fold(0i64, |n, &c| {
        if c.is_ascii_digit() {
            Ok(n * 10 + i64::from(c - b'0'))
        } else {
            Err("date-time has a non-digit where a digit belongs")
        }
    })
}

/// `.136834446` → 136834 µs, and what follows the fraction.
fn fraction(b: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    match b.first() {
        Some(b'.') | Some(b',') => {
            let (micros, used) = fraction_digits(&b[1..]);
            if used == 0 {
                return Err("empty fraction of a second");
            }
            Ok((micros, &b[1 + used..]))
        }
        _ => Ok((0, b)),
    }
}

/// Reads leading digits as a fraction of a second; returns microseconds and
/// how many digits there were.
fn fraction_digits(b: &[u8]) -> (i64, usize) {
    let used = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut micros = 0i64;
    for i in 0..6 {
        let digit = b[..used].get(i).map_or(0, |c| i64::from(c - b'0'));
        micros = micros * 10 + digit;
    }
    (micros, used)
}

fn utc_offset(b: &[u8]) -> Result<i64, &'static str> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2], 0, 2)?;
            let minutes = digits(&[*m1, *m2], 0, 2)?;
            if hours > 23 || minutes > 59 {
                return Err("no such UTC offset");
            }
            let offset = hours * 3_600 + minutes * 60;
            Ok(if *sign == b'-' { -offset } else { offset })
        }
        [] => Err("date-time has no UTC offset (Z or +hh:mm)"),
        _ => Err("date-time ends in something other than a UTC offset"),
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Counts in 400-year
/// eras starting on March 1st, so the leap day is the last day of a year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        // date -u -d @1623862333 → 2021-06-16 16:52:13
        assert_eq!(
            parse_rfc3339("2021-06-16T16:52:13.136834446Z"),
            Ok(1_623_862_333_136_834)
        );
        assert_eq!(
            parse_rfc3339("2021-06-16T18:52:13.5+02:00"),
            Ok(1_623_862_333_500_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29 00:00:00z"),
            Ok(951_782_400_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1_000_000));
    }

    #[test]
    fn rfc3339_rejects_impossible_dates() {
        for bad in [
            "2021-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-01-01T24:00:00Z",
            "2021-01-01T00:00:00",
            "2021-01-01T00:00:00.Z",
            "2021-01-01T00:00:00+0200",
            "2021/01/01T00:00:00Z",
            "yesterday at noon, UTC",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_text_is_exact() {
        assert_eq!(
            parse_epoch_seconds("1795345174.177649"),
            Ok(1_795_345_174_177_649)
        );
        assert_eq!(parse_epoch_seconds("1577834657"), Ok(1_577_834_657_000_000));
        assert_eq!(parse_epoch_seconds("1.5"), Ok(1_500_000));
        assert_eq!(parse_epoch_seconds("1.1234567"), Ok(1_123_456));
        assert!(parse_epoch_seconds("-1").is_err());
        assert!(parse_epoch_seconds("1e9").is_err());
        assert!(parse_epoch_seconds("99999999999999999999").is_err());
        assert_eq!(
            epoch_seconds_f64(1795345174.177649),
            Ok(1_795_345_174_177_649)
        );
        assert!(epoch_seconds_f64(f64::NAN).is_err());
    }
}
