//! Reading rows back, by column name: typed getters that turn a bad stored value into
//! [`RepoError::Corrupt`] naming the table, the row (its `id` column when the row has one) and
//! the column. Every table module decodes its rows through these, never by position, so a
//! SELECT list can change order or gain columns without breaking a decoder.
use std::net::IpAddr;

use sqlx::any::AnyRow;

use super::{
    RepoError,
    sqlite_read::{AnyCells, Cells},
};
use crate::time_fmt::parse_ts;

/// Where a [`Decoder`] reads its cells: a row of the sqlx pool, or a row borrowed on a SQLite
/// read connection's thread (see `sqlite_read`). Both read through [`Cells`], so a table's
/// decoder is the same code on either path.
pub(crate) enum Src<'r> {
    Any(AnyCells<'r>),
    Cells(&'r dyn Cells),
}

impl<'r> From<&'r AnyRow> for Src<'r> {
    fn from(row: &'r AnyRow) -> Self {
        Src::Any(AnyCells(row))
    }
}

impl<'r> From<&'r dyn Cells> for Src<'r> {
    fn from(cells: &'r dyn Cells) -> Self {
        Src::Cells(cells)
    }
}

pub(crate) struct Decoder<'r> {
    src: Src<'r>,
    table: &'static str,
}

impl<'r> Decoder<'r> {
    pub(crate) fn new(row: impl Into<Src<'r>>, table: &'static str) -> Self {
        Decoder {
            src: row.into(),
            table,
        }
    }

    fn cells(&self) -> &dyn Cells {
        match &self.src {
            Src::Any(c) => c,
            Src::Cells(c) => *c,
        }
    }

    /// The position of `column` in the row, from the row's own column list. (Not sqlx's name
    /// lookup: with MariaDB it is built from the prepared statement's metadata, which is empty
    /// for `INSERT … RETURNING`, while the row's columns are always there.)
    fn index(&self, column: &'static str) -> Result<usize, RepoError> {
        self.cells()
            .index_of(column)
            .ok_or_else(|| self.corrupt(column, String::new(), "no such column in the row"))
    }

    /// The error for `column`; the row is named by its `id` column if it has one (looked up
    /// only here, on the error path).
    fn corrupt(&self, column: &'static str, value: String, reason: impl ToString) -> RepoError {
        let c = self.cells();
        let id = match c.index_of("id") {
            Some(i) => c.i64(i).unwrap_or(-1),
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
        self.cells()
            .i64(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e.0))
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

    /// A text column, borrowed from the row. (MySQL sends TEXT columns with BLOB type codes:
    /// [`Cells`] reads them as bytes and checks the UTF-8.)
    pub(crate) fn str(&self, column: &'static str) -> Result<&str, RepoError> {
        self.cells()
            .str(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e.0))
    }

    pub(crate) fn text(&self, column: &'static str) -> Result<String, RepoError> {
        self.str(column).map(str::to_owned)
    }

    /// A nullable text column (NULL from an outer join included); bytes that are not UTF-8 are
    /// read lossily.
    pub(crate) fn opt_text(&self, column: &'static str) -> Result<Option<String>, RepoError> {
        let i = self.index(column)?;
        match self.cells().opt_str(i) {
            Ok(v) => Ok(v.map(str::to_owned)),
            Err(_) => match self.cells().bytes(i) {
                Ok(b) => Ok(Some(String::from_utf8_lossy(b).into_owned())),
                Err(e) => Err(self.corrupt(column, String::new(), e.0)),
            },
        }
    }

    /// A bytes column, borrowed from the row.
    pub(crate) fn byte_slice(&self, column: &'static str) -> Result<&[u8], RepoError> {
        self.cells()
            .bytes(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e.0))
    }

    pub(crate) fn bytes(&self, column: &'static str) -> Result<Vec<u8>, RepoError> {
        self.byte_slice(column).map(<[u8]>::to_vec)
    }

    pub(crate) fn hash(&self, column: &'static str) -> Result<[u8; 32], RepoError> {
        let b = self.byte_slice(column)?;
        <[u8; 32]>::try_from(b)
            .map_err(|_| self.corrupt(column, format!("{} bytes", b.len()), "not 32 bytes"))
    }

    pub(crate) fn ts(&self, column: &'static str) -> Result<i64, RepoError> {
        let t = self.str(column)?;
        parse_ts(t).map_err(|e| self.corrupt(column, t.to_owned(), e.reason))
    }

    pub(crate) fn ip(&self, column: &'static str) -> Result<IpAddr, RepoError> {
        let t = self.str(column)?;
        t.parse()
            .map_err(|e: std::net::AddrParseError| self.corrupt(column, t.to_owned(), e))
    }

    pub(crate) fn opt_ip(&self, column: &'static str) -> Result<Option<IpAddr>, RepoError> {
        match self
            .cells()
            .opt_str(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e.0))?
        {
            None => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|e: std::net::AddrParseError| self.corrupt(column, t.to_owned(), e)),
        }
    }

    pub(crate) fn opt_int<T: TryFrom<i64>>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, RepoError> {
        match self
            .cells()
            .opt_i64(self.index(column)?)
            .map_err(|e| self.corrupt(column, String::new(), e.0))?
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
        let t = self.str(column)?;
        serde_json::from_str(t).map_err(|e| self.corrupt(column, t.to_owned(), e))
    }
}

/// Saturating u64 → i64 for storage.
pub(crate) fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
