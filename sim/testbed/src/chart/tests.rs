//! Charts are well-formed, carry their text, survive bad input, and depend on nothing but input.

use std::path::PathBuf;

use super::*;

fn latency_buckets() -> Vec<Bucket> {
    // Log-spaced buckets, four per decade from 0.1 ms to 1 s, with a long tail.
    let bounds: Vec<f64> = (0..=16)
        .map(|i| [1.0, 1.78, 3.16, 5.62][i % 4] * [0.1, 1.0, 10.0, 100.0, 1000.0][i / 4])
        .collect();
    let counts = [
        0, 3, 40, 310, 1200, 2100, 900, 260, 75, 30, 12, 6, 2, 1, 0, 1,
    ];
    let mut buckets: Vec<Bucket> = bounds
        .windows(2)
        .zip(counts)
        .map(|(w, count)| Bucket {
            low: w[0],
            high: w[1],
            count,
        })
        .collect();
    buckets.insert(
        0,
        Bucket {
            low: 0.0,
            high: 0.1,
            count: 2,
        },
    );
    buckets
}

fn throughput_series() -> Vec<Series> {
    let shape = |scale: f64, dip_from: f64| -> Vec<(f64, f64)> {
        (0..=120)
            .map(|i| {
                let t = f64::from(i) * 0.5;
                let v = if (dip_from..dip_from + 8.0).contains(&t) {
                    scale * 0.1
                } else {
                    scale + f64::from(i % 7) * scale * 0.02
                };
                (t, v)
            })
            .collect()
    };
    vec![
        Series {
            name: "acked/s".into(),
            points: shape(1000.0, 20.0),
        },
        Series {
            name: "consumed/s".into(),
            points: shape(950.0, 21.0),
        },
    ]
}

fn fault_markers() -> Vec<Marker> {
    vec![
        Marker {
            at_s: 20.0,
            label: "partition b1".into(),
        },
        Marker {
            at_s: 28.0,
            label: "heal".into(),
        },
        Marker {
            at_s: 45.0,
            label: "crash b2".into(),
        },
    ]
}

fn sweep_series() -> Vec<SweepSeries> {
    let line = |base: f64| -> Vec<SweepPoint> {
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
            .iter()
            .map(|&x| SweepPoint {
                x,
                median: base * x.sqrt(),
                min: base * x.sqrt() * 0.8,
                max: base * x.sqrt() * 1.5,
            })
            .collect()
    };
    vec![
        SweepSeries {
            name: "acks=all".into(),
            points: line(2.0),
        },
        SweepSeries {
            name: "acks=1".into(),
            points: line(0.7),
        },
    ]
}

fn latency_parts() -> (Vec<String>, Vec<Part>) {
    let categories = vec!["p50".into(), "p99".into(), "p99.9".into()];
    let part = |name: &str, values: [f64; 3]| Part {
        name: name.into(),
        values: values.to_vec(),
    };
    let parts = vec![
        part("client wait", [0.2, 1.5, 4.0]),
        part("network", [0.5, 2.0, 6.0]),
        part("broker append", [0.3, 1.0, 3.5]),
        part("replication", [0.8, 4.0, 12.0]),
        part("consumer fetch", [0.4, 3.0, 9.0]),
    ];
    (categories, parts)
}

/// All four charts over the sample data, named.
fn sample_charts() -> Vec<(&'static str, String)> {
    let (categories, parts) = latency_parts();
    vec![
        (
            "histogram",
            histogram("Produce latency", "latency (ms)", &latency_buckets()).unwrap(),
        ),
        (
            "time_series",
            time_series(
                "Throughput",
                "messages/s",
                &throughput_series(),
                &fault_markers(),
            )
            .unwrap(),
        ),
        (
            "sweep",
            sweep(
                "p99 vs. producers",
                "producers",
                "p99 latency (ms)",
                true,
                true,
                &sweep_series(),
            )
            .unwrap(),
        ),
        (
            "stacked_bars",
            stacked_bars("End-to-end latency", "ms", &categories, &parts).unwrap(),
        ),
        (
            "sweep_bounded",
            sweep_with(
                "Throughput vs. batch size",
                "messages per batch",
                "acks / s",
                true,
                false,
                &sweep_series(),
                &Extras {
                    legend_title: Some("acknowledgements".into()),
                    bounds: vec![
                        Bound::horizontal("offered load", 12.0),
                        Bound::through("window x batch / RTT", vec![(1.0, 0.5), (32.0, 16.0)]),
                    ],
                    y_from_data: false,
                    x_label: None,
                },
            )
            .unwrap(),
        ),
        ("bars", bars_sample()),
    ]
}

