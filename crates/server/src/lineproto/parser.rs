//! The byte-level line-protocol parser: one pass per line, one table lookup per byte,
//! UTF-8 checked once per body, no allocation for names and tag values up to 23 bytes
//! (they are inline [`SmolStr`]s), escapes resolved only when a token contains a `\`.
//! A line whose tag and field keys repeat the previous line's skips the duplicate-key
//! checks (the common case: one source sends the same shape over and over).

use bulkhead_engine::{FieldValue, Row, SmolStr, names};

use super::{LineError, LineOrigin, ParseOptions, Parsed, cut_line};

/// Characters a backslash escapes in measurement names.
const MEASUREMENT_ESCAPES: &[u8] = b", \\";
/// Characters a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= \\";

/// Byte classes of the tokenizer, as bit flags; 0 for every byte a token simply takes.
const COMMA: u8 = 1;
const EQUALS: u8 = 2;
/// Space, tab or `\n`: always ends a token.
const SPACE: u8 = 4;
const BACKSLASH: u8 = 8;
/// `\r`: ends a token only at the line end (`\r\n` or `\r` then end of body).
const CR: u8 = 16;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = COMMA;
    t[b'=' as usize] = EQUALS;
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\n' as usize] = SPACE;
    t[b'\\' as usize] = BACKSLASH;
    t[b'\r' as usize] = CR;
    t
};

/// The tag and field keys of the last accepted line, in line order.
#[derive(Default)]
struct Shape {
    tags: Vec<SmolStr>,
    fields: Vec<SmolStr>,
}

pub(super) fn parse_body(body: &[u8], opts: &ParseOptions) -> Parsed {
    let mut out = Parsed::default();
    // One UTF-8 check for the whole body; tokens are then cut from it as `&str` (they
    // start and end at ASCII delimiters). Only a body with invalid UTF-8 is checked
    // token by token, to name the token in the error.
    let text = std::str::from_utf8(body).ok();
    let mut shape = Shape::default();
    let mut pos = 0;
    let mut line_number = 0;
    while pos < body.len() {
        line_number += 1;
        let rest = &body[pos..];
        let phys_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let physical = &rest[..phys_end];
        let content_start = physical
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .unwrap_or(physical.len());
        let content = &physical[content_start..];
        if content.is_empty() || content[0] == b'#' {
            pos += phys_end + 1;
            continue;
        }
        let reject = |out: &mut Parsed, message: String| {
            out.errors.push(LineError {
                line_number,
                error_message: message,
                original_line: cut_line(physical),
            });
        };
        // A rejected line is skipped as a whole, quoted strings that span physical lines
        // included: resuming inside such a string would parse its text as rows.
        let skip_logical_line = |pos: &mut usize, line_number: &mut usize| {
            let end = content_start + logical_line_end(&rest[content_start..]);
            *line_number += rest[..end].iter().filter(|&&b| b == b'\n').count();
            *pos += end + 1;
        };
        if physical.len() > opts.max_line_length {
            let long = content_start + logical_line_end(&rest[content_start..]);
            reject(
                &mut out,
                format!(
                    "line is {} bytes long, over the limit of {} (limits.max_line_length)",
                    long, opts.max_line_length
                ),
            );
            skip_logical_line(&mut pos, &mut line_number);
            continue;
        }
        let cursor = Cursor {
            buf: &rest[content_start..],
            text: text.and_then(|t| t.get(pos + content_start..)),
            pos: 0,
        };
        match parse_line(cursor, opts, &mut shape) {
            Ok((table, row, consumed)) => {
                let consumed = content_start + consumed;
                let spanned = &rest[..consumed];
                if consumed > opts.max_line_length {
                    reject(
                        &mut out,
                        format!(
                            "line is {consumed} bytes long, over the limit of {} (limits.max_line_length)",
                            opts.max_line_length
                        ),
                    );
                } else {
                    let origin = LineOrigin {
                        line_number,
                        start: pos,
                        end: pos + consumed,
                    };
                    push(&mut out, &table, row, origin);
                }
                // A quoted string may have spanned physical lines.
                if consumed > phys_end {
                    line_number += memchr::memchr_iter(b'\n', spanned).count();
                }
                pos += consumed + 1;
            }
            Err(message) => {
                reject(&mut out, message);
                skip_logical_line(&mut pos, &mut line_number);
            }
        }
    }
    out
}

