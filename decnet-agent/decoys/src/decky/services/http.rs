//! HTTP and HTTPS: the persona's `Server` header and pages (Apache/nginx default page, IIS start
//! page, a login form for appliances), keep-alive, bounded heads and bodies. Every request is
//! logged (`request`: method, path, version, host, user agent, headers, body); HTTP Basic
//! credentials and login forms (urlencoded or JSON) are logged as `auth_attempt`. HTTPS is the
//! same behind rustls with the decky's own self-signed certificate (SNI logged).
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use base64::Engine as _;
use tokio::{
    io::{
        AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite,
        AsyncWriteExt as _, BufReader,
    },
    net::TcpListener,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{ServerConfig, crypto::ring},
};

use super::{Conn, Ctx, Login, ServiceKind, ServiceSpec, accept_loop, lossy};
use crate::decky::{Shutdown, persona, state};

/// Request head (request line and headers), at most.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers per request, at most.
pub const MAX_HEADERS: usize = 100;
/// Request body read, at most (a longer one gets 413 and the connection closes).
pub const MAX_BODY: usize = 64 * 1024;
/// Requests per connection, at most.
pub const MAX_REQUESTS: usize = 100;
/// Time to send a complete request (head and body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Paths behind HTTP Basic authentication.
const BASIC_PATHS: [&str; 4] = ["/admin", "/manager/html", "/private", "/server-status"];
/// Form fields that name the user / carry the password.
const USER_FIELDS: [&str; 7] = ["username", "user", "login", "email", "log", "uname", "name"];
const PASS_FIELDS: [&str; 5] = ["password", "pass", "passwd", "pwd", "secret"];

/// The acceptor with the decky's certificate (created on first use).
pub fn tls_acceptor(ctx: &Ctx) -> anyhow::Result<TlsAcceptor> {
    let (certs, key) = state::tls_identity(&ctx.state_dir, &ctx.spec)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS key does not fit the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct Site {
    server: String,
    accept: Vec<Login>,
}

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    spec: ServiceSpec,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) {
    let kind = if tls.is_some() {
        ServiceKind::Https
    } else {
        ServiceKind::Http
    };
    let site = Arc::new(Site {
        server: spec
            .banner
            .clone()
            .map(|b| b.chars().filter(|c| !c.is_control()).take(200).collect())
            .unwrap_or_else(|| persona::http_server(&ctx.spec).to_owned()),
        accept: spec.accept,
    });
    accept_loop(listener, ctx, kind, shutdown, move |stream, conn| {
        let site = site.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => connection(stream, conn, site, None).await,
                Some(acc) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let sni = s.get_ref().1.server_name().map(str::to_owned);
                            connection(s, conn, site, sni).await;
                        }
                        Ok(Err(e)) => {
                            let e = e.to_string();
                            conn.event("tls_handshake_failed", &[("error", &e)]);
                        }
                        Err(_) => conn.event("tls_handshake_failed", &[("error", "timeout")]),
                    }
                }
            }
        }
    })
    .await;
}

/// One parsed request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        let t = self.target.split(['?', '#']).next().unwrap_or("");
        // Absolute-form (proxy requests): the path part.
        match t.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => t,
        }
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended (or idled out) between requests.
    Closed,
    /// Not HTTP, or malformed: 400. Carries what was read of the first line.
    Bad(String),
    /// Head or body over the limits.
    TooLarge(u16),
}

