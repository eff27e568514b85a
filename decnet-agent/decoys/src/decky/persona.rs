//! What a decky claims to be: banners, versions and pages that fit its OS family and archetype.
//! A service's `banner` in the fleet file overrides the default.
use crate::fleet::{DeckySpec, OsFamily};

/// The archetype in lowercase ("" when none).
fn archetype(spec: &DeckySpec) -> String {
    spec.archetype.as_deref().unwrap_or("").to_ascii_lowercase()
}

/// SSH identification string (without CRLF).
pub fn ssh_banner(spec: &DeckySpec) -> &'static str {
    match spec.os {
        OsFamily::Linux => "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6",
        OsFamily::Windows | OsFamily::WindowsServer => "SSH-2.0-OpenSSH_for_Windows_8.1",
        OsFamily::Bsd => "SSH-2.0-OpenSSH_9.6 FreeBSD-20240104",
        OsFamily::Embedded => "SSH-2.0-dropbear_2020.81",
        OsFamily::Cisco => "SSH-2.0-Cisco-1.25",
    }
}

/// HTTP `Server` header.
pub fn http_server(spec: &DeckySpec) -> &'static str {
    let a = archetype(spec);
    match spec.os {
        OsFamily::Windows | OsFamily::WindowsServer => "Microsoft-IIS/10.0",
        OsFamily::Linux if a.contains("nginx") || a.contains("proxy") => "nginx/1.18.0 (Ubuntu)",
        OsFamily::Linux => "Apache/2.4.52 (Ubuntu)",
        OsFamily::Bsd => "nginx/1.24.0",
        OsFamily::Embedded => "lighttpd/1.4.59",
        OsFamily::Cisco => "cisco-IOS",
    }
}

/// FTP greeting text (after `220 `).
pub fn ftp_greeting(spec: &DeckySpec) -> String {
    match spec.os {
        OsFamily::Linux => "(vsFTPd 3.0.5)".into(),
        OsFamily::Windows | OsFamily::WindowsServer => "Microsoft FTP Service".into(),
        OsFamily::Bsd => format!("{} FTP server (Version 6.00LS) ready.", spec.hostname),
        OsFamily::Embedded => "Welcome to the FTP server".into(),
        OsFamily::Cisco => format!("{} IOS-FTP server (version 1.00) ready.", spec.hostname),
    }
}

/// FTP `SYST` answer.
pub fn ftp_syst(spec: &DeckySpec) -> &'static str {
    match spec.os {
        OsFamily::Windows | OsFamily::WindowsServer => "215 Windows_NT",
        _ => "215 UNIX Type: L8",
    }
}

/// SMTP greeting text (after `220 `).
pub fn smtp_greeting(spec: &DeckySpec) -> String {
    let h = &spec.hostname;
    match spec.os {
        OsFamily::Windows | OsFamily::WindowsServer => {
            format!("{h} Microsoft ESMTP MAIL Service ready")
        }
        OsFamily::Bsd => format!("{h} ESMTP Sendmail 8.17.2/8.17.2"),
        OsFamily::Embedded | OsFamily::Cisco => format!("{h} ESMTP"),
        OsFamily::Linux => format!("{h} ESMTP Postfix (Ubuntu)"),
    }
}

/// MySQL server version.
pub fn mysql_version(spec: &DeckySpec) -> &'static str {
    match spec.os {
        OsFamily::Linux => "8.0.36-0ubuntu0.22.04.1",
        OsFamily::Windows | OsFamily::WindowsServer => "8.0.36",
        OsFamily::Bsd => "8.0.35",
        OsFamily::Embedded | OsFamily::Cisco => "5.5.5-10.5.23-MariaDB",
    }
}

/// Redis version (`INFO`).
pub fn redis_version(spec: &DeckySpec) -> &'static str {
    match spec.os {
        OsFamily::Windows | OsFamily::WindowsServer => "3.0.504",
        _ => "7.0.15",
    }
}

/// `uname -s -r -v -m`-ish facts: (kernel name, release, version, machine, os name).
pub fn uname(
    spec: &DeckySpec,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
) {
    match spec.os {
        OsFamily::Bsd => (
            "FreeBSD",
            "14.0-RELEASE",
            "FreeBSD 14.0-RELEASE #0 releng/14.0-n265380-f9716eee8ab4: Fri Nov 10 05:57:23 UTC 2023",
            "amd64",
            "FreeBSD",
        ),
        OsFamily::Embedded => (
            "Linux",
            "4.9.37",
            "#1 SMP PREEMPT Mon Mar 4 11:02:11 CST 2019",
            "armv7l",
            "GNU/Linux",
        ),
        _ => (
            "Linux",
            "5.15.0-105-generic",
            "#115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024",
            "x86_64",
            "GNU/Linux",
        ),
    }
}

