//! DataRow bodies.

use bytes::Bytes;

use crate::UpstreamError;

/// One `DataRow` message body as Postgres sent it (column count, then length-prefixed values);
/// values are sliced out on demand, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow(Bytes);

impl DataRow {
    /// `body` is the message after its tag and length.
    pub fn new(body: Bytes) -> Result<Self, UpstreamError> {
        let row = DataRow(body);
        // Validate once so that `values` can trust the lengths.
        let mut n = 0usize;
        for v in row.iter_checked() {
            v?;
            n += 1;
        }
        if n != row.len() {
            return Err(UpstreamError::Protocol("DataRow: fewer values than announced".into()));
        }
        Ok(row)
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter_checked(&self) -> impl Iterator<Item = Result<Option<&[u8]>, UpstreamError>> + '_ {
        let mut pos = 2usize;
        let body = &self.0[..];
        (0..self.len()).map(move |_| {
            let len_bytes =
                body.get(pos..pos + 4).ok_or_else(|| UpstreamError::Protocol("DataRow truncated".into()))?;
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            pos += 4;
            if len < 0 {
                return Ok(None);
            }
            let end = pos + len as usize;
            let v = body.get(pos..end).ok_or_else(|| UpstreamError::Protocol("DataRow truncated".into()))?;
            pos = end;
            Ok(Some(v))
        })
    }

    /// The values in column order; `None` is NULL.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        // Checked in `new`.
        self.iter_checked().map(|v| v.unwrap_or(None))
    }

    /// Value `i`, `None` for NULL or past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.values().nth(i).flatten()
    }

    /// Every value as UTF-8 text (text-format results).
    pub fn text_values(&self) -> Result<Vec<Option<String>>, UpstreamError> {
        self.values()
            .map(|v| {
                v.map(|b| {
                    String::from_utf8(b.to_vec())
                        .map_err(|_| UpstreamError::Protocol("DataRow: value is not UTF-8".into()))
                })
                .transpose()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_nulls() {
        let mut b = vec![0u8, 3];
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"hi");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        let row = DataRow::new(Bytes::from(b)).expect("valid");
        assert_eq!(row.len(), 3);
        let v: Vec<_> = row.values().collect();
        assert_eq!(v, vec![Some(&b"hi"[..]), None, Some(&b""[..])]);
        assert_eq!(row.text_values().expect("utf8"), vec![Some("hi".into()), None, Some(String::new())]);
    }

    #[test]
    fn truncated_rows_are_rejected() {
        let mut b = vec![0u8, 2];
        b.extend_from_slice(&5i32.to_be_bytes());
        b.extend_from_slice(b"hi");
        assert!(DataRow::new(Bytes::from(b)).is_err());
        assert!(DataRow::new(Bytes::from_static(&[0, 1])).is_err());
    }
}