/// Reads one request (head, then a `Content-Length` or chunked body).
pub async fn read_request<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Request, ReadError> {
    let mut head_bytes = 0usize;
    let mut line = Vec::new();
    // The request line (empty lines before it are ignored, RFC 9112 §2.2).
    loop {
        line.clear();
        let n = read_bounded_line(r, &mut line, MAX_HEAD).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD {
            return Err(ReadError::TooLarge(431));
        }
        if !trim_eol(&line).is_empty() {
            break;
        }
    }
    let first = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(first));
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        || !version.starts_with("HTTP/1.")
        || target.is_empty()
    {
        return Err(ReadError::Bad(first));
    }
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        ..Request::default()
    };
    loop {
        line.clear();
        let n = read_bounded_line(r, &mut line, MAX_HEAD).await?;
        if n == 0 {
            return Err(ReadError::Bad(first));
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD || req.headers.len() >= MAX_HEADERS {
            return Err(ReadError::TooLarge(431));
        }
        let l = trim_eol(&line);
        if l.is_empty() {
            break;
        }
        let l = String::from_utf8_lossy(l);
        match l.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains(' ') => {
                req.headers.push((name.to_owned(), value.trim().to_owned()));
            }
            _ => return Err(ReadError::Bad(first)),
        }
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(r).await?;
    } else if let Some(cl) = req.header("content-length") {
        let len: usize = cl
            .trim()
            .parse()
            .map_err(|_| ReadError::Bad(first.clone()))?;
        if len > MAX_BODY {
            return Err(ReadError::TooLarge(413));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)
            .await
            .map_err(|_| ReadError::Closed)?;
        req.body = body;
    }
    Ok(req)
}

async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read_bounded_line(r, &mut line, 256).await? == 0 {
            return Err(ReadError::Closed);
        }
        let s = String::from_utf8_lossy(trim_eol(&line)).into_owned();
        let size_text = s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad("bad chunk size".into()))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                line.clear();
                if read_bounded_line(r, &mut line, 1024).await? == 0 || trim_eol(&line).is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::TooLarge(413));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .await
            .map_err(|_| ReadError::Closed)?;
        line.clear();
        read_bounded_line(r, &mut line, 16).await?;
    }
}

/// Reads up to and including `\n`, failing past `max` bytes. Returns the bytes read.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> Result<usize, ReadError> {
    let mut n = 0;
    loop {
        let buf = r.fill_buf().await.map_err(|_| ReadError::Closed)?;
        if buf.is_empty() {
            return Ok(n);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if n + take > max {
            return Err(ReadError::TooLarge(431));
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        n += take;
        if done {
            return Ok(n);
        }
    }
}

fn trim_eol(l: &[u8]) -> &[u8] {
    let mut l = l;
    while let [rest @ .., b'\r' | b'\n'] = l {
        l = rest;
    }
    l
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    conn: Conn,
    site: Arc<Site>,
    sni: Option<String>,
) {
    let mut s = BufReader::new(stream);
    for _ in 0..MAX_REQUESTS {
        let req = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut s)).await {
            Err(_) | Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::Bad(first))) => {
                conn.event("bad_request", &[("data", &first)]);
                let resp = response(
                    &site,
                    &conn,
                    400,
                    "Bad Request",
                    "text/html",
                    b"<html><body><h1>400 Bad Request</h1></body></html>\n",
                    false,
                    &[],
                );
                let _ = s.get_mut().write_all(&resp).await;
                return;
            }
            Ok(Err(ReadError::TooLarge(code))) => {
                let code_s = code.to_string();
                conn.event(
                    "bad_request",
                    &[("status", &code_s), ("reason", "too large")],
                );
                let reason = if code == 413 {
                    "Payload Too Large"
                } else {
                    "Request Header Fields Too Large"
                };
                let resp = response(&site, &conn, code, reason, "text/html", b"", false, &[]);
                let _ = s.get_mut().write_all(&resp).await;
                return;
            }
            Ok(Ok(r)) => r,
        };
        let keep = req.keep_alive();
        let (status, resp) = handle(&req, &conn, &site, keep);
        log_request(&conn, &req, status, sni.as_deref());
        if s.get_mut().write_all(&resp).await.is_err() || s.get_mut().flush().await.is_err() {
            return;
        }
        if !keep {
            let _ = s.get_mut().shutdown().await;
            return;
        }
    }
}

fn log_request(conn: &Conn, req: &Request, status: u16, sni: Option<&str>) {
    let mut headers = String::new();
    for (n, v) in &req.headers {
        if headers.len() > super::super::emit::MAX_LONG_VALUE {
            break;
        }
        headers.push_str(n);
        headers.push_str(": ");
        headers.push_str(v);
        headers.push('\n');
    }
    let body = lossy(super::limit(&req.body, 2048)).into_owned();
    let status = status.to_string();
    let len = req.body.len().to_string();
    let mut fields: Vec<(&str, &str)> = vec![
        ("method", &req.method),
        ("path", &req.target),
        ("version", &req.version),
        ("host", req.header("host").unwrap_or("")),
        ("user_agent", req.header("user-agent").unwrap_or("")),
        ("status", &status),
        ("headers", &headers),
    ];
    if !req.body.is_empty() {
        fields.push(("body_len", &len));
        fields.push(("body", &body));
    }
    if let Some(sni) = sni {
        fields.push(("sni", sni));
    }
    conn.event("request", &fields);
}