fn bars_sample() -> String {
    let bar = |category: &str, median: f64, spread: f64| Bar {
        category: category.into(),
        median,
        min: median - spread,
        max: median + spread,
    };
    bars(
        "Sends that failed",
        "messages per batch",
        "failed sends",
        &[
            bar("1", 900.0, 80.0),
            bar("4", 12.0, 4.0),
            bar("16", 0.0, 0.0),
        ],
        &Extras::default(),
    )
    .unwrap()
}

fn assert_well_formed(name: &str, svg: &str) {
    assert!(
        svg.starts_with("<svg "),
        "{name}: {}",
        &svg[..svg.len().min(80)]
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{name}");
    assert!(svg.contains(r#"width="800" height="400""#), "{name}");
    for bad in ["NaN", "inf"] {
        assert!(!svg.contains(bad), "{name} prints {bad}");
    }
}

#[test]
fn every_chart_is_an_svg_document_with_its_title_and_legend() {
    let charts = sample_charts();
    for (name, svg) in &charts {
        assert_well_formed(name, svg);
    }
    let text = |name: &str| &charts.iter().find(|(n, _)| *n == name).unwrap().1;
    assert!(text("histogram").contains("Produce latency"));
    assert!(text("histogram").contains("latency (ms)"));
    let time = text("time_series");
    for needle in [
        "Throughput",
        "acked/s",
        "consumed/s",
        "partition b1",
        "heal",
        "time (s)",
    ] {
        assert!(time.contains(needle), "time_series lacks {needle}");
    }
    let sweep = text("sweep");
    for needle in ["p99 vs. producers", "acks=all", "acks=1", "producers"] {
        assert!(sweep.contains(needle), "sweep lacks {needle}");
    }
    let bars = text("stacked_bars");
    for needle in [
        "End-to-end latency",
        "client wait",
        "consumer fetch",
        "p99.9",
    ] {
        assert!(bars.contains(needle), "stacked_bars lacks {needle}");
    }
}

#[test]
fn log_axis_labels_are_exact_decimals() {
    // Guards against libm-dependent tick values: a log axis must print "0.1", "1", "10".
    let svg = histogram("h", "ms", &latency_buckets()).unwrap();
    for label in [
        ">\n0.1\n<",
        ">\n1\n<",
        ">\n10\n<",
        ">\n100\n<",
        ">\n1000\n<",
    ] {
        assert!(svg.contains(label), "missing tick {label}");
    }
}

#[test]
fn same_input_gives_identical_svg() {
    assert_eq!(sample_charts(), sample_charts());
}

#[test]
fn output_depends_only_on_input_not_on_thread_or_history() {
    // Draw unrelated charts first, so that any cache or counter kept by plotters would show,
    // then compare with a fresh thread that draws only the samples.
    let _warm_up = time_series("other", "y", &[], &[]).unwrap();
    let here = sample_charts();
    let fresh = std::thread::spawn(sample_charts).join().unwrap();
    assert_eq!(here, fresh);
}

/// FNV-1a, to pin the exact bytes without a dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn output_bytes_are_pinned_so_reports_regenerate_identically() {
    // If this fails after a dependency or code change, every committed chart will change too:
    // regenerate the reports in the same commit and update the digests here.
    let digests: Vec<(&str, String)> = sample_charts()
        .iter()
        .map(|(name, svg)| (*name, format!("{:016x}", fnv1a(svg.as_bytes()))))
        .collect();
    let expected: [(&str, &str); 6] = [
        ("histogram", "19c01ad0c7c38f4d"),
        ("time_series", "3677240eadd2f517"),
        ("sweep", "b49bf8bc6499fbff"),
        ("stacked_bars", "e738ff6fb0761698"),
        ("sweep_bounded", "5162b99ba479da17"),
        ("bars", "7eee8d8be08e2da6"),
    ];
    let expected: Vec<(&str, String)> = expected
        .iter()
        .map(|(n, d)| (*n, (*d).to_owned()))
        .collect();
    assert_eq!(digests, expected);
}

#[test]
fn empty_input_still_draws_a_chart() {
    let charts = [
        histogram("empty", "ms", &[]),
        time_series("empty", "y", &[], &[]),
        sweep("empty", "x", "y", true, true, &[]),
        sweep("empty", "x", "y", false, false, &[]),
        stacked_bars("empty", "ms", &[], &[]),
        time_series(
            "empty series",
            "y",
            &[Series {
                name: "none".into(),
                points: vec![],
            }],
            &[],
        ),
    ];
    for chart in charts {
        assert_well_formed("empty", &chart.unwrap());
    }
}

#[test]
fn single_points_and_flat_data_get_a_padded_axis() {
    let one = Series {
        name: "one".into(),
        points: vec![(3.0, 7.0)],
    };
    let flat = Series {
        name: "flat".into(),
        points: vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)],
    };
    let single_sweep = SweepSeries {
        name: "s".into(),
        points: vec![SweepPoint {
            x: 4.0,
            median: 2.0,
            min: 2.0,
            max: 2.0,
        }],
    };
    let one_bucket = Bucket {
        low: 5.0,
        high: 5.5,
        count: 9,
    };
    let zero_bucket = Bucket {
        low: 1.0,
        high: 2.0,
        count: 0,
    };
    let charts = [
        time_series("one", "y", &[one], &[]),
        time_series("flat", "y", &[flat], &[]),
        sweep(
            "one",
            "x",
            "y",
            true,
            true,
            std::slice::from_ref(&single_sweep),
        ),
        sweep("one", "x", "y", false, false, &[single_sweep]),
        histogram("one", "ms", &[one_bucket]),
        histogram("zeros", "ms", &[zero_bucket]),
        stacked_bars(
            "zeros",
            "ms",
            &["a".into()],
            &[Part {
                name: "p".into(),
                values: vec![0.0],
            }],
        ),
    ];
    for chart in charts {
        assert_well_formed("degenerate", &chart.unwrap());
    }
}

