//! Tokio runtimes for the bench binaries, and an axum router served on loopback from one
//! of them and stopped gracefully: the ingest bench's do-nothing and group-fsync servers,
//! the receivers of the delivery and soak benches, the delivery bench's relay.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Runtime;

/// A multi-thread runtime of two workers named `name`, as every bench part runs on.
pub fn runtime(name: &str) -> Runtime {
    runtime_with(name, 2, None)
}

/// A multi-thread runtime of `threads` workers named `name`, each at the nice value
/// `nice` when given (Linux; best effort, as the daemon sets its HTTP threads').
pub fn runtime_with(name: &str, threads: usize, nice: Option<i32>) -> Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(threads).thread_name(name).enable_all();
    if let Some(nice) = nice {
        b.on_thread_start(move || {
            let _ = rustix::process::setpriority_process(None, nice);
        });
    }
    b.build().expect("tokio runtime")
}

/// `router` served on `127.0.0.1` (a free port) by a task of `rt`, which it owns.
pub struct Served {
    pub rt: Runtime,
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Binds and serves; `what` names the server in a failure to bind.
    pub fn start(rt: Runtime, router: axum::Router, what: &str) -> Served {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("bind {what}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Served {
            rt,
            addr,
            stop,
            task,
        }
    }

    /// Stops serving (up to 5 s for open connections), then the runtime.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), self.task).await });
        self.rt.shutdown_timeout(Duration::from_secs(1));
    }
}
