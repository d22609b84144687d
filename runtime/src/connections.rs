//! Connections a hostile client cannot hoard: a cap on how many are open, a
//! deadline for the first byte, and an idle timeout once it talks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// How many connections a server keeps and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; past it the server stops accepting until
    /// one closes (new clients wait in the kernel's backlog).
    pub max_connections: usize,
    /// A new connection must send its first byte within this.
    pub first_byte_timeout: Duration,
    /// A connection that neither reads nor writes for this long is closed.
    pub idle_timeout: Duration,
}

/// One accepted connection: counted against the limit until dropped, closed
/// with `TimedOut` when silent for too long.
pub struct LimitedStream<T> {
    inner: T,
    /// The first-byte deadline, then the idle one.
    timeout: Duration,
    idle_timeout: Duration,
    last_activity: Instant,
    /// Reset lazily: activity only records the time, the timer is moved
    /// when it fires early.
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<T> LimitedStream<T> {
    fn new(inner: T, limits: &ConnectionLimits, permit: OwnedSemaphorePermit) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout: limits.first_byte_timeout,
            idle_timeout: limits.idle_timeout,
            last_activity: now,
            deadline: Box::pin(tokio::time::sleep_until(now + limits.first_byte_timeout)),
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn after_read(&mut self, bytes: usize) {
        if bytes > 0 {
            self.timeout = self.idle_timeout;
            self.last_activity = Instant::now();
        }
    }

    /// Our own writes (a server's HTTP/2 preface, say) keep a connection
    /// alive only once the client has said something.
    fn after_write(&mut self, bytes: usize) {
        if bytes > 0 && self.timeout == self.idle_timeout {
            self.last_activity = Instant::now();
        }
    }

    /// Ready with an error once the connection has been silent too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.deadline.as_mut().poll(cx));
            let deadline = self.last_activity + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.deadline.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LimitedStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.after_read(buf.filled().len() - before);
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_expired(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LimitedStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.after_write(*result.as_ref().unwrap_or(&0));
                Poll::Ready(result)
            }
            // A client that stops reading our answer is as silent as one that sends nothing.
            Poll::Pending => this.poll_expired(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.after_write(*result.as_ref().unwrap_or(&0));
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_expired(cx).map(Err),
        }
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

impl tonic::transport::server::Connected for LimitedStream<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts connections while fewer than `max_connections` are open.
pub struct LimitedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    open: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            listener,
            limits,
            open: Arc::new(Semaphore::new(limits.max_connections)),
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once one of the allowed places is free.
    /// Accept errors (out of file descriptors, a connection reset before
    /// accept) are logged and retried after a short pause, never fatal.
    pub async fn accept(&self) -> (LimitedStream<TcpStream>, std::net::SocketAddr) {
        let permit = self
            .open
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedStream::new(stream, &self.limits, permit), peer);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The listener as the stream of connections tonic serves; accepting
    /// stops when tonic drops the stream (at shutdown).
    pub fn into_incoming(self) -> impl Stream<Item = io::Result<LimitedStream<TcpStream>>> + use<> {
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = self.accept() => accepted,
                    () = sender.closed() => return,
                };
                if sender.send(Ok(stream)).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            first_byte_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
        }
    }

    async fn listener(max_connections: usize) -> LimitedListener {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        LimitedListener::new(tcp, limits(max_connections))
    }

    #[tokio::test]
    async fn a_client_that_talked_gets_the_idle_timeout_not_the_first_byte_one() {
        let listener = listener(4).await;
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await;
        // Taken before the byte is read, so the idle deadline is at least 600 ms after it.
        let talked = Instant::now();
        client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.unwrap();
        let err = server.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            talked.elapsed() >= Duration::from_millis(600),
            "closed after {:?}, before the idle timeout",
            talked.elapsed()
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_at_the_first_byte_timeout() {
        let listener = listener(4).await;
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await;
        let mut byte = [0u8; 1];
        let silent = tokio::time::timeout(Duration::from_secs(5), server.read(&mut byte))
            .await
            .expect("closed well before 5 s");
        assert_eq!(silent.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_waits_until_one_closes() {
        let listener = listener(1).await;
        let addr = listener.local_addr().unwrap();
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let (first, _) = listener.accept().await;
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted past the cap"
        );
        drop(first);
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            accepted.is_ok(),
            "the freed place was not given to the waiting connection"
        );
    }
}
