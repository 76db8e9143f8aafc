//! Compares pgfed-encode's RowDescription and DataRow messages with the ones PostgreSQL itself
//! sends for the same values, in text (simple query) and binary (extended query, Bind asking for
//! binary results), under several session settings. Needs the private test cluster
//! (`scripts/test`, docs/testing.md).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::types::IntervalMonthDayNano;
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema};
use bytes::BytesMut;
use pgfed_encode::{BatchEncoder, ColumnSpec, PgType, TextSettings};
use pgfed_testkit::{Msg, RawClient, TestPg, frame, query};

/// One type and a list of values: SQL literals for Postgres, the same values as an Arrow array.
struct Case {
    pg_type: PgType,
    sql_type: &'static str,
    typmod: i32,
    sql: Vec<&'static str>,
    arrow: ArrayRef,
}

fn case(pg_type: PgType, sql_type: &'static str, sql: &[&'static str], arrow: ArrayRef) -> Case {
    assert_eq!(sql.len(), arrow.len(), "{sql_type}: SQL and Arrow value counts differ");
    Case { pg_type, sql_type, typmod: -1, sql: sql.to_vec(), arrow }
}

async fn connect() -> RawClient {
    let pg = TestPg::from_env();
    let addr = format!("{}:{}", pg.host, pg.port).parse().unwrap();
    let mut c = RawClient::connect(addr).await;
    c.startup(&[("user", "postgres"), ("database", &pg.db)]).await;
    let (msgs, _) = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "startup failed: {msgs:?}");
    c
}

async fn exec(c: &mut RawClient, sql: &str) {
    c.send(&query(sql)).await;
    let (msgs, _) = c.until_ready().await;
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        panic!("{sql}: {:?}", e.field(b'M'));
    }
}

fn select_sql(case: &Case) -> String {
    let rows: Vec<String> =
        case.sql.iter().enumerate().map(|(i, v)| format!("({i}, ({v})::{})", case.sql_type)).collect();
    format!("SELECT v FROM (VALUES {}) AS s(i, v) ORDER BY i", rows.join(", "))
}

/// RowDescription and DataRows Postgres sends for `sql`, in text or binary.
async fn postgres_messages(c: &mut RawClient, sql: &str, binary: bool) -> Vec<Msg> {
    if binary {
        let mut parse = b"\0".to_vec();
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        // portal "", statement "", 0 parameter formats, 0 parameters, 1 result format: binary
        let bind = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        let mut msg = frame(b'P', &parse);
        msg.extend(frame(b'B', &bind));
        msg.extend(frame(b'D', b"P\0"));
        msg.extend(frame(b'E', &[0, 0, 0, 0, 0]));
        msg.extend(frame(b'S', b""));
        c.send(&msg).await;
    } else {
        c.send(&query(sql)).await;
    }
    let (msgs, _) = c.until_ready().await;
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        panic!("{sql}: {:?}", e.field(b'M'));
    }
    msgs.into_iter().filter(|m| m.tag == b'T' || m.tag == b'D').collect()
}

fn split(mut buf: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        out.push(Msg { tag: buf[0], body: buf[5..1 + len].to_vec() });
        buf = &buf[1 + len..];
    }
    out
}

