//! HTTP/1.1 balance streams served without hyper's connection buffers.
//!
//! hyper keeps an 8 KiB write buffer and an 8 to 16 KiB read buffer for
//! every HTTP/1.1 connection while it is open: 34 KiB a connection with the
//! rest, 340 MB for 10,000 open balance streams. A connection whose first
//! request is `GET /balance/stream` is served here instead: its head is read
//! and parsed with httparse (hyper's own parser) under hyper's limits, the
//! router answers it as it answers every request, and the answer is written
//! straight to the socket, delimited by closing the connection (RFC 9112
//! §6.3), with nothing held between events. Every other connection goes to
//! hyper with its first bytes put back ([`Rewound`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use axum::http::{Uri, Version, header};
use hyper::body::{Body as _, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::server::{MAX_HEADER_BYTES, MAX_HEADERS};

/// The start of a request line that is served here.
const STREAM_REQUEST: &[u8] = b"GET /balance/stream";
/// Bytes a stream's client may send after its head (a body it did not
/// declare, a pipelined request we will not answer) before it is cut off.
const MAX_AFTER_HEAD: usize = 4096;

/// A connection's first bytes, read until they tell whose it is: the start
/// of a stream request and the byte after its path (a space, or the `?`
/// of a query), or fewer as soon as they cannot be that.
pub struct Opening {
    bytes: [u8; STREAM_REQUEST.len() + 1],
    len: usize,
}

impl Opening {
    /// Reads at most 20 bytes, and stops at the first read that rules a
    /// stream out.
    pub async fn read(io: &mut (impl AsyncRead + Unpin)) -> io::Result<Self> {
        let mut opening = Opening {
            bytes: [0; STREAM_REQUEST.len() + 1],
            len: 0,
        };
        while opening.len < opening.bytes.len() && opening.may_be_a_stream() {
            let read = io.read(&mut opening.bytes[opening.len..]).await?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            opening.len += read;
        }
        Ok(opening)
    }

    fn may_be_a_stream(&self) -> bool {
        let seen = &self.bytes[..self.len];
        match seen.split_at_checked(STREAM_REQUEST.len()) {
            Some((start, after)) => start == STREAM_REQUEST && matches!(after, [] | [b' ' | b'?']),
            None => STREAM_REQUEST.starts_with(seen),
        }
    }

    pub fn is_stream_request(&self) -> bool {
        self.len == self.bytes.len() && self.may_be_a_stream()
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A connection with its opening put back in front of it, for hyper.
pub struct Rewound<T> {
    opening: Opening,
    given: usize,
    inner: T,
}

impl<T> Rewound<T> {
    pub fn new(opening: Opening, inner: T) -> Self {
        Self {
            opening,
            given: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = &this.opening.bytes()[this.given..];
        if rest.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let given = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..given]);
        this.given += given;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewound<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a request head was not read.
enum Refused {
    /// Answered with this status and no body, as hyper answers a bad head.
    Answer(StatusCode),
    /// The client closed or failed: nothing to answer.
    Gone,
}

/// Serves one request on a connection whose opening is a stream request,
/// then closes it. The head must be complete by `head_deadline`.
pub async fn serve<T>(
    mut io: T,
    opening: Opening,
    router: Router,
    peer: SocketAddr,
    head_deadline: Instant,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed, as the router's answer below: what they hold is freed once
    // done, not kept in the connection's task for as long as it streams.
    let head = Box::pin(tokio::time::timeout_at(
        head_deadline,
        read_request(&mut io, &opening),
    ))
    .await;
    let mut request = match head {
        Ok(Ok(request)) => request,
        Ok(Err(Refused::Answer(status))) => {
            let _ = io.write_all(&refusal(status)).await;
            let _ = io.shutdown().await;
            return;
        }
        // Like hyper, a head that takes too long is cut without a word.
        Ok(Err(Refused::Gone)) | Err(_) => return,
    };
    request.extensions_mut().insert(ConnectInfo(peer));
    let answer = Box::pin(router.oneshot(request)).await;
    let Ok(response) = answer;
    if let Err(err) = write_response(&mut io, response).await {
        tracing::debug!(error = %err, %peer, "balance stream ended by its connection");
    }
    let _ = io.shutdown().await;
}

/// Reads the request head, parsing it once a blank line has come: hyper's
/// limits (32 KiB, 64 headers), and no body, which a stream request has no
/// use for.
async fn read_request(
    io: &mut (impl AsyncRead + Unpin),
    opening: &Opening,
) -> Result<Request<Body>, Refused> {
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(opening.bytes());
    let mut chunk = [0u8; 1024];
    let mut unsearched: usize = 0;
    loop {
        if ends_a_head(&head[unsearched.saturating_sub(2)..])
            && let Some(request) = parse(&head).map_err(Refused::Answer)?
        {
            return Ok(request);
        }
        unsearched = head.len();
        let room = MAX_HEADER_BYTES.saturating_sub(head.len()).min(chunk.len());
        if room == 0 {
            return Err(Refused::Answer(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        match io.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Err(Refused::Gone),
            Ok(read) => head.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Whether `bytes` hold the blank line that ends a head (CRLF or bare LF,
/// as httparse takes both): searched in the new bytes only, so a head sent
/// a byte at a time costs linear time, not quadratic.
fn ends_a_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == b"\n\n") || bytes.windows(3).any(|three| three == b"\n\r\n")
}

/// The request in `head`, `None` while it is incomplete.
fn parse(head: &[u8]) -> Result<Option<Request<Body>>, StatusCode> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    }
    let uri: Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut fields = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        fields.append(
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?,
            HeaderValue::from_bytes(field.value).map_err(|_| StatusCode::BAD_REQUEST)?,
        );
    }
    let has_body = fields.contains_key(header::TRANSFER_ENCODING)
        || fields
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length != "0");
    if has_body {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    *request.headers_mut() = fields;
    Ok(Some(request))
}

/// A bodiless answer to a head that could not be read.
fn refusal(status: StatusCode) -> Vec<u8> {
    let mut answer = status_line(status);
    answer.extend_from_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
    answer
}

fn status_line(status: StatusCode) -> Vec<u8> {
    let reason = status.canonical_reason().unwrap_or_default();
    format!("HTTP/1.1 {} {reason}\r\n", status.as_str()).into_bytes()
}

/// Writes the head, then each frame of the body as it comes, until the body
/// ends or the client leaves; the connection's close ends the body.
async fn write_response<T>(io: &mut T, response: Response<Body>) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let mut head = status_line(parts.status);
    for (name, value) in &parts.headers {
        // Ours to say: the body is delimited by the close.
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = body.size_hint().exact()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
    head.extend_from_slice(format!("date: {date}\r\nconnection: close\r\n\r\n").as_bytes());
    drop(parts);
    io.write_all(&head).await?;
    drop(head);

    let mut heard = 0;
    loop {
        let next = std::future::poll_fn(|cx| poll_next(cx, io, &mut body, &mut heard)).await;
        match next {
            Next::Frame(frame) => {
                if let Ok(data) = frame.into_data() {
                    io.write_all(&data).await?;
                }
            }
            Next::End => return Ok(()),
            Next::ClientLeft => return Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }
}

enum Next {
    Frame(Frame<axum::body::Bytes>),
    End,
    ClientLeft,
}

/// The body's next frame, or the client's leaving, whichever comes first.
/// The client has nothing more to send: its side closing or failing (or
/// the connection's idle timeout, when neither side has moved) is how a
/// stream learns it left.
fn poll_next(
    cx: &mut Context<'_>,
    io: &mut (impl AsyncRead + Unpin),
    body: &mut Body,
    heard: &mut usize,
) -> Poll<Next> {
    let mut scratch = [0u8; 256];
    loop {
        let mut read = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                return Poll::Ready(Next::ClientLeft);
            }
            Poll::Ready(Ok(())) => {
                *heard += read.filled().len();
                if *heard > MAX_AFTER_HEAD {
                    return Poll::Ready(Next::ClientLeft);
                }
            }
            Poll::Ready(Err(_)) => return Poll::Ready(Next::ClientLeft),
            Poll::Pending => break,
        }
    }
    match Pin::new(body).poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Next::Frame(frame)),
        Poll::Ready(Some(Err(_)) | None) => Poll::Ready(Next::End),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose bytes come one at a time.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some((first, rest)) = self.0.split_first() {
                buf.put_slice(&[*first]);
                self.0 = rest;
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn opening_of(bytes: &[u8]) -> (bool, Vec<u8>) {
        let opening = Opening::read(&mut Trickle(bytes)).await.unwrap();
        (opening.is_stream_request(), opening.bytes().to_vec())
    }

    #[tokio::test]
    async fn only_a_stream_requests_opening_is_served_here_and_it_is_read_no_further() {
        for (sent, served_here, read) in [
            (
                &b"GET /balance/stream HTTP/1.1\r\n"[..],
                true,
                &b"GET /balance/stream "[..],
            ),
            (
                b"GET /balance/stream?x=1 HTTP/1.1\r\n",
                true,
                b"GET /balance/stream?",
            ),
            (b"GET /balance HTTP/1.1\r\n", false, b"GET /balance "),
            (
                b"GET /balance/streams HTTP/1.1\r\n",
                false,
                b"GET /balance/streams",
            ),
            (b"GET /healthz HTTP/1.1\r\n", false, b"GET /h"),
            (b"POST /balance/stream HTTP/1.1\r\n", false, b"P"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false, b"P"),
        ] {
            assert_eq!(
                opening_of(sent).await,
                (served_here, read.to_vec()),
                "{}",
                String::from_utf8_lossy(sent)
            );
        }
    }

    #[tokio::test]
    async fn a_connection_closed_before_its_opening_is_told_is_an_error() {
        let mut io = &b"GET /bal"[..];
        let error = Opening::read(&mut io).await.err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn an_opening_is_at_most_twenty_bytes() {
        let mut io = &b"GET /balance HTTP/1.1\r\n\r\n"[..];
        let opening = Opening::read(&mut io).await.unwrap();
        assert_eq!(opening.bytes(), b"GET /balance HTTP/1.");
        assert!(!opening.is_stream_request());
    }

    #[tokio::test]
    async fn hyper_reads_the_opening_then_the_rest() {
        let mut io = &b"GET /health HTTP/1.1\r\n\r\n"[..];
        let opening = Opening::read(&mut io).await.unwrap();
        let mut rewound = Rewound::new(opening, io);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET /health HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_heads_end_is_found_with_crlf_or_bare_lf() {
        assert!(ends_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ends_a_head(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(ends_a_head(b"\n\r\n"));
        assert!(!ends_a_head(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!ends_a_head(b"\r\n\r"));
    }

    #[test]
    fn heads_are_read_as_hyper_reads_them() {
        let request = parse(b"GET /balance/stream?a=b HTTP/1.0\r\nAuthorization: Bearer t\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(request.uri(), "/balance/stream?a=b");
        assert_eq!(request.version(), Version::HTTP_10);
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert_eq!(request.headers().get_all("x-a").iter().count(), 2);
        assert!(
            parse(b"GET /balance/stream HTTP/1.1\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );

        let many = format!(
            "GET /balance/stream HTTP/1.1\r\n{}\r\n",
            (0..=MAX_HEADERS)
                .map(|n| format!("x-{n}: 1\r\n"))
                .collect::<String>()
        );
        for (head, status) in [
            (many.as_bytes(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            (
                b"GET /balance/stream HTTP/1.1\r\nBad Name: 1\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET /balance/stream HTTP/3.0\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET /balance/stream HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                StatusCode::BAD_REQUEST,
            ),
            (
                b"GET /balance/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            assert_eq!(
                parse(head).err(),
                Some(status),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert!(parse(b"GET /balance/stream HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_ok());
    }
}
