//! Writes of a table with `writable 'true'`: INSERT as one POST per row to `insert_path`, UPDATE
//! as PATCH (or PUT) and DELETE as DELETE on `row_path` with the row id filled in. The request
//! body is a JSON object of the given columns, nested along each column's `path`; RETURNING
//! rows come from the response body (at `response_row`). A 404 on UPDATE or DELETE means the
//! row is gone: it counts as not affected. HTTP has no transactions: each request takes effect
//! when the API answers it, whatever the client's transaction does later.

use arrow_array::{Array, RecordBatch, RecordBatchOptions};
use arrow_schema::Schema;
use pgfed_connector_sdk::{ConnectorError, WriteResult};
use reqwest::Method;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::client::{Fetcher, Response};
use crate::config::{ColumnDef, TableConfig, WriteDef};
use crate::convert::{ColumnBuilder, arrow_to_json};
use crate::jsonpath::{Kind, Object, Step, kind};
use crate::plan::{row_url, template_url};
use crate::scan::{check_not_null, convert, lookup};

/// A JSON object under construction: members in column order, nested by path.
#[derive(Default)]
struct Node {
    members: Vec<(String, Member)>,
}

enum Member {
    Value(String),
    Object(Node),
}

impl Node {
    fn insert(&mut self, keys: &[String], value: String) {
        let Some((first, rest)) = keys.split_first() else { return };
        if rest.is_empty() {
            self.members.retain(|(k, _)| k != first);
            self.members.push((first.clone(), Member::Value(value)));
            return;
        }
        let position = self.members.iter().position(|(k, m)| k == first && matches!(m, Member::Object(_)));
        let index = match position {
            Some(i) => i,
            None => {
                self.members.push((first.clone(), Member::Object(Node::default())));
                self.members.len() - 1
            }
        };
        if let Some((_, Member::Object(node))) = self.members.get_mut(index) {
            node.insert(rest, value);
        }
    }

    fn render(&self, out: &mut String) {
        out.push('{');
        for (i, (key, member)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"\"".into()));
            out.push(':');
            match member {
                Member::Value(v) => out.push_str(v),
                Member::Object(node) => node.render(out),
            }
        }
        out.push('}');
    }
}

/// The keys of a column's path; writes need a path of keys only.
fn keys(c: &ColumnDef) -> Result<Vec<String>, ConnectorError> {
    c.path
        .steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => Ok(k.clone()),
            Step::Index(_) => Err(ConnectorError::NotSupported(format!(
                "writing column \"{}\" whose path {} has an array index",
                c.name, c.path
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|k| {
            if k.is_empty() {
                Err(ConnectorError::NotSupported(format!("writing column \"{}\" whose path is the whole row", c.name)))
            } else {
                Ok(k)
            }
        })
}

pub(crate) struct Writer<'a> {
    pub table: &'a TableConfig,
    pub fetcher: Fetcher,
}

impl Writer<'_> {
    fn writes(&self) -> Result<&WriteDef, ConnectorError> {
        self.table.def.writes.as_ref().ok_or_else(|| {
            ConnectorError::NotSupported(format!("writing to {} (the table is not writable)", self.table.table_name))
        })
    }

    fn column(&self, name: &str) -> Result<&ColumnDef, ConnectorError> {
        self.table.def.column(name).map(|(_, c)| c).ok_or_else(|| ConnectorError::ColumnNotFound(name.to_string()))
    }

    /// The JSON body of row `row` from the batch's columns from `first` on.
    fn body(&self, rows: &RecordBatch, row: usize, first: usize) -> Result<String, ConnectorError> {
        let mut node = Node::default();
        for (field, array) in rows.schema().fields().iter().zip(rows.columns()).skip(first) {
            let c = self.column(field.name())?;
            let value = arrow_to_json(array.as_ref(), row, &c.ty)
                .map_err(|reason| ConnectorError::DataType { column: c.name.clone(), reason })?
                .unwrap_or_else(|| "null".into());
            node.insert(&keys(c)?, value);
        }
        let mut out = String::new();
        node.render(&mut out);
        Ok(out)
    }

    /// The row id of row `row` as path text.
    fn row_id(&self, array: &dyn Array, row: usize, c: &ColumnDef) -> Result<String, ConnectorError> {
        let json = arrow_to_json(array, row, &c.ty)
            .map_err(|reason| ConnectorError::DataType { column: c.name.clone(), reason })?
            .ok_or_else(|| ConnectorError::DataType { column: c.name.clone(), reason: "a NULL row id".into() })?;
        Ok(serde_json::from_str::<String>(&json).unwrap_or(json))
    }

    pub async fn insert(&self, rows: RecordBatch, returning: &[String]) -> Result<WriteResult, ConnectorError> {
        let writes = self.writes()?;
        let template = writes.insert_path.as_ref().ok_or(ConnectorError::MissingOption {
            name: "insert_path".into(),
            level: pgfed_connector_sdk::OptionLevel::Table.as_str(),
        })?;
        let url = template_url(&self.table.server, &self.table.def, template)?;
        let mut out = Returning::new(self, returning)?;
        for row in 0..rows.num_rows() {
            let body = self.body(&rows, row, 0)?;
            let response = self.fetcher.send(Method::POST, &url, Some(body), false).await;
            self.fetcher.invalidate();
            out.add(&response?, "INSERT")?;
        }
        out.finish(rows.num_rows() as u64)
    }

    /// UPDATE (`delete` false: `rows` holds the row id then the new values) or DELETE.
    pub async fn update_or_delete(
        &self,
        rows: RecordBatch,
        returning: &[String],
        delete: bool,
    ) -> Result<WriteResult, ConnectorError> {
        let writes = self.writes()?;
        let (Some(template), Some(id_column)) = (&writes.row_path, writes.row_id) else {
            return Err(ConnectorError::MissingOption {
                name: "row_path".into(),
                level: pgfed_connector_sdk::OptionLevel::Table.as_str(),
            });
        };
        let id_def = self.table.def.columns.get(id_column).ok_or(ConnectorError::Internal("row id column".into()))?;
        let ids = rows.columns().first().ok_or(ConnectorError::Internal("no row id column in the batch".into()))?;
        let (method, what) = match (delete, writes.put) {
            (true, _) => (Method::DELETE, "DELETE"),
            (false, true) => (Method::PUT, "UPDATE"),
            (false, false) => (Method::PATCH, "UPDATE"),
        };
        let mut out = Returning::new(self, returning)?;
        let mut affected = 0;
        for row in 0..rows.num_rows() {
            let id = self.row_id(ids.as_ref(), row, id_def)?;
            let url = row_url(&self.table.server, &self.table.def, template, id_column, &id)?;
            let body = if delete { None } else { Some(self.body(&rows, row, 1)?) };
            let response = self.fetcher.send(method.clone(), &url, body, true).await;
            self.fetcher.invalidate();
            let response = response?;
            if response.status == 404 {
                continue;
            }
            affected += 1;
            out.add(&response, what)?;
        }
        out.finish(affected)
    }
}