/// Where the line starting at `buf[0]` ends (the index of its `\n`, or `buf.len()`),
/// following the parser's rules: a `"` right after an unescaped `=` in the field section
/// opens a string, which may span physical lines. A string with no closing quote does
/// not extend the line (the line ends at its first `\n`).
fn logical_line_end(buf: &[u8]) -> usize {
    let physical_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let mut i = 0;
    let mut in_fields = false;
    let mut after_eq = false;
    while i < buf.len() {
        let b = buf[i];
        match b {
            b'\n' => return i,
            b'\\' => {
                after_eq = false;
                // An escaped newline still ends the line (the parser stops there too).
                i += if matches!(buf.get(i + 1), Some(b'\n') | None) {
                    1
                } else {
                    2
                };
                continue;
            }
            b' ' | b'\t' => {
                in_fields = true;
                after_eq = false;
            }
            b'=' => after_eq = in_fields,
            b'"' if after_eq => {
                // Find the closing quote; `\"` and `\\` are escapes inside strings.
                let mut j = i + 1;
                loop {
                    match buf.get(j) {
                        None => return physical_end,
                        Some(b'\\') if matches!(buf.get(j + 1), Some(b'"' | b'\\')) => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j;
                after_eq = false;
            }
            _ => after_eq = false,
        }
        i += 1;
    }
    buf.len()
}

/// Append a row and its origin, keeping `origins` aligned with `batch.tables`.
fn push(out: &mut Parsed, table: &str, row: Row, origin: LineOrigin) {
    let index = match out.batch.tables.last() {
        Some(t) if t.table == table => out.batch.tables.len() - 1,
        _ => match out.batch.tables.iter().position(|t| t.table == table) {
            Some(i) => i,
            None => out.batch.tables.len(),
        },
    };
    out.batch.push(table, row);
    if index == out.origins.len() {
        out.origins.push(Vec::new());
    }
    out.origins[index].push(origin);
}

/// A cursor over one line (and, inside quoted strings, the lines after it).
struct Cursor<'a> {
    buf: &'a [u8],
    /// `buf` as text, when the whole body is valid UTF-8.
    text: Option<&'a str>,
    pos: usize,
}

/// A token: its byte range in the cursor's buffer and whether it contains a `\`.
#[derive(Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Token {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn at_line_end(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.buf.get(self.pos + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Scan a token up to (not including) an unescaped byte of class `stops` (`COMMA`,
    /// `EQUALS`), a space, a tab or the line end.
    fn token(&mut self, stops: u8, escapes: &[u8]) -> Token {
        let start = self.pos;
        let mut escaped = false;
        while let Some(&b) = self.buf.get(self.pos) {
            let class = CLASS[b as usize];
            if class == 0 {
                self.pos += 1;
                continue;
            }
            if class & BACKSLASH != 0 {
                escaped = true;
                match self.buf.get(self.pos + 1) {
                    Some(n) if escapes.contains(n) => self.pos += 2,
                    _ => self.pos += 1,
                }
                continue;
            }
            if class & (stops | SPACE) != 0 || (class & CR != 0 && self.at_line_end()) {
                break;
            }
            self.pos += 1;
        }
        Token {
            start,
            end: self.pos,
            escaped,
        }
    }

    /// The bytes `start..end` as text.
    fn str(&self, start: usize, end: usize, what: &str) -> Result<&'a str, String> {
        match self.text.and_then(|t| t.get(start..end)) {
            Some(s) => Ok(s),
            None => utf8(&self.buf[start..end], what),
        }
    }

    /// A key, escapes resolved; when it equals `previous` (the previous line's key at
    /// this position, if the keys so far matched), a clone of that one, and `true`.
    fn key(
        &self,
        token: Token,
        previous: Option<&SmolStr>,
        what: &str,
    ) -> Result<(SmolStr, bool), String> {
        if !token.escaped {
            let s = self.str(token.start, token.end, what)?;
            return Ok(match previous {
                Some(p) if p.as_str() == s => (p.clone(), true),
                _ => (SmolStr::new(s), false),
            });
        }
        let key = self.name(token, KEY_ESCAPES, what)?;
        let same = previous == Some(&key);
        Ok((key, same))
    }

    /// A name or tag value, escapes resolved.
    fn name(&self, token: Token, escapes: &[u8], what: &str) -> Result<SmolStr, String> {
        let s = self.str(token.start, token.end, what)?;
        Ok(if token.escaped {
            SmolStr::from(unescape(s, escapes))
        } else {
            SmolStr::new(s)
        })
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes)
        .map_err(|e| format!("invalid UTF-8 in {what} at byte {}", e.valid_up_to()))
}

