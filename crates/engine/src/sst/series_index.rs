//! The series index of an SST: which rows each series occupies and its tag values,
//! stored in the Parquet file's key-value metadata under [`KEY`] so the file stays
//! readable by any Parquet reader.
//!
//! Rows of an SST are sorted by series, so each series is one run of rows. The index
//! lists the runs in row order, and per tag a dictionary of the values used plus, per
//! run, the value's number (0 = unset). A scan resolves its tag predicate against the
//! runs ([`SeriesIndex::select`]) and hands the matching row ranges to the Parquet
//! reader as a row selection, so only the pages holding those rows are fetched.
//!
//! Encoding (version 1), then zstd, then base64 (key-value metadata is text):
//!
//! ```text
//! index  := 0x01 n_tags:var { name:vstr n_values:var value:vstr* }*
//!           n_series:var rows:var*            (rows of each run, in row order)
//!           { id:var* }*                      (per tag, one per run: 0 unset, i+1 = value i)
//! var    := LEB128 varint; vstr := len:var utf8[len]
//! ```
//!
//! Column-wise ids compress well: the leading sort tags repeat across many runs. On
//! TSBS cpu data the index costs 12–16 B per series (see `docs/benchmarks.md`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray};
use arrow::datatypes::{DataType, Int32Type};
use arrow::record_batch::RecordBatch;
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::read::predicate::TagPredicate;

mod compiled;
mod derived;
use crate::schema::ROLE_KEY;
use compiled::Compiled;
use derived::Derived;

/// The key-value metadata key holding the index.
pub(crate) const KEY: &str = "bulkhead.series_index";

const VERSION: u8 = 1;
const ZSTD_LEVEL: i32 = 3;

/// One SST's series index (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesIndex {
    /// Tag names (the file's tag columns, in column order).
    tags: Vec<String>,
    /// Per tag, the distinct values used.
    values: Vec<Vec<String>>,
    /// Row at which each run starts, plus the total row count at the end.
    starts: Vec<u64>,
    /// Per tag, per run: 0 = unset, i + 1 = `values[tag][i]`.
    ids: Vec<Vec<u32>>,
    /// Series keys, value ids by value and value arrays, built on first use.
    derived: Derived,
}

/// A [`series_key`] with its hash, computed once: lastpoint looks the same series up
/// in every SST, and a key is ~150 bytes on TSBS data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashedKey {
    hash: u64,
    key: Arc<[u8]>,
}

impl HashedKey {
    pub(crate) fn new(key: Vec<u8>) -> Self {
        use std::hash::BuildHasher;
        let hash = foldhash::fast::FixedState::with_seed(0x5eed).hash_one(&key);
        HashedKey {
            hash,
            key: key.into(),
        }
    }
}

