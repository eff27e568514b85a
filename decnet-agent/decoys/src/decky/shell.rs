//! The fake shell behind an accepted ssh or telnet login: answers a few commands the way the
//! persona's system would, and says "command not found" to the rest. It runs nothing.
use std::sync::Arc;

use crate::fleet::{DeckySpec, OsFamily};

use super::persona;

/// One logged-in shell.
pub struct Shell {
    pub spec: Arc<DeckySpec>,
    pub user: String,
    pub cwd: String,
}

/// What a command line did.
pub struct Outcome {
    /// Text to send (lines end in `\r\n` when `crlf`, else `\n`).
    pub output: String,
    /// The session ends (exit, logout).
    pub exit: bool,
    /// Exit status of the last command.
    pub status: u32,
}

impl Shell {
    pub fn new(spec: Arc<DeckySpec>, user: &str) -> Shell {
        let windows = is_windows(&spec);
        let cwd = if windows {
            format!("C:\\Users\\{user}")
        } else if user == "root" {
            "/root".into()
        } else {
            format!("/home/{user}")
        };
        Shell {
            spec,
            user: user.to_owned(),
            cwd,
        }
    }

    /// The prompt.
    pub fn prompt(&self) -> String {
        if is_windows(&self.spec) {
            return format!("{}>", self.cwd);
        }
        let home = if self.user == "root" {
            "/root".to_owned()
        } else {
            format!("/home/{}", self.user)
        };
        let dir = if self.cwd == home {
            "~".to_owned()
        } else {
            self.cwd.clone()
        };
        let sigil = if self.user == "root" { '#' } else { '$' };
        format!("{}@{}:{dir}{sigil} ", self.user, self.spec.hostname)
    }

    /// The banner shown after login.
    pub fn motd(&self) -> String {
        match self.spec.os {
            OsFamily::Linux => "Welcome to Ubuntu 22.04.4 LTS (GNU/Linux 5.15.0-105-generic x86_64)\n\n * Documentation:  https://help.ubuntu.com\n * Management:     https://landscape.canonical.com\n * Support:        https://ubuntu.com/pro\n\nLast login: Tue Nov 24 09:12:44 2026 from 10.0.0.12\n".into(),
            OsFamily::Windows | OsFamily::WindowsServer => "Microsoft Windows [Version 10.0.20348.2340]\n(c) Microsoft Corporation. All rights reserved.\n\n".into(),
            OsFamily::Bsd => "FreeBSD 14.0-RELEASE (GENERIC) releng/14.0-n265380-f9716eee8ab4\n\nWelcome to FreeBSD!\n\n".into(),
            OsFamily::Embedded => "\n\nBusyBox v1.31.1 () built-in shell (ash)\n\n".into(),
            OsFamily::Cisco => "\n".into(),
        }
    }

    /// Runs one command line (`a; b && c` runs each part).
    pub fn run(&mut self, line: &str) -> Outcome {
        let mut out = String::new();
        let mut status = 0;
        for part in line
            .split([';', '\n'])
            .flat_map(|p| p.split("&&"))
            .flat_map(|p| p.split("||"))
        {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (o, exit, st) = self.one(part);
            out.push_str(&o);
            status = st;
            if exit {
                return Outcome {
                    output: out,
                    exit: true,
                    status,
                };
            }
        }
        Outcome {
            output: out,
            exit: false,
            status,
        }
    }

    fn one(&mut self, cmd: &str) -> (String, bool, u32) {
        let mut words = cmd.split_whitespace();
        let name = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let name = name.rsplit('/').next().unwrap_or(name);
        if is_windows(&self.spec) {
            return self.windows(name, &args, cmd);
        }
        let (kname, release, version, machine, osname) = persona::uname(&self.spec);
        let h = &self.spec.hostname;
        let uid = if self.user == "root" { 0 } else { 1000 };
        let out = match name {
            "exit" | "logout" => return ("logout\n".into(), true, 0),
            "whoami" => format!("{}\n", self.user),
            "id" => format!(
                "uid={uid}({u}) gid={uid}({u}) groups={uid}({u}){}\n",
                if uid == 0 {
                    ""
                } else {
                    ",4(adm),24(cdrom),27(sudo)"
                },
                u = self.user
            ),
            "hostname" => format!("{h}\n"),
            "pwd" => format!("{}\n", self.cwd),
            "uname" => {
                let all = args.iter().any(|a| a.contains('a'));
                if all {
                    format!("{kname} {h} {release} {version} {machine} {osname}\n")
                } else if args.iter().any(|a| a.contains('r')) {
                    format!("{release}\n")
                } else if args.iter().any(|a| a.contains('m')) {
                    format!("{machine}\n")
                } else {
                    format!("{kname}\n")
                }
            }
            "cd" => {
                let to = args.first().copied().unwrap_or("~");
                self.cwd = match to {
                    "~" => {
                        if uid == 0 {
                            "/root".into()
                        } else {
                            format!("/home/{}", self.user)
                        }
                    }
                    p if p.starts_with('/') => p.chars().take(256).collect(),
                    p => format!("{}/{}", self.cwd.trim_end_matches('/'), p)
                        .chars()
                        .take(256)
                        .collect(),
                };
                String::new()
            }
            "ls" | "dir" => {
                if args.iter().any(|a| a.starts_with('-') && a.contains('l')) {
                    "total 20\ndrwx------ 3 root root 4096 Nov 24 09:12 .\ndrwxr-xr-x 19 root root 4096 Mar  2  2026 ..\n-rw------- 1 root root  812 Nov 24 09:40 .bash_history\n-rw-r--r-- 1 root root 3106 Oct 15  2021 .bashrc\ndrwx------ 2 root root 4096 Mar  2  2026 .ssh\n-rw-r--r-- 1 root root  161 Jul  9  2019 .profile\n-rw-r--r-- 1 root root  220 Mar  2  2026 backup.sh\n".into()
                } else {
                    "backup.sh\n".into()
                }
            }
            "cat" => match args.first().copied() {
                Some("/etc/passwd") => passwd(&self.user),
                Some("/etc/hostname") => format!("{h}\n"),
                Some("/etc/issue") => "Ubuntu 22.04.4 LTS \\n \\l\n\n".into(),
                Some("/etc/os-release") => OS_RELEASE.into(),
                Some("/proc/cpuinfo") => "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\ncpu MHz\t\t: 2399.998\ncache size\t: 35840 KB\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n".into(),
                Some("backup.sh") => "#!/bin/sh\ntar czf /var/backups/www.tgz /var/www\n".into(),
                Some(f) => return (format!("cat: {f}: No such file or directory\n"), false, 1),
                None => String::new(),
            },
            "echo" => format!("{}\n", args.join(" ")),
            "w" | "uptime" => " 09:41:07 up 37 days,  3:02,  1 user,  load average: 0.08, 0.03, 0.01\n".into(),
            "ps" => "    PID TTY          TIME CMD\n   2231 pts/0    00:00:00 bash\n   2290 pts/0    00:00:00 ps\n".into(),
            "history" | "clear" | "export" | "unset" | "true" | "sleep" | "history -c" => String::new(),
            "wget" | "curl" => {
                let url = args.iter().rev().find(|a| !a.starts_with('-')).copied().unwrap_or("");
                return (
                    format!("{name}: unable to resolve host address '{}'\n", host_of(url)),
                    false,
                    4,
                );
            }
            "sudo" => format!("[sudo] password for {}: \nSorry, try again.\n", self.user),
            _ => return (format!("-bash: {name}: command not found\n"), false, 127),
        };
        (out, false, 0)
    }

