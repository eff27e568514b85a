//! `unix-send SOCKET LINE...`: sends each LINE octet-counted (RFC 6587) over the Unix stream
//! socket, then waits up to 5 s for the server to close the connection. Prints `closed` or
//! `open`, and exits 0 either way (non-zero only when it cannot connect). The isolation tests
//! run it as a process of its own inside a decky's network namespace (`ip netns exec`): the
//! collector tells a peer's namespace from its process (SO_PEERCRED), which a thread of the test
//! that entered the namespace would not change.
use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((sock, lines)) = args.split_first() else {
        eprintln!("usage: unix-send SOCKET LINE...");
        return std::process::ExitCode::from(2);
    };
    let mut s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot connect to {sock}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for line in lines {
        // A write into a connection the server closed fails: that is an answer too.
        if s.write_all(format!("{} {line}", line.len()).as_bytes())
            .is_err()
        {
            break;
        }
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 16];
    let closed = matches!(s.read(&mut b), Ok(0) | Err(_));
    println!("{}", if closed { "closed" } else { "open" });
    std::process::ExitCode::SUCCESS
}