/// Hashes the precomputed hash only; equality still compares the bytes.
impl std::hash::Hash for HashedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A series as bytes, from its value of each tag in a fixed tag order (`None` =
/// unset): equal keys, equal series, whichever file or batch they come from.
pub(crate) fn series_key<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<u8> {
    // Most keys fit without growing (TSBS: 10 tags, ~150 bytes).
    let mut key = Vec::with_capacity(256);
    for v in values {
        match v {
            None => key.push(0),
            Some(v) => {
                key.push(1);
                key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                key.extend_from_slice(v.as_bytes());
            }
        }
    }
    key
}

/// Incremental builder over the sorted batches of one SST.
struct Builder {
    tags: Vec<String>,
    values: Vec<Vec<String>>,
    lookup: Vec<HashMap<String, u32>>,
    starts: Vec<u64>,
    ids: Vec<Vec<u32>>,
    rows: u64,
}

impl SeriesIndex {
    /// Build the index of rows sorted by series. `None` when a tag column has a type
    /// the index does not handle (the file is then written without an index).
    pub(crate) fn build(batches: &[RecordBatch]) -> Option<SeriesIndex> {
        let first = batches.first()?;
        let schema = first.schema();
        let tag_cols: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.metadata().get(ROLE_KEY).map(String::as_str) == Some("tag"))
            .map(|(i, _)| i)
            .collect();
        let mut b = Builder {
            tags: tag_cols
                .iter()
                .map(|&i| schema.field(i).name().clone())
                .collect(),
            values: vec![Vec::new(); tag_cols.len()],
            lookup: vec![HashMap::new(); tag_cols.len()],
            starts: Vec::new(),
            ids: vec![Vec::new(); tag_cols.len()],
            rows: 0,
        };
        let mut current: Vec<u32> = vec![u32::MAX; tag_cols.len()];
        for batch in batches {
            // Per tag: the batch's dictionary keys and their file-wide ids.
            let mut cols: Vec<(DictionaryArray<Int32Type>, Vec<u32>)> = Vec::new();
            for (slot, &c) in tag_cols.iter().enumerate() {
                let col = batch.column(c);
                let dict = match col.data_type() {
                    DataType::Dictionary(k, v)
                        if **k == DataType::Int32 && **v == DataType::Utf8 =>
                    {
                        col.as_dictionary::<Int32Type>().clone()
                    }
                    DataType::Utf8 => arrow::compute::cast(
                        col,
                        &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    )
                    .ok()?
                    .as_dictionary::<Int32Type>()
                    .clone(),
                    _ => return None,
                };
                let strings = dict.values().as_string::<i32>();
                let global: Vec<u32> = (0..strings.len())
                    .map(|i| {
                        if strings.is_null(i) {
                            0
                        } else {
                            b.intern(slot, strings.value(i))
                        }
                    })
                    .collect();
                cols.push((dict, global));
            }
            let mut row_ids = vec![0u32; cols.len()];
            for r in 0..batch.num_rows() {
                for (slot, (dict, global)) in cols.iter().enumerate() {
                    row_ids[slot] = if dict.is_null(r) {
                        0
                    } else {
                        global[dict.keys().value(r) as usize]
                    };
                }
                if b.starts.is_empty() || row_ids != current {
                    b.starts.push(b.rows);
                    for (slot, id) in row_ids.iter().enumerate() {
                        b.ids[slot].push(*id);
                    }
                    current.clone_from(&row_ids);
                }
                b.rows += 1;
            }
        }
        let mut starts = b.starts;
        starts.push(b.rows);
        Some(SeriesIndex {
            tags: b.tags,
            values: b.values,
            starts,
            ids: b.ids,
            derived: Derived::default(),
        })
    }

    /// Number of series (runs) in the file.
    pub(crate) fn series(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Tag name → its slot in this index.
    fn slots(&self) -> HashMap<&str, usize> {
        self.tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect()
    }

    /// Run `s`'s value of the tag in `slot` (`None` = unset).
    fn value(&self, slot: usize, s: usize) -> Option<&str> {
        match self.ids[slot][s] {
            0 => None,
            id => Some(self.values[slot][id as usize - 1].as_str()),
        }
    }

    /// The runs for which `pred` may be TRUE, in row order.
    fn matching<'a>(&'a self, pred: &'a TagPredicate) -> impl Iterator<Item = usize> + 'a {
        let compiled = Compiled::new(self, pred);
        (0..self.series()).filter(move |&s| compiled.eval(&self.ids, s).may_be_true())
    }

    /// The row ranges of the series for which `pred` may be TRUE, in row order, with
    /// adjacent ranges merged.
    pub(crate) fn select(&self, pred: &TagPredicate) -> (Vec<Range<usize>>, usize) {
        let mut out: Vec<Range<usize>> = Vec::new();
        let mut matched = 0;
        for s in self.matching(pred) {
            matched += 1;
            let range = self.starts[s] as usize..self.starts[s + 1] as usize;
            match out.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => out.push(range),
            }
        }
        (out, matched)
    }

    /// The last row (file-wide) of each run, in row order.
    pub(crate) fn run_ends(&self) -> impl Iterator<Item = usize> + '_ {
        self.starts.iter().skip(1).map(|&end| end as usize - 1)
    }

    /// Per series for which `pred` may be TRUE (every series if `None`), in row order:
    /// its number (run) and its last row (file-wide).
    pub(crate) fn last_rows(&self, pred: Option<&TagPredicate>) -> Vec<(usize, usize)> {
        match pred {
            None => self.run_ends().enumerate().collect(),
            Some(pred) => self
                .matching(pred)
                .map(|s| (s, self.starts[s + 1] as usize - 1))
                .collect(),
        }
    }

    /// Every run's [`series_key`] over `tags` (a tag the file does not have is unset),
    /// in run order. Built on the first call for a tag order, then shared.
    pub(crate) fn keys(&self, tags: &[String]) -> Arc<Vec<HashedKey>> {
        let mut cached = self.derived.keys.lock();
        if let Some((t, keys)) = cached.as_ref()
            && t.as_slice() == tags
        {
            return Arc::clone(keys);
        }
        let slots = self.slots();
        let wanted: Vec<Option<usize>> = tags
            .iter()
            .map(|t| slots.get(t.as_str()).copied())
            .collect();
        let keys: Vec<HashedKey> = (0..self.series())
            .map(|s| {
                HashedKey::new(series_key(
                    wanted.iter().map(|slot| self.value((*slot)?, s)),
                ))
            })
            .collect();
        let keys = Arc::new(keys);
        *cached = Some((tags.to_vec(), Arc::clone(&keys)));
        keys
    }

    /// The index as key-value metadata text.
    pub(crate) fn encode(&self) -> String {
        let mut buf = vec![VERSION];
        put_var(&mut buf, self.tags.len() as u64);
        for (name, values) in self.tags.iter().zip(&self.values) {
            put_str(&mut buf, name);
            put_var(&mut buf, values.len() as u64);
            for v in values {
                put_str(&mut buf, v);
            }
        }
        put_var(&mut buf, self.series() as u64);
        for w in self.starts.windows(2) {
            put_var(&mut buf, w[1] - w[0]);
        }
        for ids in &self.ids {
            for &id in ids {
                put_var(&mut buf, u64::from(id));
            }
        }
        let packed = super::writer::zstd_compress(&buf, ZSTD_LEVEL).unwrap_or_else(|_| {
            // zstd cannot fail on an in-memory buffer short of allocation failure;
            // keep the file readable rather than fail the flush.
            Vec::new()
        });
        base64::engine::general_purpose::STANDARD.encode(packed)
    }

    /// Parse [`Self::encode`]'s text.
    pub(crate) fn decode(text: &str) -> Result<SeriesIndex> {
        let bad = |why: &str| Error::Manifest(format!("bad SST series index: {why}"));
        let packed = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad("not base64"))?;
        // The decompressed size is bounded: no valid index is larger than 1 GiB.
        let buf = zstd::bulk::decompress(&packed, 1 << 30).map_err(|_| bad("not zstd"))?;
        let mut r = Reader { buf: &buf, pos: 0 };
        if r.byte().ok_or_else(|| bad("empty"))? != VERSION {
            return Err(bad("unknown version"));
        }
        let n_tags = r.len(1).ok_or_else(|| bad("tag count"))?;
        let mut tags = Vec::with_capacity(n_tags);
        let mut values = Vec::with_capacity(n_tags);
        for _ in 0..n_tags {
            tags.push(r.string().ok_or_else(|| bad("tag name"))?);
            let n = r.len(1).ok_or_else(|| bad("value count"))?;
            let mut vs = Vec::with_capacity(n);
            for _ in 0..n {
                vs.push(r.string().ok_or_else(|| bad("tag value"))?);
            }
            values.push(vs);
        }
        let n_series = r.len(1).ok_or_else(|| bad("series count"))?;
        let mut starts = Vec::with_capacity(n_series + 1);
        let mut row = 0u64;
        for _ in 0..n_series {
            starts.push(row);
            let rows = r.var().ok_or_else(|| bad("run length"))?;
            row = row.checked_add(rows).ok_or_else(|| bad("row overflow"))?;
        }
        starts.push(row);
        let mut ids = Vec::with_capacity(n_tags);
        for vs in &values {
            let mut col = Vec::with_capacity(n_series);
            for _ in 0..n_series {
                let id = r.var().ok_or_else(|| bad("value id"))?;
                if id > vs.len() as u64 {
                    return Err(bad("value id out of range"));
                }
                col.push(id as u32);
            }
            ids.push(col);
        }
        if r.pos != buf.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(SeriesIndex {
            tags,
            values,
            starts,
            ids,
            derived: Derived::default(),
        })
    }

    /// Total rows covered (must equal the file's row count to be used).
    pub(crate) fn rows(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The column of `tag` for the file-wide `rows` (ascending, disjoint): each row's
    /// run's value, null where unset. `None` if the file has no such tag or a row is
    /// past the file's end. The reader builds a tag column this way instead of
    /// fetching and decoding its pages: the index already holds every run's values.
    #[cfg(test)]
    pub(crate) fn tag_column(
        &self,
        tag: &str,
        rows: &[Range<usize>],
    ) -> Option<DictionaryArray<Int32Type>> {
        let values = self.tag_values(tag)?;
        self.tag_column_with(tag, rows, &values)
    }

    /// Every value of `tag` in this file, in value-id order: the dictionary of the
    /// columns [`Self::tag_column_with`] builds (built on first use and kept with the
    /// index, so every read of the file shares it).
    pub(crate) fn tag_values(&self, tag: &str) -> Option<ArrayRef> {
        let slot = self.tags.iter().position(|t| t == tag)?;
        let arrays = self.derived.arrays.get_or_init(|| {
            self.values
                .iter()
                .map(|v| Arc::new(arrow::array::StringArray::from_iter_values(v)) as ArrayRef)
                .collect()
        });
        Some(Arc::clone(&arrays[slot]))
    }

    /// The id (`i + 1` for `values[slot][i]`) of `value` in the tag in `slot`, if a
    /// run of this file has it.
    fn id_of(&self, slot: usize, value: &str) -> Option<u32> {
        let ids = self.derived.ids.get_or_init(|| {
            self.values
                .iter()
                .map(|vs| {
                    vs.iter()
                        .enumerate()
                        .map(|(i, v)| (v.clone(), i as u32 + 1))
                        .collect()
                })
                .collect()
        });
        ids[slot].get(value).copied()
    }

    /// [`Self::tag_column`] over a dictionary from [`Self::tag_values`].
    pub(crate) fn tag_column_with(
        &self,
        tag: &str,
        rows: &[Range<usize>],
        values: &ArrayRef,
    ) -> Option<DictionaryArray<Int32Type>> {
        let slot = self.tags.iter().position(|t| t == tag)?;
        if rows.last().is_some_and(|r| r.end as u64 > self.rows()) {
            return None;
        }
        let ids = &self.ids[slot];
        let mut keys: Vec<Option<i32>> = Vec::with_capacity(rows.iter().map(Range::len).sum());
        for r in rows {
            let mut row = r.start;
            // The run holding `row`: the last whose start is at or before it.
            let mut s = self.starts.partition_point(|&st| st as usize <= row) - 1;
            while row < r.end {
                let end = r.end.min(self.starts[s + 1] as usize);
                let key = ids[s].checked_sub(1).map(|id| id as i32);
                keys.extend(std::iter::repeat_n(key, end - row));
                row = end;
                s += 1;
            }
        }
        DictionaryArray::try_new(keys.into_iter().collect(), Arc::clone(values)).ok()
    }

    /// Approximate heap bytes (for the metadata cache's budget).
    pub(crate) fn heap_size(&self) -> usize {
        let strings: usize = self
            .tags
            .iter()
            .chain(self.values.iter().flatten())
            .map(|s| s.len() + 24)
            .sum();
        // The series keys that `keys` builds on a lastpoint's first use are charged up
        // front, so the cache's byte bound holds whether or not they are built: per
        // run, a 1-byte marker per tag plus a length and the value per set tag, and
        // the key's own allocation.
        let keys: usize = (0..self.series())
            .map(|s| {
                let set: usize = self
                    .ids
                    .iter()
                    .zip(&self.values)
                    .map(|(ids, values)| match ids[s] {
                        0 => 0,
                        id => 4 + values[id as usize - 1].len(),
                    })
                    .sum();
                self.tags.len() + set + 56
            })
            .sum();
        // The value arrays and the value → id maps, charged up front like the keys.
        let values: usize = self.values.iter().flatten().map(|v| 2 * v.len() + 72).sum();
        strings
            + self.starts.len() * 8
            + self.ids.iter().map(|c| c.len() * 4).sum::<usize>()
            + keys
            + values
    }
}

