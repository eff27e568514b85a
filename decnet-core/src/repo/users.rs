//! `users`: dashboard/API accounts. The repository stores the argon2 PHC string it is given; it
//! never sees a password.
//!
//! Written and read by the API (login, account management, the first-admin bootstrap) and
//! `decnet web`'s user commands.
//!
//! Usernames are unique regardless of case: every lookup is by `username_key`, the name in
//! lower case ([`username_key`]); `username` keeps the spelling it was created with. Each user
//! has a `token_generation`, bumped by every change that must end the sessions of the user
//! (password change or reset, role change, deletion: the row is gone): the API refuses tokens
//! carrying another generation, so revocation survives a restart.
use super::{RepoError, Repository, decode::Decoder, limits};
use crate::{
    model::{Role, User},
    time_fmt::{format_ts, now_ns},
};

/// What a [`User`] is read from.
const SELECT: &str =
    "SELECT id, username, password_hash, role, must_change_password, token_generation FROM users";

/// The case-insensitive key a username is looked up by.
pub fn username_key(username: &str) -> String {
    limits::text(username, 255).to_lowercase()
}

fn decode(row: &sqlx::any::AnyRow) -> Result<User, RepoError> {
    let d = Decoder::new(row, "users");
    let role = match d.text("role")?.as_str() {
        "admin" => Role::Admin,
        "viewer" => Role::Viewer,
        other => {
            return Err(RepoError::Corrupt {
                table: "users",
                id: d.i64("id")?,
                column: "role",
                value: other.to_owned(),
                reason: "not admin or viewer".into(),
            });
        }
    };
    Ok(User {
        id: d.i64("id")?,
        username: d.text("username")?,
        password_hash: d.text("password_hash")?,
        role,
        must_change_password: d.flag("must_change_password")?,
        token_generation: d.i64("token_generation")?,
    })
}

impl Repository {
    /// Creates a user; `Ok(false)` if the username is taken (in any case).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        must_change_password: bool,
    ) -> Result<bool, RepoError> {
        let now = format_ts(now_ns());
        let mut tx = self.begin().await?;
        let sql = format!(
            "{} users (username, username_key, password_hash, role, must_change_password, \
             token_generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) {}",
            self.dialect().insert_ignore(),
            self.dialect().ignore_tail()
        );
        let r = sqlx::query(&sql)
            .bind(limits::text(username, 255).into_owned())
            .bind(username_key(username))
            .bind(password_hash.to_owned())
            .bind(role.as_str())
            .bind(i64::from(must_change_password))
            // A user deleted and created again under the same name starts at a generation its
            // old tokens never carried.
            .bind(now_ns())
            .bind(now.clone())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// The user named `username` in any case.
    pub async fn user(&self, username: &str) -> Result<Option<User>, RepoError> {
        let row = sqlx::query(&format!("{SELECT} WHERE username_key = ?"))
            .bind(username_key(username))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>, RepoError> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn user_count(&self) -> Result<u64, RepoError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Sets a new password hash (and whether it must be changed at next login) and bumps the
    /// token generation; `Ok(false)` if there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<bool, RepoError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE users SET password_hash = ?, must_change_password = ?, \
             token_generation = token_generation + 1, updated_at = ? WHERE username_key = ?",
        )
        .bind(password_hash.to_owned())
        .bind(i64::from(must_change))
        .bind(format_ts(now_ns()))
        .bind(username_key(username))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives the user `role` and bumps its token generation; `Ok(false)` if there is no such
    /// user or it already has that role (then nothing changes: its tokens stay valid).
    pub async fn set_role(&self, username: &str, role: Role) -> Result<bool, RepoError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE users SET role = ?, token_generation = token_generation + 1, updated_at = ? \
             WHERE username_key = ? AND role <> ?",
        )
        .bind(role.as_str())
        .bind(format_ts(now_ns()))
        .bind(username_key(username))
        .bind(role.as_str())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes the user (its tokens are refused from then on); `Ok(false)` if there is none.
    pub async fn delete_user(&self, username: &str) -> Result<bool, RepoError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM users WHERE username_key = ?")
            .bind(username_key(username))
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}
