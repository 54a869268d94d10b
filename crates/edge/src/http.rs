//! A minimal HTTP/1.1 client with keep-alive, over TCP or TLS: what the gateway needs to
//! post batches and events to the hub, and what `treaty bench` uses to drive Treaty and
//! its peers — without a client stack. One request at a time per connection; replies
//! framed by Content-Length or chunked; bounded in time and in size.

use rustls::pki_types::{InvalidDnsNameError, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long connecting (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may wait for its whole reply, unless the client says otherwise.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a reply body kept, unless the client says otherwise; the rest is read and
/// dropped, so that the connection stays usable (the gateway is small, and the hub's
/// replies are short).
const MAX_BODY: usize = 16 << 20;

/// Bodies up to this size go out in one write with the head (one packet with
/// `TCP_NODELAY`); larger ones are written after it rather than copied.
const COALESCE_BELOW: usize = 64 << 10;

/// Why a request did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {address}: {error}")]
    Connect { address: String, error: std::io::Error },
    #[error("connecting to {address} timed out")]
    ConnectTimeout { address: String },
    #[error("server name `{host}`: {error}")]
    ServerName { host: String, error: InvalidDnsNameError },
    #[error("TLS with {address}: {error}")]
    Tls { address: String, error: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("bad status line `{0}`")]
    StatusLine(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("bad content-length")]
    ContentLength,
    #[error("bad chunk size `{0}`")]
    ChunkSize(String),
    #[error("the server did not answer in {} s", .0.as_secs())]
    Timeout(Duration),
}

/// Where a client connects: `host:port`, the name sent as the Host header (and checked
/// against the server's certificate), and TLS settings for an `https://` server.
#[derive(Clone)]
pub struct Target {
    address: String,
    host: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Target {
    /// A plain-TCP server at `address` (`host:port`), which is also the Host header.
    pub fn plain(address: &str) -> Self {
        Self { address: address.to_owned(), host: address.to_owned(), tls: None }
    }

    /// A server at `address` called `host`, over TLS with `tls` when given.
    pub fn new(address: &str, host: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let tls = tls.map(tokio_rustls::TlsConnector::from);
        Self { address: address.to_owned(), host: host.to_owned(), tls }
    }
}

/// A byte stream to the server: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One keep-alive connection. After an error it is in an unknown state: drop it and
/// connect again.
pub struct Client {
    host: String,
    reader: BufReader<tokio::io::ReadHalf<Box<dyn Io>>>,
    writer: tokio::io::WriteHalf<Box<dyn Io>>,
    answer_timeout: Duration,
    max_body: usize,
}

impl Client {
    /// Connects (and shakes hands, for TLS) within 10 s.
    pub async fn connect(target: &Target) -> Result<Self, HttpError> {
        let address = &target.address;
        let connect = async {
            let stream = TcpStream::connect(address)
                .await
                .map_err(|error| HttpError::Connect { address: address.clone(), error })?;
            let _ = stream.set_nodelay(true);
            let stream: Box<dyn Io> = match &target.tls {
                None => Box::new(stream),
                Some(connector) => {
                    let name = ServerName::try_from(target.host.clone())
                        .map_err(|error| HttpError::ServerName { host: target.host.clone(), error })?;
                    let tls = connector
                        .connect(name, stream)
                        .await
                        .map_err(|error| HttpError::Tls { address: address.clone(), error })?;
                    Box::new(tls)
                }
            };
            Ok::<_, HttpError>(stream)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| HttpError::ConnectTimeout { address: address.clone() })??;
        let (read, write) = tokio::io::split(stream);
        Ok(Self {
            host: target.host.clone(),
            reader: BufReader::new(read),
            writer: write,
            answer_timeout: ANSWER_TIMEOUT,
            max_body: MAX_BODY,
        })
    }

    /// How long a request may wait for its whole reply (default 30 s).
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// The most of a reply body kept (default 16 MiB; the rest is read and dropped).
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends one request (`headers` after Host, Content-Length last) and returns the
    /// reply's status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let timeout = self.answer_timeout;
        let exchange = async {
            if body.len() < COALESCE_BELOW {
                let mut request = head.into_bytes();
                request.extend_from_slice(body);
                self.writer.write_all(&request).await?;
            } else {
                self.writer.write_all(head.as_bytes()).await?;
                self.writer.write_all(body).await?;
            }
            self.read_reply().await
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout(timeout))?
    }

    /// POSTs a JSON body with a bearer token: what the gateway sends the hub.
    pub async fn post_json(&mut self, path: &str, token: &str, body: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
        let authorization = format!("Bearer {token}");
        let headers = [("Authorization", authorization.as_str()), ("Content-Type", "application/json")];
        self.request("POST", path, &headers, body).await
    }

    async fn read_reply(&mut self) -> Result<(u16, Vec<u8>), HttpError> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HttpError::StatusLine(line.trim().to_owned()))?;
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(HttpError::Closed);
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| HttpError::ContentLength)?;
            } else if header.starts_with("transfer-encoding:") && header.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            self.read_chunks(&mut body).await?;
        } else {
            self.read_part(length, &mut body).await?;
        }
        Ok((status, body))
    }

    /// A chunked body: size lines, chunks, then trailers up to an empty line.
    async fn read_chunks(&mut self, body: &mut Vec<u8>) -> Result<(), HttpError> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(HttpError::Closed);
            }
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| HttpError::ChunkSize(size.to_owned()))?;
            if size == 0 {
                break;
            }
            self.read_part(size, body).await?;
            let mut end = [0u8; 2];
            self.reader.read_exact(&mut end).await?;
        }
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                return Ok(());
            }
        }
    }

    /// Reads `length` bytes onto `body`, keeping at most `max_body` in all.
    async fn read_part(&mut self, length: usize, body: &mut Vec<u8>) -> Result<(), HttpError> {
        let kept = length.min(self.max_body.saturating_sub(body.len()));
        let start = body.len();
        body.resize(start + kept, 0);
        self.reader.read_exact(&mut body[start..]).await?;
        let dropped = (length - kept) as u64;
        if dropped > 0 {
            let copied = tokio::io::copy(&mut (&mut self.reader).take(dropped), &mut tokio::io::sink()).await?;
            if copied < dropped {
                return Err(HttpError::Closed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers each request with the next canned reply, verbatim.
    async fn server(replies: Vec<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (read, mut write) = tokio::io::split(stream);
            let mut read = BufReader::new(read);
            for reply in replies {
                let mut length = 0;
                let mut line = String::new();
                loop {
                    line.clear();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if read.read_exact(&mut body).await.is_err() || write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        address
    }

    #[tokio::test]
    async fn lengths_and_chunks_keep_the_connection_usable() {
        let address = server(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 3\r\n\r\nbad",
        ])
        .await;
        let mut client = Client::connect(&Target::plain(&address)).await.expect("connect");
        let json = [("Content-Type", "application/json")];
        assert_eq!(client.request("POST", "/a", &json, b"{}").await.expect("a"), (200, b"{}".to_vec()));
        assert_eq!(client.request("GET", "/b", &[], b"").await.expect("b"), (200, b"abcde".to_vec()));
        assert_eq!(client.request("GET", "/c", &[], b"").await.expect("c"), (204, Vec::new()));
        assert_eq!(client.request("POST", "/d", &[], &[b'x'; 100_000]).await.expect("d"), (422, b"bad".to_vec()));
        let error = client.request("GET", "/e", &[], b"").await.expect_err("the server is gone");
        assert!(matches!(error, HttpError::StatusLine(_) | HttpError::Io(_)), "{error}");
    }
}
