//! SQL cursors: `DECLARE name CURSOR FOR query`, `FETCH [FORWARD] n|ALL FROM name`,
//! `CLOSE name|ALL` (what psycopg's named, server-side cursors send).
//!
//! A cursor's query starts at `DECLARE` and its Arrow batches wait in a bounded channel
//! (the query task on `query` produces ahead by at most a couple of batches), so a large
//! result is read in chunks without being held in memory. Each `FETCH` takes the next
//! rows and encodes them in the format that `FETCH` asks for. Cursors belong to the
//! connection (pgwire's per-connection session extensions): they are dropped, and their
//! queries aborted, with the connection, and a cursor `WITHOUT HOLD` (the default) at
//! the end of its transaction, as in PostgreSQL. Only forward fetching is supported.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bulkhead_frontend::{QueryError, QueryErrorKind, QueryOutput};
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::messages::data::DataRow;
use tokio::sync::Mutex;

use crate::error::PgError;
use crate::handler::pg_fields;

/// A cursor statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CursorCommand {
    Declare {
        name: String,
        query: String,
        hold: bool,
        binary: bool,
    },
    /// `count` of `None` is `ALL`.
    Fetch { name: String, count: Option<usize> },
    /// `None` closes all.
    Close(Option<String>),
}

fn unsupported(message: impl Into<String>) -> PgError {
    PgError::Query(QueryError::new(QueryErrorKind::Unsupported, message))
}

/// Words of a cursor statement's head: identifiers unquoted (`"a""b"` -> `a"b`),
/// keywords lowercased; the byte offset where each word ends.
fn words(s: &str) -> Vec<(String, usize, bool)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i] == b'"' {
            let mut word = String::new();
            let mut j = i + 1;
            let mut start = j;
            while j < b.len() {
                if b[j] == b'"' {
                    word.push_str(&s[start..j]);
                    if b.get(j + 1) == Some(&b'"') {
                        word.push('"');
                        j += 2;
                        start = j;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            out.push((word, (j + 1).min(b.len()), true));
            i = j + 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b';' {
            i += 1;
        }
        if i == start {
            i += 1;
            continue;
        }
        out.push((s[start..i].to_ascii_lowercase(), i, false));
    }
    out
}

/// `Some` if `stmt` is `DECLARE`, `FETCH`, `MOVE` or `CLOSE`.
pub(crate) fn parse(stmt: &str) -> Option<Result<CursorCommand, PgError>> {
    let first = stmt.split_whitespace().next()?.to_ascii_lowercase();
    match first.as_str() {
        "declare" => Some(parse_declare(stmt)),
        "fetch" => Some(parse_fetch(stmt)),
        "move" => Some(Err(unsupported(
            "MOVE is not supported: FETCH the rows forward instead",
        ))),
        "close" => {
            let w = words(stmt);
            match w.get(1) {
                Some((all, _, false)) if all == "all" => Some(Ok(CursorCommand::Close(None))),
                Some((name, _, _)) => Some(Ok(CursorCommand::Close(Some(name.clone())))),
                None => Some(Err(PgError::Parameter("CLOSE needs a cursor name".into()))),
            }
        }
        _ => None,
    }
}

fn parse_declare(stmt: &str) -> Result<CursorCommand, PgError> {
    let w = words(stmt);
    let name = w
        .get(1)
        .map(|(n, _, _)| n.clone())
        .ok_or_else(|| PgError::Parameter("DECLARE needs a cursor name".into()))?;
    let (mut hold, mut binary) = (false, false);
    let mut previous = "";
    for (word, end, quoted) in w.iter().skip(2) {
        if *quoted {
            break;
        }
        match word.as_str() {
            "for" => {
                return Ok(CursorCommand::Declare {
                    name,
                    query: stmt[*end..].trim().trim_end_matches(';').trim().to_owned(),
                    hold,
                    binary,
                });
            }
            "binary" => binary = true,
            "hold" => hold = previous == "with",
            "scroll" if previous != "no" => {
                return Err(unsupported(
                    "SCROLL cursors are not supported: declare the cursor NO SCROLL and \
                     FETCH forward",
                ));
            }
            "cursor" | "no" | "with" | "without" | "asensitive" | "insensitive" | "scroll" => {}
            other => {
                return Err(PgError::Parameter(format!(
                    "DECLARE: unexpected `{other}` before FOR"
                )));
            }
        }
        previous = word;
    }
    Err(PgError::Parameter(
        "DECLARE needs `CURSOR FOR <query>`".into(),
    ))
}

fn parse_fetch(stmt: &str) -> Result<CursorCommand, PgError> {
    let w = words(stmt);
    let mut count = Some(1);
    let mut rest = &w[1..];
    let backward =
        || unsupported("only forward FETCH is supported (FETCH [FORWARD] n|ALL FROM name)");
    let number = |s: &str| -> Result<Option<usize>, PgError> {
        match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n as usize)),
            Ok(_) => Err(backward()),
            Err(_) => Err(PgError::Parameter(format!("FETCH: bad row count `{s}`"))),
        }
    };
    if let Some((word, _, false)) = rest.first() {
        match word.as_str() {
            "next" => rest = &rest[1..],
            "all" => {
                count = None;
                rest = &rest[1..];
            }
            "forward" => {
                rest = &rest[1..];
                if let Some((word, _, false)) = rest.first()
                    && !matches!(word.as_str(), "from" | "in")
                {
                    count = if word == "all" { None } else { number(word)? };
                    rest = &rest[1..];
                }
            }
            "backward" | "prior" | "first" | "last" | "absolute" | "relative" => {
                return Err(backward());
            }
            w if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                count = number(w)?;
                rest = &rest[1..];
            }
            _ => {}
        }
    }
    if let Some((word, _, false)) = rest.first()
        && matches!(word.as_str(), "from" | "in")
    {
        rest = &rest[1..];
    }
    match rest {
        [(name, _, _)] => Ok(CursorCommand::Fetch {
            name: name.clone(),
            count,
        }),
        _ => Err(PgError::Parameter(
            "FETCH: expected FETCH [FORWARD] n|ALL FROM name".into(),
        )),
    }
}

