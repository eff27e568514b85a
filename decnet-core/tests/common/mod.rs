//! Test databases for the repository suite: every test runs against SQLite (a temp file) AND
//! MariaDB (a fresh database on the server named by `DECNET_TEST_MYSQL_URL`, which
//! `cargo xtask test` installs, starts and sets). Same tests, both backends.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use decnet_core::repo::{DbConfig, DbType, Repository};
use sqlx::Connection as _;

pub const MYSQL_VAR: &str = "DECNET_TEST_MYSQL_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// A fresh, empty database; removed by [`TestDb::cleanup`] (SQLite files also on drop).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    sqlite_path: Option<PathBuf>,
    mysql: Option<(String, String)>,
}

fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{tag}_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// The MariaDB server URL (no database), or a panic that says how to get one.
pub fn mysql_server() -> String {
    match std::env::var(MYSQL_VAR) {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "{MYSQL_VAR} is not set: the repository tests also run against MariaDB. Run them with \
             `cargo xtask test` (installs and starts mariadb-server and sets it), or start a server \
             and set {MYSQL_VAR}=mysql://user:password@127.0.0.1:3306 for a user that may create \
             databases named decnet_t_*"
        ),
    }
}

impl TestDb {
    pub async fn new(backend: Backend, tag: &str) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("decnet-{}.db", unique(tag)));
                TestDb {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    sqlite_path: Some(path),
                    mysql: None,
                }
            }
            Backend::MySql => {
                let server = mysql_server();
                let name = format!("decnet_t_{}", unique(tag));
                let mut conn = sqlx::MySqlConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("cannot reach MariaDB at {MYSQL_VAR}={server}: {e}")
                    });
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE `{name}`").as_str())
                    .await
                    .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
                let _ = conn.close().await;
                TestDb {
                    backend,
                    url: format!("{server}/{name}"),
                    sqlite_path: None,
                    mysql: Some((server, name)),
                }
            }
        }
    }

    pub fn config(&self) -> DbConfig {
        let t = match self.backend {
            Backend::Sqlite => DbType::Sqlite,
            Backend::MySql => DbType::MySql,
        };
        DbConfig {
            db_type: t,
            url: self.url.clone(),
        }
    }

    pub async fn open(&self) -> Repository {
        Repository::open(&self.config())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// Drops the MariaDB database (SQLite files go on drop).
    pub async fn cleanup(self) {
        if let Some((server, name)) = &self.mysql
            && let Ok(mut conn) = sqlx::MySqlConnection::connect(server).await
        {
            let _ = sqlx::Executor::execute(
                &mut conn,
                format!("DROP DATABASE IF EXISTS `{name}`").as_str(),
            )
            .await;
            let _ = conn.close().await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(p) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
                let mut q = p.clone().into_os_string();
                q.push(suffix);
                let _ = std::fs::remove_file(q);
            }
        }
    }
}

/// Instantiates `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::mysql`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    super::$name($crate::common::Backend::MySql).await
                }
            }
        )*
    };
}