fn our_messages(case: &Case, settings: &TextSettings, binary: bool) -> Vec<Msg> {
    let schema = Arc::new(Schema::new(vec![Field::new("v", case.arrow.data_type().clone(), true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![case.arrow.clone()]).unwrap();
    let spec = ColumnSpec { typmod: case.typmod, ..ColumnSpec::of(case.pg_type.clone()) };
    let enc = BatchEncoder::new(schema, &[spec], &[i16::from(binary)], settings.clone()).unwrap();
    let mut out = BytesMut::new();
    enc.write_row_description(&mut out);
    enc.write_data_rows(&batch, &mut out).unwrap_or_else(|e| panic!("{}: {e}", case.sql_type));
    split(&out)
}

fn show(m: &Msg) -> String {
    format!("{}:{}", m.tag as char, String::from_utf8_lossy(&m.body).escape_debug())
}

/// Runs every case in text and binary; returns the mismatches.
async fn compare(c: &mut RawClient, settings: &TextSettings, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let sql = select_sql(case);
        for binary in [false, true] {
            let theirs = postgres_messages(c, &sql, binary).await;
            let ours = our_messages(case, settings, binary);
            assert_eq!(theirs.len(), ours.len(), "{sql}");
            for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
                if t.tag != o.tag || t.body != o.body {
                    let what =
                        if i == 0 { "RowDescription".to_string() } else { format!("value {:?}", case.sql[i - 1]) };
                    failures.push(format!(
                        "{} {} {what}:\n  postgres {}\n  pgfed    {}",
                        case.sql_type,
                        if binary { "binary" } else { "text" },
                        show(t),
                        show(o)
                    ));
                }
            }
        }
    }
    failures
}

// ---- the values ------------------------------------------------------------------------------

const EPOCH_DAYS: i32 = 0; // 1970-01-01 in Date32

fn us(date_days: i64, secs: i64, micros: i64) -> i64 {
    date_days * 86_400_000_000 + secs * 1_000_000 + micros
}

fn scalar_cases() -> Vec<Case> {
    let mut v = vec![
        case(
            PgType::Bool,
            "bool",
            &["true", "false", "NULL"],
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        case(
            PgType::Int2,
            "int2",
            &["-32768", "32767", "0", "NULL"],
            Arc::new(Int16Array::from(vec![Some(i16::MIN), Some(i16::MAX), Some(0), None])),
        ),
        case(
            PgType::Int4,
            "int4",
            &["-2147483648", "2147483647", "-1", "NULL"],
            Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(i32::MAX), Some(-1), None])),
        ),
        case(
            PgType::Int8,
            "int8",
            &["-9223372036854775808", "9223372036854775807", "42", "NULL"],
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), Some(42), None])),
        ),
        case(PgType::Int8, "int8", &["4294967295", "0"], Arc::new(UInt32Array::from(vec![u32::MAX, 0]))),
        case(
            PgType::Float8,
            "float8",
            &[
                "0.1",
                "1e20",
                "1e15",
                "123456789012345",
                "1e-5",
                "0.0001",
                "'-0'",
                "0",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "1.7976931348623157e308",
                "5e-324",
                "2.2250738585072014e-308",
                "1/3.0",
                "-2.5",
                "100",
                "NULL",
            ],
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(1e20),
                Some(1e15),
                Some(123456789012345.0),
                Some(1e-5),
                Some(0.0001),
                Some(-0.0),
                Some(0.0),
                Some(f64::NAN),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(f64::MAX),
                Some(5e-324),
                Some(f64::MIN_POSITIVE),
                Some(1.0 / 3.0),
                Some(-2.5),
                Some(100.0),
                None,
            ])),
        ),
        case(
            PgType::Float4,
            "float4",
            &["0.1", "1e6", "123456", "1e-5", "'-0'", "'NaN'", "'-Infinity'", "3.4028235e38", "1.4e-45", "NULL"],
            Arc::new(Float32Array::from(vec![
                Some(0.1f32),
                Some(1e6),
                Some(123456.0),
                Some(1e-5),
                Some(-0.0),
                Some(f32::NAN),
                Some(f32::NEG_INFINITY),
                Some(f32::MAX),
                Some(1.4e-45),
                None,
            ])),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["0.00", "-1.50", "123456789012345678901234567890123456.78", "10000.00", "0.01", "NULL"],
            Arc::new(
                Decimal128Array::from(vec![
                    Some(0),
                    Some(-150),
                    Some(12345678901234567890123456789012345678),
                    Some(1000000),
                    Some(1),
                    None,
                ])
                .with_precision_and_scale(38, 2)
                .unwrap(),
            ),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["-0.00000000000000000000000000000000000001", "0.00000000000000000000000000000000000000"],
            Arc::new(Decimal128Array::from(vec![-1, 0]).with_precision_and_scale(38, 38).unwrap()),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["0.0001", "123.4500", "-999.9999"],
            Arc::new(Decimal128Array::from(vec![1, 1234500, -9999999]).with_precision_and_scale(7, 4).unwrap()),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["1e30", "5000", "-10000000"],
            Arc::new(
                Decimal128Array::from(vec![1_000_000_000_000_000_000_000_000_000_000, 5000, -10_000_000])
                    .with_precision_and_scale(31, 0)
                    .unwrap(),
            ),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["5000", "-120000"],
            Arc::new(Decimal128Array::from(vec![5, -120]).with_precision_and_scale(10, -3).unwrap()),
        ),
        case(
            PgType::Numeric,
            "numeric",
            &["'NaN'", "'Infinity'", "'-Infinity'", "' 1.5e3 '", "'-0.000'", "'.5'", "'1e-3'", "'00012.340'"],
            Arc::new(StringArray::from(vec![
                "NaN",
                "Infinity",
                "-Infinity",
                " 1.5e3 ",
                "-0.000",
                ".5",
                "1e-3",
                "00012.340",
            ])),
        ),
        case(
            PgType::Text,
            "text",
            &["''", "'héllo wörld ✓ 🐘'", "'NULL'", "'a,b {c} \"d\" \\e'", "NULL"],
            Arc::new(StringArray::from(vec![
                Some(""),
                Some("héllo wörld ✓ 🐘"),
                Some("NULL"),
                Some("a,b {c} \"d\" \\e"),
                None,
            ])),
        ),
        case(PgType::Varchar, "varchar", &["'abc'", "''"], Arc::new(LargeStringArray::from(vec!["abc", ""]))),
        case(PgType::Bpchar, "bpchar", &["'ab  '", "NULL"], Arc::new(StringViewArray::from(vec![Some("ab  "), None]))),
        case(
            PgType::Bytea,
            "bytea",
            &["''", "'\\x00ff7f5c'", "NULL"],
            Arc::new(BinaryArray::from(vec![Some(&b""[..]), Some(&[0x00, 0xff, 0x7f, 0x5c][..]), None])),
        ),
        case(PgType::Bytea, "bytea", &["'\\x0102'"], Arc::new(BinaryViewArray::from(vec![&[1u8, 2][..]]))),
        case(
            PgType::Date,
            "date",
            &[
                "'1970-01-01'",
                "'2000-01-01'",
                "'1999-12-31'",
                "'1900-02-28'",
                "'0044-03-15 BC'",
                "'4714-11-24 BC'",
                "'5874897-12-31'",
                "'2024-02-29'",
                "NULL",
            ],
            Arc::new(Date32Array::from(vec![
                Some(EPOCH_DAYS),
                Some(10957),
                Some(10956),
                Some(-25509),
                Some(-735_160),
                Some(-2_440_588),
                Some(2_147_483_494 - 2_440_588 - 1),
                Some(19782),
                None,
            ])),
        ),
        case(
            PgType::Time,
            "time",
            &["'00:00:00'", "'23:59:59.999999'", "'12:34:56.5'", "'24:00:00'", "NULL"],
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_399_999_999),
                Some(45_296_500_000),
                Some(86_400_000_000),
                None,
            ])),
        ),
        case(
            PgType::Timestamp,
            "timestamp",
            &[
                "'1970-01-01 00:00:00'",
                "'2000-01-01 00:00:00.000001'",
                "'1999-12-31 23:59:59.5'",
                "'0044-03-15 12:00:00 BC'",
                "'9999-12-31 23:59:59.999999'",
                "'4714-11-24 00:00:00 BC'",
                "NULL",
            ],
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(0),
                Some(us(10957, 0, 1)),
                Some(us(10956, 86399, 500_000)),
                Some(us(-735_160, 12 * 3600, 0)),
                Some(253_402_300_799_999_999),
                Some(us(-2_440_588, 0, 0)),
                None,
            ])),
        ),
        case(
            PgType::Interval,
            "interval",
            &[
                "'0'",
                "'1 year 2 months 3 days 04:05:06.789'",
                "'-1 year -2 months'",
                "'-3 days 01:00:00'",
                "'1 day -00:00:01'",
                "'-1 mons +2 days -03:00:00.5'",
                "'1 month'",
                "'-0.000001 sec'",
                "'2562047 hours'",
                "NULL",
            ],
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(0, 0, 0)),
                Some(IntervalMonthDayNano::new(14, 3, (4 * 3600 + 5 * 60 + 6) * 1_000_000_000 + 789_000_000)),
                Some(IntervalMonthDayNano::new(-14, 0, 0)),
                Some(IntervalMonthDayNano::new(0, -3, 3600 * 1_000_000_000)),
                Some(IntervalMonthDayNano::new(0, 1, -1_000_000_000)),
                Some(IntervalMonthDayNano::new(-1, 2, -(3 * 3600 * 1_000_000_000 + 500_000_000))),
                Some(IntervalMonthDayNano::new(1, 0, 0)),
                Some(IntervalMonthDayNano::new(0, 0, -1000)),
                Some(IntervalMonthDayNano::new(0, 0, 2_562_047 * 3600 * 1_000_000_000)),
                None,
            ])),
        ),
        case(
            PgType::Uuid,
            "uuid",
            &["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "NULL"],
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some(vec![
                            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
                            0x11,
                        ]),
                        None,
                    ]
                    .into_iter(),
                    16,
                )
                .unwrap(),
            ),
        ),
    ];
    let json_docs = [
        r#"{"b": 1, "a": [1, 2.50, -0, 1e2, 1E-2], "aa": null, "b": "dup", "c": {"x": true, "y": false}}"#,
        r#"  "\u00e9\n\t\"\\\/\u001f\ud83d\udc18"  "#,
        "[]",
        "{}",
        "12.3400",
        r#"[{"k":"v"},[[]]]"#,
    ];
    let json_sql: Vec<&'static str> =
        json_docs.iter().map(|d| &*Box::leak(format!("'{}'", d.replace('\'', "''")).into_boxed_str())).collect();
    v.push(case(PgType::Json, "json", &json_sql, Arc::new(StringArray::from(json_docs.to_vec()))));
    v.push(case(PgType::Jsonb, "jsonb", &json_sql, Arc::new(StringArray::from(json_docs.to_vec()))));
    // numeric(10,2) column: typmod in RowDescription, dscale from the Arrow scale.
    let mut n = case(
        PgType::Numeric,
        "numeric(10,2)",
        &["1.5", "-12345678.99", "0"],
        Arc::new(Decimal128Array::from(vec![150, -1234567899, 0]).with_precision_and_scale(10, 2).unwrap()),
    );
    n.typmod = PgType::numeric_typmod(10, 2);
    v.push(n);
    // Decimal256 with more digits than i128 holds.
    v.push(case(
        PgType::Numeric,
        "numeric",
        &["-123456789012345678901234567890123456789012345678901234567890.123456789", "0.000000001"],
        Arc::new(
            Decimal256Array::from(vec![
                arrow_buffer_i256("-123456789012345678901234567890123456789012345678901234567890123456789"),
                arrow_buffer_i256("1"),
            ])
            .with_precision_and_scale(76, 9)
            .unwrap(),
        ),
    ));
    v
}

