//! One shard's gRPC client over a Unix socket (tonic channel, dummy URI, `UnixStream` connector).

use crate::error::ClientError;
use hyper_util::rt::TokioIo;
use text_generation_proto::v3::text_generation_service_client::TextGenerationServiceClient;
use text_generation_proto::v3::{
    Batch, CachedBatch, ClearCacheRequest, DecodeRequest, FilterBatchRequest, Generation,
    HealthRequest, InfoRequest, InfoResponse, PrefillRequest, ServiceDiscoveryRequest,
    WarmupRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Per-step timings reported by a shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTimings {
    pub forward_ns: u64,
    pub decode_ns: u64,
    pub total_ns: u64,
    pub concat_ns: Option<u64>,
}

impl StepTimings {
    /// Field-wise maximum (the slowest shard).
    pub fn max(self, other: StepTimings) -> StepTimings {
        StepTimings {
            forward_ns: self.forward_ns.max(other.forward_ns),
            decode_ns: self.decode_ns.max(other.decode_ns),
            total_ns: self.total_ns.max(other.total_ns),
            concat_ns: match (self.concat_ns, other.concat_ns) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Result of a Prefill or Decode on one shard.
pub type StepResult = (Vec<Generation>, Option<CachedBatch>, StepTimings);

/// A connected shard.
#[derive(Clone, Debug)]
pub struct Client {
    stub: TextGenerationServiceClient<Channel>,
}

impl Client {
    /// Connects to `path` (a socket path, with or without `unix://`).
    pub async fn connect_uds(path: &str) -> Result<Self, ClientError> {
        let path = path.trim_start_matches("unix://").to_string();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await?;
        let stub = TextGenerationServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(Client { stub })
    }

    /// All shard URLs, `unix://` stripped.
    pub async fn service_discovery(&self) -> Result<Vec<String>, ClientError> {
        let response = self
            .stub
            .clone()
            .service_discovery(ServiceDiscoveryRequest {})
            .await?;
        Ok(response
            .into_inner()
            .urls
            .into_iter()
            .map(|url| url.trim_start_matches("unix://").to_string())
            .collect())
    }

    /// Static model information.
    pub async fn info(&self) -> Result<InfoResponse, ClientError> {
        Ok(self.stub.clone().info(InfoRequest {}).await?.into_inner())
    }

    /// Cheap device check.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.stub.clone().health(HealthRequest {}).await?;
        Ok(())
    }

    /// Drops one cached batch, or all when `batch_id` is `None`.
    pub async fn clear_cache(&self, batch_id: Option<u64>) -> Result<(), ClientError> {
        self.stub
            .clone()
            .clear_cache(ClearCacheRequest { id: batch_id })
            .await?;
        Ok(())
    }

    /// Keeps only `request_ids` in the cached batch.
    pub async fn filter_batch(
        &self,
        batch_id: u64,
        request_ids: Vec<u64>,
    ) -> Result<Option<CachedBatch>, ClientError> {
        let response = self
            .stub
            .clone()
            .filter_batch(FilterBatchRequest {
                batch_id,
                request_ids,
            })
            .await?;
        Ok(response.into_inner().batch)
    }

    /// Warmup; returns `(max_supported_total_tokens, max_input_tokens, max_total_tokens)`.
    pub async fn warmup(
        &self,
        request: WarmupRequest,
    ) -> Result<(Option<u32>, u32, u32), ClientError> {
        let r = self.stub.clone().warmup(request).await?.into_inner();
        Ok((
            r.max_supported_total_tokens,
            r.max_input_tokens,
            r.max_total_tokens,
        ))
    }

    /// First forward of new requests (optionally concatenated to a cached batch).
    pub async fn prefill(
        &self,
        batch: Batch,
        cached_batch: Option<CachedBatch>,
    ) -> Result<StepResult, ClientError> {
        let r = self
            .stub
            .clone()
            .prefill(PrefillRequest {
                batch: Some(batch),
                cached_batch,
            })
            .await?
            .into_inner();
        let timings = StepTimings {
            forward_ns: r.forward_ns,
            decode_ns: r.decode_ns,
            total_ns: r.total_ns,
            concat_ns: r.concat_ns,
        };
        Ok((r.generations, r.batch, timings))
    }

    /// One decode step over cached batches.
    pub async fn decode(&self, batches: Vec<CachedBatch>) -> Result<StepResult, ClientError> {
        let r = self
            .stub
            .clone()
            .decode(DecodeRequest { batches })
            .await?
            .into_inner();
        let timings = StepTimings {
            forward_ns: r.forward_ns,
            decode_ns: r.decode_ns,
            total_ns: r.total_ns,
            concat_ns: r.concat_ns,
        };
        Ok((r.generations, r.batch, timings))
    }
}
