//! Reading rows back, by column name: typed getters that turn a bad stored value into
//! [`RepoError::Corrupt`] naming the table, the row (its `id` column when the row has one) and
//! the column. Every table module decodes its rows through these, never by position, so a
//! SELECT list can change order or gain columns without breaking a decoder.
use std::net::IpAddr;

use sqlx::{Column as _, Row as _, any::AnyRow};

use super::RepoError;
use crate::time_fmt::parse_ts;

pub(crate) struct Decoder<'r> {
    row: &'r AnyRow,
    table: &'static str,
}

impl<'r> Decoder<'r> {
    pub(crate) fn new(row: &'r AnyRow, table: &'static str) -> Self {
        Decoder { row, table }
    }

    /// The position of `column` in the row, from the row's own column list. (Not sqlx's name
    /// lookup: with MariaDB it is built from the prepared statement's metadata, which is empty
    /// for `INSERT … RETURNING`, while the row's columns are always there.)
    fn index(&self, column: &'static str) -> Result<usize, RepoError> {
        self.row
            .columns()
            .iter()
            .position(|c| c.name() == column)
            .ok_or_else(|| self.corrupt(column, String::new(), "no such column in the row"))
    }

    /// The error for `column`; the row is named by its `id` column if it has one (looked up
    /// only here, on the error path).
    fn corrupt(&self, column: &'static str, value: String, reason: impl ToString) -> RepoError {
        let id = match self.row.columns().iter().position(|c| c.name() == "id") {
            Some(i) => self.row.try_get::<i64, _>(i).unwrap_or(-1),
            None => -1,
        };
        RepoError::Corrupt {
            table: self.table,
            id,
            column,
            value,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn i64(&self, column: &'static str) -> Result<i64, RepoError> {
        self.row
            .try_get::<i64, _>(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e))
    }

    pub(crate) fn u64(&self, column: &'static str) -> Result<u64, RepoError> {
        let v = self.i64(column)?;
        u64::try_from(v).map_err(|_| self.corrupt(column, v.to_string(), "negative"))
    }

    pub(crate) fn int<T: TryFrom<i64>>(&self, column: &'static str) -> Result<T, RepoError> {
        let v = self.i64(column)?;
        T::try_from(v).map_err(|_| self.corrupt(column, v.to_string(), "out of range"))
    }

    /// A 0/1 flag column.
    pub(crate) fn flag(&self, column: &'static str) -> Result<bool, RepoError> {
        Ok(self.i64(column)? != 0)
    }

    pub(crate) fn text(&self, column: &'static str) -> Result<String, RepoError> {
        match self.row.try_get::<String, _>(self.index(column)?) {
            Ok(s) => Ok(s),
            // MySQL sends TEXT columns with BLOB type codes, which the Any driver reports as
            // bytes: read them as such and check the UTF-8.
            Err(sqlx::Error::ColumnDecode { .. }) => {
                let b = self.bytes(column)?;
                String::from_utf8(b).map_err(|e| self.corrupt(column, String::new(), e))
            }
            Err(e) => Err(self.corrupt(column, String::new(), e)),
        }
    }

    /// A nullable text column (NULL from an outer join included); bytes that are not UTF-8 are
    /// read lossily.
    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>, RepoError> {
        match self.row.try_get::<Option<String>, _>(self.index(column)?) {
            Ok(v) => Ok(v),
            Err(_) => match self.row.try_get::<Option<Vec<u8>>, _>(self.index(column)?) {
                Ok(v) => Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned())),
                Err(e) => Err(self.corrupt(column, String::new(), e)),
            },
        }
    }

    pub(crate) fn bytes(&self, column: &'static str) -> Result<Vec<u8>, RepoError> {
        self.row
            .try_get::<Vec<u8>, _>(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e))
    }

    pub(crate) fn hash(&self, column: &'static str) -> Result<[u8; 32], RepoError> {
        let b = self.bytes(column)?;
        <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| self.corrupt(column, format!("{} bytes", b.len()), "not 32 bytes"))
    }

    pub(crate) fn ts(&self, column: &'static str) -> Result<i64, RepoError> {
        let t = self.text(column)?;
        parse_ts(&t).map_err(|e| self.corrupt(column, t.clone(), e.reason))
    }

    pub(crate) fn ip(&self, column: &'static str) -> Result<IpAddr, RepoError> {
        let t = self.text(column)?;
        t.parse()
            .map_err(|e: std::net::AddrParseError| self.corrupt(column, t.clone(), e))
    }

    pub(crate) fn opt_ip(&self, column: &'static str) -> Result<Option<IpAddr>, RepoError> {
        match self
            .row
            .try_get::<Option<String>, _>(self.index(column)?)
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
        column: &'static str,
    ) -> Result<Option<T>, RepoError> {
        match self
            .row
            .try_get::<Option<i64>, _>(self.index(column)?)
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
        column: &'static str,
    ) -> Result<T, RepoError> {
        let t = self.text(column)?;
        serde_json::from_str(&t).map_err(|e| self.corrupt(column, t.clone(), e))
    }
}

/// Saturating u64 → i64 for storage.
pub(crate) fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
