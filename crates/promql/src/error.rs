//! The crate's error: Prometheus' error classes (`bad_data`, `execution`, `timeout`).

/// Why a query failed, classed the way Prometheus' API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The query or a parameter is invalid (parse error, wrong argument type,
    /// unsupported feature): HTTP 400, `errorType` `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (e.g. many-to-many matching): HTTP 422, `execution`.
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than its timeout: HTTP 503, `timeout`.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The query would need more samples than its limit: HTTP 422, `execution`.
    #[error("{0}")]
    TooManySamples(String),
}

impl Error {
    /// Prometheus' `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) => "execution",
            Error::Timeout(_) => "timeout",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
