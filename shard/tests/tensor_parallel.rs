//! Tensor parallelism across shard processes (CPU communicator): 1, 2 and 4 ranks of the
//! same tiny model give identical greedy tokens and logprobs within 1e-5 (f32); a rank that
//! dies makes the others fail promptly instead of hanging in a collective.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use text_generation_proto::v3 as pb;
use text_generation_proto::v3::text_generation_service_client::TextGenerationServiceClient;
use tonic::transport::Channel;

const PROMPTS: [&str; 4] = [
    "Hello",
    "The quick brown fox jumps over the lazy dog",
    "1 2 3 4 5",
    "short",
];

/// What one request produced: ids, logprobs, top-token logprobs.
type Output = (Vec<u32>, Vec<f32>, Vec<Vec<f32>>);

/// Sends the same RPC to every rank (as the router's sharded client does) and merges.
async fn all<T, F, Fut>(clients: &mut [TextGenerationServiceClient<Channel>], f: F) -> Vec<T>
where
    F: Fn(TextGenerationServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = clients.iter().map(|c| tokio::spawn(f(c.clone()))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

async fn run(model: &std::path::Path, world: usize) -> BTreeMap<u64, Output> {
    let shards = start_shards(model, world, &[]);
    let mut clients = Vec::new();
    for s in shards.iter().rev() {
        clients.push(connect(&s.socket).await);
    }
    all(
        &mut clients,
        |mut c| async move { warmup(&mut c, 256).await },
    )
    .await;
    let reqs: Vec<pb::Request> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = request(i as u64, p, 12);
            r.top_n_tokens = 3;
            r
        })
        .collect();
    let b = batch(1, reqs);
    let mut out: BTreeMap<u64, Output> = BTreeMap::new();
    let answers = all(&mut clients, move |mut c| {
        let b = b.clone();
        async move {
            c.prefill(pb::PrefillRequest {
                batch: Some(b),
                cached_batch: None,
            })
            .await
            .expect("prefill")
            .into_inner()
        }
    })
    .await;
    let mut cached = answers[0].batch.clone();
    let mut record = |gens: Vec<pb::Generation>| {
        for g in gens {
            let e = out.entry(g.request_id).or_default();
            let t = g.tokens.expect("tokens");
            e.0.extend(t.ids);
            e.1.extend(t.logprobs);
            e.2.extend(g.top_tokens.into_iter().map(|t| t.logprobs));
        }
    };
    // Each rank reports only the requests it owns (id % world == rank).
    for (rank, a) in answers.into_iter().enumerate() {
        assert!(a
            .generations
            .iter()
            .all(|g| g.request_id as usize % world == rank));
        record(a.generations);
    }
    while let Some(cb) = cached {
        let answers = all(&mut clients, move |mut c| {
            let cb = cb.clone();
            async move {
                c.decode(pb::DecodeRequest { batches: vec![cb] })
                    .await
                    .expect("decode")
                    .into_inner()
            }
        })
        .await;
        cached = answers[0].batch.clone();
        for a in answers {
            record(a.generations);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_two_and_four_shards_agree() {
    for arch in test_models::Arch::ALL {
        let model = tiny_model(arch);
        let single = run(model.path(), 1).await;
        assert_eq!(single.len(), PROMPTS.len());
        for world in [2, 4] {
            let sharded = run(model.path(), world).await;
            let mut worst = 0f32;
            for (id, (ids, lps, tops)) in &single {
                let (sids, slps, stops) = &sharded[id];
                assert_eq!(
                    sids,
                    ids,
                    "{} with {world} shards: request {id} tokens differ",
                    arch.name()
                );
                for (a, b) in lps
                    .iter()
                    .zip(slps)
                    .chain(tops.iter().flatten().zip(stops.iter().flatten()))
                {
                    worst = worst.max((a - b).abs());
                }
            }
            assert!(
                worst < 1e-5,
                "{} with {world} shards: logprobs differ by {worst}",
                arch.name()
            );
            println!(
                "{}: {world} shards identical tokens, max |logprob diff| {worst:e}",
                arch.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_rank_fails_the_others_promptly() {
    let model = tiny_model(test_models::Arch::Llama);
    let mut shards = start_shards(model.path(), 2, &[]);
    let mut c0 = connect(&shards[1].socket).await; // rank 0 (the vector is in reverse rank order)
    let mut c1 = connect(&shards[0].socket).await;
    let (a, b) = tokio::join!(warmup(&mut c0, 256), warmup(&mut c1, 256));
    assert_eq!(a.max_supported_total_tokens, b.max_supported_total_tokens);
    // Rank 1 dies; rank 0's next forward must fail fast (EOF), not wait in the all-reduce.
    shards[0].child.kill().expect("kill rank 1");
    let t = Instant::now();
    let r = c0
        .prefill(pb::PrefillRequest {
            batch: Some(batch(1, vec![request(1, "hello", 4)])),
            cached_batch: None,
        })
        .await;
    assert!(r.is_err(), "a forward without its peer must fail");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed only after {:?}",
        t.elapsed()
    );
    // And rank 0 stops serving (non-zero exit) so the launcher tears everything down.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = shards[1].child.try_wait().expect("wait") {
            assert!(!status.success(), "rank 0 must exit with an error");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rank 0 kept running without its peer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
