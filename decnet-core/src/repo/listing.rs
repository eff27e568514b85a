//! What every filtered listing (the REST API's and the dashboard's) is assembled from: a WHERE
//! clause of bound parameters, LIKE patterns with escaped wildcards and the page bound. The
//! listings themselves live with their tables (`list_events` in `events`, `list_flows` in
//! `flows`, …) and take a filter struct; keyset cursors (newest first, `id < cursor`) make a
//! page cost the same at any depth. Filter values are always bound, never spliced into SQL.
use sqlx::any::AnyRow;

use super::{
    RepoError, Repository,
    decode::Decoder,
    limits,
    sqlite_read::{AnyCells, Cells},
};

/// Rows per page at most.
pub const MAX_PAGE: u32 = 500;
/// Longest text-search needle accepted.
pub const MAX_NEEDLE: usize = 128;

/// A bound parameter of a dynamically assembled statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// WHERE clauses and their parameters, assembled in order.
#[derive(Debug, Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    pub(crate) fn text(&mut self, clause: &str, v: impl Into<String>) {
        self.clauses.push(clause.to_owned());
        self.args.push(Arg::Text(v.into()));
    }

    pub(crate) fn int(&mut self, clause: &str, v: i64) {
        self.clauses.push(clause.to_owned());
        self.args.push(Arg::Int(v));
    }

    /// A clause with several parameters, bound in order.
    pub(crate) fn clause(&mut self, clause: &str, args: impl IntoIterator<Item = Arg>) {
        self.clauses.push(clause.to_owned());
        self.args.extend(args);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// Runs `head` + WHERE + `tail`, binding the clauses' parameters and then `extra`.
    pub(crate) async fn fetch(
        self,
        repo: &Repository,
        head: &str,
        tail: &str,
        extra: &[Arg],
    ) -> Result<Vec<AnyRow>, RepoError> {
        let sql = format!("{head}{}{tail}", self.sql());
        let mut q = sqlx::query(&sql);
        for a in self.args.iter().chain(extra) {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        Ok(q.fetch_all(repo.pool()).await?)
    }

    /// Runs `head` + WHERE + `tail` like [`Where::fetch`], but hands each row's cells, borrowed,
    /// to `each` (with `state`, returned at the end) instead of collecting rows: on SQLite (a
    /// file) on a read connection's thread (see `sqlite_read`), otherwise over the pool's rows.
    pub(crate) async fn each_row<S, F>(
        self,
        repo: &Repository,
        head: &str,
        tail: &str,
        extra: &[Arg],
        mut state: S,
        mut each: F,
    ) -> Result<S, RepoError>
    where
        S: Send + 'static,
        F: FnMut(&mut S, &dyn Cells) -> Result<(), RepoError> + Send + 'static,
    {
        if let Some(readers) = repo.readers() {
            let sql = format!("{head}{}{tail}", self.sql());
            let mut args = self.args;
            args.extend_from_slice(extra);
            return readers.each_row(sql, args, state, each).await;
        }
        for row in &self.fetch(repo, head, tail, extra).await? {
            each(&mut state, &AnyCells(row))?;
        }
        Ok(state)
    }
}

impl Where {
    /// The rows of `head` + WHERE + `tail`, each decoded by `decode` from its borrowed cells
    /// ([`Where::each_row`]: on SQLite on a read connection's thread).
    pub(crate) async fn decoded<T, F>(
        self,
        repo: &Repository,
        head: &str,
        tail: &str,
        extra: &[Arg],
        decode: F,
    ) -> Result<Vec<T>, RepoError>
    where
        T: Send + 'static,
        F: Fn(&dyn Cells) -> Result<T, RepoError> + Send + 'static,
    {
        self.each_row(repo, head, tail, extra, Vec::new(), move |out, cells| {
            out.push(decode(cells)?);
            Ok(())
        })
        .await
    }
}

/// Up to `limit` rows of `select` with `id > after`, in id order: how workers and feeds read
/// new rows from a cursor.
pub(crate) async fn rows_after(
    repo: &Repository,
    select: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<AnyRow>, RepoError> {
    Ok(
        sqlx::query(&format!("{select} WHERE id > ? ORDER BY id LIMIT ?"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(repo.pool())
            .await?,
    )
}

/// How many attacker addresses one `IN (…)` list of [`each_row_of_ips`] carries.
const IPS_PER_STATEMENT: usize = 500;

/// The batch reads by attacker: runs `sql(list)` — a statement whose `IN (list)` takes attacker
/// addresses — once per [`IPS_PER_STATEMENT`] of `ips` (bound as their canonical text), and
/// hands every row's cells to `each` with `state` (returned at the end): on SQLite (a file) on a
/// read connection's thread (see `sqlite_read`), otherwise over the pool's rows.
pub(crate) async fn each_row_of_ips<S, F>(
    repo: &Repository,
    ips: &[std::net::IpAddr],
    sql: impl Fn(&str) -> String,
    state: S,
    each: F,
) -> Result<S, RepoError>
where
    S: Send + 'static,
    F: FnMut(&mut S, &dyn Cells) -> Result<(), RepoError> + Send + 'static,
{
    let mut carried = (state, each);
    for chunk in ips.chunks(IPS_PER_STATEMENT) {
        let sql = sql(&super::bulk::placeholders(chunk.len()));
        let w = Where {
            args: chunk.iter().map(|ip| Arg::Text(ip.to_string())).collect(),
            ..Where::default()
        };
        carried = w
            .each_row(repo, &sql, "", &[], carried, |(st, each), cells| {
                each(st, cells)
            })
            .await?;
    }
    Ok(carried.0)
}

/// Up to `limit` rows of `select` with `id > after`, in id order, each decoded by `decode`
/// from its cells (on SQLite on a read connection's thread): how workers read their input from
/// a cursor without the pool's per-row copies.
pub(crate) async fn decoded_after<T, F>(
    repo: &Repository,
    select: &str,
    after: i64,
    limit: u32,
    decode: F,
) -> Result<Vec<T>, RepoError>
where
    T: Send + 'static,
    F: Fn(&dyn Cells) -> Result<T, RepoError> + Send + 'static,
{
    let mut w = Where::default();
    w.int("id > ?", after);
    w.decoded(
        repo,
        select,
        " ORDER BY id LIMIT ?",
        &[Arg::Int(i64::from(limit))],
        decode,
    )
    .await
}

/// `s` as a LIKE pattern matching it anywhere, `!` escaping the wildcards (an escape character
/// both SQLite and MySQL read the same way).
pub(crate) fn like_anywhere(s: &str) -> String {
    let mut out = String::from("%");
    for c in limits::text(s, MAX_NEEDLE).chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub(crate) fn like_prefix(s: &str) -> String {
    let mut p = like_anywhere(s);
    p.remove(0);
    p
}

/// The LIMIT of a page: 1 to [`MAX_PAGE`].
pub(crate) fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}

/// The newest-first page tail: ` ORDER BY id DESC LIMIT ?` with its bound limit.
pub(crate) fn newest_first(limit: u32) -> (&'static str, [Arg; 1]) {
    (" ORDER BY id DESC LIMIT ?", [Arg::Int(page_limit(limit))])
}

/// Named count.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

/// Rows of (`name` column, `n` count) as [`NameCount`]s.
pub(crate) fn name_counts(
    rows: &[AnyRow],
    table: &'static str,
    name: &'static str,
) -> Result<Vec<NameCount>, RepoError> {
    rows.iter()
        .map(|row| {
            let d = Decoder::new(row, table);
            Ok(NameCount {
                name: d.text(name)?,
                count: d.u64("n")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_anywhere("a%b_c!"), "%a!%b!_c!!%");
        assert_eq!(like_prefix("10.0."), "10.0.%");
        assert!(like_anywhere(&"x".repeat(1000)).len() <= MAX_NEEDLE + 2);
    }
}
