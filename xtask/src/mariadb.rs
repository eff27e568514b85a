//! The MariaDB server and the test account that the repository tests and `bench repo` use:
//! making sure the server runs (on a fresh machine, or one without systemd), that the account
//! exists, and dropping the databases earlier test runs left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd;
use crate::setup::{Mode, say};

/// The test account (created by `cargo xtask setup`) and where the tests reach the server.
pub const USER: &str = "decnet";
pub const PASSWORD: &str = "decnet";
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 3306;
/// The variable the repository tests (and `bench-repo`) read: a server URL without a database;
/// each test creates its own `decnet_t_<name>` database under it and drops it.
pub const TEST_URL_VAR: &str = "DECNET_TEST_MYSQL_URL";
pub const TEST_URL: &str = "mysql://decnet:decnet@127.0.0.1:3306";
/// The account may create and drop only databases named `decnet_<anything>`; tests use this prefix.
pub const TEST_DB_PREFIX: &str = "decnet_t_";

/// How long `service mariadb start` may take (its init script itself waits up to 30 s).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the output of the start commands goes (a file, not a pipe: the init script leaves a
/// logger process holding its stdout, which would keep a pipe open for the server's lifetime).
const START_LOG: &str = "decnet-xtask-mariadb-start.log";
/// Where a directly started `mariadbd` writes its error log (for as long as it runs).
const DAEMON_LOG: &str = "decnet-xtask-mariadbd.log";

/// The SQL `setup` runs as the database root (unix_socket authentication as the system root).
pub fn account_sql() -> String {
    let hosts = ["localhost", HOST];
    let mut sql = String::new();
    for host in hosts {
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'; "
        ));
    }
    let to: Vec<String> = hosts.iter().map(|h| format!("'{USER}'@'{h}'")).collect();
    sql.push_str(&format!(
        "GRANT ALL PRIVILEGES ON `decnet\\_%`.* TO {};",
        to.join(", ")
    ));
    sql
}

/// A client command (`mariadb` or `mariadb-admin`) logged in as the test account over TCP, the
/// way the tests connect.
fn as_test_user(program: &str) -> Command {
    let mut c = Command::new(program);
    c.args([
        "--protocol=tcp",
        &format!("--host={HOST}"),
        &format!("--port={PORT}"),
        &format!("--user={USER}"),
        &format!("--password={PASSWORD}"),
        "--connect-timeout=3",
    ]);
    c
}

/// A command's exit status and combined output, or an error if it could not start.
fn capture(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run `{}`", cmd::show(cmd)))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text.trim().to_string()))
}

/// Whether a server answers on HOST:PORT. `mariadb-admin ping` exits 0 when the server is up,
/// even if it refuses the login (so this also works before the account exists).
fn ping() -> Result<std::result::Result<(), String>> {
    let mut ping = as_test_user("mariadb-admin");
    ping.arg("ping");
    let (ok, out) = capture(&mut ping).context(
        "mariadb-admin (package mariadb-client) is needed to check the MariaDB server; \
         `cargo xtask setup` installs it",
    )?;
    Ok(if ok { Ok(()) } else { Err(out) })
}

/// Step `mariadb server`: the server runs and listens on HOST:PORT; started if not.
pub fn server(mode: Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "mariadb server";
    if mode == Mode::Check && !client_installed() {
        say(
            STEP,
            "MISSING (no mariadb-admin: mariadb-client is not installed)",
        );
        missing.push("MariaDB server (mariadb-client not installed, cannot check)".into());
        return Ok(());
    }
    let why = match ping()? {
        Ok(()) => {
            say(
                STEP,
                format!("running, accepting connections on {HOST}:{PORT}"),
            );
            return Ok(());
        }
        Err(why) => why,
    };
    let why = last_line(&why);
    if mode == Mode::Check {
        say(
            STEP,
            format!("MISSING: not running on {HOST}:{PORT} ({why})"),
        );
        missing.push(format!("a running MariaDB server on {HOST}:{PORT}"));
        return Ok(());
    }
    say(
        STEP,
        format!("not running on {HOST}:{PORT} ({why}); starting it"),
    );
    start()?;
    say(STEP, format!("ok, accepting connections on {HOST}:{PORT}"));
    Ok(())
}

