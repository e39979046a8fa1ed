//! Tests that keep the config, its flags, the example file and the docs in sync.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Command};

use super::*;

/// toml key -> flag -> a non-default sample value (as it appears when serialized).
const OPTIONS: &[(&str, &str, &str)] = &[
    ("http.addr", "--http-addr", "0.0.0.0:9999"),
    ("http.shutdown_timeout", "--shutdown-timeout", "5s"),
    ("pg.enabled", "--pg-enabled", "false"),
    ("pg.addr", "--pg-addr", "127.0.0.1:6543"),
    ("flight_sql.enabled", "--flight-sql-enabled", "true"),
    ("flight_sql.addr", "--flight-sql-addr", "127.0.0.1:6544"),
    ("flight_sql.database", "--flight-sql-database", "demo"),
    (
        "flight_sql.max_connections",
        "--flight-sql-max-connections",
        "8",
    ),
    (
        "flight_sql.startup_timeout",
        "--flight-sql-startup-timeout",
        "3s",
    ),
    ("flight_sql.idle_timeout", "--flight-sql-idle-timeout", "5m"),
    ("storage.data_dir", "--data-dir", "/tmp/bh"),
    ("storage.wal_dir", "--wal-dir", "/tmp/wal"),
    (
        "storage.object_store",
        "--object-store",
        "s3://bucket/prefix",
    ),
    ("storage.segment_duration", "--segment-duration", "1d"),
    (
        "storage.multipart_threshold",
        "--multipart-threshold",
        "64MiB",
    ),
    (
        "storage.multipart_part_size",
        "--multipart-part-size",
        "16MiB",
    ),
    (
        "storage.metadata_cache_size",
        "--metadata-cache-size",
        "8MiB",
    ),
    (
        "storage.integer_compression",
        "--integer-compression",
        "zstd",
    ),
    ("storage.page_rows", "--page-rows", "2048"),
    (
        "storage.unsafe_no_conditional_put",
        "--unsafe-no-conditional-put",
        "true",
    ),
    ("s3.endpoint", "--s3-endpoint", "http://127.0.0.1:8333"),
    ("s3.region", "--s3-region", "eu-west-1"),
    ("s3.access_key_id", "--s3-access-key-id", "AKID"),
    ("s3.secret_access_key", "--s3-secret-access-key", "SECRET"),
    ("s3.allow_http", "--s3-allow-http", "true"),
    (
        "s3.virtual_hosted_style",
        "--s3-virtual-hosted-style",
        "true",
    ),
    ("s3.max_retries", "--s3-max-retries", "9"),
    ("s3.retry_timeout", "--s3-retry-timeout", "2m"),
    ("s3.request_timeout", "--s3-request-timeout", "10s"),
    ("s3.connect_timeout", "--s3-connect-timeout", "1s"),
    ("compaction.enabled", "--compaction-enabled", "false"),
    ("compaction.trigger", "--compaction-trigger", "8"),
    (
        "compaction.max_output_size",
        "--compaction-max-output-size",
        "1GiB",
    ),
    (
        "compaction.memory_budget",
        "--compaction-memory-budget",
        "64MiB",
    ),
    (
        "compaction.max_concurrent",
        "--compaction-max-concurrent",
        "2",
    ),
    ("compaction.grace_period", "--compaction-grace-period", "1m"),
    (
        "compaction.check_interval",
        "--compaction-check-interval",
        "5s",
    ),
    (
        "compaction.rollup_interval",
        "--compaction-rollup-interval",
        "5s",
    ),
    (
        "compaction.rollup_memory_budget",
        "--compaction-rollup-memory-budget",
        "64MiB",
    ),
    ("retention.ttl", "--retention-ttl", "30d"),
    ("cache.enabled", "--cache-enabled", "false"),
    ("cache.memory_size", "--cache-memory-size", "1GiB"),
    ("cache.disk_size", "--cache-disk-size", "100GiB"),
    ("cache.disk_path", "--cache-disk-path", "/tmp/bh-cache"),
    ("wal.sync", "--wal-sync", "250ms"),
    ("wal.segment_size", "--wal-segment-size", "8MiB"),
    ("wal.preallocate", "--wal-preallocate", "false"),
    ("memtable.write_buffer", "--write-buffer", "1GiB"),
    ("memtable.table_flush_size", "--table-flush-size", "16MiB"),
    ("memtable.flush_interval", "--flush-interval", "30s"),
    ("memtable.flush_concurrency", "--flush-concurrency", "4"),
    ("memtable.pack_table_bytes", "--pack-table-bytes", "1MiB"),
    ("runtime.mode", "--runtime-mode", "shared"),
    ("runtime.io_threads", "--io-threads", "3"),
    ("runtime.write_threads", "--write-threads", "4"),
    ("runtime.flush_threads", "--flush-threads", "5"),
    ("runtime.query_threads", "--query-threads", "6"),
    ("runtime.compact_threads", "--compact-threads", "7"),
    ("runtime.shared_threads", "--shared-threads", "8"),
    ("runtime.compact_nice", "--compact-nice", "-5"),
    ("runtime.query_nice", "--query-nice", "-3"),
    ("runtime.write_nice", "--write-nice", "2"),
    (
        "runtime.compact_sched_idle",
        "--compact-sched-idle",
        "false",
    ),
    ("runtime.query_sched_idle", "--query-sched-idle", "false"),
    ("runtime.latency_slice", "--latency-slice", "200us"),
    ("runtime.background_yield", "--background-yield", "1ms"),
    ("runtime.idle_cgroup", "--idle-cgroup", "false"),
    ("runtime.flush_affinity", "--flush-affinity", "false"),
    (
        "runtime.slow_poll_threshold",
        "--slow-poll-threshold",
        "5ms",
    ),
    ("runtime.watchdog_threshold", "--watchdog-threshold", "1s"),
    ("runtime.watchdog_interval", "--watchdog-interval", "50ms"),
    ("runtime.memory_purge_delay", "--memory-purge-delay", "2s"),
    ("runtime.huge_pages", "--huge-pages", "true"),
    ("auth.token", "--auth-token", "s3cret"),
    ("limits.max_body_size", "--max-body-size", "1MiB"),
    (
        "limits.max_inflight_write_bytes",
        "--max-inflight-write-bytes",
        "16MiB",
    ),
    ("limits.max_line_length", "--max-line-length", "1KiB"),
    ("limits.max_tags_per_line", "--max-tags-per-line", "3"),
    ("limits.max_fields_per_line", "--max-fields-per-line", "4"),
    ("limits.max_databases", "--max-databases", "7"),
    (
        "limits.max_tables_per_database",
        "--max-tables-per-database",
        "8",
    ),
    (
        "limits.max_columns_per_table",
        "--max-columns-per-table",
        "9",
    ),
    (
        "limits.max_series_per_table",
        "--max-series-per-table",
        "10",
    ),
    ("limits.query_memory", "--query-memory", "2GiB"),
    ("limits.query_partitions", "--query-partitions", "4"),
    ("limits.scan_tasks", "--scan-tasks", "3"),
    ("limits.query_plan_cache", "--query-plan-cache", "16"),
    ("limits.query_timeout", "--query-timeout", "30s"),
    ("limits.body_read_timeout", "--body-read-timeout", "3s"),
    ("limits.tcp_keepalive", "--tcp-keepalive", "5m"),
    ("http.max_connections", "--http-max-connections", "10"),
    (
        "http.header_read_timeout",
        "--http-header-read-timeout",
        "2s",
    ),
    ("http.idle_timeout", "--http-idle-timeout", "0s"),
    ("http.tls_cert", "--http-tls-cert", "/etc/bh/cert.pem"),
    ("http.tls_key", "--http-tls-key", "/etc/bh/key.pem"),
    ("pg.max_connections", "--pg-max-connections", "10"),
    ("pg.startup_timeout", "--pg-startup-timeout", "3s"),
    ("pg.idle_timeout", "--pg-idle-timeout", "10m"),
    ("pg.tls_cert", "--pg-tls-cert", "/etc/bh/cert.pem"),
    ("pg.tls_key", "--pg-tls-key", "/etc/bh/key.pem"),
    (
        "flight_sql.tls_cert",
        "--flight-sql-tls-cert",
        "/etc/bh/cert.pem",
    ),
    (
        "flight_sql.tls_key",
        "--flight-sql-tls-key",
        "/etc/bh/key.pem",
    ),
    ("auth.failure_delay", "--auth-failure-delay", "1s"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> String {
    std::fs::read_to_string(repo_root().join("bulkhead.example.toml")).unwrap()
}

fn command() -> Command {
    ServeArgs::augment_args(Command::new("serve").no_binary_name(true))
}

fn parse(argv: &[&str]) -> ServeArgs {
    let matches = command().try_get_matches_from(argv).unwrap();
    <ServeArgs as clap::FromArgMatches>::from_arg_matches(&matches).unwrap()
}

fn leaves(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn lookup(cfg: &ServerConfig, key: &str) -> String {
    let value = toml::Value::try_from(cfg).unwrap();
    let (section, name) = key.split_once('.').unwrap();
    match &value[section][name] {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn example_file_parses_and_documents_the_defaults() {
    let parsed = ServerConfig::from_toml(&example()).unwrap();
    assert_eq!(parsed, ServerConfig::default());
}

#[test]
fn every_option_is_in_the_example_and_has_a_flag() {
    let mut from_example = BTreeSet::new();
    leaves(&toml::from_str(&example()).unwrap(), "", &mut from_example);
    let mut from_struct = BTreeSet::new();
    leaves(
        &toml::Value::try_from(ServerConfig::default()).unwrap(),
        "",
        &mut from_struct,
    );
    let from_table: BTreeSet<String> = OPTIONS.iter().map(|(k, _, _)| k.to_string()).collect();
    assert_eq!(
        from_example, from_struct,
        "bulkhead.example.toml vs ServerConfig"
    );
    assert_eq!(from_table, from_struct, "OPTIONS table vs ServerConfig");
    // Every flag except --config (and clap's --help) is in the table.
    let flags: BTreeSet<String> = command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config")
        .map(|l| format!("--{l}"))
        .collect();
    let table_flags: BTreeSet<String> = OPTIONS.iter().map(|(_, f, _)| f.to_string()).collect();
    assert_eq!(flags, table_flags);
}

#[test]
fn each_flag_sets_its_own_key() {
    let defaults = ServerConfig::default();
    for (key, flag, sample) in OPTIONS {
        assert_ne!(
            lookup(&defaults, key),
            *sample,
            "sample for {key} must differ from default"
        );
        let args = parse(&[flag, sample]);
        let mut cfg = ServerConfig::default();
        args.apply(&mut cfg);
        assert_eq!(lookup(&cfg, key), *sample, "{flag} should set {key}");
        // ...and nothing else.
        let mut reset = cfg.clone();
        let mut expected = defaults.clone();
        let mut t = toml::Value::try_from(&reset).unwrap();
        let d = toml::Value::try_from(&expected).unwrap();
        let (s, n) = key.split_once('.').unwrap();
        t[s][n] = d[s][n].clone();
        reset = t.try_into().unwrap();
        expected.clone_from(&defaults);
        assert_eq!(reset, expected, "{flag} changed more than {key}");
    }
}

#[test]
fn env_vars_follow_the_flag_names() {
    for arg in command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let want = format!("BULKHEAD_{}", long.to_uppercase().replace('-', "_"));
        assert_eq!(env.as_deref(), Some(want.as_str()), "--{long}");
    }
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let err = ServerConfig::from_toml("[http]\nadress = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(err.contains("adress"), "{err}");
    let err = ServerConfig::from_toml("[htp]\naddr = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(err.contains("htp"), "{err}");
    let err = ServerConfig::from_toml("[limits]\nmax_body_size = \"64XB\"\n").unwrap_err();
    assert!(
        err.contains("max_body_size") && err.contains("64XB"),
        "{err}"
    );
    let err = ServerConfig::from_toml("[runtime]\nmode = \"both\"\n").unwrap_err();
    assert!(err.contains("mode") && err.contains("both"), "{err}");
    let err = ServerConfig::from_toml("[memtable]\nflush_interval = \"soon\"\n").unwrap_err();
    assert!(err.contains("flush_interval"), "{err}");
    let err = ServerConfig::from_toml("[storage]\nobject_store = \"ftp://x\"\n").unwrap_err();
    assert!(err.contains("storage.object_store"), "{err}");
    let err = ServerConfig::from_toml("[wal]\nsync = \"sometimes\"\n").unwrap_err();
    assert!(err.contains("sync") && err.contains("sometimes"), "{err}");
    let err = ServerConfig::from_toml("[runtime]\ncompact_nice = 40\n").unwrap_err();
    assert!(err.contains("runtime.compact_nice"), "{err}");
    let err = ServerConfig::from_toml("[runtime]\nquery_nice = -21\n").unwrap_err();
    assert!(err.contains("runtime.query_nice"), "{err}");
    let err = ServerConfig::from_toml("[storage]\npage_rows = 10\n").unwrap_err();
    assert!(
        err.contains("storage.page_rows") && err.contains("10"),
        "{err}"
    );
    assert!(ServerConfig::from_toml("[storage]\npage_rows = 64\n").is_ok());
}

#[test]
fn bad_flag_values_are_rejected_by_clap() {
    let err = command()
        .try_get_matches_from(["--write-buffer", "lots"])
        .unwrap_err();
    assert!(err.to_string().contains("--write-buffer"), "{err}");
    let err = command()
        .try_get_matches_from(["--runtime-mode", "both"])
        .unwrap_err();
    assert!(err.to_string().contains("both"), "{err}");
}

#[test]
fn precedence_is_flag_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(
        &path,
        "[memtable]\nwrite_buffer = \"1GiB\"\n[runtime]\nio_threads = 3\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let cfg = ServerConfig::load(&parse(&["--config", p])).unwrap();
    assert_eq!(cfg.memtable.write_buffer, ByteSize::gib(1).as_usize());
    assert_eq!(cfg.runtime.io_threads, 3);
    assert_eq!(cfg.limits.max_body_size, ByteSize::mib(64), "default kept");
    let cfg = ServerConfig::load(&parse(&["--config", p, "--write-buffer", "2GiB"])).unwrap();
    assert_eq!(
        cfg.memtable.write_buffer,
        ByteSize::gib(2).as_usize(),
        "flag beats file"
    );
    assert_eq!(cfg.runtime.io_threads, 3);
    let missing = ServerConfig::load(&parse(&["--config", "/nonexistent/b.toml"])).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/b.toml"),
        "{missing}"
    );
}

#[test]
fn derived_paths_and_runtime_config() {
    let mut cfg = ServerConfig::default();
    cfg.storage.data_dir = PathBuf::from("/d");
    assert_eq!(cfg.storage.wal_dir(), PathBuf::from("/d/wal"));
    assert_eq!(cfg.storage.object_store_url(), "file:///d/objects");
    cfg.runtime.io_threads = 5;
    cfg.runtime.compact_nice = 3;
    let rc = cfg.runtime.resolved();
    assert_eq!(rc.io_threads, 5);
    assert_eq!(rc.compact_nice, 3);
    let auto = RuntimeConfig::for_parallelism(bulkhead_runtime::available_parallelism());
    assert_eq!(rc.write_threads, auto.write_threads);
    assert_eq!(rc.watchdog_threshold, Duration::from_millis(100));
}

#[test]
fn configuration_doc_lists_every_key_flag_and_env_var() {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    for (key, flag, _) in OPTIONS {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/configuration.md lacks `{key}`"
        );
        assert!(
            doc.contains(&format!("`{flag}`")),
            "docs/configuration.md lacks `{flag}`"
        );
        let env = format!(
            "BULKHEAD_{}",
            flag.trim_start_matches("--")
                .to_uppercase()
                .replace('-', "_")
        );
        assert!(
            doc.contains(&format!("`{env}`")),
            "docs/configuration.md lacks `{env}`"
        );
    }
}

/// The default a flag's help or the docs' table shows must be the one in code (one
/// default per key, declared by the crate that owns the key). Keys whose default is
/// empty ("derived") are described in words instead, and are skipped.
#[test]
fn help_and_doc_defaults_are_the_defaults_in_code() {
    let defaults = ServerConfig::default();
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let cmd = command();
    for (key, flag, _) in OPTIONS {
        let want = lookup(&defaults, key);
        if want.is_empty() {
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.trim_start_matches("--")))
            .unwrap();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some((_, rest)) = help.split_once("[default: ") {
            let shown = rest.split(']').next().unwrap();
            // `[default: $ENV_VAR, else false]`: a default taken from another tool's
            // environment variable when it is set; the code's default is the fallback.
            let fallback = shown.rsplit_once(", else ").map_or(shown, |(_, f)| f);
            assert_eq!(fallback, want, "{flag} --help says [default: {shown}]");
        }
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        let default_cell = row.split(" | ").nth(3).unwrap();
        let shown = default_cell.split('`').nth(1).unwrap_or_default();
        assert_eq!(shown, want, "docs/configuration.md gives {key} = `{shown}`");
    }
}

#[test]
fn auth_token_is_not_printed_by_debug() {
    let mut cfg = ServerConfig::default();
    cfg.auth.token = "hunter2".into();
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert_eq!(cfg.auth.token(), Some("hunter2"));
}

#[test]
fn rollup_entries_parse_with_defaults_and_refuse_a_clashing_ttl() {
    let text = r#"
[[rollup]]
name = "cpu_1h"
database = "metrics"
from = "cpu"
aggregates = ["avg", "max"]
every = "1h"
"#;
    let cfg = ServerConfig::from_toml(text).unwrap();
    let r = &cfg.rollup[0];
    assert_eq!((r.name.as_str(), r.source.as_str()), ("cpu_1h", "cpu"));
    assert_eq!(r.every, Duration::from_secs(3600));
    assert_eq!(r.grace_period, Duration::from_secs(600));
    assert!(r.retention.is_none() && r.fields.is_empty());

    let clash = format!("{text}\n[retention.overrides]\n\"metrics.cpu_1h\" = \"1d\"\n");
    let err = ServerConfig::from_toml(&clash).unwrap_err();
    assert!(err.contains("rollup[0] (metrics.cpu_1h)"), "{err}");
    let err = ServerConfig::from_toml(&text.replace("every", "evry")).unwrap_err();
    assert!(err.contains("evry"), "{err}");
}