/// Status, reason, content type, body and extra headers of a response.
type Page<'a> = (u16, &'a str, &'a str, Vec<u8>, Vec<(&'a str, String)>);

/// The response to `req` (and logs credentials it carries).
fn handle(req: &Request, conn: &Conn, site: &Site, keep: bool) -> (u16, Vec<u8>) {
    let spec = &conn.ctx.spec;
    let path = req.path().to_owned();
    let head = req.method == "HEAD";
    let html = "text/html; charset=UTF-8";
    let mut basic_ok = None;
    if let Some(auth) = req.header("authorization")
        && let Some((user, pass)) = basic_credentials(auth)
    {
        let ok = Conn::accepted(&site.accept, &user, &pass);
        conn.auth(
            &user,
            &pass,
            "password",
            &[("method", "basic"), ("path", &req.target)],
        );
        basic_ok = Some(ok);
    }
    let form = login_form(req);
    if let Some((user, pass)) = &form {
        conn.auth(
            user,
            pass,
            "password",
            &[("method", "form"), ("path", &req.target)],
        );
    }
    let (status, reason, ctype, body, extra): Page<'_> = if BASIC_PATHS
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        if basic_ok == Some(true) {
            (200, "OK", html, format!("<html><head><title>Index of {0}</title></head><body><h1>Index of {0}</h1><hr></body></html>\n", persona::html_escape(&path)).into_bytes(), vec![])
        } else {
            (
                    401,
                    "Unauthorized",
                    html,
                    b"<html><head><title>401 Unauthorized</title></head><body><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document requested.</p></body></html>\n".to_vec(),
                    vec![("WWW-Authenticate", format!("Basic realm=\"{}\"", spec.hostname))],
                )
        }
    } else if let Some((user, pass)) = form {
        if Conn::accepted(&site.accept, &user, &pass) {
            (
                302,
                "Found",
                html,
                Vec::new(),
                vec![
                    ("Location", "/".into()),
                    (
                        "Set-Cookie",
                        "session=7f3a9c0d2e81b4f6; Path=/; HttpOnly".into(),
                    ),
                ],
            )
        } else {
            let page = persona::login_page("Login").replace(
                "<form",
                "<p class=\"error\">Invalid username or password.</p>\n<form",
            );
            (200, "OK", html, page.into_bytes(), vec![])
        }
    } else {
        match (req.method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/" | "/index.html" | "/index.htm" | "/iisstart.htm") => (
                200,
                "OK",
                html,
                persona::http_index(spec).into_bytes(),
                vec![],
            ),
            (
                "GET" | "HEAD",
                "/login" | "/login.html" | "/login.php" | "/wp-login.php" | "/user/login"
                | "/admin/login",
            ) => (
                200,
                "OK",
                html,
                persona::login_page("Login").into_bytes(),
                vec![],
            ),
            ("GET" | "HEAD", "/robots.txt") => (
                200,
                "OK",
                "text/plain",
                b"User-agent: *\nDisallow: /admin/\nDisallow: /backup/\n".to_vec(),
                vec![],
            ),
            ("OPTIONS", _) => (
                200,
                "OK",
                html,
                Vec::new(),
                vec![("Allow", "GET,HEAD,POST,OPTIONS".into())],
            ),
            ("GET" | "HEAD" | "POST", _) => (
                404,
                "Not Found",
                html,
                persona::http_not_found(spec, &path, conn.local.port()).into_bytes(),
                vec![],
            ),
            _ => (
                405,
                "Method Not Allowed",
                html,
                b"<html><body><h1>405 Method Not Allowed</h1></body></html>\n".to_vec(),
                vec![("Allow", "GET,HEAD,POST,OPTIONS".into())],
            ),
        }
    };
    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut resp = response(site, conn, status, reason, ctype, &body, keep, &extra);
    if head {
        // Same headers, no body.
        let cut = resp.len() - body.len();
        resp.truncate(cut);
    }
    (status, resp)
}

