//! The bare hyper proxy: a yardstick for what the HTTP stack llamactl is built on costs by itself.
//! It is hyper's server in front of hyper's client on tokio, and nothing else: no routing, keys,
//! metering, metrics or limits. Each client connection gets its own backend connection, opened at
//! its first request and reused for its next ones, so there is not even a pool. What llamactl
//! costs above this side is llamactl's own code; what this side costs above nginx is the stack's.
//!
//! It is the bench executable itself, started as `<bench> bare-proxy <listen port> <backend
//! port>`; it prints its address like llamactl does.

use crate::open_files;
use crate::procs::{self, Guard};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

/// The first argument that makes the bench executable the bare proxy.
pub const ARG: &str = "bare-proxy";
/// Pending connections the listener holds, as many as the other sides allow.
const BACKLOG: u32 = 65_535;

/// How long it may take to print its address.
const BOOT: Duration = Duration::from_secs(10);

/// A running bare proxy in front of one backend, a child of the bench.
pub struct BareProxy {
    guard: Guard,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BareProxy {
    /// Starts the bare proxy on a free loopback port in front of `upstream`. With `soft_files`, it
    /// starts with that soft open-file limit and raises its own, like the other sides.
    pub fn start(upstream: SocketAddr, soft_files: Option<u64>) -> BareProxy {
        let exe = std::env::current_exe().expect("the bench knows its own executable");
        let mut cmd = procs::quiet(&exe.display().to_string());
        cmd.arg(ARG).arg("0").arg(upstream.port().to_string());
        let grace = Duration::from_secs(5);
        let (guard, addr) = procs::start_listening(
            "bare proxy",
            cmd,
            soft_files,
            grace,
            "listening on http://",
            BOOT,
        );
        BareProxy { guard, addr }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// Runs the bare proxy with its arguments (those after [`ARG`]) until it is killed.
pub fn run(args: &[String]) -> ExitCode {
    let port = |i: usize| args.get(i).and_then(|p| p.parse::<u16>().ok());
    let (Some(listen), Some(backend)) = (port(0), port(1)) else {
        eprintln!("bare-proxy: usage: bare-proxy <listen port> <backend port>");
        return ExitCode::from(2);
    };
    // Like llamactl and nginx: every descriptor the hard limit allows.
    if let Err(e) = open_files::raise() {
        eprintln!("bare-proxy: cannot raise the open-file limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare-proxy: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, backend)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-proxy: cannot listen on port {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: u16, backend: u16) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], listen).into())?;
    let listener = socket.listen(BACKLOG)?;
    eprintln!("bare-proxy: listening on http://{}", listener.local_addr()?);
    let host = HeaderValue::from_str(&format!("127.0.0.1:{backend}"))
        .unwrap_or(HeaderValue::from_static("127.0.0.1"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            // This client connection's backend connection, once opened.
            let upstream: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
            let service = hyper::service::service_fn(move |req| {
                forward(upstream.clone(), backend, host.clone(), req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Reply = Response<BoxBody<Bytes, hyper::Error>>;

async fn forward(
    upstream: Arc<Mutex<Option<SendRequest<Incoming>>>>,
    backend: u16,
    host: HeaderValue,
    mut req: Request<Incoming>,
) -> Result<Reply, std::convert::Infallible> {
    req.headers_mut().insert(HOST, host);
    let mut slot = upstream.lock().await;
    let reusable = slot.as_ref().is_some_and(|s| !s.is_closed());
    if !reusable {
        match connect(backend).await {
            Some(sender) => *slot = Some(sender),
            None => return Ok(bad_gateway()),
        }
    }
    let Some(sender) = slot.as_mut() else {
        return Ok(bad_gateway());
    };
    if sender.ready().await.is_err() {
        *slot = None;
        return Ok(bad_gateway());
    }
    match sender.send_request(req).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => {
            *slot = None;
            Ok(bad_gateway())
        }
    }
}

async fn connect(backend: u16) -> Option<SendRequest<Incoming>> {
    let stream = TcpStream::connect(("127.0.0.1", backend)).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

fn bad_gateway() -> Reply {
    let body = Full::new(Bytes::from_static(b"bad gateway"))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
