//! Running a node: open the store, bind HTTP, serve until SIGTERM or Ctrl-C.

use crate::http::{self, HttpConfig};
use crate::p2p::{P2p, P2pConfig, identity, jobs::Jobs};
use dvid_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where the node keeps its data.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded fjall store in this directory.
    Fjall(PathBuf),
    /// Memory only: nothing survives the process.
    Memory,
}

/// Everything `dvid serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub backend: Backend,
    pub http_addr: SocketAddr,
    pub http: HttpConfig,
    pub p2p: P2pConfig,
}

/// Opens the store and serves HTTP until a shutdown signal.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let store = match &config.backend {
        Backend::Fjall(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Store::open_fjall(&dir)).await??
        }
        Backend::Memory => Store::open_memory()?,
    };
    let store = Arc::new(store);
    let (key, jobs_file) = match &config.backend {
        Backend::Fjall(dir) => (identity::load_or_create(dir)?, Some(dir.join("jobs.json"))),
        Backend::Memory => (libp2p::identity::Keypair::generate_ed25519(), None),
    };
    let jobs = Arc::new(Jobs::open(jobs_file)?);
    let p2p = P2p::start(key, config.p2p, store.clone(), jobs)?;
    println!("dvid: peer id {}", p2p.peer_id());
    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding HTTP to {}: {e}", config.http_addr))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.http.tokens.write.is_none() {
        println!(
            "dvid: warning: HTTP API bound to {addr}, beyond loopback, without --write-token: anyone who reaches it can change data"
        );
    }
    // Tests and scripts read this line to learn the port when binding port 0.
    println!(
        "dvid: HTTP API listening on http://{addr} ({} store)",
        store.backend()
    );
    run(listener, store.clone(), p2p, config.http, shutdown_signal()).await?;
    // A planned stop leaves nothing for the next start to replay.
    tokio::task::spawn_blocking(move || store.flush()).await??;
    Ok(())
}

/// Serves the HTTP API on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    p2p: P2p,
    http: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = http::router(store, p2p, http);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("dvid: HTTP server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    println!("dvid: shutting down");
}
