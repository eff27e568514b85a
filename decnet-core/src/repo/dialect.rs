//! What differs between the SQL dialects, and nothing else: how a conflict merges into the stored
//! row, how an insert ignores duplicates, how a write transaction starts, how many bind variables
//! a statement may carry. Every query is written once, in the portable modules, and asks the
//! [`Dialect`] for these pieces.

/// The database behind a [`super::Repository`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    MySql,
}

/// How a column of an existing row takes an incoming value on conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The larger value (counters derived from facts, `last_seen`): never shrinks.
    Max,
    /// The smaller value (`first_seen`): never moves later.
    Min,
    /// Bitwise OR (flag unions).
    Or,
    /// Adds the incoming value (increment-style counters; not idempotent, use with care).
    Sum,
    /// Takes the incoming value.
    Replace,
    /// Takes the incoming value only when the incoming `guard` column is ≥ the stored one (a
    /// newer or equal snapshot), else keeps the stored value.
    ReplaceIfNotLess(&'static str),
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
        }
    }

    /// The scalar two-argument maximum / minimum functions.
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "max",
            Dialect::MySql => "GREATEST",
        }
    }

    pub fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "min",
            Dialect::MySql => "LEAST",
        }
    }

    /// Statement that opens a write transaction. SQLite takes the write lock up front (so the
    /// busy timeout covers waiting for other processes and nothing fails half-way).
    /// `SUM(expr)` as an integer (MySQL sums integers as DECIMAL, which the Any driver does not
    /// decode).
    pub fn sum_int(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SUM({expr})"),
            Dialect::MySql => format!("CAST(SUM({expr}) AS SIGNED)"),
        }
    }

    /// SQL for the canonical text ([`crate::time_fmt::format_ts`]) of `expr`, Unix epoch
    /// nanoseconds as an integer (from 1970 on): how integer event times meet the text times of
    /// the other tables.
    pub fn ts_text(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "(strftime('%Y-%m-%dT%H:%M:%S', ({expr}) / 1000000000, 'unixepoch') || \
                 printf('.%09dZ', ({expr}) % 1000000000))"
            ),
            Dialect::MySql => format!(
                "CONCAT(DATE_FORMAT(DATE_ADD('1970-01-01 00:00:00', INTERVAL (({expr}) DIV \
                 1000000000) SECOND), '%Y-%m-%dT%H:%i:%s'), '.', LPAD(({expr}) MOD 1000000000, 9, \
                 '0'), 'Z')"
            ),
        }
    }

    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::MySql => "START TRANSACTION",
        }
    }

    /// Bind variables one statement may carry (with a margin).
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            Dialect::MySql => 65_000,
        }
    }

    /// Rows per multi-row INSERT for `columns` columns.
    pub fn rows_per_statement(self, columns: usize) -> usize {
        (self.max_params() / columns.max(1)).clamp(1, 1000)
    }

    /// `INSERT` keyword that skips rows whose unique key already exists (the count of affected
    /// rows is then the number of new rows). SQLite needs [`Dialect::ignore_tail`] as well.
    pub fn insert_ignore(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT INTO",
            Dialect::MySql => "INSERT IGNORE INTO",
        }
    }

    pub fn ignore_tail(self) -> &'static str {
        match self {
            Dialect::Sqlite => "ON CONFLICT DO NOTHING",
            Dialect::MySql => "",
        }
    }

    /// The conflict clause of an upsert into `table` whose unique key is `key`: each column in
    /// `merges` takes the incoming value as its [`Merge`] says; other columns keep the stored
    /// value. With no merges, duplicates are ignored.
    pub fn upsert_tail(self, table: &str, key: &[&str], merges: &[(&str, Merge)]) -> String {
        // MySQL evaluates assignments left to right, each seeing the columns already assigned:
        // guarded replacements must read the guard before it is updated, so they go first.
        let mut ordered: Vec<&(&str, Merge)> = merges
            .iter()
            .filter(|(_, m)| matches!(m, Merge::ReplaceIfNotLess(_)))
            .collect();
        ordered.extend(
            merges
                .iter()
                .filter(|(_, m)| !matches!(m, Merge::ReplaceIfNotLess(_))),
        );
        match self {
            Dialect::Sqlite => {
                if merges.is_empty() {
                    return format!("ON CONFLICT({}) DO NOTHING", key.join(", "));
                }
                let sets: Vec<String> = ordered
                    .iter()
                    .map(|(c, m)| {
                        let (old, new) = (format!("{table}.{c}"), format!("excluded.{c}"));
                        let v = match m {
                            Merge::Max => format!("max({old}, {new})"),
                            Merge::Min => format!("min({old}, {new})"),
                            Merge::Or => format!("({old} | {new})"),
                            Merge::Sum => format!("({old} + {new})"),
                            Merge::Replace => new,
                            Merge::ReplaceIfNotLess(g) => format!(
                                "CASE WHEN excluded.{g} >= {table}.{g} THEN {new} ELSE {old} END"
                            ),
                        };
                        format!("{c} = {v}")
                    })
                    .collect();
                format!(
                    "ON CONFLICT({}) DO UPDATE SET {}",
                    key.join(", "),
                    sets.join(", ")
                )
            }
            Dialect::MySql => {
                if merges.is_empty() {
                    let k = key.first().copied().unwrap_or("id");
                    return format!("ON DUPLICATE KEY UPDATE {k} = {k}");
                }
                let sets: Vec<String> = ordered
                    .iter()
                    .map(|(c, m)| {
                        let new = format!("VALUES({c})");
                        let v = match m {
                            Merge::Max => format!("GREATEST({c}, {new})"),
                            Merge::Min => format!("LEAST({c}, {new})"),
                            Merge::Or => format!("({c} | {new})"),
                            Merge::Sum => format!("({c} + {new})"),
                            Merge::Replace => new,
                            Merge::ReplaceIfNotLess(g) => {
                                format!("IF(VALUES({g}) >= {g}, {new}, {c})")
                            }
                        };
                        format!("{c} = {v}")
                    })
                    .collect();
                format!("ON DUPLICATE KEY UPDATE {}", sets.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_upsert_clause() {
        let t = Dialect::Sqlite.upsert_tail(
            "s",
            &["a", "b"],
            &[
                ("n", Merge::Max),
                ("cmds", Merge::ReplaceIfNotLess("n")),
                ("f", Merge::Or),
            ],
        );
        assert_eq!(
            t,
            "ON CONFLICT(a, b) DO UPDATE SET cmds = CASE WHEN excluded.n >= s.n THEN excluded.cmds \
             ELSE s.cmds END, n = max(s.n, excluded.n), f = (s.f | excluded.f)"
        );
        assert_eq!(
            Dialect::Sqlite.upsert_tail("s", &["a"], &[]),
            "ON CONFLICT(a) DO NOTHING"
        );
    }

    #[test]
    fn mysql_guarded_replace_reads_the_guard_before_it_changes() {
        let t = Dialect::MySql.upsert_tail(
            "s",
            &["a"],
            &[
                ("n", Merge::Max),
                ("first", Merge::Min),
                ("cmds", Merge::ReplaceIfNotLess("n")),
            ],
        );
        assert_eq!(
            t,
            "ON DUPLICATE KEY UPDATE cmds = IF(VALUES(n) >= n, VALUES(cmds), cmds), \
             n = GREATEST(n, VALUES(n)), first = LEAST(first, VALUES(first))"
        );
    }

    #[test]
    fn rows_per_statement_respects_the_variable_limit() {
        assert_eq!(Dialect::Sqlite.rows_per_statement(14), 1000);
        assert_eq!(Dialect::Sqlite.rows_per_statement(64), 500);
        assert_eq!(Dialect::MySql.rows_per_statement(100), 650);
    }
}
