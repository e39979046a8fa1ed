//! `[s3]`, `[compaction]` and `[[rollup]]`: how Bulkhead talks to S3, and the background
//! work that reshapes and downsamples what it stored.

use bulkhead_engine::CompactionConfig;
use bulkhead_frontend::RollupConfig;
use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `[s3]`: settings for `storage.object_store = "s3://..."`. An empty value falls back
/// to object_store's standard `AWS_*` environment variable of the same meaning.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL for S3-compatible servers (`AWS_ENDPOINT`); empty = AWS.
    pub endpoint: String,
    /// Region (`AWS_REGION`); empty = `AWS_REGION` or `us-east-1`.
    pub region: String,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// Allow plain `http://` endpoints (`AWS_ALLOW_HTTP`); false defers to the env var.
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host/key`) instead of path-style
    /// (`host/bucket/key`); false defers to `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`.
    pub virtual_hosted_style: bool,
    /// Retries of one failed request (with exponential backoff) before it fails.
    pub max_retries: usize,
    /// Give up retrying a request after this long in total.
    pub retry_timeout: HumanDuration,
    /// Timeout of one HTTP request, from connect to the end of the body.
    pub request_timeout: HumanDuration,
    /// Timeout of opening one connection.
    pub connect_timeout: HumanDuration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            virtual_hosted_style: false,
            max_retries: 5,
            retry_timeout: HumanDuration::secs(30),
            request_timeout: HumanDuration::secs(30),
            connect_timeout: HumanDuration::secs(5),
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = if self.secret_access_key.is_empty() {
            "<env>"
        } else {
            "<redacted>"
        };
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// `[compaction]`: the engine's time-window compaction (see docs/storage.md) and the
/// rollup maintainer's two keys, each declared by its owner and flattened here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionSection {
    /// `enabled`, `trigger`, `max_output_size`, `memory_budget`, `max_concurrent`,
    /// `grace_period`, `check_interval`.
    #[serde(flatten)]
    pub engine: CompactionConfig,
    /// `rollup_interval`, `rollup_memory_budget`.
    #[serde(flatten)]
    pub rollups: RollupConfig,
}

/// `[[rollup]]`: each entry is a [`RollupSpec`] (declared in `bulkhead-frontend`, next to
/// the maintainer's [`RollupConfig`]); an entry that does not parse is named the way
/// [`bulkhead_frontend::rollup::validate_all`] names one with a bad value:
/// `rollup[i] (db.name): key: ...`.
pub(super) mod rollup_list {
    use bulkhead_frontend::rollup::RollupSpec;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<RollupSpec>, D::Error> {
        let entries = Vec::<toml::Value>::deserialize(d)?;
        entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let key = |k: &str| entry.get(k).and_then(toml::Value::as_str).unwrap_or("?");
                let name = format!("{}.{}", key("database"), key("name"));
                RollupSpec::deserialize(entry.clone())
                    .map_err(|e| D::Error::custom(format!("rollup[{i}] ({name}): {e}")))
            })
            .collect()
    }
}
