//! Continuous batching: queue, block allocator and the batching loop behind the `Backend` trait.

pub mod batching;
pub mod block_allocator;
pub mod queue;

use crate::client::ShardedClient;
use crate::error::RouterError;
use crate::infer::types::ValidGenerateRequest;
use crate::infer::{Backend, ResponseStream};
use batching::BatchingConfig;
use queue::{Entry, Queue, QueueConfig};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::UnboundedReceiverStream;

/// The gRPC-backed `Backend`: requests go to the queue, the batching loop drives the shards.
pub struct SchedulerBackend {
    queue: Queue,
    notifier: Arc<Notify>,
    client: ShardedClient,
}

impl SchedulerBackend {
    /// Starts the queue and the batching loop.
    pub fn new(client: ShardedClient, queue: QueueConfig, batching: BatchingConfig) -> Self {
        let queue = Queue::new(queue);
        let notifier = Arc::new(Notify::new());
        tokio::spawn(batching::batching_task(
            client.clone(),
            batching,
            queue.clone(),
            notifier.clone(),
        ));
        SchedulerBackend {
            queue,
            notifier,
            client,
        }
    }
}

#[async_trait::async_trait]
impl Backend for SchedulerBackend {
    fn schedule(&self, request: ValidGenerateRequest) -> Result<ResponseStream, RouterError> {
        let (response_tx, response_rx) = mpsc::unbounded_channel();
        self.queue.append(Entry {
            request: Arc::new(request),
            response_tx,
            queue_time: Instant::now(),
            batch_time: None,
            block_allocation: None,
        });
        self.notifier.notify_one();
        Ok(UnboundedReceiverStream::new(response_rx))
    }

    async fn health(&self, current_health: bool) -> bool {
        let result = if current_health {
            self.client.health().await
        } else {
            self.client.model_health().await
        };
        if let Err(err) = &result {
            tracing::error!("health check failed: {err}");
        }
        result.is_ok()
    }
}