impl Builder {
    fn intern(&mut self, slot: usize, value: &str) -> u32 {
        if let Some(&id) = self.lookup[slot].get(value) {
            return id;
        }
        self.values[slot].push(value.to_string());
        let id = self.values[slot].len() as u32;
        self.lookup[slot].insert(value.to_string(), id);
        id
    }
}

fn put_var(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_var(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn var(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A count of items of at least `min_bytes` each: never more than the bytes left,
    /// so a corrupt count cannot make the decoder allocate without bound.
    fn len(&mut self, min_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.var()?).ok()?;
        (n.saturating_mul(min_bytes) <= self.buf.len() - self.pos).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len(1)?;
        let s = std::str::from_utf8(&self.buf[self.pos..self.pos + n]).ok()?;
        self.pos += n;
        Some(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn tag_field(name: &str) -> Field {
        Field::new(
            name,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )
        .with_metadata([(ROLE_KEY.to_string(), "tag".to_string())].into())
    }

    fn dict(values: &[Option<&str>]) -> ArrayRef {
        let a = StringArray::from(values.to_vec());
        arrow::compute::cast(
            &a,
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        )
        .unwrap()
    }

    fn batch(dc: &[Option<&str>], host: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            tag_field("dc"),
            tag_field("host"),
            Field::new("v", DataType::Int64, true),
        ]));
        let v = Int64Array::from_iter_values(0..dc.len() as i64);
        RecordBatch::try_new(schema, vec![dict(dc), dict(host), Arc::new(v)]).unwrap()
    }

    fn eq(t: &str, v: &str) -> TagPredicate {
        TagPredicate::Eq(t.into(), v.into())
    }

    fn not(p: TagPredicate) -> TagPredicate {
        TagPredicate::Not(Box::new(p))
    }

    /// Rows: 0-1 (eu, a), 2 (eu, b), 3-5 (eu, unset), 6 (us, a) | 7-8 (us, a), 9 (unset, c).
    fn index() -> SeriesIndex {
        let b1 = batch(
            &[
                Some("eu"),
                Some("eu"),
                Some("eu"),
                Some("eu"),
                Some("eu"),
                Some("eu"),
                Some("us"),
            ],
            &[Some("a"), Some("a"), Some("b"), None, None, None, Some("a")],
        );
        // A run continues across batches; the second batch has its own dictionary.
        let b2 = batch(
            &[Some("us"), Some("us"), None],
            &[Some("a"), Some("a"), Some("c")],
        );
        SeriesIndex::build(&[b1, b2]).expect("index")
    }

    #[test]
    fn runs_and_round_trip() {
        let idx = index();
        assert_eq!(idx.series(), 5);
        assert_eq!(idx.starts, vec![0, 2, 3, 6, 9, 10]);
        assert_eq!(idx.rows(), 10);
        let text = idx.encode();
        assert_eq!(SeriesIndex::decode(&text).expect("decode"), idx);
        assert!(SeriesIndex::decode("not base64!").is_err());
        let garbage = base64::engine::general_purpose::STANDARD
            .encode(zstd::bulk::compress(&[1, 200, 200, 200], 3).unwrap());
        assert!(
            SeriesIndex::decode(&garbage).is_err(),
            "a huge count is refused"
        );
    }

    #[test]
    fn every_operator_resolves_to_row_ranges() {
        let idx = index();
        let sel = |p: TagPredicate| idx.select(&p).0;
        assert_eq!(sel(eq("host", "a")), vec![0..2, 6..9]);
        assert!(sel(eq("host", "zz")).is_empty());
        // `!=` is NULL for unset tags: (eu, unset) and nothing else unset is kept.
        assert_eq!(sel(not(eq("host", "a"))), vec![2..3, 9..10]);
        let is_in = TagPredicate::In("host".into(), ["b".to_string(), "c".into()].into());
        assert_eq!(sel(is_in.clone()), vec![2..3, 9..10]);
        assert_eq!(sel(not(is_in)), vec![0..2, 6..9]);
        assert_eq!(
            sel(TagPredicate::Or(vec![eq("host", "b"), eq("dc", "us")])),
            vec![2..3, 6..9]
        );
        assert_eq!(
            sel(TagPredicate::And(vec![eq("host", "a"), eq("dc", "us")])),
            vec![6..9]
        );
        assert_eq!(sel(TagPredicate::IsNull("host".into())), vec![3..6]);
        assert_eq!(sel(not(TagPredicate::IsNull("dc".into()))), vec![0..9]);
        // A tag the file does not have is unset in every row.
        assert_eq!(sel(TagPredicate::IsNull("rack".into())), vec![0..10]);
        assert!(sel(eq("rack", "r1")).is_empty());
        let re = TagPredicate::Matches(
            "host".into(),
            "~ '[bc]'".into(),
            Arc::new(|s| s == "b" || s == "c"),
        );
        assert_eq!(sel(re), vec![2..3, 9..10]);
        assert_eq!(sel(TagPredicate::Unknown), vec![0..10]);
        assert_eq!(idx.select(&eq("host", "a")).1, 2, "two series matched");
    }

    /// A random predicate over `host`, `dc` and `rack` (which the file lacks).
    fn random_predicate(seed: &mut u64, depth: u32) -> TagPredicate {
        let mut next = |n: u64| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) % n
        };
        let tag = ["host", "dc", "rack"][next(3) as usize].to_string();
        let value = ["a", "b", "c", "eu", "us", "zz"][next(6) as usize].to_string();
        let kind = if depth == 0 { next(5) } else { next(9) };
        match kind {
            0 => TagPredicate::Eq(tag, value),
            1 => TagPredicate::In(tag, [value, "a".to_string()].into()),
            2 => TagPredicate::IsNull(tag),
            3 => {
                TagPredicate::Matches(tag, "~ '[ae]'".into(), Arc::new(|v| v.contains(['a', 'e'])))
            }
            4 => TagPredicate::Unknown,
            5 | 6 => TagPredicate::Not(Box::new(random_predicate(seed, depth - 1))),
            7 => TagPredicate::And(vec![
                random_predicate(seed, depth - 1),
                random_predicate(seed, depth - 1),
            ]),
            _ => TagPredicate::Or(vec![
                random_predicate(seed, depth - 1),
                random_predicate(seed, depth - 1),
            ]),
        }
    }

    #[test]
    fn compiled_predicates_judge_runs_like_the_predicate_itself() {
        let idx = index();
        let slots = idx.slots();
        let mut seed = 7;
        for _ in 0..2_000 {
            let pred = random_predicate(&mut seed, 3);
            let compiled = Compiled::new(&idx, &pred);
            for s in 0..idx.series() {
                let direct = pred.eval(&|tag| idx.value(*slots.get(tag)?, s));
                assert_eq!(compiled.eval(&idx.ids, s), direct, "{pred} on run {s}");
            }
        }
    }

    #[test]
    fn tag_columns_are_built_for_any_row_ranges() {
        let idx = index();
        let text = |tag: &str, rows: &[Range<usize>]| -> Vec<Option<String>> {
            let col = idx.tag_column(tag, rows).expect("column");
            let plain = arrow::compute::cast(&col, &DataType::Utf8).unwrap();
            plain
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        };
        let s = |v: &str| Some(v.to_string());
        // Ranges that start inside a run, span several runs and end inside one.
        assert_eq!(
            text("host", &[1..4, 5..8, 9..10]),
            vec![s("a"), s("b"), None, None, s("a"), s("a"), s("c")]
        );
        assert_eq!(
            text("dc", std::slice::from_ref(&(0..10))),
            [vec![s("eu"); 6], vec![s("us"); 3], vec![None]].concat()
        );
        assert!(text("dc", &[]).is_empty());
        assert!(
            idx.tag_column("rack", std::slice::from_ref(&(0..1)))
                .is_none(),
            "no such tag"
        );
        assert!(
            idx.tag_column("dc", std::slice::from_ref(&(9..11)))
                .is_none(),
            "past the end"
        );
    }

    #[test]
    fn untagged_tables_have_one_series() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let b =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let idx = SeriesIndex::build(&[b]).expect("index");
        assert_eq!(idx.series(), 1);
        assert_eq!(SeriesIndex::decode(&idx.encode()).unwrap(), idx);
    }
}
