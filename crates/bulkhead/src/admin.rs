//! `bulkhead admin flush|compact`: the admin endpoints of a running server, from the CLI.

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    action: Action,
    /// Base URL of the server's HTTP API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:5440",
        env = "BULKHEAD_URL"
    )]
    url: String,
    /// Auth token, when the server requires one.
    #[arg(long, global = true, env = "BULKHEAD_AUTH_TOKEN")]
    auth_token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Flush memtables to SSTs; returns when the flush is committed.
    Flush(Target),
    /// Compact SSTs (and apply retention); returns when done.
    Compact {
        #[command(flatten)]
        target: Target,
        /// Re-encode every SST, even one alone in its segment (e.g. after changing
        /// storage.integer_compression).
        #[arg(long)]
        rewrite: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// Database (all databases when omitted).
    #[arg(long)]
    db: Option<String>,
    /// Table of `--db` (all its tables when omitted).
    #[arg(long, requires = "db")]
    table: Option<String>,
}

pub(crate) fn run(args: AdminArgs) -> anyhow::Result<()> {
    let (path, target, rewrite) = match &args.action {
        Action::Flush(t) => ("flush", t, false),
        Action::Compact { target, rewrite } => ("compact", target, *rewrite),
    };
    let mut query = Vec::new();
    if rewrite {
        query.push(("rewrite", "true".to_string()));
    }
    if let Some(db) = &target.db {
        query.push(("db", db.clone()));
    }
    if let Some(table) = &target.table {
        query.push(("table", table.clone()));
    }
    let url = format!("{}/api/v1/{path}", args.url.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(&url).query(&query);
        if let Some(token) = &args.auth_token {
            req = req.header("Authorization", format!("Token {token}"));
        }
        let resp = req.send().await.with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {url}: {status}: {body}");
        }
        println!(
            "{path}: done{}",
            if body.is_empty() {
                String::new()
            } else {
                format!(" {body}")
            }
        );
        Ok(())
    })
}
