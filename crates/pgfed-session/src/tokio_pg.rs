//! [`UpstreamSession`] over a tokio-postgres client, for tests and pgfed's service connection.
//!
//! tokio-postgres always asks for binary results; [`ResultFormat::Text`] is honoured by reading
//! each value's text form through `::text`-free means only where the two agree, so callers that
//! want text should select text-typed columns (catalog queries do). Portals are not used: rows are
//! fetched in one go and handed out in chunks.

use std::error::Error;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::{DataRow, FieldInfo, ResultFormat, Rows, UpstreamError, UpstreamSession};

/// A tokio-postgres client as an [`UpstreamSession`].
pub struct TokioPgSession(pub tokio_postgres::Client);

impl std::fmt::Debug for TokioPgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokioPgSession")
    }
}

#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }
    to_sql_checked!();
}

struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn convert(e: tokio_postgres::Error) -> UpstreamError {
    match e.as_db_error() {
        Some(db) => {
            // Rebuild an ErrorResponse with the fields tokio-postgres keeps.
            let mut body = Vec::new();
            let mut field = |t: u8, v: &str| {
                body.push(t);
                body.extend_from_slice(v.as_bytes());
                body.push(0);
            };
            field(b'S', db.severity());
            field(b'V', db.severity());
            field(b'C', db.code().code());
            field(b'M', db.message());
            if let Some(d) = db.detail() {
                field(b'D', d);
            }
            if let Some(h) = db.hint() {
                field(b'H', h);
            }
            body.push(0);
            let mut frame = vec![b'E'];
            frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            frame.extend_from_slice(&body);
            UpstreamError::Server {
                frame: Bytes::from(frame),
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            }
        }
        None if e.is_closed() => UpstreamError::Closed,
        None => UpstreamError::Io(e.to_string()),
    }
}

#[async_trait]
impl UpstreamSession for TokioPgSession {
    async fn query(&self, sql: &str, params: &[Option<String>], format: ResultFormat) -> Result<Rows, UpstreamError> {
        let _ = format;
        let stmt = self.0.prepare(sql).await.map_err(convert)?;
        let fields = stmt
            .columns()
            .iter()
            .map(|c| FieldInfo {
                name: c.name().to_string(),
                type_oid: c.type_().oid(),
                typmod: -1,
                table_oid: c.table_oid().unwrap_or(0),
                column_id: c.column_id().unwrap_or(0),
            })
            .collect();
        let params: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p.as_deref())).collect();
        let rows: Vec<tokio_postgres::Row> =
            self.0.query_raw(&stmt, params.iter()).await.map_err(convert)?.try_collect().await.map_err(convert)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut body = BytesMut::new();
            body.put_u16(row.len() as u16);
            for i in 0..row.len() {
                match row.try_get::<_, Option<Raw<'_>>>(i).map_err(|e| UpstreamError::Protocol(e.to_string()))? {
                    None => body.put_i32(-1),
                    Some(Raw(v)) => {
                        body.put_i32(v.len() as i32);
                        body.put_slice(v);
                    }
                }
            }
            out.push(DataRow::new(body.freeze())?);
        }
        let chunks: Vec<Result<Vec<DataRow>, UpstreamError>> = out.chunks(8192).map(|c| Ok(c.to_vec())).collect();
        Ok(Rows { fields, chunks: futures_util::stream::iter(chunks).boxed() })
    }

    async fn execute(&self, sql: &str, params: &[Option<String>]) -> Result<String, UpstreamError> {
        let params: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p.as_deref())).collect();
        let n = self.0.execute_raw(sql, params.iter()).await.map_err(convert)?;
        Ok(format!("{n}"))
    }
}
