//! The rules every database, table and column name must follow, shared by every front
//! end (line protocol, remote write, the HTTP parameters) and enforced again by the
//! engine's write path.
//!
//! A database or table name becomes one component of every object path of the table
//! (`{prefix}/data/{db}/{table}/...`, see [`crate::sst`]), percent-encoded by
//! `object_store`: non-ASCII bytes, control characters and `%\{}^[]<>~#|"*?` take three
//! bytes each. A local filesystem allows 255 bytes per path component and S3 1024 per
//! key, so a name is refused when it, or its encoded form, is over
//! [`MAX_NAME_BYTES`]. Column names are not in paths but follow the same length rule.
//!
//! Every name must also be non-blank and free of control characters (Unicode `Cc`, NUL
//! included) and of the byte order mark U+FEFF: such names cannot be typed in SQL,
//! cut PostgreSQL's NUL-terminated strings, or are an editor's accident. Database names
//! may not be one of the schemas the SQL layer provides itself ([`RESERVED_DATABASES`],
//! in any case), which would shadow them.

use std::fmt;

/// Longest name, and longest name once percent-encoded as an object-path component.
pub const MAX_NAME_BYTES: usize = 255;

/// Database names the SQL layer uses for its own schemas (`system`: Bulkhead's tables;
/// `information_schema`: DataFusion's; `pg_catalog`: what PostgreSQL clients query).
pub const RESERVED_DATABASES: [&str; 3] = ["system", "information_schema", "pg_catalog"];

/// Why a name is refused. Its `Display` reads after the name's role: "measurement name
/// is 300 bytes long, ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Blank,
    TooLong { bytes: usize },
    EncodedTooLong { bytes: usize },
    ControlCharacter { ch: char, at: usize },
    ByteOrderMark { at: usize },
    Reserved { name: String },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("is empty"),
            NameError::Blank => f.write_str("is blank (only whitespace)"),
            NameError::TooLong { bytes } => write!(
                f,
                "is {bytes} bytes long, over the limit of {MAX_NAME_BYTES} bytes"
            ),
            NameError::EncodedTooLong { bytes } => write!(
                f,
                "is {bytes} bytes long once percent-encoded for object-store paths, over \
                 the limit of {MAX_NAME_BYTES} bytes"
            ),
            NameError::ControlCharacter { ch, at } => write!(
                f,
                "contains the control character U+{:04X} at byte {at}",
                u32::from(*ch)
            ),
            NameError::ByteOrderMark { at } => write!(
                f,
                "contains a byte order mark (U+FEFF) at byte {at}; save the text as UTF-8 \
                 without a BOM"
            ),
            NameError::Reserved { name } => write!(
                f,
                "`{name}` is reserved: {} are schemas of the SQL layer",
                RESERVED_DATABASES.join(", ")
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Check a column (tag or field) name.
pub fn check_column(name: &str) -> Result<(), NameError> {
    check_text(name)
}

/// Check a table name: the column rules, plus its object-path component's length.
pub fn check_table(name: &str) -> Result<(), NameError> {
    check_text(name)?;
    check_encoded(name)
}

/// Check a database name: the table rules, and not a reserved schema name.
pub fn check_database(name: &str) -> Result<(), NameError> {
    check_table(name)?;
    if RESERVED_DATABASES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(NameError::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn check_text(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { bytes: name.len() });
    }
    // The common case, printable ASCII, needs no char decoding.
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return if name.bytes().all(|b| b == b' ') {
            Err(NameError::Blank)
        } else {
            Ok(())
        };
    }
    for (at, ch) in name.char_indices() {
        if ch.is_control() {
            return Err(NameError::ControlCharacter { ch, at });
        }
        if ch == '\u{feff}' {
            return Err(NameError::ByteOrderMark { at });
        }
    }
    if name.chars().all(char::is_whitespace) {
        return Err(NameError::Blank);
    }
    Ok(())
}

fn check_encoded(name: &str) -> Result<(), NameError> {
    let bytes = encoded_len(name);
    if bytes > MAX_NAME_BYTES {
        return Err(NameError::EncodedTooLong { bytes });
    }
    Ok(())
}

