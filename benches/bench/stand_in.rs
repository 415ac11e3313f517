//! The stand-in streaming backend of the `streams` scenario: a llama-server look-alike that does no
//! inference, so thousands of streams at once measure the proxies in front of it, not a model. The
//! Python fixture of the tests answers one request per thread and cannot carry that many.
//!
//! It is the bench executable itself, started as `<bench> stand-in [llama-server flags]`: llamactl
//! runs it as an instance's backend (the config's `args: [stand-in]`), appending the instance's
//! options and `--host`/`--port`, which are the only flags it reads. It answers:
//! - `GET /health`: 200 at once;
//! - `POST /v1/chat/completions` with `"stream": true`: `max_tokens` (default 64) token events
//!   20 ms apart, the first at once, then the closing event with `usage` and `data: [DONE]`;
//!   without `stream`, one plain answer with `usage`;
//! - anything else: 404.
//!
//! Each event is a static buffer and each stream one timer, so a stream costs little more than its
//! socket; the schedule is fixed from the first event, so a late tick does not stretch the stream.

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::time::{Instant, Sleep};

/// The first argument that makes the bench executable the stand-in.
pub const ARG: &str = "stand-in";
/// Token events in a streamed answer when the request gives no `max_tokens`.
pub const EVENTS: u64 = 64;
/// The time between two token events.
pub const GAP: Duration = Duration::from_millis(20);
/// Pending connections the listener holds: a burst of thousands of connects must not overflow it.
const BACKLOG: u32 = 4096;
/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

/// One token event, as llama-server writes it (the same bytes every time: no copy, no allocation).
const TOKEN: &[u8] = b"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" word\"}}],\"created\":1700000000,\"id\":\"chatcmpl-stand-in\",\"model\":\"stand-in\",\"system_fingerprint\":\"stand-in\",\"object\":\"chat.completion.chunk\"}\n\n";

/// Runs the stand-in with llama-server's arguments (those after [`ARG`]) until it is killed.
pub fn run(args: &[String]) -> ExitCode {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let host = flag("--host").map_or("127.0.0.1", String::as_str);
    let Some(port) = flag("--port").and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("stand-in: --port <port> is required");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("stand-in: bad --host {host}: {e}");
            return ExitCode::from(2);
        }
    };
    // Every stream holds a socket: take all the descriptors the hard limit allows.
    if let Err(e) = crate::open_files::raise() {
        eprintln!("stand-in: cannot raise the open-file limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stand-in: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stand-in: cannot listen on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    eprintln!("stand-in: listening on http://{addr}");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close rather than spin.
                eprintln!("stand-in: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(answer);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Reply = Response<Either<Full<Bytes>, Stream>>;

fn plain(status: StatusCode, body: &Value) -> Reply {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn answer(req: Request<Incoming>) -> Result<Reply, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => plain(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::POST, "/v1/chat/completions") => chat(req).await,
        _ => plain(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    })
}

/// What a chat request asks for: whether to stream, how many tokens, and its prompt's size.
struct Ask {
    stream: bool,
    tokens: u64,
    prompt: u64,
}

impl Ask {
    fn read(body: &Value) -> Ask {
        let words = |m: &Value| {
            m["content"]
                .as_str()
                .map_or(0, |c| c.split_whitespace().count())
        };
        let prompt = body["messages"]
            .as_array()
            .map_or(0, |ms| ms.iter().map(words).sum::<usize>());
        Ask {
            stream: body["stream"].as_bool().unwrap_or(false),
            tokens: body["max_tokens"].as_u64().unwrap_or(EVENTS),
            prompt: prompt as u64,
        }
    }

    fn usage(&self) -> Value {
        json!({
            "completion_tokens": self.tokens,
            "prompt_tokens": self.prompt,
            "total_tokens": self.tokens + self.prompt,
        })
    }
}

async fn chat(req: Request<Incoming>) -> Reply {
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    };
    let ask = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => Ask::read(&v),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    };
    if !ask.stream {
        let content = vec!["word"; usize::try_from(ask.tokens).unwrap_or(0).min(4096)].join(" ");
        return plain(
            StatusCode::OK,
            &json!({
                "id": "chatcmpl-stand-in",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "stand-in",
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": content}}],
                "usage": ask.usage(),
            }),
        );
    }
    let last = json!({
        "choices": [{"finish_reason": "length", "index": 0, "delta": {}}],
        "created": 1_700_000_000,
        "id": "chatcmpl-stand-in",
        "model": "stand-in",
        "object": "chat.completion.chunk",
        "usage": ask.usage(),
    });
    let mut resp = Response::new(Either::Right(Stream {
        left: ask.tokens,
        next: Box::pin(tokio::time::sleep_until(Instant::now())),
        last: Some(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))),
    }));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

/// A streamed answer: `left` token events on a fixed 20 ms schedule, then `last`.
pub struct Stream {
    left: u64,
    next: Pin<Box<Sleep>>,
    last: Option<Bytes>,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(self.last.take().map(|b| Ok(Frame::data(b))));
        }
        ready!(self.next.as_mut().poll(cx));
        let due = self.next.deadline() + GAP;
        self.next.as_mut().reset(due);
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(TOKEN)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.last.is_none()
    }
}
