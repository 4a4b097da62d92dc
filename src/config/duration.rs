//! Duration strings: a whole number followed by one unit (`ms`, `s`, `m`, `h`, `d`),
//! e.g. `"1500ms"`, `"1s"`, `"48h"`, `"30d"`.

use std::time::Duration;

/// The message every malformed duration gets (the value itself is never echoed).
pub const DURATION_HELP: &str = "invalid duration: expected a whole number followed by one unit \
     (ms, s, m, h or d), like \"1500ms\", \"10s\", \"5m\", \"48h\" or \"30d\"";

/// Parses `"<digits><unit>"`. Anything else (spaces, signs, fractions, other or
/// missing units, overflow) is an error carrying `DURATION_HELP`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DURATION_HELP.to_string())?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(DURATION_HELP.to_string());
    }
    let n: u64 = digits.parse().map_err(|_| DURATION_HELP.to_string())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DURATION_HELP.to_string()),
    };
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| DURATION_HELP.to_string())?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration in the largest unit that divides it exactly (`7d`, `90s`, `1500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, per) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "+1s",
            " 1s",
            "1s ",
            "1 s",
            "1S",
            "1sec",
            "1w",
            "1y",
            "1us",
            "1h30m",
            "ms",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_in_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