fn arrow_buffer_i256(s: &str) -> <arrow_array::types::Decimal256Type as arrow_array::ArrowPrimitiveType>::Native {
    s.parse().unwrap()
}

fn timestamptz_case() -> Case {
    case(
        PgType::Timestamptz,
        "timestamptz",
        &[
            "'2024-03-10 06:59:59.999999+00'",
            "'2024-03-10 07:00:00+00'",
            "'2024-11-03 05:30:00+00'",
            "'2024-11-03 06:30:00+00'",
            "'1850-06-01 12:00:00+00'",
            "'2000-01-01 00:00:00+00'",
            "'0044-03-15 12:00:00+00 BC'",
            "'2100-07-01 00:00:00+00'",
            "NULL",
        ],
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(1_710_053_999_999_999),
                Some(1_710_054_000_000_000),
                Some(1_730_611_800_000_000),
                Some(1_730_615_400_000_000),
                Some(-3_773_736_000_000_000),
                Some(946_684_800_000_000),
                Some(us(-735_160, 12 * 3600, 0)),
                Some(4_118_083_200_000_000),
                None,
            ])
            .with_timezone("UTC"),
        ),
    )
}

fn array_cases() -> Vec<Case> {
    use arrow_array::builder::*;
    let mut texts = ListBuilder::new(StringBuilder::new());
    texts.append_value([Some("a"), None, Some(""), Some("NULL"), Some("x y"), Some("q\"b\\s"), Some("{}"), Some("é")]);
    texts.append_value(Vec::<Option<&str>>::new());
    texts.append_null();
    let ints = ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![
        Some(vec![Some(1), Some(-2), Some(i32::MAX)]),
        Some(vec![None, Some(0)]),
        Some(vec![]),
        None,
    ]);
    let floats = LargeListArray::from_iter_primitive::<arrow_array::types::Float64Type, _, _>(vec![Some(vec![
        Some(0.1),
        Some(f64::NAN),
        Some(-0.0),
        None,
        Some(1e20),
    ])]);
    let dates = ListArray::from_iter_primitive::<arrow_array::types::Date32Type, _, _>(vec![Some(vec![
        Some(0),
        None,
        Some(-735_160),
    ])]);
    let stamps =
        ListArray::from_iter_primitive::<arrow_array::types::TimestampMicrosecondType, _, _>(vec![Some(vec![
            Some(0),
            Some(1_500_000),
        ])]);
    let mut nums = ListBuilder::new(Decimal128Builder::new().with_data_type(DataType::Decimal128(10, 3)));
    nums.append_value([Some(1500), None, Some(-1)]);
    let mut intervals = ListBuilder::new(IntervalMonthDayNanoBuilder::new());
    intervals
        .append_value([Some(IntervalMonthDayNano::new(1, 2, 3_000_000_000)), Some(IntervalMonthDayNano::new(0, 0, 0))]);
    let mut byteas = ListBuilder::new(BinaryBuilder::new());
    byteas.append_value([Some(&b"\x01\xff"[..]), None, Some(&b""[..])]);
    let mut bools = ListBuilder::new(BooleanBuilder::new());
    bools.append_value([Some(true), None]);
    let mut jsons = ListBuilder::new(StringBuilder::new());
    jsons.append_value([Some(r#"{"b":1,"a":"x y"}"#), None]);
    let mut uuids = ListBuilder::new(FixedSizeBinaryBuilder::new(16));
    uuids.values().append_value([0u8; 16]).unwrap();
    uuids.append(true);
    vec![
        case(
            PgType::Text.array_of(),
            "text[]",
            &[r#"ARRAY['a', NULL, '', 'NULL', 'x y', 'q"b\s', '{}', 'é']"#, "'{}'", "NULL"],
            Arc::new(texts.finish()),
        ),
        case(PgType::Int4.array_of(), "int4[]", &["'{1,-2,2147483647}'", "'{NULL,0}'", "'{}'", "NULL"], Arc::new(ints)),
        case(
            PgType::Float8.array_of(),
            "float8[]",
            &["ARRAY[0.1, 'NaN', '-0', NULL, 1e20]::float8[]"],
            Arc::new(floats),
        ),
        case(
            PgType::Date.array_of(),
            "date[]",
            &["ARRAY['1970-01-01', NULL, '0044-03-15 BC']::date[]"],
            Arc::new(dates),
        ),
        case(
            PgType::Timestamp.array_of(),
            "timestamp[]",
            &["ARRAY['1970-01-01 00:00:00', '1970-01-01 00:00:01.5']::timestamp[]"],
            Arc::new(stamps),
        ),
        case(PgType::Numeric.array_of(), "numeric[]", &["ARRAY[1.500, NULL, -0.001]"], Arc::new(nums.finish())),
        case(
            PgType::Interval.array_of(),
            "interval[]",
            &["ARRAY['1 mon 2 days 3 sec', '0']::interval[]"],
            Arc::new(intervals.finish()),
        ),
        case(PgType::Bytea.array_of(), "bytea[]", &["ARRAY['\\x01ff', NULL, '']::bytea[]"], Arc::new(byteas.finish())),
        case(PgType::Bool.array_of(), "bool[]", &["ARRAY[true, NULL]"], Arc::new(bools.finish())),
        case(
            PgType::Jsonb.array_of(),
            "jsonb[]",
            &[r#"ARRAY['{"b":1,"a":"x y"}', NULL]::jsonb[]"#],
            Arc::new(jsons.finish()),
        ),
        case(
            PgType::Uuid.array_of(),
            "uuid[]",
            &["ARRAY['00000000-0000-0000-0000-000000000000']::uuid[]"],
            Arc::new(uuids.finish()),
        ),
    ]
}

fn settings_with(pairs: &[(&str, &str)]) -> TextSettings {
    let mut s = TextSettings::default();
    for (k, v) in pairs {
        s.set(k, v).unwrap();
    }
    s
}

/// Applies `pairs` to the Postgres session and returns the matching TextSettings.
async fn set_both(c: &mut RawClient, pairs: &[(&str, &str)]) -> TextSettings {
    for (k, v) in pairs {
        exec(c, &format!("SET {k} = '{v}'")).await;
    }
    settings_with(pairs)
}

const DEFAULTS: &[(&str, &str)] = &[
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
];

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} mismatches with Postgres:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn scalars_match_postgres() {
    let mut c = connect().await;
    let s = set_both(&mut c, DEFAULTS).await;
    let mut cases = scalar_cases();
    cases.push(timestamptz_case());
    report(compare(&mut c, &s, &cases).await);
}

#[tokio::test]
async fn arrays_match_postgres() {
    let mut c = connect().await;
    let s = set_both(&mut c, DEFAULTS).await;
    report(compare(&mut c, &s, &array_cases()).await);
}

#[tokio::test]
async fn timestamptz_in_session_time_zones() {
    let mut c = connect().await;
    set_both(&mut c, DEFAULTS).await;
    let mut failures = Vec::new();
    for zone in [
        "America/New_York",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "Etc/GMT+5",
        "UTC",
    ] {
        let s = set_both(&mut c, &[("TimeZone", zone)]).await;
        failures.extend(compare(&mut c, &s, &[timestamptz_case()]).await.into_iter().map(|f| format!("[{zone}] {f}")));
    }
    // A fixed offset given as an interval: Postgres shows it as +05:30.
    exec(&mut c, "SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE").await;
    let mut s = settings_with(DEFAULTS);
    s.time_zone = pgfed_encode::TimeZone::Fixed(5 * 3600 + 1800);
    failures.extend(compare(&mut c, &s, &[timestamptz_case()]).await.into_iter().map(|f| format!("[+05:30] {f}")));
    report(failures);
}

#[tokio::test]
async fn other_text_settings() {
    let mut c = connect().await;
    set_both(&mut c, DEFAULTS).await;
    let mut failures = Vec::new();
    let float_cases = || scalar_cases().into_iter().filter(|k| matches!(k.pg_type, PgType::Float4 | PgType::Float8));
    for efd in ["0", "-3", "3", "2"] {
        let s = set_both(&mut c, &[("extra_float_digits", efd)]).await;
        let cases: Vec<Case> = float_cases().collect();
        failures.extend(compare(&mut c, &s, &cases).await.into_iter().map(|f| format!("[efd {efd}] {f}")));
    }
    set_both(&mut c, &[("extra_float_digits", "1")]).await;
    let s = set_both(&mut c, &[("bytea_output", "escape")]).await;
    let cases: Vec<Case> = scalar_cases().into_iter().filter(|k| k.pg_type == PgType::Bytea).collect();
    failures.extend(compare(&mut c, &s, &cases).await.into_iter().map(|f| format!("[escape] {f}")));
    set_both(&mut c, &[("bytea_output", "hex")]).await;
    for style in ["SQL, MDY", "SQL, DMY", "German", "Postgres, MDY", "Postgres, DMY", "ISO, DMY"] {
        let s = set_both(&mut c, &[("DateStyle", style), ("TimeZone", "America/New_York")]).await;
        let mut cases: Vec<Case> =
            scalar_cases().into_iter().filter(|k| matches!(k.pg_type, PgType::Date | PgType::Timestamp)).collect();
        cases.push(timestamptz_case());
        failures.extend(compare(&mut c, &s, &cases).await.into_iter().map(|f| format!("[{style}] {f}")));
    }
    report(failures);
}