/// Telnet text shown before the login prompt.
pub fn telnet_banner(spec: &DeckySpec) -> String {
    match spec.os {
        OsFamily::Linux => "Ubuntu 22.04.4 LTS\r\n".into(),
        OsFamily::Windows | OsFamily::WindowsServer => {
            "Welcome to Microsoft Telnet Service \r\n\r\n".into()
        }
        OsFamily::Bsd => format!("FreeBSD/amd64 ({}) (pts/0)\r\n\r\n", spec.hostname),
        OsFamily::Embedded => String::new(),
        OsFamily::Cisco => "\r\nUser Access Verification\r\n\r\n".into(),
    }
}

/// The telnet login prompt.
pub fn telnet_login_prompt(spec: &DeckySpec) -> String {
    match spec.os {
        OsFamily::Cisco => "Username: ".into(),
        OsFamily::Embedded | OsFamily::Linux | OsFamily::Bsd => {
            format!("{} login: ", spec.hostname)
        }
        OsFamily::Windows | OsFamily::WindowsServer => "login: ".into(),
    }
}

/// The HTML title of the decky's web root.
fn site_title(spec: &DeckySpec) -> String {
    let a = archetype(spec);
    if a.contains("camera") {
        "IP Camera - Web Client".into()
    } else if a.contains("router") || matches!(spec.os, OsFamily::Cisco) {
        "Router Management".into()
    } else if a.contains("file") || a.contains("nas") {
        format!("{} - File Station", spec.hostname)
    } else if a.contains("database") {
        "phpMyAdmin".into()
    } else {
        String::new()
    }
}

/// The web root page (HTML).
pub fn http_index(spec: &DeckySpec) -> String {
    let title = site_title(spec);
    if !title.is_empty() {
        return login_page(&title);
    }
    match spec.os {
        OsFamily::Windows | OsFamily::WindowsServer => IIS_INDEX.into(),
        OsFamily::Linux if http_server(spec).starts_with("nginx") => NGINX_INDEX.into(),
        OsFamily::Linux => APACHE_INDEX.into(),
        OsFamily::Bsd => NGINX_INDEX.into(),
        OsFamily::Embedded | OsFamily::Cisco => login_page("Web Management"),
    }
}

/// A login form posting `username`/`password` to `/login`.
pub fn login_page(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\
         <div class=\"login\"><h2>{title}</h2>\n<form method=\"post\" action=\"/login\">\n\
         <label>Username <input type=\"text\" name=\"username\"></label><br>\n\
         <label>Password <input type=\"password\" name=\"password\"></label><br>\n\
         <input type=\"submit\" value=\"Log in\">\n</form></div></body></html>\n"
    )
}

/// The 404 page in the server's own style.
pub fn http_not_found(spec: &DeckySpec, path: &str, port: u16) -> String {
    let server = http_server(spec);
    let path = html_escape(path);
    if server.starts_with("Microsoft-IIS") {
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\"/>\r\n<title>404 - File or directory not found.</title>\r\n</head>\r\n<body>\r\n<div id=\"header\"><h1>Server Error</h1></div>\r\n<div id=\"content\">\r\n <div class=\"content-container\"><fieldset>\r\n  <h2>404 - File or directory not found.</h2>\r\n  <h3>The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.</h3>\r\n </fieldset></div>\r\n</div>\r\n</body>\r\n</html>\r\n".into()
    } else if server.starts_with("Apache") {
        format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL {path} was not found on this server.</p>\n<hr>\n<address>{server} Server at {} Port {port}</address>\n</body></html>\n",
            html_escape(&spec.hostname)
        )
    } else if server.starts_with("nginx") {
        format!(
            "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n",
            server.split(' ').next().unwrap_or(server)
        )
    } else {
        "<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>\n"
            .into()
    }
}

/// `s` safe inside HTML text.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const APACHE_INDEX: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\n  <head>\n    <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n    <title>Apache2 Ubuntu Default Page: It works</title>\n  </head>\n  <body>\n    <div class=\"main_page\">\n      <div class=\"page_header floating_element\">\n        <span class=\"floating_element\">Apache2 Ubuntu Default Page</span>\n      </div>\n      <div class=\"content_section floating_element\">\n        <div class=\"section_header section_header_red\">It works!</div>\n        <p>This is the default welcome page used to test the correct operation of the Apache2 server after installation on Ubuntu systems.</p>\n      </div>\n    </div>\n  </body>\n</html>\n";

const NGINX_INDEX: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n";

const IIS_INDEX: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\" />\r\n<title>IIS Windows Server</title>\r\n<style type=\"text/css\">\r\n<!--\r\nbody {\r\n\tcolor:#000000;\r\n\tbackground-color:#0072C6;\r\n\tmargin:0;\r\n}\r\n-->\r\n</style>\r\n</head>\r\n<body>\r\n<div id=\"container\">\r\n<a href=\"http://go.microsoft.com/fwlink/?linkid=66138&amp;clcid=0x409\"><img src=\"iisstart.png\" alt=\"IIS\" width=\"960\" height=\"600\" /></a>\r\n</div>\r\n</body>\r\n</html>";
