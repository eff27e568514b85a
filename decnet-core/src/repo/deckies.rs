//! The decoy fleet as recorded by `decnet deploy`: `deckies` (one row per decky) and
//! `decky_services` (the services each runs, with port and settings). Re-recording the same
//! decky replaces its row and its service set.
//!
//! Written by `decnet deploy` (and a decky's status by whoever changes it). Read by the
//! correlator (decky IP → name and (decky, service) → port: its directory) and the API (the
//! fleet listing, the existence check before a mutation request).
use std::{collections::HashMap, net::IpAddr};

use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows, name},
    decode::Decoder,
    limits,
};
use crate::{
    model::{Decky, DeckyService},
    time_fmt::{format_ts, now_ns},
};

/// The stored columns of `deckies` (besides `id`), in insert order; `name` is the key.
const COLUMNS: [&str; 8] = [
    "name",
    "ip",
    "hostname",
    "os_family",
    "archetype",
    "persona",
    "status",
    "updated_at",
];
const MERGE: [(&str, Merge); 7] = [
    ("ip", Merge::Replace),
    ("hostname", Merge::Replace),
    ("os_family", Merge::Replace),
    ("archetype", Merge::Replace),
    ("persona", Merge::Replace),
    ("status", Merge::Replace),
    ("updated_at", Merge::Replace),
];
/// The stored columns of `decky_services`; the first three are the key.
const SERVICE_COLUMNS: [&str; 4] = ["decky", "service", "port", "settings"];

fn decode_service(row: &sqlx::any::AnyRow) -> Result<(String, DeckyService), RepoError> {
    let d = Decoder::new(row, "decky_services");
    Ok((
        d.text("decky")?,
        DeckyService {
            service: d.text("service")?,
            port: d.int("port")?,
            settings: d.text("settings")?,
        },
    ))
}

/// A decky row; its services are filled in by the caller.
fn decode(row: &sqlx::any::AnyRow) -> Result<Decky, RepoError> {
    let d = Decoder::new(row, "deckies");
    Ok(Decky {
        services: Vec::new(),
        name: d.text("name")?,
        ip: d.ip("ip")?,
        hostname: d.text("hostname")?,
        os_family: d.text("os_family")?,
        archetype: d.text("archetype")?,
        persona: d.text("persona")?,
        status: d.text("status")?,
    })
}

impl WriteTx {
    /// Records deckies (replacing earlier records of the same names, services included).
    pub async fn upsert_deckies(&mut self, deckies: &[Decky]) -> Result<u64, RepoError> {
        if deckies.is_empty() {
            return Ok(0);
        }
        let now = format_ts(now_ns());
        let tail = self.dialect.upsert_tail("deckies", &["name"], &MERGE);

        let n = insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "deckies",
                columns: &COLUMNS,
                tail: &tail,
            },
            deckies,
            |q: AnyQuery<'_>, d: &Decky| {
                q.bind(name(&d.name))
                    .bind(d.ip.to_string())
                    .bind(limits::text(&d.hostname, 255).into_owned())
                    .bind(name(&d.os_family))
                    .bind(name(&d.archetype))
                    .bind(limits::text(&d.persona, limits::LONG).into_owned())
                    .bind(name(&d.status))
                    .bind(now.clone())
            },
        )
        .await?;
        let mut services: Vec<(String, &DeckyService)> = Vec::new();
        for d in deckies {
            let decky = name(&d.name);
            sqlx::query("DELETE FROM decky_services WHERE decky = ?")
                .bind(decky.clone())
                .execute(&mut *self.tx)
                .await?;
            services.extend(d.services.iter().map(|s| (decky.clone(), s)));
        }
        let tail = self.dialect.upsert_tail(
            "decky_services",
            &SERVICE_COLUMNS[..3],
            &[("settings", Merge::Replace)],
        );

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "decky_services",
                columns: &SERVICE_COLUMNS,
                tail: &tail,
            },
            &services,
            |q: AnyQuery<'_>, (decky, s): &(String, &DeckyService)| {
                q.bind(decky.clone())
                    .bind(name(&s.service))
                    .bind(i64::from(s.port))
                    .bind(limits::text(&s.settings, limits::LONG).into_owned())
            },
        )
        .await?;
        Ok(n)
    }

    pub async fn set_decky_status(&mut self, name: &str, status: &str) -> Result<bool, RepoError> {
        let r = sqlx::query("UPDATE deckies SET status = ?, updated_at = ? WHERE name = ?")
            .bind(limits::text(status, limits::NAME).into_owned())
            .bind(format_ts(now_ns()))
            .bind(name.to_owned())
            .execute(&mut *self.tx)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

impl Repository {
    /// Every recorded decky with its services, by name.
    pub async fn deckies(&self) -> Result<Vec<Decky>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT id, {} FROM deckies ORDER BY name",
            COLUMNS[..7].join(", ")
        ))
        .fetch_all(self.pool())
        .await?;
        let mut services: HashMap<String, Vec<DeckyService>> = HashMap::new();
        for row in &self.decky_service_rows().await? {
            let (decky, s) = decode_service(row)?;
            services.entry(decky).or_default().push(s);
        }
        rows.iter()
            .map(|row| {
                let mut d = decode(row)?;
                d.services = services.remove(&d.name).unwrap_or_default();
                Ok(d)
            })
            .collect()
    }

    /// Decky IP → name, and (decky, service) → port, from the recorded fleet.
    pub async fn decky_directory(
        &self,
    ) -> Result<(HashMap<IpAddr, String>, HashMap<(String, String), u16>), RepoError> {
        let rows = sqlx::query("SELECT id, name, ip FROM deckies ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut by_ip = HashMap::new();
        for row in &rows {
            let d = Decoder::new(row, "deckies");
            by_ip.insert(d.ip("ip")?, d.text("name")?);
        }
        let mut ports = HashMap::new();
        for row in &self.decky_service_rows().await? {
            let (decky, s) = decode_service(row)?;
            ports.entry((decky, s.service)).or_insert(s.port);
        }
        Ok((by_ip, ports))
    }

    /// Every `decky_services` row, ordered by key.
    async fn decky_service_rows(&self) -> Result<Vec<sqlx::any::AnyRow>, RepoError> {
        Ok(sqlx::query(&format!(
            "SELECT {} FROM decky_services ORDER BY decky, service, port",
            SERVICE_COLUMNS.join(", ")
        ))
        .fetch_all(self.pool())
        .await?)
    }
}
