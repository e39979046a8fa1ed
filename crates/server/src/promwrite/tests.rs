//! Decoder tests: the mapping, every rejection, and property tests that no input
//! panics (random bytes, random protobuf behind valid snappy, mutated valid bodies).

use proptest::prelude::*;

use super::*;

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries::new(labels, samples)
}

fn request(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    encode(&WriteRequest { timeseries })
}

/// (table, tags, value, time) of every row.
type FlatRow = (String, Vec<(SmolStr, SmolStr)>, f64, i64);

fn rows(d: &Decoded) -> Vec<FlatRow> {
    d.batch
        .tables
        .iter()
        .flat_map(|t| {
            t.rows.iter().map(move |r| {
                let FieldValue::F64(v) = r.fields[0].1 else {
                    panic!("not a float: {r:?}")
                };
                assert_eq!(r.fields.len(), 1);
                assert_eq!(r.fields[0].0, "value");
                (t.table.clone(), r.tags.clone(), v, r.time)
            })
        })
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(SmolStr, SmolStr)> {
    pairs
        .iter()
        .map(|(k, v)| (SmolStr::new(k), SmolStr::new(v)))
        .collect()
}

#[test]
fn maps_names_to_tables_labels_to_sorted_tags_and_ms_to_ns() {
    let body = request(vec![
        series(
            &[("job", "prom"), ("__name__", "up"), ("instance", "h:9090")],
            &[(1.0, 1_700_000_000_000), (0.0, 1_700_000_001_500)],
        ),
        series(
            &[("__name__", "node:cpu:rate5m"), ("cpu", "0"), ("empty", "")],
            &[(0.25, -5)],
        ),
        series(&[("__name__", "up"), ("job", "other")], &[(1.0, 7)]),
    ]);
    let d = decode(&body).unwrap();
    assert_eq!(d.series, 3);
    assert_eq!(d.stale_dropped, 0);
    assert!(d.decompressed_bytes > 0);
    let up = tags(&[("instance", "h:9090"), ("job", "prom")]);
    assert_eq!(
        rows(&d),
        vec![
            ("up".into(), up.clone(), 1.0, 1_700_000_000_000_000_000),
            ("up".into(), up, 0.0, 1_700_000_001_500_000_000),
            ("up".into(), tags(&[("job", "other")]), 1.0, 7_000_000),
            (
                "node:cpu:rate5m".into(),
                tags(&[("cpu", "0")]),
                0.25,
                -5_000_000
            ),
        ]
    );
    assert_eq!(d.batch.tables.len(), 2, "one table entry per metric");
}

#[test]
fn staleness_markers_are_dropped_other_nans_and_infinities_kept() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    assert!(stale.is_nan());
    let body = request(vec![series(
        &[("__name__", "m")],
        &[
            (stale, 1),
            (f64::NAN, 2),
            (f64::INFINITY, 3),
            (f64::NEG_INFINITY, 4),
        ],
    )]);
    let d = decode(&body).unwrap();
    assert_eq!(d.stale_dropped, 1);
    let got: Vec<(f64, i64)> = rows(&d).into_iter().map(|r| (r.2, r.3)).collect();
    assert_eq!(got.len(), 3);
    assert!(got[0].0.is_nan() && got[0].0.to_bits() != STALE_NAN_BITS);
    assert_eq!(got[1], (f64::INFINITY, 3_000_000));
    assert_eq!(got[2], (f64::NEG_INFINITY, 4_000_000));
    // A series of nothing but staleness markers writes nothing.
    let d = decode(&request(vec![series(&[("__name__", "m")], &[(stale, 1)])])).unwrap();
    assert!(d.batch.is_empty());
}

#[test]
fn empty_requests_and_series_without_samples_write_nothing() {
    let d = decode(&request(Vec::new())).unwrap();
    assert!(d.batch.is_empty());
    let mut s = series(&[("__name__", "h")], &[]);
    s.histograms.push(vec![1, 2, 3]);
    s.exemplars.push(vec![]);
    let d = decode(&request(vec![s])).unwrap();
    assert!(d.batch.is_empty());
    assert_eq!((d.histograms_ignored, d.exemplars_ignored), (1, 1));
}