#[test]
fn unplaceable_values_are_skipped_not_drawn() {
    let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300];
    let series = Series {
        name: "gappy".into(),
        points: vec![
            (0.0, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 2.0),
            (3.0, 4.0),
        ]
        .into_iter()
        .chain(bad.iter().map(|&b| (b, b)))
        .collect(),
    };
    let marker = Marker {
        at_s: f64::NAN,
        label: "never".into(),
    };
    let svg = time_series("gaps", "y", &[series], &[marker]).unwrap();
    assert_well_formed("gaps", &svg);
    assert!(!svg.contains("never"), "a marker at NaN is not drawn");

    let points: Vec<SweepPoint> = bad
        .iter()
        .chain([0.0, -1.0].iter())
        .map(|&b| SweepPoint {
            x: b,
            median: b,
            min: b,
            max: b,
        })
        .chain([SweepPoint {
            x: 1.0,
            median: 1.0,
            min: f64::NAN,
            max: -5.0,
        }])
        .collect();
    for (log_x, log_y) in [(true, true), (false, false), (true, false)] {
        let s = SweepSeries {
            name: "bad".into(),
            points: points.clone(),
        };
        assert_well_formed(
            "sweep",
            &sweep("bad", "x", "y", log_x, log_y, &[s]).unwrap(),
        );
    }

    let buckets: Vec<Bucket> = bad
        .iter()
        .map(|&b| Bucket {
            low: b,
            high: b,
            count: 1,
        })
        .chain([Bucket {
            low: -2.0,
            high: -1.0,
            count: 5,
        }])
        .collect();
    assert_well_formed("histogram", &histogram("bad", "ms", &buckets).unwrap());

    let parts = [Part {
        name: "bad".into(),
        values: bad.iter().copied().chain([-3.0]).collect(),
    }];
    let categories: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
    assert_well_formed(
        "bars",
        &stacked_bars("bad", "ms", &categories, &parts).unwrap(),
    );
}

#[test]
fn inputs_beyond_the_limits_are_refused() {
    let many: Vec<Series> = (0..=SERIES_MAX)
        .map(|i| Series {
            name: format!("s{i}"),
            points: vec![],
        })
        .collect();
    assert!(matches!(
        time_series("t", "y", &many, &[]),
        Err(ChartError::TooMany { what: "series", .. })
    ));
    let long = Series {
        name: "long".into(),
        points: vec![(0.0, 0.0); POINTS_PER_SERIES_MAX + 1],
    };
    assert!(matches!(
        time_series("t", "y", &[long], &[]),
        Err(ChartError::TooMany { .. })
    ));
    let buckets = vec![
        Bucket {
            low: 1.0,
            high: 2.0,
            count: 1
        };
        BUCKETS_MAX + 1
    ];
    assert!(histogram("h", "ms", &buckets).is_err());
    let categories = vec![String::new(); CATEGORIES_MAX + 1];
    assert!(stacked_bars("b", "ms", &categories, &[]).is_err());
}

#[test]
fn long_legend_names_wrap_and_are_never_cut() {
    // p4-send-modes had two series cut to the same "fire-and-forget…".
    let names = ["fire-and-forget, acks=0", "fire-and-forget, acks=1"];
    let series: Vec<Series> = names
        .iter()
        .map(|n| Series {
            name: (*n).into(),
            points: vec![(0.0, 1.0), (1.0, 2.0)],
        })
        .collect();
    let svg = time_series("t", "y", &series, &[]).unwrap();
    assert!(!svg.contains('…'), "nothing is cut");
    for line in ["fire-and-forget,", "acks=0", "acks=1"] {
        assert!(svg.contains(line), "legend lacks {line}");
    }
    let word = "a-very-long-series-name-without-spaces";
    assert_eq!(
        frame::wrap(word, 18),
        ["a-very-long-series", "-name-without-spac", "es"]
    );
    assert_eq!(
        frame::wrap("replication and commit", 18),
        ["replication and", "commit"]
    );
    assert_eq!(frame::wrap("", 18), [""]);
}