fn client_installed() -> bool {
    Command::new("mariadb-admin")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The telling line of a client's error output: its `error: …` line (or `ERROR …`), else the
/// last line.
fn last_line(s: &str) -> &str {
    let lines = || s.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| lines().find(|l| l.starts_with("ERROR ")))
        .or_else(|| lines().next_back())
        .unwrap_or("no output")
}

/// Starts the server: `service mariadb start` (SysV script or systemd), else `mariadbd` directly
/// (containers without an init system). Waits until it accepts connections.
fn start() -> Result<()> {
    const STEP: &str = "mariadb server";
    let defaults = server_defaults();
    ensure_datadir(&defaults)?;
    let log_path = std::env::temp_dir().join(START_LOG);

    say(
        STEP,
        format!("`service mariadb start` (output in {})", log_path.display()),
    );
    let mut service = Command::new("service");
    service.args(["mariadb", "start"]);
    let service_outcome = match run_to_file(&mut service, &log_path, SERVICE_TIMEOUT) {
        Ok(status) if status.success() => "exited 0".to_string(),
        Ok(status) => format!("failed ({status})"),
        Err(e) => format!("did not run ({})", e.root_cause()),
    };
    let service_log = tail_of(&log_path);
    if wait_ready(Duration::from_secs(20), None)? {
        return Ok(());
    }

    let daemon = if Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    };
    say(
        STEP,
        format!(
            "`service mariadb start` {service_outcome} and nothing answers; starting the server \
             directly"
        ),
    );
    let run_dir = defaults
        .socket
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/run/mysqld"))
        .to_path_buf();
    let mut mkdir = Command::new("install");
    mkdir
        .args(["-d", "-m", "0755", "-o", "mysql", "-g", "root"])
        .arg(&run_dir);
    cmd::run_logged(&mut mkdir, false)
        .with_context(|| format!("creating {} for the server's socket", run_dir.display()))?;
    let daemon_log = std::env::temp_dir().join(DAEMON_LOG);
    let log = File::create(&daemon_log)
        .with_context(|| format!("could not create {}", daemon_log.display()))?;
    say(
        STEP,
        format!(
            "`{daemon} --user=mysql` in the background (its log: {})",
            daemon_log.display()
        ),
    );
    let mut direct = Command::new(daemon);
    direct.arg("--user=mysql");
    let mut child = spawn_detached(&mut direct, &log)?;
    if wait_ready(READY_TIMEOUT, Some(&mut child))? {
        return Ok(());
    }
    let exited = match child.try_wait() {
        Ok(Some(status)) => format!("it exited ({status})"),
        _ => format!(
            "it is still running (pid {}) but does not answer on {HOST}:{PORT} after {} s; is \
             skip-networking, another port or another bind-address configured?",
            child.id(),
            READY_TIMEOUT.as_secs()
        ),
    };
    bail!(
        "could not start the MariaDB server.\n  `service mariadb start` {service_outcome}; its \
         output:\n{service_log}\n  `{daemon} --user=mysql`: {exited}; its output:\n{}\n  Start \
         it by hand (`service mariadb start`, or `mysqld_safe &`), check that `mariadb-admin \
         --protocol=tcp -h {HOST} -P {PORT} ping` answers, then re-run",
        tail_of(&daemon_log)
    )
}

/// What the server's configuration (`my_print_defaults --mysqld`) says about where it keeps
/// things; Debian's defaults when it says nothing.
#[derive(Debug, Default, PartialEq, Eq)]
struct ServerDefaults {
    datadir: Option<PathBuf>,
    socket: Option<PathBuf>,
}