    fn windows(&mut self, name: &str, args: &[&str], cmd: &str) -> (String, bool, u32) {
        let h = &self.spec.hostname;
        let out = match name.to_ascii_lowercase().as_str() {
            "exit" | "logout" => return (String::new(), true, 0),
            "whoami" => format!("{}\\{}\n", h.to_ascii_lowercase(), self.user),
            "hostname" => format!("{h}\n"),
            "ver" => "\nMicrosoft Windows [Version 10.0.20348.2340]\n".into(),
            "cd" if args.is_empty() => format!("{}\n", self.cwd),
            "dir" | "ls" => format!(
                " Volume in drive C has no label.\n Volume Serial Number is 5A3C-91F2\n\n Directory of {}\n\n11/24/2026  09:12 AM    <DIR>          .\n11/24/2026  09:12 AM    <DIR>          Desktop\n11/24/2026  09:12 AM    <DIR>          Documents\n               0 File(s)              0 bytes\n               3 Dir(s)  41,203,531,776 bytes free\n",
                self.cwd
            ),
            "echo" => format!("{}\n", args.join(" ")),
            _ => {
                let _ = cmd;
                return (
                    format!(
                        "'{name}' is not recognized as an internal or external command,\noperable program or batch file.\n"
                    ),
                    false,
                    1,
                );
            }
        };
        (out, false, 0)
    }
}

fn is_windows(spec: &DeckySpec) -> bool {
    matches!(spec.os, OsFamily::Windows | OsFamily::WindowsServer)
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', ':']).next().unwrap_or(rest)
}

fn passwd(user: &str) -> String {
    let mut s = String::from(
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nsync:x:4:65534:sync:/bin:/bin/sync\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nsystemd-network:x:100:102:systemd Network Management,,,:/run/systemd:/usr/sbin/nologin\nsshd:x:106:65534::/run/sshd:/usr/sbin/nologin\nmysql:x:112:118:MySQL Server,,,:/nonexistent:/bin/false\n",
    );
    if user != "root" {
        s.push_str(&format!(
            "{user}:x:1000:1000:{user},,,:/home/{user}:/bin/bash\n"
        ));
    }
    s
}

const OS_RELEASE: &str = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\n";

/// `s` with `\n` turned into `\r\n` (terminals).
pub fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux() -> DeckySpec {
        crate::decky::test_spec()
    }

    #[test]
    fn answers_the_usual_recon() {
        let mut sh = Shell::new(Arc::new(linux()), "root");
        assert_eq!(sh.prompt(), "root@web01:~# ");
        assert_eq!(sh.run("whoami").output, "root\n");
        assert!(sh.run("id").output.starts_with("uid=0(root)"));
        let u = sh.run("uname -a").output;
        assert!(u.starts_with("Linux web01 5.15.0-105-generic"), "{u}");
        assert!(sh.run("cat /etc/passwd").output.contains("root:x:0:0"));
        let o = sh.run("whoami; pwd && foo");
        assert_eq!(o.output, "root\n/root\n-bash: foo: command not found\n");
        assert_eq!(o.status, 127);
        sh.run("cd /tmp");
        assert_eq!(sh.prompt(), "root@web01:/tmp# ");
        let o = sh.run("echo hi; exit; whoami");
        assert!(o.exit);
        assert_eq!(o.output, "hi\nlogout\n");
    }

    #[test]
    fn windows_persona() {
        let mut spec = linux();
        spec.os = OsFamily::Windows;
        let mut sh = Shell::new(Arc::new(spec), "admin");
        assert_eq!(sh.prompt(), "C:\\Users\\admin>");
        assert_eq!(sh.run("whoami").output, "web01\\admin\n");
        assert!(sh.run("uname -a").output.contains("is not recognized"));
    }
}