#[test]
fn a_legend_title_names_what_the_series_stand_for() {
    let extras = Extras {
        legend_title: Some("broker cores".into()),
        ..Extras::default()
    };
    let svg = sweep_with("t", "x", "y", false, false, &sweep_series(), &extras).unwrap();
    assert!(svg.contains("broker cores"));
    assert!(!sweep("t", "x", "y", false, false, &sweep_series())
        .unwrap()
        .contains("broker cores"));
}

#[test]
fn a_bound_is_drawn_dashed_named_and_kept_in_view() {
    // The sample sweep peaks near 17; a bound at 1000 must widen the axis to show it.
    let extras = Extras {
        bounds: vec![
            Bound::horizontal("NIC capacity", 1000.0),
            Bound::through("window x batch", vec![(1.0, 2.0), (32.0, 64.0)]),
        ],
        ..Extras::default()
    };
    let plain = sweep("t", "x", "y", false, false, &sweep_series()).unwrap();
    let bounded = sweep_with("t", "x", "y", false, false, &sweep_series(), &extras).unwrap();
    for label in ["NIC capacity", "window x batch", ">\n1000\n<"] {
        assert!(bounded.contains(label), "lacks {label}");
    }
    assert!(!plain.contains(">\n1000\n<"));
    // Dashes: many more short paths than the plain chart has.
    let paths = |svg: &str| svg.matches("<polyline").count();
    assert!(
        paths(&bounded) > paths(&plain) + 20,
        "{} vs {}",
        paths(&bounded),
        paths(&plain)
    );
    // Bounds obey their own limit.
    let many = Extras {
        bounds: vec![Bound::horizontal("b", 1.0); BOUNDS_MAX + 1],
        ..Extras::default()
    };
    assert!(sweep_with("t", "x", "y", false, false, &[], &many).is_err());
}

#[test]
fn linear_y_axes_start_at_zero_unless_the_chart_says_otherwise() {
    let high = Series {
        name: "s".into(),
        points: vec![(10.0, 50.0), (11.0, 60.0)],
    };
    let zero_tick = ">\n0\n<";
    let from_zero = time_series("t", "y", std::slice::from_ref(&high), &[]).unwrap();
    assert!(from_zero.contains(zero_tick));
    let fitted = time_series_with(
        "t",
        "y",
        &[high],
        &[],
        &Extras {
            y_from_data: true,
            ..Extras::default()
        },
    )
    .unwrap();
    assert!(!fitted.contains(zero_tick));
}

#[test]
fn bars_have_an_x_title_whiskers_and_visible_zeros() {
    let bar = |category: &str, median: f64, min: f64, max: f64| Bar {
        category: category.into(),
        median,
        min,
        max,
    };
    let with_zero = [bar("1", 0.0, 0.0, 0.0), bar("4", 10.0, 8.0, 12.0)];
    // The same y extent, so that only the bars differ.
    let without = [bar("1", 12.0, 12.0, 12.0), bar("4", 10.0, 10.0, 10.0)];
    let svg =
        |b: &[Bar]| bars("t", "messages per batch", "acks / s", b, &Extras::default()).unwrap();
    let (zero, plain) = (svg(&with_zero), svg(&without));
    assert_well_formed("bars", &zero);
    assert!(zero.contains("messages per batch"));
    let rects = |svg: &str| svg.matches("<rect").count();
    // Both draw two bars; the zero one is a thin block, not nothing.
    assert_eq!(rects(&zero), rects(&plain));
    // A whisker is a line and two caps.
    let lines = |svg: &str| svg.matches("<polyline").count();
    assert_eq!(lines(&zero), lines(&plain) + 3);
}

#[test]
fn sample_charts_are_written_for_inspection() {
    // For a person to look at: target/chart-samples/*.svg (target/ is ignored by git).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/chart-samples");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, svg) in sample_charts() {
        std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
    }
}

#[test]
fn a_time_series_takes_its_x_axis_title_from_extras() {
    let extras = Extras {
        legend_title: Some("consumer, process time".into()),
        x_label: Some("simulated time (s)".into()),
        ..Extras::default()
    };
    let svg = time_series_with(
        "Backlog",
        "messages waiting",
        &throughput_series(),
        &[],
        &extras,
    )
    .unwrap();
    assert_well_formed("time_series x_label", &svg);
    for needle in [
        "simulated time (s)",
        "messages waiting",
        "consumer, process",
    ] {
        assert!(svg.contains(needle), "lacks {needle}");
    }
    assert!(
        !svg.contains(">\ntime (s)\n<"),
        "the default title is replaced"
    );
}