fn server_defaults() -> ServerDefaults {
    cmd::output_if_ok(Command::new("my_print_defaults").arg("--mysqld"))
        .map(|out| parse_defaults(&out))
        .unwrap_or_default()
}

fn parse_defaults(out: &str) -> ServerDefaults {
    let mut d = ServerDefaults::default();
    for line in out.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("--datadir=") {
            d.datadir = Some(PathBuf::from(v));
        } else if let Some(v) = line.strip_prefix("--socket=") {
            d.socket = Some(PathBuf::from(v));
        }
    }
    d
}

/// Debian's postinst initialises the data directory; if that did not happen, do it.
fn ensure_datadir(defaults: &ServerDefaults) -> Result<()> {
    let datadir = defaults
        .datadir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/mysql"));
    if datadir.join("mysql").is_dir() {
        return Ok(());
    }
    say(
        "mariadb server",
        format!(
            "initialising the data directory {} (mariadb-install-db)",
            datadir.display()
        ),
    );
    let mut init = Command::new("mariadb-install-db");
    init.arg("--user=mysql")
        .arg(format!("--datadir={}", datadir.display()));
    cmd::run_logged(&mut init, false)
}

/// Spawns `cmd` with its output in `log`, in its own process group (so a Ctrl-C in the terminal
/// that runs xtask does not reach the server it starts).
fn spawn_detached(cmd: &mut Command, log: &File) -> Result<Child> {
    use std::os::unix::process::CommandExt as _;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::show(cmd)))
}

/// Runs `cmd` (detached, output to `log_path`) and waits for it to exit, at most `timeout`.
fn run_to_file(cmd: &mut Command, log_path: &Path, timeout: Duration) -> Result<ExitStatus> {
    let log = File::create(log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let mut child = spawn_detached(cmd, &log)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{}` did not finish within {} s (killed)",
                cmd::show(cmd),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls until the server answers, `timeout` passes (false), or `child` exits (false).
fn wait_ready(timeout: Duration, mut child: Option<&mut Child>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if ping()?.is_ok() {
            return Ok(true);
        }
        if let Some(c) = child.as_deref_mut()
            && c.try_wait()?.is_some()
        {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The last lines of a log file, indented, for an error message.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "    | (nothing)".into();
    }
    lines[lines.len().saturating_sub(15)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the test account can log in over TCP and create and drop a `decnet_t_*` database.
fn probe_account() -> Result<std::result::Result<(), String>> {
    let db = format!("{TEST_DB_PREFIX}xtask_probe_{}", std::process::id());
    let mut probe = as_test_user("mariadb");
    probe.args([
        "--batch",
        "-e",
        &format!("CREATE DATABASE IF NOT EXISTS `{db}`; DROP DATABASE `{db}`;"),
    ]);
    let (ok, out) = capture(&mut probe)?;
    Ok(if ok {
        Ok(())
    } else {
        Err(last_line(&out).into())
    })
}

/// Step `mariadb account`: `decnet`@`localhost` and @`127.0.0.1` (password `decnet`) exist and
/// may create and drop `decnet_*` databases; created if not.
pub fn account(mode: Mode, missing: &mut Vec<String>) -> Result<()> {
    const STEP: &str = "mariadb account";
    if mode == Mode::Check && (!client_installed() || ping()?.is_err()) {
        say(STEP, "MISSING (not checked: no running server)");
        missing.push(format!("the MariaDB test account {USER}@localhost"));
        return Ok(());
    }
    let why = match probe_account()? {
        Ok(()) => {
            say(
                STEP,
                format!("{USER}@localhost and {USER}@{HOST} can create decnet_* databases"),
            );
            return Ok(());
        }
        Err(why) => why,
    };
    if mode == Mode::Check {
        say(STEP, format!("MISSING ({why})"));
        missing.push(format!("the MariaDB test account {USER}@localhost ({why})"));
        return Ok(());
    }
    say(
        STEP,
        format!("creating {USER}@localhost and {USER}@{HOST} ({why})"),
    );
    let mut create = Command::new("mariadb");
    create.args(["--user=root", "--batch", "-e", &account_sql()]);
    cmd::run_logged(&mut create, false).context(
        "the database root logs in by unix_socket authentication as the system root; run \
         setup as root, and check that `mariadb -u root -e 'SELECT 1'` works",
    )?;
    match probe_account()? {
        Ok(()) => {
            say(STEP, "ok");
            Ok(())
        }
        Err(why) => Err(anyhow!(
            "ran CREATE USER IF NOT EXISTS and GRANT, but the account still cannot create a \
             decnet_t_* database: {why}. If `{USER}` existed before with another password, reset it: `mariadb -u root -e \
             \"ALTER USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}'; ALTER USER \
             '{USER}'@'{HOST}' IDENTIFIED BY '{PASSWORD}'\"`"
        )),
    }
}