/// An open cursor.
struct Cursor {
    schema: SchemaRef,
    query: String,
    hold: bool,
    output: QueryOutput,
    /// Rows of the current batch not yet fetched.
    pending: Option<RecordBatch>,
}

/// The open cursors of one connection.
#[derive(Default)]
pub(crate) struct Cursors(Mutex<HashMap<String, Cursor>>);

impl Cursors {
    pub(crate) fn of<C: ClientInfo>(client: &C) -> Arc<Cursors> {
        client
            .session_extensions()
            .get_or_insert_with(Cursors::default)
    }

    pub(crate) async fn declare(
        &self,
        name: String,
        query: String,
        hold: bool,
        output: QueryOutput,
    ) -> Result<(), PgError> {
        let mut cursors = self.0.lock().await;
        if cursors.contains_key(&name) {
            return Err(PgError::DuplicateCursor(name));
        }
        cursors.insert(
            name,
            Cursor {
                schema: Arc::clone(&output.schema),
                query,
                hold,
                output,
                pending: None,
            },
        );
        Ok(())
    }

    /// The query of an open cursor (for Describe).
    pub(crate) async fn query(&self, name: &str) -> Option<String> {
        self.0.lock().await.get(name).map(|c| c.query.clone())
    }

    /// The next `count` rows (all with `None`) of cursor `name`, encoded in `format`.
    pub(crate) async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
        format: &Format,
    ) -> Result<Response, PgError> {
        let mut cursors = self.0.lock().await;
        let cursor = cursors
            .get_mut(name)
            .ok_or_else(|| PgError::NoSuchCursor(name.to_owned()))?;
        let fields = Arc::new(pg_fields(&cursor.schema, format)?);
        let mut want = count.unwrap_or(usize::MAX);
        let mut rows: Vec<DataRow> = Vec::new();
        while want > 0 {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match cursor.output.batches.next().await {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return Err(PgError::Stream(e.to_string())),
                    None => break,
                },
            };
            let take = want.min(batch.num_rows());
            if take < batch.num_rows() {
                cursor.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
            for row in
                arrow_pg::datatypes::encode_recordbatch(Arc::clone(&fields), batch.slice(0, take))
            {
                rows.push(row.map_err(|e| PgError::Encode(e.to_string()))?);
            }
            want -= take;
        }
        let mut response =
            QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
        response.set_command_tag("FETCH");
        Ok(Response::Query(response))
    }

    pub(crate) async fn close(&self, name: Option<&str>) -> Result<(), PgError> {
        let mut cursors = self.0.lock().await;
        match name {
            None => cursors.clear(),
            Some(n) => {
                cursors
                    .remove(n)
                    .ok_or_else(|| PgError::NoSuchCursor(n.to_owned()))?;
            }
        }
        Ok(())
    }

    /// The transaction ended: cursors without `WITH HOLD` go with it.
    pub(crate) async fn end_transaction(&self) {
        self.0.lock().await.retain(|_, c| c.hold);
    }
}

