//! Time ranges and time segments over the whole `i64` nanosecond range.
//!
//! Every `i64` is a valid time, `i64::MIN` and `i64::MAX` included, so ranges are
//! inclusive at both ends (a half-open range cannot hold `i64::MAX`), and segment
//! arithmetic is done in `i128` and clamped: the segments at both ends of the range are
//! shorter than the others instead of overflowing.

use serde::{Deserialize, Serialize};

/// An inclusive time range `[start, last]` in nanoseconds; empty when `start > last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: i64,
    /// The last time in the range (inclusive).
    pub last: i64,
}

impl TimeRange {
    /// Every representable time, `i64::MIN` and `i64::MAX` included.
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        last: i64::MAX,
    };

    /// The empty range.
    pub const EMPTY: TimeRange = TimeRange {
        start: i64::MAX,
        last: i64::MIN,
    };

    /// The half-open range `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        if end <= start {
            Self::EMPTY
        } else {
            Self {
                start,
                last: end - 1,
            }
        }
    }

    /// The inclusive range `[start, last]`.
    pub fn inclusive(start: i64, last: i64) -> Self {
        Self { start, last }
    }

    pub fn is_empty(&self) -> bool {
        self.start > self.last
    }

    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && t <= self.last
    }

    /// Whether the inclusive range `[min, max]` overlaps this one.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        !self.is_empty() && min <= self.last && max >= self.start && min <= max
    }

    pub fn intersect(&self, other: &TimeRange) -> TimeRange {
        TimeRange {
            start: self.start.max(other.start),
            last: self.last.min(other.last),
        }
    }

    /// The range as bounds for `BTreeMap::range` (empty ranges give `start..start`).
    pub(crate) fn bounds(&self) -> std::ops::RangeInclusive<i64> {
        self.start..=self.last
    }
}

impl Default for TimeRange {
    fn default() -> Self {
        Self::ALL
    }
}

/// The time segment holding `time`: `[k * segment_nanos, (k + 1) * segment_nanos)` for
/// the `k` that contains it, clamped to the `i64` range (so the first and last
/// segments are shorter). `segment_nanos` must be positive. A segment's start lies in
/// the segment, so `segment_of(start)` gives its range back (SSTs record the start).
pub(crate) fn segment_of(time: i64, segment_nanos: i64) -> TimeRange {
    let seg = i128::from(segment_nanos.max(1));
    let floor = i128::from(time).div_euclid(seg) * seg;
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    TimeRange {
        start: clamp(floor),
        last: clamp(floor + seg - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_of_the_i64_range_are_ordinary_times() {
        assert!(TimeRange::ALL.contains(i64::MAX));
        assert!(TimeRange::ALL.contains(i64::MIN));
        assert!(TimeRange::new(5, 5).is_empty());
        assert!(TimeRange::new(0, i64::MIN).is_empty());
        assert_eq!(TimeRange::new(1, 3), TimeRange::inclusive(1, 2));
        assert!(!TimeRange::EMPTY.overlaps(i64::MIN, i64::MAX));
        assert!(TimeRange::inclusive(i64::MAX, i64::MAX).overlaps(0, i64::MAX));
    }

    #[test]
    fn segments_clamp_at_both_ends_instead_of_overflowing() {
        let hour = 3_600_000_000_000;
        assert_eq!(segment_of(-5, 100), TimeRange::inclusive(-100, -1));
        assert_eq!(segment_of(150, 100), TimeRange::inclusive(100, 199));
        let first = segment_of(i64::MIN, hour);
        assert_eq!(first.start, i64::MIN);
        assert!(first.contains(i64::MIN + hour / 2));
        assert_eq!(segment_of(first.start, hour), first);
        assert_eq!(segment_of(first.last, hour), first);
        assert_eq!(segment_of(first.last + 1, hour).start, first.last + 1);
        let last = segment_of(i64::MAX, hour);
        assert_eq!(last.last, i64::MAX);
        assert_eq!(segment_of(last.start, hour), last);
        assert_eq!(segment_of(last.start - 1, hour).last, last.start - 1);
        // A segment longer than the whole range.
        assert_eq!(
            segment_of(0, i64::MAX),
            TimeRange::inclusive(0, i64::MAX - 1)
        );
    }
}