/// Resolve backslash escapes of the characters in `escapes`; other backslashes stay.
fn unescape(s: &str, escapes: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && n.is_ascii()
            && escapes.contains(&(n as u8))
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// Parse one line starting at the cursor (leading whitespace already skipped). Returns
/// the table, the row and the bytes consumed, up to but not including the line's `\n`.
/// `shape` is the previous accepted line's keys; it becomes this line's on success.
fn parse_line(
    mut c: Cursor<'_>,
    opts: &ParseOptions,
    shape: &mut Shape,
) -> Result<(SmolStr, Row, usize), String> {
    let raw = c.token(COMMA, MEASUREMENT_ESCAPES);
    if raw.is_empty() {
        return Err("missing measurement name".into());
    }
    let table = c.name(raw, MEASUREMENT_ESCAPES, "measurement")?;
    names::check_table(&table).map_err(|e| format!("measurement name {e}"))?;

    // While the keys so far equal the previous line's, their checks (not `time`, no
    // duplicates) are already known to pass.
    let mut same_shape = true;
    let mut tags: Vec<(SmolStr, SmolStr)> = Vec::with_capacity(shape.tags.len());
    while c.peek() == Some(b',') {
        c.pos += 1;
        let raw_key = c.token(COMMA | EQUALS, KEY_ESCAPES);
        let previous = shape.tags.get(tags.len()).filter(|_| same_shape);
        let (key, same) = c.key(raw_key, previous, "tag key")?;
        if c.peek() != Some(b'=') {
            return Err(if key.is_empty() {
                "empty tag key".into()
            } else {
                format!("tag `{key}` has no value (expected `{key}=value`)")
            });
        }
        if key.is_empty() {
            return Err("empty tag key".into());
        }
        c.pos += 1;
        let raw_value = c.token(COMMA, KEY_ESCAPES);
        if raw_value.is_empty() {
            return Err(format!("tag `{key}` has an empty value"));
        }
        let value = c.name(raw_value, KEY_ESCAPES, "tag value")?;
        same_shape = same;
        if !same_shape {
            names::check_column(&key).map_err(|e| format!("tag key {e}"))?;
            if key == "time" {
                return Err("`time` is reserved and cannot be a tag key".into());
            }
            if tags.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate tag key `{key}`"));
            }
        }
        tags.push((key, value));
        if tags.len() > opts.max_tags {
            return Err(format!(
                "too many tags (more than {}, limits.max_tags_per_line)",
                opts.max_tags
            ));
        }
    }
    same_shape = same_shape && tags.len() == shape.tags.len();

    // Tags end at a space (then fields follow) or at the line end (no fields: error).
    c.skip_spaces();
    if c.at_line_end() {
        return Err("missing fields (expected `measurement[,tags] field=value`)".into());
    }

    let mut fields: Vec<(SmolStr, FieldValue)> = Vec::with_capacity(shape.fields.len());
    loop {
        let raw_key = c.token(COMMA | EQUALS, KEY_ESCAPES);
        let previous = shape.fields.get(fields.len()).filter(|_| same_shape);
        let (key, same) = c.key(raw_key, previous, "field key")?;
        if c.peek() != Some(b'=') {
            return Err(if key.is_empty() {
                "empty field key".into()
            } else {
                format!("field `{key}` has no value (expected `{key}=value`)")
            });
        }
        if key.is_empty() {
            return Err("empty field key".into());
        }
        c.pos += 1;
        let value = field_value(&mut c, &key)?;
        same_shape = same;
        if same_shape {
            fields.push((key, value));
        } else {
            names::check_column(&key).map_err(|e| format!("field key {e}"))?;
            if key == "time" {
                return Err("`time` is reserved and cannot be a field key".into());
            }
            if tags.iter().any(|(k, _)| *k == key) {
                return Err(format!("`{key}` is used both as a tag and as a field"));
            }
            // A repeated field key: the last value wins, as in InfluxDB.
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => fields.push((key, value)),
            }
        }
        if fields.len() > opts.max_fields {
            return Err(format!(
                "too many fields (more than {}, limits.max_fields_per_line)",
                opts.max_fields
            ));
        }
        match c.peek() {
            Some(b',') => c.pos += 1,
            _ => break,
        }
    }
    same_shape = same_shape && fields.len() == shape.fields.len();

    c.skip_spaces();
    let time = if c.at_line_end() {
        opts.default_time
    } else {
        let start = c.pos;
        while let Some(b) = c.peek() {
            if matches!(b, b' ' | b'\t' | b'\n') || c.at_line_end() {
                break;
            }
            c.pos += 1;
        }
        let raw = c.str(start, c.pos, "timestamp")?;
        let ts: i64 = raw
            .parse()
            .map_err(|_| format!("invalid timestamp `{raw}` (expected an integer)"))?;
        c.skip_spaces();
        if !c.at_line_end() {
            return Err("unexpected text after the timestamp".into());
        }
        ts.checked_mul(opts.precision.multiplier()).ok_or_else(|| {
            format!(
                "timestamp {ts} is out of range for precision `{}`: in nanoseconds it must \
                 fit in a signed 64-bit integer (years 1677 to 2262)",
                opts.precision.name()
            )
        })?
    };
    // Consume a trailing `\r` of a CRLF line ending.
    if c.peek() == Some(b'\r') {
        c.pos += 1;
    }
    if !same_shape {
        shape.tags.clear();
        shape.tags.extend(tags.iter().map(|(k, _)| k.clone()));
        shape.fields.clear();
        shape.fields.extend(fields.iter().map(|(k, _)| k.clone()));
    }
    Ok((table, Row { tags, fields, time }, c.pos))
}

