//! Local clusters of real `sluice server` processes for the interop and CLI tests: free
//! loopback ports, a fresh data directory per node, stderr kept in a log file that a failing
//! test prints. Processes are killed (SIGKILL) when the cluster is dropped. Also the
//! async-nats connect-and-retry helpers the interop tests share.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits out elections after start-up and kills (election timeouts are 1.5
/// to 3 s).
pub const SETTLE: Duration = Duration::from_secs(30);

/// Connects with async-nats, retrying until `SETTLE` passes.
pub async fn connect(url: &str) -> async_nats::Client {
    retry(&format!("connect {url}"), || async_nats::connect(url)).await
}

/// Retries `f` until it succeeds or `SETTLE` passes (elections after start and kills).
pub async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if start.elapsed() < SETTLE => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Ports handed to test servers: below Linux's ephemeral range (32768..=60999 by default).
/// A port the OS picks from that range and the test releases can be taken, before the server
/// binds it, by the source port of an outgoing connection: a node already running dials its
/// peers again and again (it happened in CI: "cluster address ...: Address already in use" at
/// start-up). Ports below the range are never handed out that way.
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A port that is free now and that no other call in this process returns: taken from a
/// counter (started at an offset from the process id, so test binaries run one after another
/// do not reuse each other's ports at once), each checked by binding it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let offset = (std::process::id() % 97) * 100;
    // Bounded: every port of the range is tried at most once per call.
    for _ in 0..span {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(TEST_PORTS.start + (offset + k) % span).expect("the range is within u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

pub struct Node {
    pub name: String,
    pub client: String,
    pub cluster: String,
    pub data: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
    /// More `sluice server` flags, the same for every node.
    pub args: Vec<String>,
}

impl Cluster {
    pub fn start(tag: &str, n: usize) -> Cluster {
        Cluster::start_with(tag, n, &[])
    }

    pub fn start_with(tag: &str, n: usize, args: &[&str]) -> Cluster {
        let dir = temp_dir(tag);
        let nodes: Vec<Node> = (1..=n)
            .map(|i| Node {
                name: format!("n{i}"),
                client: format!("127.0.0.1:{}", free_port()),
                cluster: format!("127.0.0.1:{}", free_port()),
                data: dir.join(format!("n{i}")),
                log: dir.join(format!("n{i}.log")),
                child: None,
            })
            .collect();
        let mut c = Cluster { nodes, dir, args: args.iter().map(|a| a.to_string()).collect() };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    pub fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("{}={}", p.name, p.cluster))
            .collect();
        let node = &self.nodes[i];
        let starts_before = starts_logged(&node.log);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["server", "--name", &node.name, "--client", &node.client, "--cluster", &node.cluster])
            .arg("--data")
            .arg(&node.data)
            .args(&self.args);
        if !peers.is_empty() {
            cmd.arg("--peers").arg(peers.join(","));
        }
        let child = cmd
            // One debug line per installed checkpoint, for tests that count them.
            .env("RUST_LOG", "info,sluice::checkpoint=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sluice server");
        self.nodes[i].child = Some(child);
        self.wait_started(i, starts_before, Duration::from_secs(20));
    }

    /// Waits until node `i` logs that it started (it has bound its ports by then) and accepts a
    /// connection.
    ///
    /// A bare connect is not proof: ports come from `free_port`, which releases the port it
    /// found, so a test running alongside can bind the same port for a moment, answer the
    /// probe, and leave the test talking to a listener that then vanishes.
    fn wait_started(&mut self, i: usize, starts_before: usize, timeout: Duration) {
        let node = &mut self.nodes[i];
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{} exited at start-up ({status}); log:\n{}", node.name, tail(&node.log, 40));
            }
            if starts_logged(&node.log) > starts_before && std::net::TcpStream::connect(&node.client).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not start within {timeout:?}; log:\n{}", node.name, tail(&node.log, 40));
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.nodes[i].client)
    }

    /// Every node's log, for a failing test's output.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, tail(&n.log, 40))).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("{}", self.logs());
        }
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many times a node's log says it started (logs are appended to across restarts).
fn starts_logged(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches("sluice server started").count()
}
