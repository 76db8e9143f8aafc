#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::{Int64Type, IntervalMonthDayNano};
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::BytesMut;

use super::*;

/// Encodes a one-column batch and returns each row's value (None for NULL).
fn cells(array: ArrayRef, ty: PgType, binary: bool, settings: &TextSettings) -> Vec<Option<Vec<u8>>> {
    let schema = Arc::new(Schema::new(vec![Field::new("c", array.data_type().clone(), true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
    let enc = BatchEncoder::new(schema, &[ColumnSpec::of(ty)], &[i16::from(binary)], settings.clone()).unwrap();
    (0..batch.num_rows())
        .map(|r| {
            let mut out = BytesMut::new();
            enc.write_data_row_body(&batch, r, &mut out).unwrap();
            assert_eq!(&out[..2], &[0, 1]);
            let len = i32::from_be_bytes([out[2], out[3], out[4], out[5]]);
            (len >= 0).then(|| out[6..].to_vec())
        })
        .collect()
}

fn text(array: ArrayRef, ty: PgType) -> Vec<String> {
    text_with(array, ty, &TextSettings::default())
}

fn text_with(array: ArrayRef, ty: PgType, s: &TextSettings) -> Vec<String> {
    cells(array, ty, false, s)
        .into_iter()
        .map(|c| c.map_or_else(|| "<NULL>".to_string(), |b| String::from_utf8(b).unwrap()))
        .collect()
}

fn binary(array: ArrayRef, ty: PgType) -> Vec<Option<Vec<u8>>> {
    cells(array, ty, true, &TextSettings::default())
}

#[test]
fn integers_at_their_limits() {
    let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), None]));
    assert_eq!(text(a.clone(), PgType::Int8), ["-9223372036854775808", "9223372036854775807", "<NULL>"]);
    assert_eq!(binary(a, PgType::Int8)[0].as_deref(), Some(&i64::MIN.to_be_bytes()[..]));
    let a: ArrayRef = Arc::new(Int16Array::from(vec![i16::MIN, i16::MAX]));
    assert_eq!(text(a, PgType::Int2), ["-32768", "32767"]);
    let a: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
    assert_eq!(text(a, PgType::Numeric), ["18446744073709551615"]);
}

#[test]
fn narrowing_out_of_range_is_an_error() {
    let a: ArrayRef = Arc::new(Int32Array::from(vec![40_000]));
    let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Int32, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![a]).unwrap();
    let enc = BatchEncoder::new(schema, &[ColumnSpec::of(PgType::Int2)], &[], TextSettings::default()).unwrap();
    let mut out = BytesMut::from(&b"keep"[..]);
    assert!(matches!(enc.write_data_rows(&batch, &mut out), Err(EncodeError::OutOfRange(_))));
    assert_eq!(&out[..], b"keep", "output is rolled back on error");
}

#[test]
fn float_specials_and_shortest_output() {
    let a: ArrayRef = Arc::new(Float64Array::from(vec![
        0.1,
        1e20,
        1e15,
        123456789012345.0,
        1e-5,
        1e-4,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        5e-324,
        1e100,
    ]));
    assert_eq!(
        text(a.clone(), PgType::Float8),
        [
            "0.1",
            "1e+20",
            "1e+15",
            "123456789012345",
            "1e-05",
            "0.0001",
            "-0",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.7976931348623157e+308",
            "5e-324",
            "1e+100"
        ]
    );
    let s = TextSettings { extra_float_digits: 0, ..TextSettings::default() };
    let a: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 1.0 / 3.0, 1e15, 2.5e-5]));
    assert_eq!(text_with(a, PgType::Float8, &s), ["0.1", "0.333333333333333", "1e+15", "2.5e-05"]);
    let a: ArrayRef = Arc::new(Float32Array::from(vec![0.1f32, 1e6, 123456.0, -0.0]));
    assert_eq!(text(a.clone(), PgType::Float4), ["0.1", "1e+06", "123456", "-0"]);
    assert_eq!(text(a, PgType::Float8)[0], "0.10000000149011612");
}