/// A complete response.
#[allow(clippy::too_many_arguments)]
fn response(
    site: &Site,
    conn: &Conn,
    status: u16,
    reason: &str,
    ctype: &str,
    body: &[u8],
    keep: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {reason}\r\n");
    let iis = site.server.starts_with("Microsoft-IIS");
    if !iis {
        h.push_str(&format!("Date: {}\r\n", http_date()));
    }
    if !site.server.is_empty() {
        h.push_str(&format!("Server: {}\r\n", site.server));
    }
    for (n, v) in extra {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    if iis {
        h.push_str("X-Powered-By: ASP.NET\r\n");
        h.push_str(&format!("Date: {}\r\n", http_date()));
    }
    if !body.is_empty() || status != 302 {
        h.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    h.push_str(if keep {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    h.push_str("\r\n");
    let _ = conn;
    let mut out = h.into_bytes();
    out.extend_from_slice(body);
    out
}

/// IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date() -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

/// `Basic <base64(user:pass)>` → (user, pass bytes).
pub fn basic_credentials(header: &str) -> Option<(String, Vec<u8>)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let i = raw.iter().position(|&b| b == b':')?;
    Some((lossy(&raw[..i]).into_owned(), raw[i + 1..].to_vec()))
}

/// A login form in the body (urlencoded or JSON): (user, password).
pub fn login_form(req: &Request) -> Option<(String, Vec<u8>)> {
    if req.method != "POST" || req.body.is_empty() {
        return None;
    }
    let ctype = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let fields: Vec<(String, Vec<u8>)> = if ctype.contains("json") {
        let v: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
        v.as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.as_bytes().to_vec())))
            .collect()
    } else {
        req.body
            .split(|&b| b == b'&')
            .filter_map(|kv| {
                let mut it = kv.splitn(2, |&b| b == b'=');
                let k = url_decode(it.next()?);
                let v = url_decode(it.next().unwrap_or(b""));
                Some((lossy(&k).to_ascii_lowercase(), v))
            })
            .collect()
    };
    let find = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    };
    let pass = find(&PASS_FIELDS)?;
    let user = find(&USER_FIELDS).unwrap_or_default();
    Some((lossy(&user).into_owned(), pass))
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
pub fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        let mut r = BufReader::new(raw);
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn parses_requests_and_bodies() {
        let r = parse(b"\r\nPOST /login?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 29\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nusername=adm%21n&password=p+w").await.unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path(), "/login");
        assert_eq!(r.header("HOST"), Some("a"));
        assert_eq!(login_form(&r), Some(("adm!n".into(), b"p w".to_vec())));
        let r = parse(b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{\"use\r\n1d;x\r\nr\":\"root\",\"password\":\"toor\"}\r\n0\r\n\r\n").await.unwrap();
        assert_eq!(login_form(&r), Some(("root".into(), b"toor".to_vec())));
        let r = parse(b"GET http://example.com/a/b HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.path(), "/a/b");
        assert!(!r.keep_alive());
    }

    #[tokio::test]
    async fn rejects_hostile_input() {
        assert_eq!(parse(b"").await, Err(ReadError::Closed));
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\r\n\r\n").await,
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            parse(b"GET / SSH/2.0\r\n\r\n").await,
            Err(ReadError::Bad(_))
        ));
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            big.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        assert_eq!(parse(&big).await, Err(ReadError::TooLarge(431)));
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(huge.as_bytes()).await, Err(ReadError::TooLarge(431)));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").await,
            Err(ReadError::TooLarge(413))
        );
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").await,
            Err(ReadError::Bad(_))
        ));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n").await,
            Err(ReadError::TooLarge(413))
        );
    }

    #[test]
    fn basic_and_url_decoding() {
        assert_eq!(
            basic_credentials("Basic YWRtaW46cGE6c3M="),
            Some(("admin".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(url_decode(b"a%20b%zz%4"), b"a b%zz%4");
        assert_eq!(url_decode(b"%"), b"%");
        assert_eq!(http_date().len(), 29);
    }
}
