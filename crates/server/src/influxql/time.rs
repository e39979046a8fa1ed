//! Timestamps as InfluxQL writes them: RFC 3339 parsing (`2016-01-01T00:00:00Z`,
//! fractions, offsets, and the `2016-01-01 00:00:00` / `2016-01-01` forms InfluxDB also
//! accepts), RFC 3339 formatting with trailing zeros trimmed (Go's `RFC3339Nano`), and
//! the `epoch` units of `/query`.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str, at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Nanoseconds since the epoch of an RFC 3339 time (`T` or a space between date and
/// time; a date alone is midnight UTC; no zone means UTC, as InfluxDB reads it).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (y, m, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if s.as_bytes().get(4) != Some(&b'-') || s.as_bytes().get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m, d) {
        return None; // 2016-02-30
    }
    let mut secs = days * 86_400;
    let mut nanos = 0i64;
    let rest = &s[10..];
    if !rest.is_empty() {
        if !rest.starts_with(['T', 't', ' ']) {
            return None;
        }
        let (hh, mm, ss) = (
            digits(rest, 1, 2)?,
            digits(rest, 4, 2)?,
            digits(rest, 7, 2)?,
        );
        if rest.as_bytes().get(3) != Some(&b':') || rest.as_bytes().get(6) != Some(&b':') {
            return None;
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        secs += hh * 3600 + mm * 60 + ss;
        let mut tail = &rest[9..];
        if let Some(frac) = tail.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || n > 9 {
                return None;
            }
            nanos = frac[..n].parse::<i64>().ok()? * 10i64.pow(9 - n as u32);
            tail = &frac[n..];
        }
        match tail {
            "" | "Z" | "z" => {}
            zone => {
                let sign = match zone.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let (zh, zm) = (digits(zone, 1, 2)?, digits(zone, 4, 2)?);
                if zone.len() != 6 || zone.as_bytes()[3] != b':' {
                    return None;
                }
                secs -= sign * (zh * 3600 + zm * 60);
            }
        }
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// RFC 3339 in UTC with the fraction's trailing zeros trimmed, as InfluxDB prints times.
pub(crate) fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Nanoseconds per unit of the `epoch` parameter (`None`: an unknown unit).
pub(crate) fn epoch_unit(epoch: &str) -> Option<i64> {
    Some(match epoch {
        "ns" | "n" => 1,
        "u" | "µ" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `Duration` as InfluxDB prints it in `SHOW RETENTION POLICIES` (`168h0m0s`, `0s`).
pub(crate) fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let s = ns / 1_000_000_000;
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (text, ns) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2016-01-01T00:00:00Z", 1_451_606_400_000_000_000),
            ("2016-01-01T00:00:00.5Z", 1_451_606_400_500_000_000),
            ("2016-01-01T00:00:00.000000001Z", 1_451_606_400_000_000_001),
            ("1969-12-31T23:59:59.999999999Z", -1),
            ("2024-02-29T12:34:56Z", 1_709_210_096_000_000_000),
        ] {
            assert_eq!(parse_rfc3339(text), Some(ns), "{text}");
            assert_eq!(format_rfc3339(ns), text);
        }
    }

    #[test]
    fn other_forms_and_bad_input() {
        let base = 1_451_606_400_000_000_000;
        assert_eq!(parse_rfc3339("2016-01-01"), Some(base));
        assert_eq!(parse_rfc3339("2016-01-01 00:00:00"), Some(base));
        assert_eq!(parse_rfc3339("2016-01-01T01:00:00+01:00"), Some(base));
        assert_eq!(parse_rfc3339("2015-12-31T23:00:00-01:00"), Some(base));
        for bad in [
            "2016-02-30T00:00:00Z",
            "2016-13-01",
            "2016-01-01T25:00:00Z",
            "2016-01-01T00:00:00.Z",
            "2016-01-01T00:00:00Q",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn units_and_durations() {
        assert_eq!(epoch_unit("ms"), Some(1_000_000));
        assert_eq!(epoch_unit("µ"), Some(1_000));
        assert_eq!(epoch_unit("x"), None);
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(604_800_000_000_000), "168h0m0s");
    }
}
