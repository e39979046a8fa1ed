//! Per-table in-memory buffer of recent writes, keyed by (series, time).
//!
//! A memtable maps each series (its tag values, by tag id) to a `BTreeMap` from time to
//! the row's field values. Series are found by an encoded byte key built in a reused
//! buffer, so inserting into an existing series allocates nothing for tags.
//!
//! Rows are *sparse*: a row holds `(field id, value)` pairs for the fields written to
//! it, sorted by id, and nothing for the others, so a row's memory is proportional to
//! its values however many fields the table has (a dense slot per field id once let a
//! table with 50,000 fields grow a 90 KB request into 2.4 GB). Converting it to Arrow
//! builds only the columns asked for, or those it holds.
//!
//! A later write of the same (series, time) merges *field by field*: fields it carries
//! replace the old values, fields it omits keep theirs (InfluxDB semantics; see
//! `docs/storage.md`). Rows are inserted in WAL sequence order, so "later" means
//! "higher sequence number".
//!
//! Memory is counted per insert from what was allocated (entries, vector growth,
//! string bytes) and reported to the engine's global accounting, which write admission
//! checks.

mod convert;
mod resolve;
mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::model::{FieldValue, Row};

pub(crate) use convert::{merged_batch, merged_batch_where, merged_row_count};
pub(crate) use resolve::RowResolver;
pub use time::TimeRange;
pub(crate) use time::segment_of;

/// A series: `(tag id, value)` pairs sorted by tag id; absent tags are omitted.
pub(crate) type SeriesKey = Box<[(u32, Arc<str>)]>;
/// A row's field values: `(field id, value)` sorted by id, only the fields written.
pub(crate) type FieldSlots = Vec<(u32, FieldValue)>;

/// Rough per-entry overheads used for memory accounting.
const SERIES_OVERHEAD: usize = 96;
const ROW_OVERHEAD: usize = 48;
/// One `(field id, value)` entry of a row.
const ENTRY_BYTES: usize = std::mem::size_of::<(u32, FieldValue)>();

/// One series: its tags and its rows by time.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) key: SeriesKey,
    pub(crate) rows: BTreeMap<i64, FieldSlots>,
}

/// A set of column ids (a bitmap that grows to the highest id inserted).
#[derive(Debug, Default, Clone)]
pub(crate) struct IdSet(Vec<u64>);

impl IdSet {
    fn insert(&mut self, id: u32) {
        let (word, bit) = ((id / 64) as usize, id % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        self.0
            .get((id / 64) as usize)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Memtable {
    /// Encoded series key (see [`encode_key`]) -> series.
    /// foldhash, not SipHash: every inserted row hashes its (long) series key.
    series: foldhash::HashMap<Box<[u8]>, Series>,
    bytes: usize,
    rows: usize,
    /// Lowest and highest WAL sequence numbers inserted (0 when empty).
    min_seq: u64,
    max_seq: u64,
    min_time: i64,
    max_time: i64,
    /// When the first row went in (for the max-age flush trigger).
    created: Option<Instant>,
    /// Segment start times touched (for splitting the flush into per-segment SSTs).
    segments: BTreeSet<i64>,
    /// Reused buffer for encoding series keys.
    key_buf: Vec<u8>,
    /// The segment of the previous insert (skips the set insert for runs).
    last_segment: Option<TimeRange>,
}

impl Memtable {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn min_seq(&self) -> u64 {
        self.min_seq
    }

    pub(crate) fn max_seq(&self) -> u64 {
        self.max_seq
    }

    pub(crate) fn created(&self) -> Option<Instant> {
        self.created
    }

    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_time, self.max_time))
    }

