//! InfluxQL's fast paths against its plain paths on seeded random data, through the real
//! server: `GROUP BY time(iv, offset)` over a measurement (buckets by `date_bin`) against
//! the same query over a subquery (buckets by integer arithmetic on BIGINT time), and an
//! `OR` chain of one tag's values (folded into an `IN` list) against the same hosts as a
//! regex. Times straddle 1970 (negative timestamps), intervals do not divide a day, and
//! offsets are negative and positive. `INFLUXQL_SEEDS=1,2,3` overrides the seeds.

mod common;

use common::TestServer;
use common::influx::{query, same};

const SEC: i64 = 1_000_000_000;
/// The data spans two days either side of 1970-01-01.
const SPAN: i64 = 2 * 86_400 * SEC;

fn seeds() -> Vec<u64> {
    match std::env::var("INFLUXQL_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![3, 17, 2026],
    }
}

/// 4,000 points of measurement `rnd`: six hosts, a float `f`, an integer `i` (missing
/// on a quarter of the points), at random nanoseconds within +-2 days of the epoch.
fn random_data(seed: u64) -> String {
    let mut rng = bulkhead_tsbs::SplitMix64(seed);
    let mut out = String::new();
    for _ in 0..4000 {
        let t = rng.below(2 * SPAN as u64) as i64 - SPAN;
        let host = rng.below(6);
        let f = rng.below(1_000_000) as f64 / 1000.0;
        let i = if rng.below(4) == 0 {
            String::new()
        } else {
            format!(",i={}i", rng.below(1000) as i64 - 500)
        };
        out.push_str(&format!("rnd,host=h{host} f={f}{i} {t}\n"));
    }
    out
}

#[test]
fn group_by_time_and_tag_in_lists_answer_like_the_plain_paths() {
    let server = TestServer::start(&[]);
    let base = format!("http://{}", server.http_addr);
    let mut rng = bulkhead_tsbs::SplitMix64(99);
    let (mut asked, mut points) = (0, 0usize);
    for seed in seeds() {
        let db = format!("fast{seed}");
        let r = server.post(&format!("/write?db={db}"), random_data(seed));
        assert_eq!(r.status, 204, "{}", r.text());
        for k in 0..16 {
            // An interval in seconds that divides neither a minute nor a day (mostly),
            // an offset of either sign, a window of 5-400 buckets.
            let iv = [
                1,
                7,
                60,
                13 * 60,
                3_600,
                5 * 3_600 + 17,
                86_400,
                3 * 86_400 + 1,
            ][rng.below(8) as usize];
            let off = rng.below(2 * iv as u64) as i64 - iv;
            let len = iv * SEC * (5 + rng.below(396) as i64);
            let start = rng.below(2 * SPAN as u64) as i64 - SPAN - len / 2;
            let range = format!("time >= {start} AND time < {}", start + len);
            let mut hosts: Vec<String> = (0..6)
                .filter(|_| rng.below(2) == 0)
                .map(|h| format!("h{h}"))
                .collect();
            if hosts.len() < 2 {
                hosts = vec!["h1".into(), "h4".into()];
            }
            let or_chain: Vec<String> = hosts.iter().map(|h| format!("host = '{h}'")).collect();
            let or_chain = format!("({})", or_chain.join(" OR "));
            let regex = format!("host =~ /^({})$/", hosts.join("|"));
            let by_host = k % 2 == 1;
            let (tag_group, sub_group) = if by_host {
                (", host", " GROUP BY host")
            } else {
                ("", "")
            };
            let aggs = "max(f), min(i), count(f), sum(i), count(i)";
            let fast = format!(
                "SELECT {aggs} FROM rnd WHERE {range} AND {or_chain} \
                 GROUP BY time({iv}s, {off}s){tag_group}"
            );
            let plain = format!(
                "SELECT {aggs} FROM (SELECT f, i FROM rnd WHERE {range} AND {regex}{sub_group}) \
                 WHERE {range} GROUP BY time({iv}s, {off}s){tag_group}"
            );
            let (s1, want) = query(&base, &db, &plain, "");
            let (s2, got) = query(&base, &db, &fast, "");
            assert_eq!((s1, s2), (200, 200), "{plain}: {want}\n{fast}: {got}");
            assert!(
                want["results"][0]["error"].is_null() && got["results"][0]["error"].is_null(),
                "{plain}: {want}\n{fast}: {got}"
            );
            assert!(
                same(&want, &got),
                "seed {seed}: the fast path differs\n  plain: {plain}\n  {want}\n  fast: {fast}\n  {got}"
            );
            asked += 1;
            if let Some(series) = got["results"][0]["series"].as_array() {
                for s in series {
                    points += s["values"].as_array().map_or(0, |v| {
                        v.iter()
                            .filter(|row| !row[3].is_null() && row[3] != 0)
                            .count()
                    });
                }
            }
        }
    }
    // The comparison is only worth something if the answers hold data.
    assert!(
        points > 100,
        "{asked} queries found only {points} non-empty buckets"
    );
}
