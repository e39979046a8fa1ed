//! What `bench query` reports per system and query type, and the table it prints.

use serde::Serialize;

use super::stats::Dist;

#[derive(Debug, Serialize)]
pub(crate) struct QueryResult {
    pub(crate) query: String,
    /// Absent if the system cannot ask this question (see `unsupported`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency: Option<Dist>,
    /// Rows (Bulkhead, DuckDB), points (InfluxDB: rows of its `values`) or points summed
    /// over series (VictoriaMetrics: Bulkhead's rows x metrics) returned by the last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rows: Option<usize>,
    /// DuckDB, VictoriaMetrics: whether the answer agreed with Bulkhead's in every run
    /// (else how it differs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) check: Option<String>,
    /// Why the system cannot express this type (VictoriaMetrics' n/a types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unsupported: Option<String>,
    /// The last run's query text.
    pub(crate) example: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct SystemResult {
    pub(crate) system: String,
    pub(crate) language: String,
    pub(crate) queries: Vec<QueryResult>,
}

pub(crate) fn print_table(results: &[SystemResult]) {
    print!("{:<24}", "query");
    for r in results {
        print!(" {:>31}", format!("{} {} p50/p99 ms", r.system, r.language));
        let vm = r.system == "victoriametrics";
        print!(" {:>8}", if vm { "points" } else { "rows" });
    }
    if results.len() > 1 {
        print!("  p50 / bulkhead sql p50");
    }
    println!();
    let na = || "n/a".to_string();
    for k in 0..results[0].queries.len() {
        print!("{:<24}", results[0].queries[k].query);
        for r in results {
            let q = &r.queries[k];
            let latency = q
                .latency
                .map(|l| format!("{:.1}/{:.1}", l.p50_ms, l.p99_ms));
            let rows = q.rows.map(|n| n.to_string());
            print!(
                " {:>31} {:>8}",
                latency.unwrap_or_else(na),
                rows.unwrap_or_else(na)
            );
        }
        let base = results[0].queries[k].latency.map_or(f64::NAN, |l| l.p50_ms);
        for r in &results[1..] {
            let ratio = r.queries[k]
                .latency
                .map(|l| format!("{:.2}", l.p50_ms / base));
            print!("  {}", ratio.unwrap_or_else(na));
        }
        println!();
    }
    for r in &results[1..] {
        let checks: Vec<(&str, &str)> = r
            .queries
            .iter()
            .filter_map(|q| Some((q.query.as_str(), q.check.as_deref()?)))
            .collect();
        let bad: Vec<_> = checks
            .iter()
            .filter(|(_, c)| c.starts_with("DIFFERS"))
            .collect();
        if !checks.is_empty() && bad.is_empty() {
            let what = match r.system.as_str() {
                "victoriametrics" => {
                    "answers as bulkhead in every run of every type it can express"
                }
                _ => "rows as bulkhead in every run of every type",
            };
            println!("{}: same {what}", r.system);
        }
        for (q, c) in bad {
            println!("{} {q}: {c}", r.system);
        }
    }
}
