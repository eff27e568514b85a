//! Statement pieces written once for every table: multi-row `INSERT INTO t (cols) VALUES (?, …),
//! …` followed by the dialect's conflict clause, chunked to the dialect's bind-variable limit;
//! the `SELECT` list of a table's column list; `?` lists; and the bounded forms values are bound
//! in (names, JSON lists).
use sqlx::{Any, AnyConnection, any::AnyArguments, query::Query};

use super::{RepoError, dialect::Dialect, limits};

pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// `INSERT … VALUES` for `rows` rows of `columns`, with `head` (e.g. `INSERT INTO`) and `tail`.
pub(crate) fn insert_sql(
    head: &str,
    table: &str,
    columns: &[&str],
    rows: usize,
    tail: &str,
) -> String {
    let mut one = String::with_capacity(columns.len() * 2 + 2);
    one.push('(');
    for i in 0..columns.len() {
        if i > 0 {
            one.push(',');
        }
        one.push('?');
    }
    one.push(')');
    let mut sql = String::with_capacity(64 + rows * (one.len() + 1) + tail.len());
    sql.push_str(head);
    sql.push(' ');
    sql.push_str(table);
    sql.push_str(" (");
    sql.push_str(&columns.join(", "));
    sql.push_str(") VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    if !tail.is_empty() {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

/// `SELECT id, <columns> FROM <table>`: a table's read projection from its column list.
pub(crate) fn select_sql(table: &str, columns: &[&str]) -> String {
    format!("SELECT id, {} FROM {table}", columns.join(", "))
}

/// `?, ?, …` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// A name (decky, service, kind …) bounded to [`limits::NAME`], owned for binding.
pub(crate) fn name(s: &str) -> String {
    limits::text(s, limits::NAME).into_owned()
}

/// `v` as JSON text bounded to [`limits::LONG`] (`[]` if it does not serialise).
pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    limits::text(
        &serde_json::to_string(v).unwrap_or_else(|_| "[]".into()),
        limits::LONG,
    )
    .into_owned()
}

/// The fixed parts of a multi-row insert.
pub(crate) struct Insert<'a> {
    /// `INSERT INTO` or the dialect's ignoring form.
    pub head: &'a str,
    pub table: &'a str,
    pub columns: &'a [&'a str],
    /// The dialect's conflict clause (or empty).
    pub tail: &'a str,
}

/// Inserts `items` (bound row by row by `bind`, which must bind exactly `columns.len()` values)
/// in chunks; returns the summed affected-row count (dialect-dependent meaning on conflicts).
pub(crate) async fn insert_rows<T>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    stmt: Insert<'_>,
    items: &[T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> Result<u64, RepoError> {
    let Insert {
        head,
        table,
        columns,
        tail,
    } = stmt;
    let per = dialect.rows_per_statement(columns.len());
    let mut total = 0;
    let mut full_sql: Option<String> = None;
    for chunk in items.chunks(per) {
        let partial;
        let sql: &str = if chunk.len() == per {
            full_sql.get_or_insert_with(|| insert_sql(head, table, columns, per, tail))
        } else {
            partial = insert_sql(head, table, columns, chunk.len(), tail);
            &partial
        };
        let mut q = sqlx::query(sql);
        for item in chunk {
            q = bind(q, item);
        }
        // Full chunks reuse one cached statement; odd-sized tails are one-off.
        let q = q.persistent(chunk.len() == per);
        total += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_shape() {
        assert_eq!(
            insert_sql("INSERT INTO", "t", &["a", "b"], 2, "ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            insert_sql("INSERT IGNORE INTO", "t", &["a"], 1, ""),
            "INSERT IGNORE INTO t (a) VALUES (?)"
        );
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(select_sql("t", &["a", "b"]), "SELECT id, a, b FROM t");
    }
}
