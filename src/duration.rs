//! Human-readable durations for every config section: `"500ms"`, `"10s"`,
//! `"2m"`, `"1h"`, `"1m30s"`, `"1.5s"`. One parser, so every error quotes the
//! offending text the same way.

use std::time::Duration;

/// Longest duration accepted: timers add durations to instants, and a
/// year is far beyond any sensible debounce, hold or silence.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<number><unit>…` with unit ms, s, m or h.
    #[error(
        "invalid duration {0:?}: expected e.g. \"500ms\", \"10s\", \"2m\", \"1h\" or \"1m30s\""
    )]
    Invalid(String),
    #[error("duration {0:?} is longer than the maximum of 366 days")]
    TooLong(String),
}

/// Parses one or more `<number><unit>` parts and adds them up. Whole numbers
/// are exact; fractions go through `f64` (nanosecond precision).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError::Invalid(s.to_owned());
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit: u64 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let part = if let Ok(whole) = number.parse::<u64>() {
            let nanos = whole.checked_mul(nanos_per_unit).ok_or_else(err)?;
            Duration::from_nanos(nanos)
        } else {
            let value: f64 = number.parse().map_err(|_| err())?;
            Duration::try_from_secs_f64(value * nanos_per_unit as f64 / 1e9).map_err(|_| err())?
        };
        total = total.checked_add(part).ok_or_else(err)?;
        rest = tail;
    }
    if total > MAX_DURATION {
        return Err(DurationError::TooLong(s.to_owned()));
    }
    Ok(total)
}

/// `serde(deserialize_with)` adapter so config structs hold real `Duration`s.
pub fn deserialize<'de, D>(de: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = <String as serde::Deserialize>::deserialize(de)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Formats a duration so that [`parse_duration`] reads it back exactly:
/// `"1m30s"`, `"500ms"`, `"0s"`; sub-millisecond parts as decimal seconds.
pub fn format_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        let frac = format!("{:09}", d.subsec_nanos());
        return format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'));
    }
    let secs = d.as_secs();
    let parts = [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(d.subsec_millis()), "ms"),
    ];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// `serde(serialize_with)` adapter, the inverse of [`deserialize`], so a
/// printed config can be read back.
pub fn serialize<S>(d: &Duration, s: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("8784h"), Ok(MAX_DURATION));
    }

    #[test]
    fn formats_what_it_parses() {
        for text in [
            "0s",
            "500ms",
            "10s",
            "1m30s",
            "1h",
            "1h0m1s",
            "1.5s",
            "0.000001s",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1.2.3s",
            "10 s",
            "ms10",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), Err(DurationError::Invalid(bad.into())));
        }
        assert_eq!(
            parse_duration("8785h"),
            Err(DurationError::TooLong("8785h".into()))
        );
    }
}