/// Drops the `decnet_t_*` databases earlier test runs left behind (a test that panics or is
/// killed does not drop its own). Returns their names.
pub fn drop_test_databases() -> Result<Vec<String>> {
    let mut list = as_test_user("mariadb");
    list.args([
        "--batch",
        "--skip-column-names",
        "-e",
        r"SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'decnet\_t\_%'",
    ]);
    let (ok, out) = capture(&mut list)?;
    if !ok {
        bail!("listing them failed: {}", last_line(&out));
    }
    let names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|n| is_test_db_name(n))
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Ok(names);
    }
    let sql: String = names
        .iter()
        .map(|n| format!("DROP DATABASE IF EXISTS `{n}`; "))
        .collect();
    let mut drop = as_test_user("mariadb");
    drop.args(["--batch", "-e", &sql]);
    let (ok, out) = capture(&mut drop)?;
    if !ok {
        bail!("dropping them failed: {}", last_line(&out));
    }
    Ok(names)
}

/// A name this module may put between backticks: the test prefix, then `[A-Za-z0-9_]`.
fn is_test_db_name(name: &str) -> bool {
    name.len() > TEST_DB_PREFIX.len()
        && name.len() <= 64
        && name.starts_with(TEST_DB_PREFIX)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_matches_the_account() {
        assert_eq!(TEST_URL, format!("mysql://{USER}:{PASSWORD}@{HOST}:{PORT}"));
    }

    #[test]
    fn account_sql_is_idempotent_and_grants_only_decnet_databases() {
        let sql = account_sql();
        assert_eq!(sql.matches("CREATE USER IF NOT EXISTS").count(), 2);
        assert!(sql.contains("'decnet'@'localhost' IDENTIFIED BY 'decnet'"));
        assert!(sql.contains("'decnet'@'127.0.0.1' IDENTIFIED BY 'decnet'"));
        assert!(
            sql.ends_with(
                r"GRANT ALL PRIVILEGES ON `decnet\_%`.* TO 'decnet'@'localhost', 'decnet'@'127.0.0.1';"
            ),
            "{sql}"
        );
    }

    #[test]
    fn only_plain_test_database_names_are_dropped() {
        assert!(is_test_db_name("decnet_t_merge_123"));
        assert!(!is_test_db_name("decnet_t_"));
        assert!(!is_test_db_name("decnet_prod"));
        assert!(!is_test_db_name("decnet_t_x`; DROP DATABASE y"));
        assert!(!is_test_db_name("mysql"));
    }

    #[test]
    fn defaults_parse_datadir_and_socket() {
        let d = parse_defaults(
            "--socket=/run/mysqld/mysqld.sock\n--pid-file=/run/mysqld/mysqld.pid\n--basedir=/usr\n",
        );
        assert_eq!(
            d,
            ServerDefaults {
                datadir: None,
                socket: Some("/run/mysqld/mysqld.sock".into())
            }
        );
        assert_eq!(
            parse_defaults("--datadir=/srv/db\n").datadir,
            Some(PathBuf::from("/srv/db"))
        );
    }
}