/// Whether `client` is inside `BEGIN ... COMMIT`.
pub(crate) fn in_transaction<C: ClientInfo>(client: &C) -> bool {
    !matches!(
        client.transaction_status(),
        pgwire::messages::response::TransactionStatus::Idle
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psycopg_statements() {
        assert_eq!(
            parse("DECLARE \"my cur\" CURSOR WITHOUT HOLD FOR select * from cpu")
                .unwrap()
                .unwrap(),
            CursorCommand::Declare {
                name: "my cur".into(),
                query: "select * from cpu".into(),
                hold: false,
                binary: false
            }
        );
        assert_eq!(
            parse("declare c binary no scroll cursor with hold for select 1;")
                .unwrap()
                .unwrap(),
            CursorCommand::Declare {
                name: "c".into(),
                query: "select 1".into(),
                hold: true,
                binary: true
            }
        );
        assert_eq!(
            parse("FETCH FORWARD 100 FROM \"c\"").unwrap().unwrap(),
            CursorCommand::Fetch {
                name: "c".into(),
                count: Some(100)
            }
        );
        assert_eq!(
            parse("FETCH FORWARD ALL FROM c").unwrap().unwrap(),
            CursorCommand::Fetch {
                name: "c".into(),
                count: None
            }
        );
        assert_eq!(
            parse("fetch c").unwrap().unwrap(),
            CursorCommand::Fetch {
                name: "c".into(),
                count: Some(1)
            }
        );
        assert_eq!(
            parse("fetch 5 in c").unwrap().unwrap(),
            CursorCommand::Fetch {
                name: "c".into(),
                count: Some(5)
            }
        );
        assert_eq!(
            parse("CLOSE \"c\"").unwrap().unwrap(),
            CursorCommand::Close(Some("c".into()))
        );
        assert_eq!(
            parse("close all").unwrap().unwrap(),
            CursorCommand::Close(None)
        );
        assert!(parse("select 1").is_none());
    }

    #[test]
    fn unsupported_forms_are_0a000() {
        for sql in [
            "FETCH BACKWARD 1 FROM c",
            "FETCH -1 FROM c",
            "MOVE 1 IN c",
            "DECLARE c SCROLL CURSOR FOR select 1",
        ] {
            let e = parse(sql).unwrap().unwrap_err();
            assert_eq!(e.sqlstate(), "0A000", "{sql}: {e}");
        }
        let e = parse("DECLARE c CURSOR select 1").unwrap().unwrap_err();
        assert_eq!(e.sqlstate(), "22023", "{e}");
    }
}
