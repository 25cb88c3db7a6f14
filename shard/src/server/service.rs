//! `TextGenerationService` implementation: each RPC converts its message, runs the engine
//! on a blocking thread (the forward is CPU/GPU bound) and converts the answer back.

use super::convert;
use crate::engine::{Engine, WarmupParams};
use crate::error::{Result, ShardError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use text_generation_proto::v3 as pb;
use text_generation_proto::v3::text_generation_service_server::TextGenerationService;
use tonic::{Request, Response, Status};

/// The shard's gRPC service.
#[derive(Clone)]
pub struct ShardService {
    engine: Arc<Mutex<Engine>>,
    urls: Vec<String>,
    fatal: Arc<tokio::sync::Notify>,
}

impl ShardService {
    /// Serves `engine`; `urls` are every shard's `unix://` address (ServiceDiscovery).
    pub fn new(engine: Engine, urls: Vec<String>) -> Self {
        Self {
            engine: Arc::new(Mutex::new(engine)),
            urls,
            fatal: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified when the shard can no longer serve (a peer shard is gone): the server should
    /// stop so the launcher tears the deployment down instead of leaving a rank waiting.
    pub fn fatal_signal(&self) -> Arc<tokio::sync::Notify> {
        self.fatal.clone()
    }

    /// Runs `f` on the engine on a blocking thread. Logs (debug) how long the hop to that
    /// thread and back took beside the engine's own time, so a step's RPC overhead can be
    /// told apart from the server's.
    async fn with_engine<T: Send + 'static>(
        &self,
        rpc: &'static str,
        f: impl FnOnce(&mut Engine) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let engine = self.engine.clone();
        let called = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let started = called.elapsed();
            let out = match engine.lock() {
                Ok(mut guard) => f(&mut guard),
                Err(_) => Err(ShardError::InvalidArgument(
                    "engine state poisoned by an earlier panic".into(),
                )),
            };
            (out, started, called.elapsed())
        })
        .await
        .map_err(|e| Status::internal(format!("engine task failed: {e}")))
        .map(|(out, started, ended)| {
            tracing::debug!(
                rpc,
                to_engine_us = started.as_micros() as u64,
                engine_us = (ended - started).as_micros() as u64,
                back_us = (called.elapsed() - ended).as_micros() as u64,
                "engine call"
            );
            out
        })?;
        joined.map_err(|e| {
            tracing::error!("{e}");
            if matches!(e, ShardError::Communication(_)) {
                self.fatal.notify_one();
            }
            Status::from(e)
        })
    }
}

#[tonic::async_trait]
impl TextGenerationService for ShardService {
    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> std::result::Result<Response<pb::InfoResponse>, Status> {
        let info = self.with_engine("Info", |e| Ok(e.info())).await?;
        Ok(Response::new(pb::InfoResponse {
            requires_padding: false,
            dtype: info.dtype,
            device_type: info.device_type,
            window_size: info.window_size,
            speculate: 0,
            support_chunking: info.support_chunking,
            use_prefix_caching: false,
            attention_impl: "paged".to_string(),
            block_size: info.block_size,
        }))
    }

    async fn service_discovery(
        &self,
        _: Request<pb::ServiceDiscoveryRequest>,
    ) -> std::result::Result<Response<pb::ServiceDiscoveryResponse>, Status> {
        Ok(Response::new(pb::ServiceDiscoveryResponse {
            urls: self.urls.clone(),
        }))
    }

    async fn clear_cache(
        &self,
        req: Request<pb::ClearCacheRequest>,
    ) -> std::result::Result<Response<pb::ClearCacheResponse>, Status> {
        let id = req.into_inner().id;
        self.with_engine("ClearCache", move |e| {
            e.clear_cache(id);
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::ClearCacheResponse {}))
    }

    async fn filter_batch(
        &self,
        req: Request<pb::FilterBatchRequest>,
    ) -> std::result::Result<Response<pb::FilterBatchResponse>, Status> {
        let r = req.into_inner();
        let summary = self
            .with_engine("FilterBatch", move |e| {
                e.filter_batch(r.batch_id, &r.request_ids)
            })
            .await?;
        Ok(Response::new(pb::FilterBatchResponse {
            batch: Some(convert::cached_batch(summary)),
        }))
    }

    async fn warmup(
        &self,
        req: Request<pb::WarmupRequest>,
    ) -> std::result::Result<Response<pb::WarmupResponse>, Status> {
        let r = req.into_inner();
        let batch = convert::batch(r.batch.unwrap_or_default()).map_err(Status::from)?;
        let params = WarmupParams {
            batch,
            max_input_tokens: r.max_input_tokens,
            max_prefill_tokens: r.max_prefill_tokens,
            max_total_tokens: r.max_total_tokens,
        };
        let w = self
            .with_engine("Warmup", move |e| e.warmup(params))
            .await?;
        tracing::info!(
            max_supported_total_tokens = w.max_supported_total_tokens,
            max_input_tokens = w.max_input_tokens,
            max_total_tokens = w.max_total_tokens,
            "warmup done"
        );
        Ok(Response::new(pb::WarmupResponse {
            max_supported_total_tokens: Some(w.max_supported_total_tokens),
            max_input_tokens: w.max_input_tokens,
            max_total_tokens: w.max_total_tokens,
        }))
    }

    async fn prefill(
        &self,
        req: Request<pb::PrefillRequest>,
    ) -> std::result::Result<Response<pb::PrefillResponse>, Status> {
        let r = req.into_inner();
        let batch = r
            .batch
            .ok_or_else(|| Status::invalid_argument("Prefill needs a batch"))
            .and_then(|b| convert::batch(b).map_err(Status::from))?;
        let cached = r.cached_batch.map(|c| c.id);
        let out = self
            .with_engine("Prefill", move |e| e.prefill(batch, cached))
            .await?;
        let p = convert::step(out);
        Ok(Response::new(pb::PrefillResponse {
            generations: p.generations,
            batch: p.batch,
            forward_ns: p.forward_ns,
            decode_ns: p.decode_ns,
            total_ns: p.total_ns,
            concat_ns: p.concat_ns,
        }))
    }

    async fn decode(
        &self,
        req: Request<pb::DecodeRequest>,
    ) -> std::result::Result<Response<pb::DecodeResponse>, Status> {
        let ids: Vec<u64> = req.into_inner().batches.into_iter().map(|b| b.id).collect();
        let out = self.with_engine("Decode", move |e| e.decode(&ids)).await?;
        let p = convert::step(out);
        Ok(Response::new(pb::DecodeResponse {
            generations: p.generations,
            batch: p.batch,
            forward_ns: p.forward_ns,
            decode_ns: p.decode_ns,
            total_ns: p.total_ns,
            concat_ns: p.concat_ns,
        }))
    }

    async fn health(
        &self,
        _: Request<pb::HealthRequest>,
    ) -> std::result::Result<Response<pb::HealthResponse>, Status> {
        // Taking the engine lock proves the engine is alive and not wedged.
        self.with_engine("Health", |_| Ok(())).await?;
        Ok(Response::new(pb::HealthResponse {}))
    }
}
