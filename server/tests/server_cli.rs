//! `sluice server` as an operator meets it: clear refusals for a bad config, a busy port and
//! an unwritable data directory; `-ERR` and a closed connection for a malformed or oversized
//! client frame; a clean exit on SIGTERM; a restart that finds its data.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use support::{free_port, temp_dir, Cluster};

fn server(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("server").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_configs_busy_ports_and_unwritable_dirs_are_refused_with_the_reason() {
    let dir = temp_dir("cli-refusals");
    let data = dir.join("data");
    let data = data.to_str().unwrap();

    let (code, err) = server(&["--name", "n1", "--data", data, "--peers", "n2=localhost"]);
    assert_eq!(code, 2);
    assert!(err.contains("peer n2 address \"localhost\""), "{err}");

    let (code, err) = server(&["--name", "n1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--data"), "{err}");

    let (code, err) = server(&["--name", "n1", "--data", data, "--sync", "interval", "--sync-interval-ms", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("sync_interval_ms must be above zero"), "{err}");

    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "name = \"n1\"\ndta = \"/tmp\"\n").unwrap();
    let (code, err) = server(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `dta`"), "{err}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let cluster = format!("127.0.0.1:{}", free_port());
    let (code, err) = server(&["--data", data, "--client", &busy_addr, "--cluster", &cluster]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("client address {busy_addr}")) && err.contains("in use"), "{err}");

    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (code, err) = server(&["--data", file.to_str().unwrap(), "--client", &format!("127.0.0.1:{}", free_port())]);
    assert_eq!(code, 2);
    assert!(err.contains("data directory"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads what the server sends until it closes the connection (or 5 s pass).
fn read_until_closed(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the server did not close the connection: {e}; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

#[test]
fn malformed_and_oversized_frames_get_err_and_a_close_and_the_server_lives_on() {
    let cluster = Cluster::start("cli-frames", 1);
    let addr = cluster.nodes[0].client.clone();
    let cases: [(&[u8], &str); 4] = [
        (b"CONNECT {}\r\nFROB x\r\n", "-ERR 'Unknown Protocol Operation: FROB'"),
        (b"PUB a 99999999\r\n", "-ERR 'Maximum Payload Violation'"),
        (b"PUB a 3\r\nabcdef\r\n", "-ERR 'Parser Error: payload not terminated by CRLF'"),
        (b"CONNECT {not json\r\n", "-ERR 'Parser Error: CONNECT is not JSON"),
    ];
    for (input, expected) in cases {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(input).unwrap();
        let got = read_until_closed(&mut s);
        assert!(got.starts_with("INFO {"), "{got}");
        assert!(got.contains(expected), "sent {:?}, got {got:?}", String::from_utf8_lossy(input));
    }
    let mut long = vec![b'P'; 10_000];
    long.extend_from_slice(b"\r\n");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&long).unwrap();
    assert!(read_until_closed(&mut s).contains("-ERR 'Maximum Control Line Exceeded'"));

    // Still serving.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("PONG") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut cluster = Cluster::start("cli-sigterm", 1);
    let child = cluster.nodes[0].child.take().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "log:\n{}", support::tail(&cluster.nodes[0].log, 20));
    let log = support::tail(&cluster.nodes[0].log, 20);
    assert!(log.contains("signal received") && log.contains("node stopped"), "{log}");
}