#[test]
fn numeric_text_and_binary() {
    let a: ArrayRef = Arc::new(
        Decimal128Array::from(vec![Some(-150), Some(0), Some(1), Some(i128::MAX), None])
            .with_precision_and_scale(38, 2)
            .unwrap(),
    );
    assert_eq!(
        text(a.clone(), PgType::Numeric),
        ["-1.50", "0.00", "0.01", "1701411834604692317316873037158841057.27", "<NULL>"]
    );
    let b = binary(a, PgType::Numeric);
    // -1.50: ndigits 2, weight 0, sign NEG, dscale 2, digits [1, 5000]
    assert_eq!(b[0].as_deref(), Some(&[0, 2, 0, 0, 0x40, 0, 0, 2, 0, 1, 0x13, 0x88][..]));
    // 0.00: no digits, weight 0, positive, dscale 2
    assert_eq!(b[1].as_deref(), Some(&[0, 0, 0, 0, 0, 0, 0, 2][..]));
    let a: ArrayRef = Arc::new(Decimal128Array::from(vec![12, -5]).with_precision_and_scale(5, -3).unwrap());
    assert_eq!(text(a, PgType::Numeric), ["12000", "-5000"]);
    let a: ArrayRef = Arc::new(StringArray::from(vec!["NaN", "-inf", " 1.5e3", "-0.000", "1e-3", "00012.340"]));
    assert_eq!(text(a.clone(), PgType::Numeric), ["NaN", "-Infinity", "1500", "0.000", "0.001", "12.340"]);
    assert_eq!(binary(a, PgType::Numeric)[1].as_deref(), Some(&[0, 0, 0, 0, 0xF0, 0, 0, 32][..]));
}

#[test]
fn dates_before_2000_and_bc() {
    let a: ArrayRef = Arc::new(Date32Array::from(vec![0, 10957, -25509, -735_160, -2_440_588]));
    assert_eq!(
        text(a.clone(), PgType::Date),
        ["1970-01-01", "2000-01-01", "1900-02-28", "0044-03-15 BC", "4714-11-24 BC"]
    );
    assert_eq!(binary(a, PgType::Date)[0].as_deref(), Some(&(-10957i32).to_be_bytes()[..]));
    let s = TextSettings { date_style: DateStyle::German, ..TextSettings::default() };
    let a: ArrayRef = Arc::new(Date32Array::from(vec![19782]));
    assert_eq!(text_with(a, PgType::Date, &s), ["29.02.2024"]);
}

#[test]
fn timestamps_in_dst_zones() {
    // 2024-03-10 06:59:59.999999Z and 07:00:00Z: the New York spring-forward boundary.
    let a: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![1_710_053_999_999_999, 1_710_054_000_000_000]).with_timezone("UTC"),
    );
    let mut s = TextSettings::default();
    s.set("TimeZone", "America/New_York").unwrap();
    assert_eq!(
        text_with(a.clone(), PgType::Timestamptz, &s),
        ["2024-03-10 01:59:59.999999-05", "2024-03-10 03:00:00-04"]
    );
    s.set("TimeZone", "Asia/Kolkata").unwrap();
    assert_eq!(text_with(a.clone(), PgType::Timestamptz, &s)[1], "2024-03-10 12:30:00+05:30");
    s.set("DateStyle", "SQL, DMY").unwrap();
    s.set("TimeZone", "Europe/Berlin").unwrap();
    assert_eq!(text_with(a.clone(), PgType::Timestamptz, &s)[1], "10/03/2024 08:00:00 CET");
    s.time_zone = TimeZone::Fixed(-(3 * 3600 + 30 * 60));
    s.date_style = DateStyle::Iso;
    assert_eq!(text_with(a.clone(), PgType::Timestamptz, &s)[1], "2024-03-10 03:30:00-03:30");
    // Binary is zone-independent: µs since 2000-01-01 UTC.
    let want = (1_710_054_000_000_000i64 - 946_684_800_000_000).to_be_bytes();
    assert_eq!(binary(a, PgType::Timestamptz)[1].as_deref(), Some(&want[..]));
    let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![-1]));
    assert_eq!(text(a, PgType::Timestamp), ["1969-12-31 23:59:59.999999"]);
    let a: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_500_000_000]));
    assert_eq!(text(a, PgType::Timestamp), ["1970-01-01 00:00:01.5"]);
}

