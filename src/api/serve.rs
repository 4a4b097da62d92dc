//! The HTTP listener: an accept loop with a cap on open connections and timeouts for
//! slow clients, serving the router over HTTP/1.1.
//!
//! - **Header timeout** (`server.header_timeout`, 10 s): a client that sends half a
//!   header, or nothing, or sits idle on a kept-alive connection, is disconnected.
//!   Body reads have their own deadline in the routes that read bodies
//!   ([`super::ingest`]: `server.body_timeout`).
//! - **Connection cap** (`server.max_connections`, default: the process's open-file
//!   limit less a reserve of 256 for the store, outbound deliveries and alerts): past
//!   it, a new connection is answered `503 overloaded` with `Retry-After: 1` and
//!   closed at once, instead of being held while the process runs out of descriptors.
//! - **Shutdown**: stop accepting, let in-flight requests finish (the caller bounds
//!   how long).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What the listener and the routes that read bodies enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// How long a client may take to send a request body (`POST /v1/events`).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// What `[server]` says (`header_timeout`, `body_timeout`, `max_connections`).
    pub fn of(server: &crate::config::ServerConfig) -> Self {
        Limits {
            max_connections: server
                .max_connections
                .unwrap_or_else(default_max_connections),
            header_timeout: server.header_timeout,
            body_timeout: server.body_timeout,
        }
    }
}

/// Descriptors kept free for everything but inbound connections.
pub const FD_RESERVE: u64 = 256;

/// The connection cap when the configuration does not set one: the open-file limit
/// less [`FD_RESERVE`], at least 64.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4096);
    soft.saturating_sub(FD_RESERVE).max(64) as usize
}

/// How many client connections the listener holds open: the `max_connections` slots
/// taken (a connection answered `503 overloaded` takes none). Read from the slots
/// themselves, so 0 means every slot is free and `max_connections` that none is.
/// Read-only outside the listener; tests wait on it.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections(Arc<OnceLock<(Arc<Semaphore>, usize)>>);

impl OpenConnections {
    /// Slots taken now (0 before the listener runs).
    pub fn get(&self) -> usize {
        self.0.get().map_or(0, |(slots, max)| {
            max.saturating_sub(slots.available_permits())
        })
    }
}

const OVERLOADED: &str =
    "{\"error\":\"overloaded\",\"message\":\"too many open connections; retry in a moment\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the
/// connections in flight to finish. `open` tells how many slots are taken.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    open: OpenConnections,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let _ = open.0.set((slots.clone(), limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or a transient error: back off a little.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        // Each request carries its client's address (the console's sign-in limiter).
        let r = router.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            tower_service::Service::call(&mut r.clone(), req)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers an over-the-cap connection without reading it, then closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        OVERLOADED.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(OVERLOADED.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
