//! Reading rows back: typed getters that turn a bad stored value into [`RepoError::Corrupt`]
//! naming the table, row and column.
use std::net::IpAddr;

use sqlx::{Row as _, any::AnyRow};

use super::RepoError;
use crate::time_fmt::parse_ts;

pub(crate) struct Decoder<'r> {
    row: &'r AnyRow,
    table: &'static str,
    id: i64,
}

impl<'r> Decoder<'r> {
    /// `id_col`: index of a column that identifies the row in errors (`None`: none).
    pub(crate) fn new(row: &'r AnyRow, table: &'static str, id_col: Option<usize>) -> Self {
        let id = id_col
            .and_then(|i| row.try_get::<i64, _>(i).ok())
            .unwrap_or(-1);
        Decoder { row, table, id }
    }

    fn corrupt(&self, column: &'static str, value: String, reason: impl ToString) -> RepoError {
        RepoError::Corrupt {
            table: self.table,
            id: self.id,
            column,
            value,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn i64(&self, i: usize, column: &'static str) -> Result<i64, RepoError> {
        self.row
            .try_get::<i64, _>(i)
            .map_err(|e| self.corrupt(column, String::new(), e))
    }

    pub(crate) fn u64(&self, i: usize, column: &'static str) -> Result<u64, RepoError> {
        let v = self.i64(i, column)?;
        u64::try_from(v).map_err(|_| self.corrupt(column, v.to_string(), "negative"))
    }

    pub(crate) fn int<T: TryFrom<i64>>(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<T, RepoError> {
        let v = self.i64(i, column)?;
        T::try_from(v).map_err(|_| self.corrupt(column, v.to_string(), "out of range"))
    }

    pub(crate) fn text(&self, i: usize, column: &'static str) -> Result<String, RepoError> {
        match self.row.try_get::<String, _>(i) {
            Ok(s) => Ok(s),
            // MySQL sends TEXT columns with BLOB type codes, which the Any driver reports as
            // bytes: read them as such and check the UTF-8.
            Err(sqlx::Error::ColumnDecode { .. }) => {
                let b = self.bytes(i, column)?;
                String::from_utf8(b).map_err(|e| self.corrupt(column, String::new(), e))
            }
            Err(e) => Err(self.corrupt(column, String::new(), e)),
        }
    }

    pub(crate) fn bytes(&self, i: usize, column: &'static str) -> Result<Vec<u8>, RepoError> {
        self.row
            .try_get::<Vec<u8>, _>(i)
            .map_err(|e| self.corrupt(column, String::new(), e))
    }

    pub(crate) fn hash(&self, i: usize, column: &'static str) -> Result<[u8; 32], RepoError> {
        let b = self.bytes(i, column)?;
        <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| self.corrupt(column, format!("{} bytes", b.len()), "not 32 bytes"))
    }

    pub(crate) fn ts(&self, i: usize, column: &'static str) -> Result<i64, RepoError> {
        let t = self.text(i, column)?;
        parse_ts(&t).map_err(|e| self.corrupt(column, t.clone(), e.reason))
    }

    pub(crate) fn ip(&self, i: usize, column: &'static str) -> Result<IpAddr, RepoError> {
        let t = self.text(i, column)?;
        t.parse()
            .map_err(|e: std::net::AddrParseError| self.corrupt(column, t.clone(), e))
    }

    pub(crate) fn opt_ip(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<IpAddr>, RepoError> {
        match self
            .row
            .try_get::<Option<String>, _>(i)
            .map_err(|e| self.corrupt(column, String::new(), e))?
        {
            None => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|e: std::net::AddrParseError| self.corrupt(column, t.clone(), e)),
        }
    }

    pub(crate) fn opt_int<T: TryFrom<i64>>(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<T>, RepoError> {
        match self
            .row
            .try_get::<Option<i64>, _>(i)
            .map_err(|e| self.corrupt(column, String::new(), e))?
        {
            None => Ok(None),
            Some(v) => T::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(column, v.to_string(), "out of range")),
        }
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<T, RepoError> {
        let t = self.text(i, column)?;
        serde_json::from_str(&t).map_err(|e| self.corrupt(column, t.clone(), e))
    }
}

/// Saturating u64 → i64 for storage.
pub(crate) fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
