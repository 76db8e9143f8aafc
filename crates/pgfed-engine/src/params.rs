//! Bind parameters to DataFusion scalars. Binary values are decoded here (pgfed-encode's
//! decoder); text values are parsed by the client's own Postgres session in one round trip
//! (`SELECT $1::int4, $2::timestamptz, ...`), so every input syntax, the session's DateStyle and
//! TimeZone, and every error message are exactly Postgres's own.

use bytes::Bytes;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::scalar::ScalarValue;
use pgfed_encode::{BinaryColumn, PgType};
use pgfed_session::{ResultFormat, UpstreamSession};

use crate::EngineError;
use crate::resolve::plan_type;

/// One parameter value from Bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Null,
    /// Format code 0.
    Text(String),
    /// Format code 1.
    Binary(Bytes),
}

/// The SQL name of a type, for casts in the parsing query.
pub(crate) fn sql_type_name(t: &PgType) -> String {
    match t {
        PgType::Array(elem) => format!("{}[]", sql_type_name(elem)),
        other => format!(
            "pg_catalog.{}",
            match other {
                PgType::Bool => "bool",
                PgType::Int2 => "int2",
                PgType::Int4 => "int4",
                PgType::Int8 => "int8",
                PgType::Float4 => "float4",
                PgType::Float8 => "float8",
                PgType::Numeric => "numeric",
                PgType::Text => "text",
                PgType::Varchar => "varchar",
                PgType::Bpchar => "bpchar",
                PgType::Bytea => "bytea",
                PgType::Date => "date",
                PgType::Time => "time",
                PgType::Timestamp => "timestamp",
                PgType::Timestamptz => "timestamptz",
                PgType::Interval => "interval",
                PgType::Uuid => "uuid",
                PgType::Json => "json",
                PgType::Jsonb => "jsonb",
                PgType::Array(_) => "text",
            }
        ),
    }
}

fn decode_error(n: usize, e: pgfed_encode::EncodeError) -> EngineError {
    EngineError::Parameter { code: "22P03", message: format!("invalid binary data for parameter ${n}: {e}") }
}

/// Turns Bind's values into scalars of the planned types. `types[i]` is the Postgres type of
/// `$i+1` (as announced in ParameterDescription), `planned[i]` DataFusion's type for it.
pub(crate) async fn bind(
    params: &[Param],
    types: &[PgType],
    planned: &[DataType],
    tz: &str,
    session: &dyn UpstreamSession,
) -> Result<Vec<ScalarValue>, EngineError> {
    if params.len() != types.len() {
        return Err(EngineError::Parameter {
            code: "08P01",
            message: format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                params.len(),
                types.len()
            ),
        });
    }
    let mut out: Vec<Option<ScalarValue>> = vec![None; params.len()];
    // Text values that need Postgres's parser: (index, value).
    let mut to_parse: Vec<(usize, String)> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let t = &types[i];
        match p {
            Param::Null => out[i] = Some(ScalarValue::try_from(&plan_type(t, -1, tz)).map_err(EngineError::from)?),
            Param::Text(s) if matches!(t, PgType::Text | PgType::Varchar) => {
                out[i] = Some(ScalarValue::Utf8(Some(s.clone())))
            }
            Param::Text(s) => to_parse.push((i, s.clone())),
            Param::Binary(b) => out[i] = Some(decode_one(i + 1, t, tz, Some(b))?),
        }
    }
    if !to_parse.is_empty() {
        let select: Vec<String> = to_parse
            .iter()
            .enumerate()
            .map(|(k, (i, _))| format!("${}::{}", k + 1, sql_type_name(&types[*i])))
            .collect();
        let sql = format!("SELECT {}", select.join(", "));
        let values: Vec<Option<String>> = to_parse.iter().map(|(_, v)| Some(v.clone())).collect();
        let mut rows = session.query(&sql, &values, ResultFormat::Binary).await?;
        let mut row = None;
        while let Some(chunk) = futures::StreamExt::next(&mut rows.chunks).await {
            if let Some(r) = chunk?.into_iter().next() {
                row = Some(r);
            }
        }
        let row = row.ok_or_else(|| EngineError::Internal("parameter parsing returned no row".into()))?;
        for (k, (i, _)) in to_parse.iter().enumerate() {
            out[*i] = Some(decode_one(i + 1, &types[*i], tz, row.get(k))?);
        }
    }
    out.into_iter()
        .zip(planned)
        .map(|(v, want)| {
            let v = v.ok_or_else(|| EngineError::Internal("parameter left unbound".into()))?;
            if &v.data_type() == want { Ok(v) } else { v.cast_to(want).map_err(EngineError::from) }
        })
        .collect()
}

fn decode_one(n: usize, t: &PgType, tz: &str, raw: Option<&[u8]>) -> Result<ScalarValue, EngineError> {
    let mut col = BinaryColumn::new(t, -1, Some(tz)).map_err(|e| decode_error(n, e))?;
    col.append(raw).map_err(|e| decode_error(n, e))?;
    let array = col.finish();
    if array.len() != 1 {
        return Err(EngineError::Internal("parameter decoding produced no value".into()));
    }
    ScalarValue::try_from_array(&array, 0).map_err(EngineError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_for_casts() {
        assert_eq!(sql_type_name(&PgType::Timestamptz), "pg_catalog.timestamptz");
        assert_eq!(sql_type_name(&PgType::Int4.array_of()), "pg_catalog.int4[]");
    }

    #[test]
    fn binary_parameters_decode_to_scalars() {
        let v = decode_one(1, &PgType::Int8, "UTC", Some(&42i64.to_be_bytes())).expect("int8");
        assert_eq!(v, ScalarValue::Int64(Some(42)));
        let e = decode_one(1, &PgType::Int8, "UTC", Some(&[1, 2])).expect_err("short");
        assert_eq!(e.sqlstate(), "22P03");
    }
}
