//! InfluxDB line protocol: a zero-copy-until-needed parser producing a [`WriteBatch`]
//! plus one [`LineError`] per rejected line (InfluxDB 3 partial-write semantics).
//!
//! Syntax (<https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>):
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one per line.
//! Blank lines and lines starting with `#` are skipped. A quoted string field may span
//! lines. Limits (line length, tags and fields per line) reject just that line.

mod conflicts;
mod parser;
#[cfg(test)]
mod proptests;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod serialize;
#[cfg(test)]
mod tests;

use bulkhead_engine::WriteBatch;
use serde::Serialize;

/// How many bytes of a rejected line are echoed back in its error.
pub const ERROR_LINE_BYTES: usize = 100;

/// Timestamp precision of a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// Parse the `precision` query parameter. Accepts the v2 names (`ns`, `us`, `ms`, `s`)
    /// and the v1 names (`n`, `u`, `ms`, `s`) on both endpoints; empty means ns.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "ns" | "n" => Ok(Precision::Nanoseconds),
            "us" | "u" | "µs" | "µ" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            other => Err(format!(
                "unknown precision `{other}` (expected ns, us, ms or s; v1 also n and u)"
            )),
        }
    }

    /// The canonical (v2) name: `ns`, `us`, `ms` or `s`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    /// Nanoseconds per unit.
    pub fn multiplier(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

/// What a parse may accept.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub precision: Precision,
    /// Time (ns) given to lines without a timestamp: one "now" per request.
    pub default_time: i64,
    pub max_line_length: usize,
    pub max_tags: usize,
    pub max_fields: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            precision: Precision::Nanoseconds,
            default_time: 0,
            max_line_length: 64 * 1024,
            max_tags: 256,
            max_fields: 1024,
        }
    }
}

/// One rejected line. Field names are InfluxDB 3's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line_number: usize,
    pub error_message: String,
    /// The line, cut to [`ERROR_LINE_BYTES`] bytes (at a character boundary).
    pub original_line: String,
}

/// The result of parsing a body: the valid rows and the rejected lines.
#[derive(Debug, Default)]
pub struct Parsed {
    pub batch: WriteBatch,
    pub errors: Vec<LineError>,
    /// Where each row came from: `origins[t][r]` is row `r` of `batch.tables[t]`.
    pub origins: Vec<Vec<LineOrigin>>,
}

/// The line a row was parsed from, to report it if the row is rejected later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineOrigin {
    pub line_number: usize,
    /// Byte range of the line in the body.
    pub start: usize,
    pub end: usize,
}

pub use conflicts::reject_conflicting_rows;

/// Parse a whole request body.
pub fn parse(body: &[u8], opts: &ParseOptions) -> Parsed {
    parser::parse_body(body, opts)
}

/// `line` cut to at most [`ERROR_LINE_BYTES`] bytes, never inside a UTF-8 character;
/// invalid UTF-8 is replaced.
pub(crate) fn cut_line(line: &[u8]) -> String {
    let mut cut = &line[..line.len().min(ERROR_LINE_BYTES)];
    if let Err(e) = std::str::from_utf8(cut)
        && e.error_len().is_none()
    {
        // An incomplete character at the cut: drop it.
        cut = &cut[..e.valid_up_to()];
    }
    let s = String::from_utf8_lossy(cut);
    s.trim_end_matches(['\r', '\n']).to_string()
}