/// The length of `name` as an `object_store` path component.
fn encoded_len(name: &str) -> usize {
    object_store::path::PathPart::from(name).as_ref().len()
}

/// The object-path component for a database or table name: the name itself, or, for a
/// name too long for a path (only possible for names written before the limits
/// existed, now refused at the edge), a prefix of it and a hash of the whole name, so
/// such a table can still be flushed. The manifest stores every SST's full path, so
/// the form never needs to be recomputed.
pub(crate) fn path_component(name: &str) -> String {
    if encoded_len(name) <= MAX_NAME_BYTES {
        return name.to_string();
    }
    // FNV-1a, 64 bits: stable, and only needs to tell long names apart.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut out = String::new();
    let mut len = 0;
    for ch in name.chars() {
        let mut buf = [0u8; 4];
        let n = encoded_len(ch.encode_utf8(&mut buf));
        if len + n > 200 {
            break;
        }
        len += n;
        out.push(ch);
    }
    out.push_str(&format!(".{hash:016x}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_within_the_rules_pass() {
        for name in [
            "cpu",
            "a b",
            "温度",
            "node_cpu_seconds_total",
            "x:y",
            &"p".repeat(255),
        ] {
            assert_eq!(check_table(name), Ok(()), "{name}");
            assert_eq!(check_database(name), Ok(()), "{name}");
            assert_eq!(check_column(name), Ok(()), "{name}");
        }
        assert_eq!(check_database("systems"), Ok(()));
        // Reserved only as databases.
        assert_eq!(check_table("system"), Ok(()));
    }

    #[test]
    fn each_rule_has_its_error() {
        assert_eq!(check_table(""), Err(NameError::Empty));
        assert_eq!(check_table("   "), Err(NameError::Blank));
        assert_eq!(check_column("\u{3000}"), Err(NameError::Blank));
        assert_eq!(
            check_table(&"p".repeat(300)),
            Err(NameError::TooLong { bytes: 300 })
        );
        assert_eq!(
            check_table(&"%".repeat(86)),
            Err(NameError::EncodedTooLong { bytes: 258 })
        );
        // Columns are not in paths: only the raw length counts.
        assert_eq!(check_column(&"%".repeat(86)), Ok(()));
        assert_eq!(
            check_table("a\0b"),
            Err(NameError::ControlCharacter { ch: '\0', at: 1 })
        );
        assert_eq!(
            check_column("a\u{85}"),
            Err(NameError::ControlCharacter {
                ch: '\u{85}',
                at: 1
            })
        );
        assert_eq!(
            check_table("\u{feff}cpu"),
            Err(NameError::ByteOrderMark { at: 0 })
        );
        for name in ["system", "information_schema", "pg_catalog", "System"] {
            assert_eq!(
                check_database(name),
                Err(NameError::Reserved { name: name.into() })
            );
        }
        assert_eq!(
            format!("database name {}", check_database("system").unwrap_err()),
            "database name `system` is reserved: system, information_schema, pg_catalog \
             are schemas of the SQL layer"
        );
        assert_eq!(
            format!("table name {}", check_table(&"%".repeat(86)).unwrap_err()),
            "table name is 258 bytes long once percent-encoded for object-store paths, \
             over the limit of 255 bytes"
        );
    }

    #[test]
    fn path_components_of_long_names_fit_and_stay_distinct() {
        assert_eq!(path_component("cpu"), "cpu");
        let a = path_component(&"%".repeat(86));
        let b = path_component(&"%".repeat(87));
        let c = path_component(&"p".repeat(300));
        let d = path_component(&"温".repeat(300));
        for p in [&a, &b, &c, &d] {
            assert!(encoded_len(p) <= MAX_NAME_BYTES, "{p}: {}", encoded_len(p));
        }
        assert_ne!(a, b);
        assert_eq!(c, path_component(&"p".repeat(300)), "stable");
        assert!(c.starts_with("ppp"), "{c}");
    }
}
