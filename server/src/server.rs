//! `sluice server`: start-up, the listeners, the node thread, and graceful shutdown.
//!
//! Order matters for clear failures: the data directory is checked and both ports are bound
//! before the node opens, so a typo, a busy port or an unwritable directory is one line on
//! stderr and a non-zero exit, with nothing half-started.

use crate::checkpoint;
use crate::cluster;
use crate::config::{ServerConfig, SnapshotMode, SyncMode};
use crate::driver::{Driver, Event, StreamSubjects, EVENT_QUEUE};
use crate::nats;
use crate::startup;
use sluice_core::node::NodeConfig;
use sluice_core::os::{OsClock, OsDisk};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// Checks the data directory: it exists (or can be made) and accepts a new file.
fn check_data_dir(cfg: &ServerConfig) -> Result<OsDisk, String> {
    let dir = &cfg.data;
    std::fs::create_dir_all(dir).map_err(|e| format!("data directory {}: {e}", dir.display()))?;
    let probe = dir.join(".sluice-write-probe");
    std::fs::write(&probe, b"probe").map_err(|e| format!("data directory {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    OsDisk::new(dir).map_err(|e| format!("data directory {}: {e}", dir.display()))
}

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("{what} address {addr}: {e}"))
}

/// Runs the server until SIGTERM or SIGINT. `Err` is a start-up failure, for stderr.
pub async fn run(cfg: ServerConfig) -> Result<(), String> {
    let disk = check_data_dir(&cfg)?;
    let client = bind("client", cfg.client_addr).await?;
    let cluster_listener = bind("cluster", cfg.cluster_addr).await?;
    let clock = OsClock::new();
    let mut node_cfg = NodeConfig::new(cfg.id, cfg.nodes.keys().copied(), "node");
    // Interval mode: Raft appends are synced by the driver's periodic `sync_all`, not by
    // each write (docs/server.md, "Durability modes").
    node_cfg.log.sync_appends = cfg.sync == SyncMode::Always;
    node_cfg.snapshot.entries = cfg.snapshot_entries;
    let periodic_sync = (cfg.sync == SyncMode::Interval).then_some(cfg.sync_interval);
    let worker = match cfg.snapshot_mode {
        SnapshotMode::Background => Some(checkpoint::start(&cfg.name)?),
        SnapshotMode::Inline => None,
    };
    let node = startup::open_node(disk, node_cfg, &clock, cfg.restore_workers)
        .map_err(|e| format!("opening the node's data: {e}"))?;
    tracing::info!(
        name = %cfg.name, id = cfg.id, client = %cfg.client_addr, cluster = %cfg.cluster_addr,
        nodes = cfg.nodes.len(), data = %cfg.data.display(), snapshot_mode = ?cfg.snapshot_mode,
        "sluice server started"
    );

    let links = cluster::start_links(cfg.id, &cfg.nodes);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(cluster::accept(cluster_listener, Arc::new(cfg.nodes.clone()), cfg.id, events_tx.clone()));

    let (subjects_tx, subjects_rx) = watch::channel::<StreamSubjects>(Arc::new(Vec::new()));
    let driver = Driver::new(node, clock, links, subjects_tx, periodic_sync, worker);
    let node_thread = std::thread::Builder::new()
        .name(format!("sluice-node-{}", cfg.name))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a timer runtime");
            rt.block_on(driver.run(events_rx));
        })
        .map_err(|e| format!("starting the node thread: {e}"))?;

    let ctx = nats::conn::Context {
        events: events_tx.clone(),
        subjects: subjects_rx,
        info: Arc::new(nats::info_json(&cfg)),
        defaults: nats::jsapi::Defaults { store_sync: cfg.store_sync(), nodes: cfg.nodes.len() },
    };
    tokio::select! {
        () = nats::accept(client, ctx) => {}
        () = shutdown_signal() => tracing::info!("signal received; syncing and stopping"),
    }
    let (done_tx, done_rx) = oneshot::channel();
    if events_tx.send(Event::Shutdown(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    let _ = tokio::task::spawn_blocking(move || node_thread.join()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
