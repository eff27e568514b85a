//! The decoy fleet: `deckies` and `decky_services` (the deployment as recorded by
//! `decnet deploy`), `probe_results` (the prober's realism checks) and `mutations` (live fleet
//! changes). Re-recording the same decky replaces its row and service set; probe results and
//! mutations are facts with natural keys, so re-recording one is a no-op.
use super::{
    Merge, RepoError, Repository, WriteTx,
    bulk::{AnyQuery, Insert, insert_rows},
    decode::Decoder,
    limits,
};
use crate::{
    model::{Decky, DeckyService, Mutation, ProbeResult},
    time_fmt::{format_ts, now_ns},
};

const D_COLUMNS: [&str; 8] = [
    "name",
    "ip",
    "hostname",
    "os_family",
    "archetype",
    "persona",
    "status",
    "updated_at",
];
const D_MERGE: [(&str, Merge); 7] = [
    ("ip", Merge::Replace),
    ("hostname", Merge::Replace),
    ("os_family", Merge::Replace),
    ("archetype", Merge::Replace),
    ("persona", Merge::Replace),
    ("status", Merge::Replace),
    ("updated_at", Merge::Replace),
];
const S_COLUMNS: [&str; 4] = ["decky", "service", "port", "settings"];
const PR_COLUMNS: [&str; 6] = ["ts", "decky", "service", "check_name", "ok", "detail"];
const M_COLUMNS: [&str; 5] = ["ts", "decky", "kind", "detail", "status"];

impl WriteTx {
    /// Records deckies (replacing earlier records of the same names, services included).
    pub async fn upsert_deckies(&mut self, deckies: &[Decky]) -> Result<u64, RepoError> {
        if deckies.is_empty() {
            return Ok(0);
        }
        let now = format_ts(now_ns());
        let tail = self.dialect.upsert_tail("deckies", &["name"], &D_MERGE);

        let n = insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "deckies",
                columns: &D_COLUMNS,
                tail: &tail,
            },
            deckies,
            |q: AnyQuery<'_>, d: &Decky| {
                q.bind(limits::text(&d.name, limits::NAME).into_owned())
                    .bind(d.ip.to_string())
                    .bind(limits::text(&d.hostname, 255).into_owned())
                    .bind(limits::text(&d.os_family, limits::NAME).into_owned())
                    .bind(limits::text(&d.archetype, limits::NAME).into_owned())
                    .bind(limits::text(&d.persona, limits::LONG).into_owned())
                    .bind(limits::text(&d.status, limits::NAME).into_owned())
                    .bind(now.clone())
            },
        )
        .await?;
        let mut services: Vec<(String, &DeckyService)> = Vec::new();
        for d in deckies {
            let name = limits::text(&d.name, limits::NAME).into_owned();
            sqlx::query("DELETE FROM decky_services WHERE decky = ?")
                .bind(name.clone())
                .execute(&mut *self.tx)
                .await?;
            services.extend(d.services.iter().map(|s| (name.clone(), s)));
        }
        let tail = self.dialect.upsert_tail(
            "decky_services",
            &S_COLUMNS[..3],
            &[("settings", Merge::Replace)],
        );

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "decky_services",
                columns: &S_COLUMNS,
                tail: &tail,
            },
            &services,
            |q: AnyQuery<'_>, (decky, s): &(String, &DeckyService)| {
                q.bind(decky.clone())
                    .bind(limits::text(&s.service, limits::NAME).into_owned())
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

    /// Stores probe results; re-recording one (same decky, service, check and time) is a no-op.
    pub async fn insert_probe_results(
        &mut self,
        results: &[ProbeResult],
    ) -> Result<u64, RepoError> {
        if results.is_empty() {
            return Ok(0);
        }

        let (head, tail) = (self.dialect.insert_ignore(), self.dialect.ignore_tail());
        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head,
                table: "probe_results",
                columns: &PR_COLUMNS,
                tail,
            },
            results,
            |q: AnyQuery<'_>, p: &ProbeResult| {
                q.bind(format_ts(p.ts_ns))
                    .bind(limits::text(&p.decky, limits::NAME).into_owned())
                    .bind(limits::text(&p.service, limits::NAME).into_owned())
                    .bind(limits::text(&p.check, limits::NAME).into_owned())
                    .bind(i64::from(p.ok))
                    .bind(limits::text(&p.detail, limits::LONG).into_owned())
            },
        )
        .await
    }

    /// Records mutations; the same (decky, kind, time) again updates only its status.
    pub async fn record_mutations(&mut self, mutations: &[Mutation]) -> Result<u64, RepoError> {
        if mutations.is_empty() {
            return Ok(0);
        }
        let tail = self.dialect.upsert_tail(
            "mutations",
            &["decky", "kind", "ts"],
            &[("status", Merge::Replace)],
        );

        insert_rows(
            &mut self.tx,
            self.dialect,
            Insert {
                head: "INSERT INTO",
                table: "mutations",
                columns: &M_COLUMNS,
                tail: &tail,
            },
            mutations,
            |q: AnyQuery<'_>, m: &Mutation| {
                q.bind(format_ts(m.ts_ns))
                    .bind(limits::text(&m.decky, limits::NAME).into_owned())
                    .bind(limits::text(&m.kind, limits::NAME).into_owned())
                    .bind(limits::text(&m.detail, limits::LONG).into_owned())
                    .bind(limits::text(&m.status, limits::NAME).into_owned())
            },
        )
        .await
    }
}