fn field_value(c: &mut Cursor<'_>, key: &str) -> Result<FieldValue, String> {
    if c.peek() == Some(b'"') {
        c.pos += 1;
        let start = c.pos;
        let mut escaped = false;
        loop {
            match c.peek() {
                None => return Err(format!("unterminated string value of field `{key}`")),
                Some(b'\\') => {
                    escaped = true;
                    c.pos += if matches!(c.buf.get(c.pos + 1), Some(b'"' | b'\\')) {
                        2
                    } else {
                        1
                    };
                }
                Some(b'"') => break,
                Some(_) => c.pos += 1,
            }
        }
        let raw = c.str(start, c.pos, "string value")?;
        c.pos += 1;
        if !matches!(c.peek(), None | Some(b',' | b' ' | b'\t' | b'\n' | b'\r')) {
            return Err(format!(
                "unexpected text after the string value of field `{key}`"
            ));
        }
        return Ok(FieldValue::Str(if escaped {
            unescape(raw, b"\"\\")
        } else {
            raw.to_string()
        }));
    }
    let start = c.pos;
    while let Some(b) = c.peek() {
        if matches!(b, b',' | b' ' | b'\t' | b'\n') || c.at_line_end() {
            break;
        }
        c.pos += 1;
    }
    let raw = &c.buf[start..c.pos];
    let invalid = || {
        format!(
            "invalid value `{}` for field `{key}`",
            String::from_utf8_lossy(raw)
        )
    };
    match raw {
        [] => Err(format!("field `{key}` has no value")),
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(FieldValue::Bool(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(FieldValue::Bool(false)),
        [digits @ .., b'i'] => {
            let s = std::str::from_utf8(digits).map_err(|_| invalid())?;
            if !is_integer(s, true) {
                return Err(invalid());
            }
            s.parse::<i64>().map(FieldValue::I64).map_err(|_| {
                format!("integer value `{s}` of field `{key}` is out of range for a signed 64-bit integer")
            })
        }
        [digits @ .., b'u'] => {
            let s = std::str::from_utf8(digits).map_err(|_| invalid())?;
            if !is_integer(s, false) {
                return Err(invalid());
            }
            s.parse::<u64>().map(FieldValue::U64).map_err(|_| {
                format!("unsigned value `{s}` of field `{key}` is out of range for an unsigned 64-bit integer")
            })
        }
        _ => {
            let s = std::str::from_utf8(raw).map_err(|_| invalid())?;
            let well_formed = s.bytes().any(|b| b.is_ascii_digit())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
            if !well_formed {
                return Err(invalid());
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(FieldValue::F64(v)),
                Ok(_) => Err(format!(
                    "float value `{s}` of field `{key}` is out of range"
                )),
                Err(_) => Err(invalid()),
            }
        }
    }
}

/// `[-]digits` (sign only when `signed`).
fn is_integer(s: &str, signed: bool) -> bool {
    let digits = match s.strip_prefix('-') {
        Some(rest) if signed => rest,
        _ => s,
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}
