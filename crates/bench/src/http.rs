//! A blocking face on the gateway's HTTP client (`edge::http`) for benchmark threads:
//! each connection drives the async client on a current-thread runtime of its own, so
//! Treaty and the peers are driven by one client with keep-alive and no client stack.

use std::time::Duration;

/// How long a request may wait for its reply: imports of a whole dataset into a peer
/// take a while, and a benchmark should fail on a hang, not on a slow system.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The largest reply kept: exports and query answers are read whole.
const MAX_BODY: usize = 1 << 30;

pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: edge::http::Client,
}

impl Client {
    /// Connects to `address` (`host:port`, plain HTTP).
    pub fn connect(address: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let inner = runtime
            .block_on(edge::http::Client::connect(&edge::http::Target::plain(address)))?
            .with_answer_timeout(ANSWER_TIMEOUT)
            .with_max_body(MAX_BODY);
        Ok(Self { runtime, inner })
    }

    /// Sends one request and returns (status, body).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        Ok(self.runtime.block_on(self.inner.request(method, path, headers, body))?)
    }
}