impl Repository {
    /// Every recorded decky with its services, by name.
    pub async fn deckies(&self) -> Result<Vec<Decky>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, name, ip, hostname, os_family, archetype, persona, status FROM deckies ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        let srows = sqlx::query("SELECT decky, service, port, settings FROM decky_services ORDER BY decky, service, port")
            .fetch_all(self.pool())
            .await?;
        let mut services: std::collections::HashMap<String, Vec<DeckyService>> = Default::default();
        for row in &srows {
            let d = Decoder::new(row, "decky_services", None);
            services
                .entry(d.text(0, "decky")?)
                .or_default()
                .push(DeckyService {
                    service: d.text(1, "service")?,
                    port: d.int(2, "port")?,
                    settings: d.text(3, "settings")?,
                });
        }
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "deckies", Some(0));
                let name = d.text(1, "name")?;
                Ok(Decky {
                    services: services.remove(&name).unwrap_or_default(),
                    name,
                    ip: d.ip(2, "ip")?,
                    hostname: d.text(3, "hostname")?,
                    os_family: d.text(4, "os_family")?,
                    archetype: d.text(5, "archetype")?,
                    persona: d.text(6, "persona")?,
                    status: d.text(7, "status")?,
                })
            })
            .collect()
    }

    pub async fn probe_results(&self, decky: &str) -> Result<Vec<ProbeResult>, RepoError> {
        let rows = sqlx::query(
            "SELECT id, ts, decky, service, check_name, ok, detail FROM probe_results WHERE decky = ? ORDER BY ts, id",
        )
        .bind(decky.to_owned())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "probe_results", Some(0));
                Ok(ProbeResult {
                    ts_ns: d.ts(1, "ts")?,
                    decky: d.text(2, "decky")?,
                    service: d.text(3, "service")?,
                    check: d.text(4, "check_name")?,
                    ok: d.i64(5, "ok")? != 0,
                    detail: d.text(6, "detail")?,
                })
            })
            .collect()
    }

    pub async fn mutations(&self, decky: &str) -> Result<Vec<Mutation>, RepoError> {
        let rows =
            sqlx::query("SELECT id, ts, decky, kind, detail, status FROM mutations WHERE decky = ? ORDER BY ts, id")
                .bind(decky.to_owned())
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let d = Decoder::new(row, "mutations", Some(0));
                Ok(Mutation {
                    ts_ns: d.ts(1, "ts")?,
                    decky: d.text(2, "decky")?,
                    kind: d.text(3, "kind")?,
                    detail: d.text(4, "detail")?,
                    status: d.text(5, "status")?,
                })
            })
            .collect()
    }
}