#[test]
fn invalid_series_reject_the_whole_request_naming_the_series() {
    let ok = series(&[("__name__", "up")], &[(1.0, 1)]);
    let cases: Vec<(TimeSeries, &str)> = vec![
        (series(&[("job", "x")], &[(1.0, 1)]), "no metric name"),
        (
            series(&[("__name__", ""), ("job", "x")], &[(1.0, 1)]),
            "metric name (`__name__`) is empty",
        ),
        (
            series(&[("__name__", "m"), ("", "x")], &[(1.0, 1)]),
            "empty name",
        ),
        (
            series(&[("__name__", "m"), ("a", "1"), ("a", "2")], &[(1.0, 1)]),
            "label `a` appears twice",
        ),
        (
            series(&[("__name__", "m"), ("__name__", "n")], &[(1.0, 1)]),
            "label `__name__` appears twice",
        ),
        (
            series(&[("__name__", "m"), ("time", "t")], &[(1.0, 1)]),
            "label `time` collides",
        ),
        (
            series(&[("__name__", "m"), ("value", "v")], &[(1.0, 1)]),
            "label `value` collides",
        ),
        (
            series(&[("__name__", "m")], &[(1.0, i64::MAX / 1000)]),
            "is out of range",
        ),
    ];
    for (bad, want) in cases {
        let body = request(vec![ok.clone(), bad]);
        let err = decode(&body).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, PromWriteError::Invalid(_)) && msg.contains(want),
            "want `{want}`: {msg}"
        );
        assert!(
            msg.starts_with("series {") || msg.contains("of series {"),
            "{msg}"
        );
    }
}

#[test]
fn label_limit_counts_tags_not_the_name() {
    let opts = DecodeOptions {
        max_labels: 2,
        ..DecodeOptions::default()
    };
    let two = request(vec![series(
        &[("__name__", "m"), ("a", "1"), ("b", "2")],
        &[(1.0, 1)],
    )]);
    assert!(decode_with(&two, &opts).is_ok());
    let three = request(vec![series(
        &[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3")],
        &[(1.0, 1)],
    )]);
    let err = decode_with(&three, &opts).unwrap_err().to_string();
    assert!(err.contains("limits.max_tags_per_line"), "{err}");
}

#[test]
fn malformed_bodies_are_errors_of_the_right_kind() {
    assert_eq!(decode(b""), Err(PromWriteError::Empty));
    assert!(matches!(
        decode(b"this is not snappy at all"),
        Err(PromWriteError::Snappy(_))
    ));
    // The uncompressed protobuf itself (a common client mistake) is not snappy.
    let raw = WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1)])],
    }
    .encode_to_vec();
    assert!(matches!(decode(&raw), Err(PromWriteError::Snappy(_))));
    // Valid snappy around bytes that are not a WriteRequest.
    let garbage = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])
        .unwrap();
    let err = decode(&garbage).unwrap_err();
    assert!(matches!(err, PromWriteError::Protobuf(_)), "{err}");
    // Invalid UTF-8 in a label is a protobuf error too.
    let mut bytes = WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1)])],
    }
    .encode_to_vec();
    let at = bytes.windows(2).position(|w| w == b"up").unwrap();
    bytes[at] = 0xff;
    let err = decode(&snap::raw::Encoder::new().compress_vec(&bytes).unwrap()).unwrap_err();
    assert!(matches!(err, PromWriteError::Protobuf(_)), "{err}");
}

#[test]
fn declared_decompressed_size_over_the_limit_is_refused_before_allocating() {
    let body = request(vec![series(&[("__name__", "m")], &[(1.0, 1); 100])]);
    let opts = DecodeOptions {
        max_decompressed: 50,
        ..DecodeOptions::default()
    };
    assert!(matches!(
        decode_with(&body, &opts),
        Err(PromWriteError::TooLarge { limit: 50, .. })
    ));
    // A header claiming 4 GiB, with no data behind it.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x10];
    assert!(matches!(
        decode(&bomb),
        Err(PromWriteError::TooLarge { .. }) | Err(PromWriteError::Snappy(_))
    ));
}