    pub(crate) fn series(&self) -> impl Iterator<Item = &Series> + '_ {
        self.series.values()
    }

    /// Series with their encoded keys (equal keys mean the same series in any memtable
    /// of the table).
    pub(crate) fn series_by_key(&self) -> impl Iterator<Item = (&[u8], &Series)> + '_ {
        self.series.iter().map(|(k, s)| (&**k, s))
    }

    pub(crate) fn segments(&self) -> impl Iterator<Item = i64> + '_ {
        self.segments.iter().copied()
    }

    /// Add the tag ids and field ids that occur in this memtable to `tags` and `fields`
    /// (a pass over every value: for conversions without a projection, which visit
    /// every value anyway; inserts stay free of it).
    pub(crate) fn ids_present(&self, tags: &mut IdSet, fields: &mut IdSet) {
        for s in self.series.values() {
            for (id, _) in s.key.iter() {
                tags.insert(*id);
            }
            for slots in s.rows.values() {
                for (id, _) in slots {
                    fields.insert(*id);
                }
            }
        }
    }

    /// A copy of the rows in `range`, for a read snapshot (its segments are not
    /// tracked: a copy is never flushed). Costs what the copied rows cost.
    pub(crate) fn copy_range(&self, range: TimeRange) -> Memtable {
        let mut out = Memtable {
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            created: self.created,
            min_time: i64::MAX,
            max_time: i64::MIN,
            ..Memtable::default()
        };
        if range.is_empty() {
            return Memtable::default();
        }
        for (encoded, s) in &self.series {
            let rows: BTreeMap<i64, FieldSlots> = s
                .rows
                .range(range.bounds())
                .map(|(t, v)| (*t, v.clone()))
                .collect();
            let (Some((&lo, _)), Some((&hi, _))) = (rows.first_key_value(), rows.last_key_value())
            else {
                continue;
            };
            out.min_time = out.min_time.min(lo);
            out.max_time = out.max_time.max(hi);
            out.rows += rows.len();
            out.bytes += SERIES_OVERHEAD + encoded.len();
            out.bytes += rows
                .values()
                .map(|v| ROW_OVERHEAD + v.len() * ENTRY_BYTES)
                .sum::<usize>();
            let key = s.key.clone();
            out.series.insert(encoded.clone(), Series { key, rows });
        }
        if out.rows == 0 {
            return Memtable::default();
        }
        out
    }

    /// Insert one row whose columns already exist in `schema`. Returns bytes added.
    #[cfg(test)]
    pub(crate) fn insert_row(
        &mut self,
        schema: &crate::schema::TableSchema,
        row: &Row,
        seq: u64,
        segment_nanos: i64,
    ) -> Result<usize> {
        self.insert_resolved(&mut RowResolver::new(schema), row, seq, segment_nanos)
    }

    /// Insert one row, resolving names through `resolver` (reuse one resolver for the
    /// rows of a batch). Returns bytes added.
    pub(crate) fn insert_resolved(
        &mut self,
        resolver: &mut RowResolver<'_>,
        row: &Row,
        seq: u64,
        segment_nanos: i64,
    ) -> Result<usize> {
        resolver.resolve(row)?;
        let tags = resolver.sorted_tags(row);
        let fields = resolver
            .field_ids()
            .iter()
            .zip(&row.fields)
            .map(|(id, (_, v))| (*id, v.clone()));
        let mut buf = std::mem::take(&mut self.key_buf);
        encode_key(&mut buf, tags.clone());
        let make_key = || tags.map(|(id, v)| (id, Arc::from(v))).collect();
        let added = self.insert_encoded(&buf, make_key, row.time, fields, seq, segment_nanos);
        self.key_buf = buf;
        Ok(added)
    }

    /// Insert resolved values, merging field by field into an existing row.
    pub(crate) fn insert(
        &mut self,
        key: SeriesKey,
        time: i64,
        fields: Vec<(u32, FieldValue)>,
        seq: u64,
        segment_nanos: i64,
    ) -> usize {
        let mut buf = std::mem::take(&mut self.key_buf);
        encode_key(&mut buf, key.iter().map(|(id, v)| (*id, v.as_ref())));
        let added = self.insert_encoded(&buf, || key, time, fields.into_iter(), seq, segment_nanos);
        self.key_buf = buf;
        added
    }

    fn insert_encoded(
        &mut self,
        encoded: &[u8],
        make_key: impl FnOnce() -> SeriesKey,
        time: i64,
        fields: impl ExactSizeIterator<Item = (u32, FieldValue)>,
        seq: u64,
        segment_nanos: i64,
    ) -> usize {
        let mut added = 0;
        // One hash lookup for an existing series; a new one pays for three.
        if self.series.get_mut(encoded).is_none() {
            let key = make_key();
            added += SERIES_OVERHEAD
                + encoded.len()
                + key.iter().map(|(_, v)| 24 + v.len()).sum::<usize>();
            self.series.insert(
                encoded.into(),
                Series {
                    key,
                    rows: BTreeMap::new(),
                },
            );
        }
        let Some(series) = self.series.get_mut(encoded) else {
            return added;
        };
        let rows = &mut series.rows;
        let (slots, capacity) = match rows.get_mut(&time) {
            Some(s) => {
                let capacity = s.capacity();
                (s, capacity)
            }
            None => {
                added += ROW_OVERHEAD;
                self.rows += 1;
                let s = rows
                    .entry(time)
                    .or_insert_with(|| Vec::with_capacity(fields.len()));
                (s, 0)
            }
        };
        for (id, value) in fields {
            if let FieldValue::Str(s) = &value {
                added += s.len();
            }
            set_field(slots, id, value);
        }
        added += (slots.capacity() - capacity) * ENTRY_BYTES;
        if self.created.is_none() {
            self.created = Some(Instant::now());
            self.min_seq = seq;
            self.min_time = time;
            self.max_time = time;
        }
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        if !self.last_segment.is_some_and(|s| s.contains(time)) {
            let segment = segment_of(time, segment_nanos);
            self.segments.insert(segment.start);
            self.last_segment = Some(segment);
        }
        self.bytes += added;
        added
    }
}

