//! The Prometheus remote-write 1.0 messages (`prometheus.WriteRequest` of
//! `prompb/remote.proto` and `prompb/types.proto`), hand-written for `prost`.
//!
//! Only what the mapping needs is decoded field by field. Exemplars and native
//! histograms are kept as raw bytes (their wire type is the same: length-delimited), so
//! they can be counted as ignored without decoding them; metadata (field 3 of
//! `WriteRequest`) is skipped like any unknown field.

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: one series (its labels, `__name__` included) and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// `prometheus.Exemplar` messages, not decoded (ignored).
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub exemplars: Vec<Vec<u8>>,
    /// `prometheus.Histogram` messages (native histograms), not decoded (ignored).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

impl TimeSeries {
    /// A series of `labels` with `(value, timestamp_ms)` samples, no exemplars or
    /// histograms (for clients, tests and fuzz seeds).
    pub fn new(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Self {
        Self {
            labels: labels.iter().map(|(k, v)| Label::new(*k, *v)).collect(),
            samples: samples
                .iter()
                .map(|(value, timestamp)| Sample {
                    value: *value,
                    timestamp: *timestamp,
                })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        }
    }
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a float value at a millisecond Unix timestamp.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}