/// RETURNING rows read from write responses.
struct Returning<'a> {
    writer: &'a Writer<'a>,
    columns: Vec<&'a ColumnDef>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
}

impl<'a> Returning<'a> {
    fn new(writer: &'a Writer<'a>, names: &[String]) -> Result<Self, ConnectorError> {
        let columns = names.iter().map(|n| writer.column(n)).collect::<Result<Vec<_>, _>>()?;
        let builders = columns.iter().map(|c| ColumnBuilder::new(&c.ty)).collect();
        Ok(Returning { writer, columns, builders, rows: 0 })
    }

    fn add(&mut self, response: &Response, what: &str) -> Result<(), ConnectorError> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let def = &self.writer.table.def;
        let writes = self.writer.writes()?;
        let refuse = |why: &str| ConnectorError::NotSupported(format!("{what} ... RETURNING when {why}"));
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Err(refuse("the API answers without a body"));
        }
        let body: &RawValue = serde_json::from_slice(&response.body).map_err(|_| refuse("the answer is not JSON"))?;
        let row = writes
            .response_row
            .get(body)
            .ok()
            .flatten()
            .filter(|r| kind(r) == Kind::Object)
            .ok_or_else(|| refuse("the answer holds no row object at response_row"))?;
        let object = Object::parse(row).map_err(|_| refuse("the answer is not a JSON object"))?;
        let at = format!("the {what} response");
        for (builder, c) in self.builders.iter_mut().zip(&self.columns) {
            let index = def.column(&c.name).map(|(i, _)| i).unwrap_or_default();
            let value = match lookup(def, index, row, Some(&object))? {
                Some(raw) => convert(c, raw, &at)?,
                None => crate::convert::Scalar::Null,
            };
            check_not_null(c, &value, &at)?;
            builder.append(&value);
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self, rows_affected: u64) -> Result<WriteResult, ConnectorError> {
        if self.columns.is_empty() {
            return Ok(WriteResult { rows_affected, returning: None });
        }
        let fields: Vec<_> = self.columns.iter().map(|c| c.field.clone()).collect();
        let arrays = self
            .builders
            .iter_mut()
            .map(|b| b.finish().map_err(|e| ConnectorError::Internal(format!("building RETURNING rows: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| ConnectorError::Internal(format!("building RETURNING rows: {e}")))?;
        Ok(WriteResult { rows_affected, returning: Some(batch) })
    }
}