/// Set field `id` of a row to `value`, keeping the entries sorted by id. Fields
/// usually arrive in id order, so this is mostly a push.
fn set_field(slots: &mut FieldSlots, id: u32, value: FieldValue) {
    match slots.last_mut() {
        None => slots.push((id, value)),
        Some((last, _)) if *last < id => slots.push((id, value)),
        Some((last, v)) if *last == id => *v = value,
        Some(_) => match slots.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(i) => slots[i].1 = value,
            Err(i) => slots.insert(i, (id, value)),
        },
    }
}

/// Encode `(tag id, value)` pairs (sorted by id) as a byte key that sorts like the
/// values themselves: per tag, the id (big-endian), the value's bytes with `0x00`
/// escaped as `00 FF`, then the terminator `00 01`. So a flushed SST's series come in
/// the order of their first tag's values, byte-wise (what Parquet's min/max
/// statistics compare), and a row group holds a narrow range of them: that is what
/// lets a one-host query skip the other row groups.
fn encode_key<'a>(buf: &mut Vec<u8>, tags: impl Iterator<Item = (u32, &'a str)>) {
    buf.clear();
    for (id, v) in tags {
        buf.extend_from_slice(&id.to_be_bytes());
        for &b in v.as_bytes() {
            buf.push(b);
            if b == 0 {
                buf.push(0xFF);
            }
        }
        buf.extend_from_slice(&[0x00, 0x01]);
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldType;
    use crate::schema::TableSchema;

    fn schema() -> TableSchema {
        let mut s = TableSchema::default();
        s.add_tag("host");
        s.add_field("a", FieldType::I64);
        s.add_field("b", FieldType::I64);
        s
    }

    fn row(host: &str, fields: &[(&str, i64)], time: i64) -> Row {
        Row {
            tags: vec![("host".into(), host.into())],
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).into(), FieldValue::I64(*v)))
                .collect(),
            time,
        }
    }

    #[test]
    fn series_keys_sort_like_their_tag_values_and_stay_unambiguous() {
        let key = |tags: &[(u32, &str)]| {
            let mut buf = Vec::new();
            encode_key(&mut buf, tags.iter().copied());
            buf
        };
        // Byte-wise order of the first tag's values, as Parquet statistics compare.
        let mut hosts = ["host_2", "host_10", "host_1", "host_100", "host_0"];
        let mut keys: Vec<Vec<u8>> = hosts.iter().map(|h| key(&[(0, h), (1, "x")])).collect();
        keys.sort();
        hosts.sort();
        let expect: Vec<Vec<u8>> = hosts.iter().map(|h| key(&[(0, h), (1, "x")])).collect();
        assert_eq!(keys, expect);
        // A value holding NUL or the terminator cannot pose as two tags.
        assert_ne!(key(&[(0, "a\0\u{1}")]), key(&[(0, "a"), (1, "")]));
        assert_ne!(key(&[(0, "a\0")]), key(&[(0, "a")]));
    }

    #[test]
    fn overwrite_merges_field_by_field() {
        let s = schema();
        let mut m = Memtable::default();
        m.insert_row(&s, &row("h", &[("a", 1), ("b", 2)], 10), 1, 100)
            .expect("insert");
        m.insert_row(&s, &row("h", &[("a", 5)], 10), 2, 100)
            .expect("insert");
        assert_eq!(m.rows(), 1);
        let slots = m
            .series()
            .next()
            .and_then(|s| s.rows.get(&10))
            .expect("row");
        assert_eq!(
            slots,
            &vec![(0, FieldValue::I64(5)), (1, FieldValue::I64(2))]
        );
        assert_eq!((m.min_seq(), m.max_seq()), (1, 2));
    }

    #[test]
    fn segments_are_tracked() {
        let s = schema();
        let mut m = Memtable::default();
        for t in [-5, 5, 150] {
            m.insert_row(&s, &row("h", &[("a", 1)], t), 1, 100)
                .expect("insert");
        }
        assert_eq!(m.segments().collect::<Vec<_>>(), vec![-100, 0, 100]);
        assert!(m.bytes() > 0);
    }
}
