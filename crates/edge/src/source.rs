//! What every protocol adapter (`modbus`, `opcua`, `mqtt`) is given to run: the shape
//! they share. An adapter is `run(config, ctx)`: it reads its peer until `ctx.stop`
//! turns true, pushes what it read through `ctx.pipeline` into `ctx.output`, reports
//! its counters through `ctx.health`, and on the way out hands over what the filters
//! still hold. It depends on this file, never on the gateway that wires it.

use crate::health::SourceHealth;
use crate::pipeline::Pipeline;
use model::sample::{Sample, SeriesKey};
use tokio::sync::{mpsc, watch};

/// Samples as they leave a source, in the order read.
pub type Samples = Vec<(SeriesKey, Sample)>;

/// One source's share of the running gateway.
pub struct SourceContext {
    /// Who the gateway is (`[gateway] id`): names MQTT clients and OPC UA sessions.
    pub gateway: String,
    /// Interlocks and filters for the source's tags (`process`), and what the filters
    /// hold back at the end (`hand_over`).
    pub pipeline: Pipeline,
    /// To the batcher; a send fails only when the gateway is shutting down.
    pub output: mpsc::Sender<Samples>,
    /// Turns true when the gateway stops.
    pub stop: watch::Receiver<bool>,
    /// Where the source's counters and state are shown.
    pub health: SourceHealth,
}

impl SourceContext {
    /// A context for an adapter under test: gateway `test`, everything passes through
    /// unfiltered, counters are reported nowhere.
    pub fn for_test(output: mpsc::Sender<Samples>, stop: watch::Receiver<bool>) -> Self {
        Self {
            gateway: "test".into(),
            pipeline: Pipeline::passthrough(),
            output,
            stop,
            health: SourceHealth::detached(),
        }
    }

    /// Runs `read` through interlocks and filters and sends what is left; false when
    /// the gateway no longer takes samples (the source should end).
    pub async fn send(&mut self, read: Samples) -> bool {
        let out = self.pipeline.process(read, std::time::Instant::now()).await;
        self.send_unfiltered(out).await
    }

    /// Sends samples that skip interlocks and filters (device-historical ones, or what
    /// already went through the pipeline); false when the gateway no longer takes
    /// samples.
    pub async fn send_unfiltered(&mut self, out: Samples) -> bool {
        out.is_empty() || self.output.send(out).await.is_ok()
    }

    /// Sends what the filters still hold back, for a source that stops: nothing read is
    /// lost at shutdown.
    pub async fn hand_over(&mut self) {
        let held = self.pipeline.finish();
        if !held.is_empty() {
            let _ = self.output.send(held).await;
        }
    }
}
