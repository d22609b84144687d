//! The load generator's HTTP/1.1 client, as lean as wrk's: each worker owns
//! one keep-alive connection, writes a prepared request in one call and reads
//! the answer in place. No pool, no connection task, no request builder, so
//! the CPU it takes from the two cores is the least it can be.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// What came back: the status and the body.
pub type Answer = (u16, Vec<u8>);

pub struct Http1 {
    addr: SocketAddr,
    /// One connection slot per worker; a worker only ever locks its own.
    connections: Vec<Mutex<Option<Connection>>>,
}

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Http1 {
    pub fn new(addr: SocketAddr, workers: usize) -> Self {
        Self {
            addr,
            connections: (0..workers).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request) on the worker's connection,
    /// opening it if needed; a connection that failed is not reused.
    pub async fn send(&self, worker: usize, request: &[u8]) -> Result<Answer, String> {
        let mut slot = self.connections[worker].lock().await;
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(Connection::open(self.addr).await?),
        };
        let answer = connection.exchange(request).await;
        if answer.is_err() {
            *slot = None;
        }
        answer
    }
}

impl Connection {
    async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|err| format!("connect {addr}: {err}"))?;
        stream.set_nodelay(true).map_err(|err| err.to_string())?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Answer, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|err| format!("write: {err}"))?;
        self.buffer.clear();
        loop {
            if let Some(answer) = complete_response(&self.buffer)? {
                return Ok(answer);
            }
            if self.buffer.capacity() == self.buffer.len() {
                self.buffer.reserve(4096);
            }
            let read = self
                .stream
                .read_buf(&mut self.buffer)
                .await
                .map_err(|err| format!("read: {err}"))?;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
        }
    }
}

/// The response in `bytes` if it is complete; it must carry a Content-Length,
/// as every answer of the edge does.
fn complete_response(bytes: &[u8]) -> Result<Option<Answer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(format!("bad response: {err}")),
    };
    let length = response
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .and_then(|header| {
            std::str::from_utf8(header.value)
                .ok()?
                .parse::<usize>()
                .ok()
        })
        .ok_or("a response without Content-Length")?;
    if bytes.len() < head + length {
        return Ok(None);
    }
    if bytes.len() > head + length {
        return Err("bytes after the response".into());
    }
    let status = response.code.unwrap_or(0);
    Ok(Some((status, bytes[head..].to_vec())))
}

/// A whole HTTP/1.1 request with the given head lines and body.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: bench\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_only_with_its_whole_body() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(
            complete_response(full).unwrap(),
            Some((200, b"hello".to_vec()))
        );
        assert_eq!(complete_response(&full[..full.len() - 1]).unwrap(), None);
        assert_eq!(complete_response(&full[..10]).unwrap(), None);
        assert!(complete_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn requests_carry_their_length() {
        let bytes = request("POST", "/x", &[("a", "b")], b"{}");
        assert_eq!(
            bytes,
            b"POST /x HTTP/1.1\r\nhost: bench\r\na: b\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
