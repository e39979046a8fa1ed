//! Human-readable sizes ("64MiB") and durations ("2h", "1m30s"): the one parser of every
//! config value with a unit, in the bottom crate so every crate's config type can use it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written `64MiB`, `512KB`, `1GiB` or a plain number of bytes.
/// `K`/`KB` are powers of 1000 and `KiB` powers of 1024, as `bytesize` and InfluxDB do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// As `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let bad = || {
            format!("invalid size `{s}` (expected e.g. `64MiB`, `512KB`, `1GiB` or a byte count)")
        };
        if num.is_empty() {
            return Err(bad());
        }
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "ki" | "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mi" | "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gi" | "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "ti" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| bad())?;
            let bytes = v * mult as f64;
            if !bytes.is_finite() || bytes > u64::MAX as f64 {
                return Err(bad());
            }
            Ok(Self(bytes.round() as u64))
        } else {
            let v: u64 = num.parse().map_err(|_| bad())?;
            v.checked_mul(mult).map(Self).ok_or_else(bad)
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, name) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size such as \"64MiB\" or a byte count")
        })? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written `10ms`, `30s`, `5m`, `2h`, `1d` or combined (`1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn millis(n: u64) -> Self {
        Self(Duration::from_millis(n))
    }
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("invalid duration `{s}` (expected e.g. `500ms`, `30s`, `5m`, `2h`, `1h30m`)")
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        if rest == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let n_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if n_end == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..n_end].parse().map_err(|_| bad())?;
            rest = &rest[n_end..];
            let u_end = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..u_end];
            rest = &rest[u_end..];
            let part = match unit.trim() {
                "ns" => Duration::from_nanos(n),
                "us" | "µs" => Duration::from_micros(n),
                "ms" => Duration::from_millis(n),
                "s" | "sec" => Duration::from_secs(n),
                "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
                "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let nanos = d.as_nanos();
        const UNITS: [(u128, &str); 6] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (size, name) in UNITS {
            if nanos.is_multiple_of(size) {
                return write!(f, "{}{name}", nanos / size);
            }
        }
        write!(f, "{nanos}ns")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for a `u64`/`usize` byte count written as a [`ByteSize`] (`"64MiB"` or a plain
/// number), so a crate's config field keeps its plain type:
/// `#[serde(with = "bulkhead_runtime::units::bytes")]`.
pub mod bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ByteSize;

    /// An integer type a byte count is stored in.
    pub trait Bytes: Copy {
        fn to_u64(self) -> u64;
        fn from_u64(n: u64) -> Option<Self>;
    }

    impl Bytes for u64 {
        fn to_u64(self) -> u64 {
            self
        }
        fn from_u64(n: u64) -> Option<Self> {
            Some(n)
        }
    }

    impl Bytes for usize {
        fn to_u64(self) -> u64 {
            self as u64
        }
        fn from_u64(n: u64) -> Option<Self> {
            usize::try_from(n).ok()
        }
    }

    pub fn serialize<T: Bytes, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        ByteSize(v.to_u64()).serialize(s)
    }

    pub fn deserialize<'de, T: Bytes, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let size = ByteSize::deserialize(d)?;
        T::from_u64(size.0)
            .ok_or_else(|| serde::de::Error::custom(format!("size {size} is too large")))
    }
}

/// Serde for a [`Duration`] written as a [`HumanDuration`] (`"30s"`, `"1h30m"`):
/// `#[serde(with = "bulkhead_runtime::units::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HumanDuration;

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        HumanDuration(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        HumanDuration::deserialize(d).map(HumanDuration::get)
    }
}

/// Serde for a map of [`Duration`]s written as [`HumanDuration`]s.
pub mod duration_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HumanDuration;

    pub fn serialize<S: Serializer>(
        v: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let human: BTreeMap<&String, HumanDuration> =
            v.iter().map(|(k, d)| (k, HumanDuration(*d))).collect();
        human.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let human = BTreeMap::<String, HumanDuration>::deserialize(d)?;
        Ok(human.into_iter().map(|(k, v)| (k, v.get())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_round_trip() {
        let cases = [
            ("64MiB", 64 << 20),
            ("64 MiB", 64 << 20),
            ("512KB", 512_000),
            ("1gib", 1 << 30),
            ("1.5KiB", 1536),
            ("100", 100),
            ("7B", 7),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<ByteSize>().unwrap().0, want, "{s}");
        }
        for bad in ["", "MiB", "12XB", "-1", "1e3", "99999999999999TiB"] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(
            ByteSize::mib(64).to_string().parse::<ByteSize>().unwrap(),
            ByteSize::mib(64)
        );
    }

    #[test]
    fn durations_parse_and_round_trip() {
        let cases = [
            ("10ms", Duration::from_millis(10)),
            ("2h", Duration::from_secs(7200)),
            ("1h30m", Duration::from_secs(5400)),
            ("1d", Duration::from_secs(86_400)),
            ("250us", Duration::from_micros(250)),
            ("0", Duration::ZERO),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<HumanDuration>().unwrap().0, want, "{s}");
            let shown = HumanDuration(want).to_string();
            assert_eq!(shown.parse::<HumanDuration>().unwrap().0, want, "{shown}");
        }
        for bad in ["", "h", "10", "10 parsecs", "-5s", "1.5h"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
