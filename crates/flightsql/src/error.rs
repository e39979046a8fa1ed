//! The crate's errors, and the one place they (and the query layer's) become gRPC statuses.

use std::net::SocketAddr;

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use bulkhead_frontend::{QueryError, QueryErrorKind};
use tonic::{Code, Status};

/// What can go wrong in the Flight SQL front end.
#[derive(Debug, thiserror::Error)]
pub enum FlightSqlError {
    #[error("cannot bind the Flight SQL listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded (the message names the file).
    #[error("{0}")]
    Tls(String),
    #[error("Flight SQL server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A bad bound parameter or placeholder: the client's fault.
    #[error("{0}")]
    Parameter(String),
}

impl From<FlightSqlError> for Status {
    fn from(e: FlightSqlError) -> Self {
        match e {
            FlightSqlError::Parameter(m) => Status::invalid_argument(m),
            other => Status::internal(other.to_string()),
        }
    }
}

/// A query error as a gRPC status: the kind decides the code, as it decides the HTTP
/// status and the SQLSTATE on the other front ends.
pub(crate) fn query_status(e: &QueryError) -> Status {
    let code = match e.kind {
        QueryErrorKind::Plan | QueryErrorKind::Syntax | QueryErrorKind::TooComplex => {
            Code::InvalidArgument
        }
        QueryErrorKind::DuplicateObject => Code::AlreadyExists,
        QueryErrorKind::UndefinedObject => Code::NotFound,
        QueryErrorKind::NotFound => Code::NotFound,
        QueryErrorKind::ResourcesExhausted => Code::ResourceExhausted,
        QueryErrorKind::Timeout => Code::DeadlineExceeded,
        QueryErrorKind::Execution => Code::Internal,
        QueryErrorKind::Unsupported => Code::Unimplemented,
    };
    Status::new(code, e.message.clone())
}

/// Give a stream error its kind: the backend wraps a [`QueryError`] in
/// `ArrowError::ExternalError`; Arrow's memory errors are "resources exhausted";
/// anything else is an execution error.
pub(crate) fn classify(e: ArrowError) -> QueryError {
    match e {
        ArrowError::ExternalError(inner) => match inner.downcast::<QueryError>() {
            Ok(q) => *q,
            Err(other) => QueryError::execution(other.to_string()),
        },
        ArrowError::MemoryError(m) => QueryError::new(QueryErrorKind::ResourcesExhausted, m),
        other => QueryError::execution(other.to_string()),
    }
}

/// An error of the encoded result stream as a status.
pub(crate) fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Arrow(a) => query_status(&classify(a)),
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}