#[test]
fn schema_check_names_the_metric_and_column() {
    let d = decode(&request(vec![
        series(&[("__name__", "up"), ("job", "j")], &[(1.0, 1)]),
        series(&[("__name__", "new")], &[(1.0, 1)]),
    ]))
    .unwrap();
    let cols = |fields: &[(&str, FieldType)], tags: &[&str]| TableColumns {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        fields: fields.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
    };
    let integer_value = cols(&[("value", FieldType::I64)], &["job"]);
    let err = check_schema(&d.batch, |t| (t == "up").then(|| integer_value.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table `up`: column `value` has type integer"),
        "{err}"
    );
    let job_field = cols(&[("value", FieldType::F64), ("job", FieldType::Str)], &[]);
    let err = check_schema(&d.batch, |t| (t == "up").then(|| job_field.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("label `job` is a field"), "{err}");
    let value_tag = cols(&[], &["value"]);
    let err = check_schema(&d.batch, |t| (t == "up").then(|| value_tag.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`value` is a tag"), "{err}");
    let fine = cols(&[("value", FieldType::F64)], &["job", "instance"]);
    assert!(check_schema(&d.batch, |t| (t == "up").then(|| fine.clone())).is_ok());
    assert!(check_schema(&d.batch, |_| None).is_ok());
}

#[test]
fn long_series_are_cut_in_messages() {
    let long = "é".repeat(1000);
    let body = request(vec![series(
        &[("a", long.as_str()), ("b", "x")],
        &[(1.0, 1)],
    )]);
    let msg = decode(&body).unwrap_err().to_string();
    assert!(msg.len() < 600, "{}", msg.len());
    assert!(msg.contains("no metric name"), "{msg}");
}

fn arb_series() -> impl Strategy<Value = TimeSeries> {
    let label = (
        prop_oneof![
            Just("__name__".to_string()),
            Just("time".to_string()),
            "[a-c_]{0,3}"
        ],
        "[a-z:]{0,4}",
    )
        .prop_map(|(k, v)| Label::new(k, v));
    let sample =
        (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
    (
        prop::collection::vec(label, 0..5),
        prop::collection::vec(sample, 0..4),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..2),
    )
        .prop_map(|(labels, samples, histograms)| TimeSeries {
            labels,
            samples,
            exemplars: Vec::new(),
            histograms,
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
    }

    #[test]
    fn random_protobuf_behind_valid_snappy_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let result = decode(&body);
        prop_assert!(
            !matches!(result, Err(PromWriteError::Snappy(_))),
            "valid snappy rejected: {:?}",
            result
        );
    }

    #[test]
    fn valid_requests_round_trip_or_fail_cleanly(
        timeseries in prop::collection::vec(arb_series(), 0..4),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let req = WriteRequest { timeseries };
        let body = encode(&req);
        match decode(&body) {
            Ok(d) => {
                let samples: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
                prop_assert_eq!(d.batch.row_count() + d.stale_dropped, samples);
                for t in &d.batch.tables {
                    prop_assert!(!t.table.is_empty());
                    for r in &t.rows {
                        prop_assert!(r.tags.iter().all(|(k, v)| !k.is_empty()
                            && !v.is_empty() && k != "time" && k != "value" && k != NAME_LABEL));
                    }
                }
            }
            Err(e) => prop_assert!(matches!(e, PromWriteError::Invalid(_)), "{e}"),
        }
        // The same body with one bit flipped: any outcome but a panic.
        let mut mutated = body.clone();
        if !mutated.is_empty() {
            let i = flip.index(mutated.len());
            mutated[i] ^= 1 << bit;
        }
        let _ = decode(&mutated);
    }
}
