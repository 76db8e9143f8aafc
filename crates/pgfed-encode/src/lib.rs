//! Arrow to Postgres wire encoding. pgfed answers statements on foreign tables itself; their
//! results arrive as Arrow `RecordBatch`es and must reach clients exactly as Postgres would have
//! sent them. This crate turns an Arrow schema plus the caller's declared Postgres types into
//! RowDescription field descriptions, and each batch row into a DataRow, in text or binary per
//! column (the result format codes from Bind), byte-for-byte as PostgreSQL 15 sends them, given
//! the session settings text output depends on ([`TextSettings`]: DateStyle, TimeZone,
//! IntervalStyle, extra_float_digits, bytea_output). It does no I/O and knows nothing of
//! DataFusion: it uses the split arrow 59 crates DataFusion 55 is built on, and jiff for time zones.
//! It is our own rather than a wrapper of arrow-pg 0.16, whose output differs from Postgres's for
//! numeric beyond 28 digits, NULL intervals, timestamp text, array quoting, uuid and jsonb.

mod decode;
mod jsonb;
mod numeric;
mod settings;
mod text;
mod types;
mod value;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use bytes::{BufMut, BytesMut};

pub use decode::{BinaryColumn, arrow_type, decode_binary, decode_numeric};
pub use settings::{ByteaOutput, DateOrder, DateStyle, IntervalStyle, TextSettings, TimeZone};
pub use types::PgType;

/// What can go wrong while planning or encoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("column {column} ({name}): Arrow type {arrow} cannot be sent as {pg}")]
    Unsupported { column: usize, name: String, arrow: String, pg: String },
    #[error("{0}")]
    Format(String),
    #[error("batch does not match the encoder's schema: {0}")]
    Schema(String),
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    InvalidValue(String),
}

/// A result column format code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Binary,
}

impl Format {
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    /// Applies Bind's result format codes to `columns` columns: none means all text, one applies
    /// to all, otherwise one per column.
    pub fn resolve(codes: &[i16], columns: usize) -> Result<Vec<Format>, EncodeError> {
        let one = |c: i16| match c {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            _ => Err(EncodeError::Format(format!("unsupported format code: {c}"))),
        };
        match codes {
            [] => Ok(vec![Format::Text; columns]),
            [c] => Ok(vec![one(*c)?; columns]),
            _ if codes.len() == columns => codes.iter().map(|c| one(*c)).collect(),
            _ => Err(EncodeError::Format(format!(
                "bind message has {} result formats but query has {columns} columns",
                codes.len()
            ))),
        }
    }
}

/// What the caller knows about a result column beyond its Arrow type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The Postgres type to send; `None` takes [`PgType::default_for`] the Arrow type.
    pub pg_type: Option<PgType>,
    /// `atttypmod` (-1: none), e.g. [`PgType::numeric_typmod`].
    pub typmod: i32,
    /// Table OID and attribute number when the column is a table column (else 0).
    pub table_oid: u32,
    pub column_attr: i16,
}

impl Default for ColumnSpec {
    fn default() -> Self {
        ColumnSpec { pg_type: None, typmod: -1, table_oid: 0, column_attr: 0 }
    }
}

impl ColumnSpec {
    pub fn of(pg_type: PgType) -> Self {
        ColumnSpec { pg_type: Some(pg_type), ..ColumnSpec::default() }
    }
}

/// One RowDescription field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    pub table_oid: u32,
    pub column_attr: i16,
    pub pg_type: PgType,
    pub type_oid: u32,
    pub typlen: i16,
    pub typmod: i32,
    pub format: Format,
}

impl FieldDescription {
    /// Appends the field as RowDescription carries it.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(self.name.as_bytes());
        out.put_u8(0);
        out.put_u32(self.table_oid);
        out.put_i16(self.column_attr);
        out.put_u32(self.type_oid);
        out.put_i16(self.typlen);
        out.put_i32(self.typmod);
        out.put_i16(self.format.code());
    }
}

/// Encodes batches of one schema for one portal (fixed types, formats and settings).
#[derive(Clone, Debug)]
pub struct BatchEncoder {
    schema: arrow_schema::SchemaRef,
    fields: Vec<FieldDescription>,
    settings: TextSettings,
}

