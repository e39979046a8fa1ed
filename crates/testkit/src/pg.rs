//! The PostgreSQL wire server in process, on a free loopback port, over any
//! [`QueryBackend`]; and free ports for servers a test starts itself.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use bulkhead_frontend::QueryBackend;
use bulkhead_pgwire::PgServer;
use bulkhead_runtime::{RuntimeName, Runtimes};

/// A PG server serving on `addr` (127.0.0.1, a port the OS chose) on the io runtime;
/// dropping this stops accepting connections.
pub struct PgHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl PgHandle {
    /// Bind 127.0.0.1:0 and serve `backend`; `token` is the password clients must give.
    pub fn start(
        runtimes: &Arc<Runtimes>,
        token: Option<String>,
        backend: Arc<dyn QueryBackend>,
    ) -> Self {
        let rt = Arc::clone(runtimes);
        let server = runtimes
            .block_on(RuntimeName::Io, async move {
                let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
                PgServer::bind(any_port, token, rt, backend).await
            })
            .expect("runtime")
            .expect("bind the PG server");
        let addr = server.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtimes.spawn_io(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("PG server");
        });
        Self {
            addr,
            stop: Some(stop),
        }
    }
}

impl Drop for PgHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A free loopback port (bound then released; a race with other processes is possible
/// but unlikely, and a server binding it then fails loudly).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Two distinct free ports. Both listeners are held until both ports are known: two
/// `free_port()` calls in a row can return the same just-released port.
pub fn free_port_pair() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    (port(&a), port(&b))
}
