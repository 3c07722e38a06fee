//! Keep-alive HTTP/1.1 connections for the load generator: raw hyper client connections with
//! `TCP_NODELAY`, kept in a LIFO pool per target. Raw connections rather than a pooled client
//! keep the generator's own cost per request small and the same for every target it measures.
//!
//! The pool is single-threaded (`Rc`, tasks on a `LocalSet`): the generator runs on one pinned
//! thread, so locks would only add cost.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One kind of request: where it goes and what it carries. The body is shared, not copied,
/// between sends.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl RequestSpec {
    /// A `POST` of `body` as JSON to `path` on `addr`.
    pub fn post_json(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> RequestSpec {
        RequestSpec {
            addr,
            path: path.to_owned(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: body.into(),
        }
    }

    /// Adds a header (for example `anthropic-version`).
    pub fn header(mut self, name: &'static str, value: &'static str) -> RequestSpec {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Adds `Authorization: Bearer {token}`.
    pub fn bearer(mut self, token: &str) -> io::Result<RequestSpec> {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.headers.push((http::header::AUTHORIZATION, value));
        Ok(self)
    }

    /// The request hyper sends. Origin-form URI plus `Host`, as HTTP/1.1 clients send it.
    pub fn build(&self) -> io::Result<http::Request<Full<Bytes>>> {
        let mut builder = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.addr.to_string());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

pub type Sender = SendRequest<Full<Bytes>>;

/// Idle connections to one address. Connections are opened on demand and returned after each
/// complete response, so the pool grows to the concurrency the load needs and no further.
pub struct Pool {
    addr: SocketAddr,
    idle: RefCell<Vec<Sender>>,
    opened: Cell<usize>,
}

impl Pool {
    pub fn new(addr: SocketAddr) -> Pool {
        Pool {
            addr,
            idle: RefCell::new(Vec::new()),
            opened: Cell::new(0),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections opened since the pool was made (new connections during a measured phase
    /// mean connection setup is part of its latency).
    pub fn opened(&self) -> usize {
        self.opened.get()
    }

    /// An idle connection ready for a request, or a new one.
    pub async fn get(&self) -> io::Result<Sender> {
        loop {
            let candidate = self.idle.borrow_mut().pop();
            match candidate {
                Some(mut sender) => {
                    // A connection the server closed while idle fails here; try the next.
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => return self.connect().await,
            }
        }
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.borrow_mut().push(sender);
        }
    }

    /// Opens connections until `n` are idle, so a measured phase does not pay for setup.
    pub async fn warm(&self, n: usize) -> io::Result<()> {
        while self.idle.borrow().len() < n {
            let sender = self.connect().await?;
            self.idle.borrow_mut().push(sender);
        }
        Ok(())
    }

    /// Closes every idle connection (between scenarios, so servers can drop their state).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }

    async fn connect(&self) -> io::Result<Sender> {
        let stream = TcpStream::connect(self.addr).await?;
        // Without it a small request can wait on the server's delayed ACK (~40 ms).
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::task::spawn_local(async move {
            // The connection ends when the sender is dropped or the server closes it; either
            // way the request that cares has already seen the error.
            let _ = conn.await;
        });
        self.opened.set(self.opened.get() + 1);
        Ok(sender)
    }
}
