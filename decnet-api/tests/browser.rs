//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! Debian packages `chromium` and `chromium-driver`, installed by `cargo xtask setup`). Log in,
//! watch the overview populate, open an attacker page, see a new event arrive in the live feed
//! without a reload, and check that attacker-controlled strings (`<img src=x onerror=…>`,
//! `<script>…</script>`) are shown literally and never run. Screenshots of the main views go to
//! `target/screenshots/` for a person to look at.
mod support;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use decnet_core::model::NewEvent;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{ADMIN, Server, XSS_IMG, XSS_SCRIPT, attacker, common::Backend, test_config};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> (Driver, Client) {
    for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
        assert!(
            std::path::Path::new(path).exists(),
            "{what} not found at {path}: the browser tests need headless Chromium and its WebDriver. \
             Install them with `apt install chromium chromium-driver` (or run `cargo xtask setup`)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromedriver");
    let driver = Driver(child);
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions"]
        }
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot open a Chromium session through chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Polls `js` (an expression) until `ok` accepts its value.
async fn wait_for(c: &Client, what: &str, js: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = c
            .execute(&format!("return ({js});"), vec![])
            .await
            .unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        if Instant::now() > deadline {
            let body = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what}: last value {v}; page text:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn text_of(sel: &str) -> String {
    format!("(document.querySelector({sel:?}) || {{}}).textContent || ''")
}

async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let s = Server::start(Backend::Sqlite, "web_browser", test_config()).await;
    let total = s.repo.count_events().await.unwrap();
    let (_driver, c) = browser().await;
    let run = async {
        c.goto(&s.url).await.unwrap();
        c.wait()
            .for_element(Locator::Css("#login-form"))
            .await
            .unwrap();
        screenshot(&c, "01-login").await;
        // A wrong password is refused in the page.
        c.find(Locator::Css("#username"))
            .await
            .unwrap()
            .send_keys(ADMIN.0)
            .await
            .unwrap();
        c.find(Locator::Css("#password"))
            .await
            .unwrap()
            .send_keys("wrong-password")
            .await
            .unwrap();
        c.find(Locator::Css("#login-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&c, "the login error", &text_of("#login-error"), |v| {
            v.as_str().is_some_and(|t| t.contains("Wrong"))
        })
        .await;
        let pw = c.find(Locator::Css("#password")).await.unwrap();
        pw.clear().await.unwrap();
        pw.send_keys(ADMIN.1).await.unwrap();
        c.find(Locator::Css("#login-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // Overview populates: counters from the API, top attackers, the chart.
        let want = total.to_string();
        wait_for(
            &c,
            "the events counter",
            &text_of("[data-count=events]"),
            |v| v.as_str() == Some(want.as_str()),
        )
        .await;
        wait_for(
            &c,
            "top attackers",
            "document.querySelectorAll('#top-attackers tbody tr').length",
            |v| v.as_u64() == Some(10),
        )
        .await;
        let top = c
            .execute(
                &format!("return {}", text_of("#top-attackers tbody tr td")),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(top.as_str(), Some(attacker(12).to_string().as_str()));
        wait_for(
            &c,
            "the live feed to connect",
            &text_of("#live-status"),
            |v| v.as_str() == Some("live"),
        )
        .await;
        screenshot(&c, "02-overview").await;

        // Attacker page: profile, score factors, techniques, traversal path, credentials.
        c.goto(&format!("{}/#/attacker/{}", s.url, attacker(1)))
            .await
            .unwrap();
        wait_for(&c, "the attacker page", &text_of("#attacker-ip"), |v| {
            v.as_str() == Some("203.0.113.1")
        })
        .await;
        let page = c
            .execute("return document.body.innerText", vec![])
            .await
            .unwrap();
        let page = page.as_str().unwrap();
        for want in [
            "brute_force",
            "credential attempts",
            "T1110",
            "hydra",
            "root1",
            "cat /etc/passwd #1",
        ] {
            assert!(page.contains(want), "attacker page lacks {want:?}:\n{page}");
        }
        let hops = c
            .execute(
                "return document.querySelectorAll('#traversal circle').length",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(hops.as_u64(), Some(3));
        screenshot(&c, "03-attacker").await;

        // XSS: the attacker whose username, command, path and credentials are HTML.
        c.execute("window.__xss = undefined; return null", vec![])
            .await
            .unwrap();
        c.goto(&format!("{}/#/attacker/{}", s.url, attacker(12)))
            .await
            .unwrap();
        wait_for(
            &c,
            "the hostile attacker page",
            "document.querySelectorAll('#commands tbody tr').length",
            |v| v.as_u64() == Some(2),
        )
        .await;
        let cmds = c.execute("return Array.from(document.querySelectorAll('#commands td.command')).map(e => e.textContent)", vec![]).await.unwrap();
        assert_eq!(cmds, json!([XSS_SCRIPT, XSS_IMG]), "shown literally");
        let principal = c
            .execute(
                &format!("return {}", text_of("#credentials td.principal")),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(principal.as_str(), Some(XSS_IMG));
        let fields = c
            .execute(
                &format!("return {}", text_of("#timeline td.fields")),
                vec![],
            )
            .await
            .unwrap();
        assert!(fields.as_str().unwrap().contains(XSS_IMG), "{fields}");
        screenshot(&c, "04-attacker-xss").await;
        c.goto(&format!("{}/#/events?attacker={}", s.url, attacker(12)))
            .await
            .unwrap();
        wait_for(
            &c,
            "the filtered events",
            "document.querySelectorAll('#events-table tbody tr').length",
            |v| v.as_u64() == Some(22),
        )
        .await;
        screenshot(&c, "05-events-xss").await;
        let verdict = c
            .execute(
                "return { xss: window.__xss === undefined ? null : window.__xss, imgs: document.querySelectorAll('img').length, \
                 scripts: Array.from(document.scripts).map(s => s.src) }",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            verdict["xss"],
            Value::Null,
            "an attacker payload ran: {verdict}"
        );
        assert_eq!(
            verdict["imgs"], 0,
            "an attacker <img> became an element: {verdict}"
        );
        assert_eq!(
            verdict["scripts"].as_array().map(Vec::len),
            Some(1),
            "only app.js: {verdict}"
        );

        // Live feed: a new event appears without a reload.
        c.goto(&format!("{}/#/events", s.url)).await.unwrap();
        wait_for(
            &c,
            "the live table",
            "document.querySelector('#live-feed') !== null",
            |v| v == &json!(true),
        )
        .await;
        wait_for(
            &c,
            "the live feed to connect",
            &text_of("#live-status"),
            |v| v.as_str() == Some("live"),
        )
        .await;
        c.execute("window.__noReload = 42; return null", vec![])
            .await
            .unwrap();
        let marker = format!("live-marker-{}", std::process::id());
        s.repo
            .insert_events(&[NewEvent {
                ts_ns: decnet_core::time_fmt::now_ns(),
                decky: "decky-2".into(),
                service: "telnet".into(),
                event_type: "command".into(),
                attacker_ip: Some(attacker(7)),
                attacker_port: Some(4444),
                fields: json!({"command": marker, "also": XSS_SCRIPT}).to_string(),
                raw: format!("live {marker}").into_bytes(),
                dedup_key: None,
            }])
            .await
            .unwrap();
        let m = marker.clone();
        wait_for(
            &c,
            "the new event in the live feed",
            &text_of("#live-feed"),
            move |v| v.as_str().is_some_and(|t| t.contains(&m)),
        )
        .await;
        let same_page = c.execute("return window.__noReload", vec![]).await.unwrap();
        assert_eq!(same_page, json!(42), "the page was reloaded");
        assert_eq!(
            c.execute("return window.__xss === undefined", vec![])
                .await
                .unwrap(),
            json!(true)
        );
        screenshot(&c, "06-live-feed").await;

        // The other views render.
        for (hash, sel, name) in [
            ("#/attackers", "#attackers-table tbody tr", "07-attackers"),
            ("#/deckies", "#deckies-table tbody tr", "08-deckies"),
            ("#/flows", "#flows-table tbody tr", "09-flows"),
            ("#/workers", "#leases", "10-workers"),
            ("#/users", "#users-table tbody tr", "11-users"),
        ] {
            c.goto(&format!("{}/{hash}", s.url)).await.unwrap();
            wait_for(
                &c,
                name,
                &format!("document.querySelectorAll({sel:?}).length"),
                |v| v.as_u64().is_some_and(|n| n > 0),
            )
            .await;
            screenshot(&c, name).await;
        }
    };
    // Close the browser session even when an assertion fails.
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    let _ = c.close().await;
    s.stop().await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
