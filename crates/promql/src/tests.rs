//! End-to-end evaluation over in-memory series: parse, fetch from a model store, evaluate.

use super::*;

fn labels(p: &[(&str, &str)]) -> Labels {
    Labels::new(
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

/// Two counters and a gauge, one sample every 15 s from t = 0 to 600 s.
fn store() -> Vec<RawSeries> {
    let times: Vec<i64> = (0..=40).map(|i| i * 15_000).collect();
    let c1: Vec<f64> = (0..=40).map(|i| (i * 3) as f64).collect();
    let c2: Vec<f64> = (0..=40)
        .map(|i| {
            if i < 20 {
                i as f64 * 10.0
            } else {
                (i - 20) as f64 * 10.0
            }
        })
        .collect();
    let g: Vec<f64> = (0..=40).map(|i| ((i % 7) as f64) - 2.5).collect();
    vec![
        RawSeries {
            labels: labels(&[(NAME, "reqs"), ("job", "a"), ("code", "200")]),
            times: times.clone(),
            values: c1,
        },
        RawSeries {
            labels: labels(&[(NAME, "reqs"), ("job", "b"), ("code", "500")]),
            times: times.clone(),
            values: c2,
        },
        RawSeries {
            labels: labels(&[(NAME, "temp"), ("job", "a")]),
            times,
            values: g,
        },
    ]
}

fn run(q: &str, params: EvalParams) -> Result<Value> {
    let expr = parse(q)?;
    let all = store();
    let mut data = Data::new();
    for f in fetches(&expr, &params)? {
        let series = all
            .iter()
            .filter(|s| f.selects(|n| s.labels.get(n).to_string()))
            .map(|s| {
                let (lo, hi) = s.window(f.min_ms, f.max_ms);
                RawSeries {
                    labels: s.labels.clone(),
                    times: s.times[lo..hi].to_vec(),
                    values: s.values[lo..hi].to_vec(),
                }
            })
            .collect();
        data.insert(f.key.clone(), series);
    }
    evaluate(&expr, &params, &data, Limits::default())
}

fn instant(q: &str, t_s: i64) -> Vec<(String, f64)> {
    let v = run(q, EvalParams::instant(t_s * 1000)).unwrap_or_else(|e| panic!("{q}: {e}"));
    let Value::Vector(series) = v else {
        panic!("{q}: not a vector: {v:?}")
    };
    let mut out: Vec<(String, f64)> = series
        .into_iter()
        .filter_map(|s| s.values[0].map(|v| (s.labels.to_string(), v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn selectors_and_lookback() {
    assert_eq!(
        instant("reqs{job=\"a\"}", 100),
        vec![(r#"{__name__="reqs", code="200", job="a"}"#.into(), 18.0)]
    );
    // 5 minutes after the last sample (600 s) it is still seen; 1 ms later not.
    assert_eq!(instant("temp", 900).len(), 1);
    assert!(
        run("temp", EvalParams::instant(900_001))
            .is_ok_and(|v| matches!(v, Value::Vector(s) if s.is_empty()))
    );
    assert_eq!(instant("reqs offset 1m", 100)[0].1, 6.0);
    assert_eq!(instant("reqs @ 30", 600)[0].1, 6.0);
    assert_eq!(instant("{__name__=~\"re.*\", code!=\"200\"}", 60).len(), 1);
}

#[test]
fn rate_increase_and_aggregations() {
    let r = instant("rate(reqs{job=\"a\"}[1m])", 300);
    assert!((r[0].1 - 0.2).abs() < 1e-12, "{r:?}");
    assert_eq!(r[0].0, r#"{code="200", job="a"}"#);
    // The counter reset at 300 s is added back.
    let inc = instant("increase(reqs{job=\"b\"}[2m])", 360);
    assert!((inc[0].1 - 70.0).abs() < 1e-9, "{inc:?}");
    assert_eq!(instant("resets(reqs[10m])", 600)[1].1, 1.0);
    assert_eq!(instant("sum(reqs)", 150), vec![("{}".into(), 130.0)]);
    assert_eq!(
        instant("count by (job) (reqs)", 150),
        vec![(r#"{job="a"}"#.into(), 1.0), (r#"{job="b"}"#.into(), 1.0)]
    );
    assert_eq!(
        instant("topk(1, reqs)", 150)[0].0,
        r#"{__name__="reqs", code="500", job="b"}"#
    );
    assert_eq!(instant("max_over_time(temp[2m])", 600)[0].1, 3.5);
}

#[test]
fn binary_operators_and_matching() {
    // One-to-one on `job`: temp (job a) against reqs (job a).
    let v = instant("reqs + on(job) temp", 150);
    assert_eq!(
        v,
        vec![(r#"{job="a"}"#.into(), 30.0 + (10 % 7) as f64 - 2.5)]
    );
    let v = instant("reqs > bool 50", 150);
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|(l, _)| !l.contains("__name__")));
    assert_eq!(instant("reqs > 50", 150).len(), 1);
    assert_eq!(instant("reqs and on(job) temp", 150).len(), 1);
    assert_eq!(instant("reqs unless on(job) temp", 150).len(), 1);
    assert_eq!(instant("reqs or temp", 150).len(), 3);
    let err = run("reqs + ignoring(code) reqs", EvalParams::instant(150_000));
    assert!(err.is_ok(), "{err:?}");
    let err = run("temp + on() reqs", EvalParams::instant(150_000)).unwrap_err();
    assert!(err.to_string().contains("many-to-many"), "{err}");
    let v = instant("temp * on(job) group_left(code) reqs", 150);
    assert_eq!(
        v,
        vec![(r#"{code="200", job="a"}"#.into(), 15.0)],
        "code from the one side"
    );
    let v = instant("reqs * on(job) group_left temp", 150);
    assert_eq!(v.len(), 1, "{v:?}");
}

#[test]
fn range_query_steps_and_subqueries() {
    let v = run("sum(reqs)", EvalParams::range(0, 60_000, 15_000)).unwrap();
    let Value::Vector(s) = v else { panic!() };
    assert_eq!(
        s[0].values,
        vec![Some(0.0), Some(13.0), Some(26.0), Some(39.0), Some(52.0)]
    );
    let v = instant("max_over_time(reqs{job=\"a\"}[1m:15s])", 300);
    assert_eq!(v[0].1, 60.0);
    let err = run("reqs[1m]", EvalParams::range(0, 60_000, 15_000)).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    let err = run("histogram_count(reqs)", EvalParams::instant(0)).unwrap_err();
    assert!(err.to_string().contains("native histograms"), "{err}");
}

#[test]
fn limits_stop_evaluation() {
    let expr = parse("sum(rate(reqs[5m]))").unwrap();
    let params = EvalParams::range(0, 600_000, 15_000);
    let data = Data::new();
    let past = Limits {
        deadline: Some(std::time::Instant::now() - std::time::Duration::from_millis(1)),
        ..Limits::default()
    };
    assert_eq!(
        evaluate(&expr, &params, &data, past)
            .unwrap_err()
            .error_type(),
        "timeout"
    );
    let expr = parse("reqs").unwrap();
    let mut data = Data::new();
    let all = store();
    for f in fetches(&expr, &params).unwrap() {
        data.insert(f.key.clone(), all.clone());
    }
    let tiny = Limits {
        deadline: None,
        max_points: 10,
    };
    let err = evaluate(&expr, &params, &data, tiny).unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    assert!(evaluate(&expr, &params, &data, Limits::default()).is_ok());
}

#[test]
fn smoothing_factors_are_checked() {
    let err = run(
        "double_exponential_smoothing(temp[5m], 1.5, 0.5)",
        EvalParams::instant(300_000),
    )
    .unwrap_err();
    assert_eq!(err.error_type(), "bad_data", "{err}");
    assert_eq!(
        instant("double_exponential_smoothing(temp[5m], 0.5, 0.5)", 300).len(),
        1
    );
    assert_eq!(instant("mad_over_time(temp[5m])", 300).len(), 1);
}
