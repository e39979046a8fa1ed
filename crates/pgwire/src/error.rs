//! `PgError`, the crate's one error enum, and the one place where errors become
//! PostgreSQL SQLSTATEs ([`PgError::sqlstate`]).

use bulkhead_frontend::{QueryError, QueryErrorKind};
use bulkhead_runtime::RuntimeError;
use pgwire::error::{ErrorInfo, PgWireError};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The query layer rejected or failed the query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A batch of a running query failed (the stream carries Arrow errors).
    #[error("{0}")]
    Stream(String),
    /// A bound parameter cannot be used (bad format, missing value).
    #[error("{0}")]
    Parameter(String),
    /// A statement refers to a parameter past PostgreSQL's limit (`$65536` or more).
    #[error(
        "too many parameters: the statement refers to ${0}, but at most {max} are allowed",
        max = crate::sql::MAX_PARAMETERS
    )]
    TooManyParameters(u64),
    /// A result column or value cannot be encoded for the wire.
    #[error("encoding the result failed: {0}")]
    Encode(String),
    /// The query task could not run (shutdown).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot bind the PostgreSQL listener to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// `pg.tls_cert` / `pg.tls_key` could not be loaded (startup stops).
    #[error("pg.tls_cert / pg.tls_key: {0}")]
    Tls(String),
    /// `DECLARE` of a cursor name that is already open.
    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),
    /// `FETCH` or `CLOSE` of a cursor that is not open.
    #[error("cursor \"{0}\" does not exist")]
    NoSuchCursor(String),
    /// `DECLARE ... CURSOR` (without `WITH HOLD`) outside `BEGIN ... COMMIT`.
    #[error(
        "DECLARE CURSOR can only be used in transaction blocks (BEGIN first, or declare it WITH HOLD)"
    )]
    NoTransaction,
    #[error("PostgreSQL listener IO error: {0}")]
    Io(#[from] std::io::Error),
}

impl PgError {
    /// The error a result stream failed with, keeping its [`QueryErrorKind`] when the
    /// backend classified it.
    pub fn from_stream(e: arrow::error::ArrowError) -> Self {
        match e {
            arrow::error::ArrowError::ExternalError(inner) => {
                match inner.downcast::<QueryError>() {
                    Ok(q) => PgError::Query(*q),
                    Err(other) => PgError::Stream(other.to_string()),
                }
            }
            other => PgError::Stream(other.to_string()),
        }
    }

    /// The SQLSTATE a client sees for this error: the one place where that is decided.
    ///
    /// Plan errors carry only DataFusion's message, so the undefined-table, undefined-
    /// column and syntax cases are told apart by its wording (pinned by tests).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            PgError::Query(e) => match e.kind {
                QueryErrorKind::Plan => plan_sqlstate(&e.message),
                QueryErrorKind::Syntax => "42601", // syntax_error
                QueryErrorKind::DuplicateObject => "42710", // duplicate_object
                QueryErrorKind::UndefinedObject => "42704", // undefined_object
                QueryErrorKind::NotFound => "3D000", // invalid_catalog_name (database)
                QueryErrorKind::ResourcesExhausted => "53200", // out_of_memory
                QueryErrorKind::TooComplex => "54001", // statement_too_complex
                QueryErrorKind::Unsupported => "0A000", // feature_not_supported
                QueryErrorKind::Timeout => "57014", // query_canceled
                QueryErrorKind::Execution => "XX000", // internal_error
            },
            PgError::Stream(message) if is_memory_limit(message) => "53200",
            PgError::Parameter(_) => "22023", // invalid_parameter_value
            PgError::TooManyParameters(_) => "54023", // too_many_arguments
            PgError::Encode(_) => "0A000",
            PgError::DuplicateCursor(_) => "42P03", // duplicate_cursor
            PgError::NoSuchCursor(_) => "34000",    // invalid_cursor_name
            PgError::NoTransaction => "25P01",      // no_active_sql_transaction
            PgError::Runtime(RuntimeError::Cancelled(_)) => "57014", // query_canceled
            PgError::Stream(_)
            | PgError::Runtime(_)
            | PgError::Bind { .. }
            | PgError::Tls(_)
            | PgError::Io(_) => "XX000",
        }
    }

    /// The pgwire error sent to the client: severity ERROR, so only this query fails
    /// and the connection stays usable.
    pub fn into_pgwire(self) -> PgWireError {
        let code = self.sqlstate();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            code.to_owned(),
            self.to_string(),
        )))
    }
}

impl From<PgError> for PgWireError {
    fn from(e: PgError) -> Self {
        e.into_pgwire()
    }
}

/// Planning errors by DataFusion's wording.
fn plan_sqlstate(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("parsererror") || m.contains("sql parser error") || m.contains("sql error") {
        "42601" // syntax_error
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703" // undefined_column
    } else if m.contains("table") && m.contains("not found") {
        "42P01" // undefined_table
    } else if m.contains("invalid function") || m.contains("function") && m.contains("not found") {
        "42883" // undefined_function
    } else if m.contains("not implemented") || m.contains("unsupported") {
        "0A000" // feature_not_supported
    } else {
        "42000" // syntax_error_or_access_rule_violation: any other planning error
    }
}

fn is_memory_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("resources exhausted") || m.contains("memory limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(kind: QueryErrorKind, message: &str) -> &'static str {
        PgError::Query(QueryError::new(kind, message)).sqlstate()
    }

    #[test]
    fn plan_errors_by_wording() {
        let plan = QueryErrorKind::Plan;
        assert_eq!(
            state(plan, "SQL error: ParserError(\"Expected: an expression\")"),
            "42601"
        );
        assert_eq!(
            state(
                plan,
                "Error during planning: table 'bulkhead.demo.nope' not found"
            ),
            "42P01"
        );
        assert_eq!(
            state(
                plan,
                "Schema error: No field named nope. Valid fields are cpu.host."
            ),
            "42703"
        );
        assert_eq!(
            state(plan, "Error during planning: something else"),
            "42000"
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(state(QueryErrorKind::ResourcesExhausted, "x"), "53200");
        assert_eq!(state(QueryErrorKind::Execution, "x"), "XX000");
        assert_eq!(state(QueryErrorKind::NotFound, "x"), "3D000");
        assert_eq!(state(QueryErrorKind::TooComplex, "x"), "54001");
        assert_eq!(state(QueryErrorKind::Syntax, "x"), "42601");
        assert_eq!(state(QueryErrorKind::DuplicateObject, "x"), "42710");
        assert_eq!(state(QueryErrorKind::UndefinedObject, "x"), "42704");
        assert_eq!(PgError::TooManyParameters(70_000).sqlstate(), "54023");
        assert_eq!(
            PgError::Stream("Resources exhausted: query exceeded".into()).sqlstate(),
            "53200"
        );
    }
}