impl BatchEncoder {
    /// `specs`: empty (all defaults) or one per column. `result_formats`: Bind's codes.
    pub fn new(
        schema: arrow_schema::SchemaRef,
        specs: &[ColumnSpec],
        result_formats: &[i16],
        settings: TextSettings,
    ) -> Result<Self, EncodeError> {
        let n = schema.fields().len();
        if !specs.is_empty() && specs.len() != n {
            return Err(EncodeError::Schema(format!("{} column specs for {n} columns", specs.len())));
        }
        let formats = Format::resolve(result_formats, n)?;
        let default_spec = ColumnSpec::default();
        let mut fields = Vec::with_capacity(n);
        for (i, field) in schema.fields().iter().enumerate() {
            let spec = specs.get(i).unwrap_or(&default_spec);
            let unsupported = |pg: String| EncodeError::Unsupported {
                column: i,
                name: field.name().clone(),
                arrow: field.data_type().to_string(),
                pg,
            };
            let pg_type = match &spec.pg_type {
                Some(t) => t.clone(),
                None => {
                    PgType::default_for(field.data_type()).ok_or_else(|| unsupported("any Postgres type".into()))?
                }
            };
            if !pg_type.accepts(field.data_type()) {
                return Err(unsupported(format!("{pg_type:?}")));
            }
            fields.push(FieldDescription {
                name: field.name().clone(),
                table_oid: spec.table_oid,
                column_attr: spec.column_attr,
                type_oid: pg_type.oid(),
                typlen: pg_type.typlen(),
                typmod: spec.typmod,
                pg_type,
                format: formats[i],
            });
        }
        Ok(BatchEncoder { schema, fields, settings })
    }

    pub fn fields(&self) -> &[FieldDescription] {
        &self.fields
    }

    pub fn settings(&self) -> &TextSettings {
        &self.settings
    }

    /// Appends a complete RowDescription message (`T`).
    pub fn write_row_description(&self, out: &mut BytesMut) {
        let at = begin_message(out, b'T');
        out.put_i16(i16::try_from(self.fields.len()).unwrap_or(i16::MAX));
        for f in &self.fields {
            f.write(out);
        }
        end_message(out, at);
    }

    fn check(&self, batch: &RecordBatch) -> Result<(), EncodeError> {
        let ok = batch.num_columns() == self.fields.len()
            && batch.schema().fields().iter().zip(self.schema.fields()).all(|(a, b)| a.data_type() == b.data_type());
        if ok { Ok(()) } else { Err(EncodeError::Schema(format!("{:?}", batch.schema()))) }
    }

    /// Appends the DataRow body (column count, then length-prefixed values) for `row`.
    pub fn write_data_row_body(&self, batch: &RecordBatch, row: usize, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(batch)?;
        self.body(batch, row, out)
    }

    fn body(&self, batch: &RecordBatch, row: usize, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_i16(i16::try_from(self.fields.len()).unwrap_or(i16::MAX));
        for (col, f) in batch.columns().iter().zip(&self.fields) {
            match value::value_at(col.as_ref(), row)? {
                value::Value::Null => out.put_i32(-1),
                v => value::write_prefixed(&v, &f.pg_type, f.format, &self.settings, out)?,
            }
        }
        Ok(())
    }

    /// Appends one complete DataRow message (`D`) per row of `batch`. On error `out` is left as
    /// it was.
    pub fn write_data_rows(&self, batch: &RecordBatch, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(batch)?;
        let start = out.len();
        for row in 0..batch.num_rows() {
            let at = begin_message(out, b'D');
            if let Err(e) = self.body(batch, row, out) {
                out.truncate(start);
                return Err(e);
            }
            end_message(out, at);
        }
        Ok(())
    }
}

/// An encoder with the default Postgres type for every column (no table OIDs, no typmods).
pub fn encoder_for(
    schema: &Schema,
    result_formats: &[i16],
    settings: TextSettings,
) -> Result<BatchEncoder, EncodeError> {
    BatchEncoder::new(std::sync::Arc::new(schema.clone()), &[], result_formats, settings)
}

fn begin_message(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    at
}

fn end_message(out: &mut BytesMut, at: usize) {
    let len = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests;
