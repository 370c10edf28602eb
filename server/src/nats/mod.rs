//! The NATS client port: the protocol subset JetStream publishing needs, so existing NATS
//! clients (async-nats, nats-py, the `nats` CLI) work unmodified. What is served and what is
//! refused: docs/server.md, "The client port".

pub mod backup_api;
pub mod conn;
pub mod consumer_api;
pub mod jsapi;
pub mod proto;
pub mod pull;

use crate::config::ServerConfig;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Client connections open at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 10_000;
/// The protocol version nats-server 2.x announces; clients gate features on it.
const ANNOUNCED_VERSION: &str = "2.10.0";

/// The INFO a client gets when it connects.
pub fn info_json(cfg: &ServerConfig) -> String {
    serde_json::json!({
        "server_id": format!("SLUICE{:010}", cfg.id),
        "server_name": cfg.name,
        "version": ANNOUNCED_VERSION,
        "proto": 1,
        "go": "sluice",
        "host": cfg.client_addr.ip().to_string(),
        "port": cfg.client_addr.port(),
        "headers": true,
        "max_payload": conn::MAX_PAYLOAD_BYTES,
        "jetstream": true,
        "auth_required": false,
        "tls_required": false,
    })
    .to_string()
}

pub async fn accept(listener: TcpListener, ctx: conn::Context) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "client accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        tracing::debug!(%remote, "client connected");
        let ctx = ctx.clone();
        tokio::spawn(async move {
            conn::serve(stream, ctx).await;
            drop(permit);
        });
    }
}