#[test]
fn intervals_with_months_days_and_negatives() {
    let a: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
        IntervalMonthDayNano::new(0, 0, 0),
        IntervalMonthDayNano::new(14, 3, 14_706_789_000_000),
        IntervalMonthDayNano::new(-14, 0, 0),
        IntervalMonthDayNano::new(-1, 2, -10_800_500_000_000),
        IntervalMonthDayNano::new(1, 1, 0),
        IntervalMonthDayNano::new(0, 0, -1000),
    ]));
    assert_eq!(
        text(a.clone(), PgType::Interval),
        [
            "00:00:00",
            "1 year 2 mons 3 days 04:05:06.789",
            "-1 years -2 mons",
            "-1 mons +2 days -03:00:00.5",
            "1 mon 1 day",
            "-00:00:00.000001"
        ]
    );
    let b = binary(a, PgType::Interval);
    let mut want = (-10_800_500_000i64).to_be_bytes().to_vec();
    want.extend(2i32.to_be_bytes());
    want.extend((-1i32).to_be_bytes());
    assert_eq!(b[3].as_deref(), Some(&want[..]));
}

#[test]
fn arrays_empty_null_and_with_nulls() {
    let a: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), None, Some(-3)]),
        Some(vec![]),
        None,
    ]));
    assert_eq!(text(a.clone(), PgType::Int8.array_of()), ["{1,NULL,-3}", "{}", "<NULL>"]);
    let b = binary(a, PgType::Int8.array_of());
    let mut want = Vec::new();
    for v in [1i32, 1, 20, 3, 1] {
        want.extend(v.to_be_bytes());
    }
    want.extend(8i32.to_be_bytes());
    want.extend(1i64.to_be_bytes());
    want.extend((-1i32).to_be_bytes());
    want.extend(8i32.to_be_bytes());
    want.extend((-3i64).to_be_bytes());
    assert_eq!(b[0].as_deref(), Some(&want[..]));
    // Empty: ndim 0, no null flag, element type, no dimensions.
    assert_eq!(b[1].as_deref(), Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20][..]));
    assert_eq!(b[2], None);

    let mut t = ListBuilder::new(StringBuilder::new());
    t.append_value([Some("a b"), Some(""), Some("null"), None, Some("q\"\\"), Some("ü")]);
    let a: ArrayRef = Arc::new(t.finish());
    assert_eq!(text(a, PgType::Text.array_of()), [r#"{"a b","","null",NULL,"q\"\\",ü}"#]);
}

#[test]
fn text_bytea_uuid_json() {
    let a: ArrayRef = Arc::new(StringArray::from(vec!["", "héllo ✓ 🐘"]));
    assert_eq!(text(a, PgType::Varchar), ["", "héllo ✓ 🐘"]);
    let a: ArrayRef = Arc::new(BinaryArray::from(vec![&b""[..], &[0, 0xff, b'\\', b'a'][..]]));
    assert_eq!(text(a.clone(), PgType::Bytea), ["\\x", "\\x00ff5c61"]);
    let s = TextSettings { bytea_output: ByteaOutput::Escape, ..TextSettings::default() };
    assert_eq!(text_with(a.clone(), PgType::Bytea, &s), ["", "\\000\\377\\\\a"]);
    assert_eq!(binary(a, PgType::Bytea)[0].as_deref(), Some(&[][..]));
    let a: ArrayRef =
        Arc::new(FixedSizeBinaryArray::try_from_iter(vec![(0u8..16).collect::<Vec<_>>()].into_iter()).unwrap());
    assert_eq!(text(a, PgType::Uuid), ["00010203-0405-0607-0809-0a0b0c0d0e0f"]);
    let a: ArrayRef = Arc::new(StringArray::from(vec![r#"{"b":1, "a":[1.50,1e2], "b":"\u00e9\n"}"#]));
    assert_eq!(text(a.clone(), PgType::Json), [r#"{"b":1, "a":[1.50,1e2], "b":"\u00e9\n"}"#]);
    assert_eq!(text(a.clone(), PgType::Jsonb), [r#"{"a": [1.50, 100], "b": "é\n"}"#]);
    assert_eq!(binary(a, PgType::Jsonb)[0].as_ref().unwrap()[0], 1);
}

#[test]
fn row_description_and_default_mapping() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
    ]));
    let specs = [
        ColumnSpec { table_oid: 16384, column_attr: 1, ..ColumnSpec::default() },
        ColumnSpec::default(),
        ColumnSpec::default(),
    ];
    let enc = BatchEncoder::new(schema, &specs, &[1, 0, 1], TextSettings::default()).unwrap();
    let f = enc.fields();
    assert_eq!((f[0].type_oid, f[0].typlen, f[0].format), (20, 8, Format::Binary));
    assert_eq!((f[1].type_oid, f[1].typlen, f[1].format), (1184, 8, Format::Text));
    assert_eq!((f[2].type_oid, f[2].typlen), (1009, -1));
    let mut out = BytesMut::new();
    enc.write_row_description(&mut out);
    let mut want = vec![b'T', 0, 0, 0, 0, 0, 3];
    want.extend(b"id\0");
    want.extend(16384u32.to_be_bytes());
    want.extend(1i16.to_be_bytes());
    want.extend(20u32.to_be_bytes());
    want.extend(8i16.to_be_bytes());
    want.extend((-1i32).to_be_bytes());
    want.extend(1i16.to_be_bytes());
    assert_eq!(&out[5..want.len()], &want[5..]);
    assert_eq!(u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize, out.len() - 1);

    assert_eq!(PgType::default_for(&DataType::FixedSizeBinary(16)), Some(PgType::Uuid));
    assert_eq!(PgType::default_for(&DataType::Decimal256(76, 10)), Some(PgType::Numeric));
    assert_eq!(PgType::default_for(&DataType::Utf8View), Some(PgType::Text));
    assert_eq!(PgType::Jsonb.array_of().oid(), 3807);
    assert_eq!(PgType::numeric_typmod(10, 2), 655_366);
    assert!(PgType::default_for(&DataType::Float16).is_none());
}

#[test]
fn format_codes_follow_bind_rules() {
    assert_eq!(Format::resolve(&[], 2).unwrap(), [Format::Text, Format::Text]);
    assert_eq!(Format::resolve(&[1], 2).unwrap(), [Format::Binary, Format::Binary]);
    assert!(Format::resolve(&[0, 1, 0], 2).is_err());
    assert!(Format::resolve(&[2], 1).is_err());
}

#[test]
fn incompatible_declarations_are_rejected_at_plan_time() {
    let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Utf8, true)]));
    let err = BatchEncoder::new(schema, &[ColumnSpec::of(PgType::Int4)], &[], TextSettings::default()).unwrap_err();
    assert!(matches!(err, EncodeError::Unsupported { column: 0, .. }));
}

#[test]
fn settings_parse_like_postgres_reports_them() {
    let mut s = TextSettings::default();
    s.set("DateStyle", "Postgres, DMY").unwrap();
    assert_eq!((s.date_style, s.date_order), (DateStyle::Postgres, DateOrder::Dmy));
    s.set("TimeZone", "Europe/Berlin").unwrap();
    assert!(s.set("TimeZone", "Mars/Olympus").is_err());
    assert!(s.set("extra_float_digits", "4").is_err());
    s.set("application_name", "ignored").unwrap();
}
