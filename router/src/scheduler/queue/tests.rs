//! Queue admission tests: FIFO, sizes, budgets, chunking, dropped clients, allocator.

use super::*;
use crate::infer::types::{ValidParameters, ValidStoppingParameters};
use tokio::sync::mpsc::UnboundedReceiver;

type Rx = UnboundedReceiver<Result<InferStreamResponse, RouterError>>;

fn entry(input_length: u32, max_new_tokens: u32) -> (Entry, Rx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let request = ValidGenerateRequest {
        inputs: "x".repeat(input_length as usize),
        input_ids: None,
        input_length,
        truncate: input_length,
        add_special_tokens: true,
        decoder_input_details: false,
        parameters: ValidParameters {
            temperature: 1.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            top_k: 0,
            top_p: 1.0,
            typical_p: 1.0,
            do_sample: false,
            seed: 0,
            watermark: false,
            grammar: None,
        },
        stopping_parameters: ValidStoppingParameters {
            max_new_tokens,
            max_total_new_tokens: max_new_tokens,
            stop_sequences: vec![],
            ignore_eos_token: false,
        },
        top_n_tokens: 0,
        adapter_id: None,
    };
    let entry = Entry {
        request: Arc::new(request),
        response_tx: tx,
        queue_time: Instant::now(),
        batch_time: None,
        block_allocation: None,
    };
    (entry, rx)
}

fn paged(total: u32, block_size: u32, chunking: bool) -> QueueConfig {
    QueueConfig {
        requires_padding: false,
        block_size,
        speculate: 0,
        max_batch_total_tokens: total,
        support_chunking: chunking,
    }
}

#[tokio::test]
async fn empty_queue_gives_nothing() {
    let q = Queue::new(paged(1000, 16, false));
    assert!(q.next_batch(None, None, 100, 100).await.is_none());
}

#[tokio::test]
async fn fifo_ids_and_batch_ids() {
    let q = Queue::new(paged(1000, 1, false));
    let (e1, _r1) = entry(5, 5);
    let (e2, _r2) = entry(5, 5);
    q.append(e1);
    q.append(e2);
    let (entries, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    assert_eq!(batch.id, 0);
    assert_eq!(batch.size, 2);
    assert_eq!(
        batch.requests.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(entries.contains_key(&0) && entries.contains_key(&1));
    assert!(entries.values().all(|e| e.batch_time.is_some()));
    // 5 + 5 - 1 = 9 slots each with block size 1.
    assert_eq!(batch.requests[0].slots.len(), 9);
    assert_eq!(batch.max_tokens, 10 + 10);
    let (e3, _r3) = entry(5, 5);
    q.append(e3);
    let (_, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    assert_eq!(batch.id, 1);
    assert_eq!(batch.requests[0].id, 2);
}

#[tokio::test]
async fn min_and_max_size() {
    let q = Queue::new(paged(1000, 1, false));
    let mut rxs = vec![];
    for _ in 0..3 {
        let (e, r) = entry(2, 2);
        q.append(e);
        rxs.push(r);
    }
    assert!(q.next_batch(Some(4), None, 100, 1000).await.is_none());
    assert_eq!(q.len().await, 3);
    let (_, batch) = q.next_batch(Some(2), Some(2), 100, 1000).await.unwrap();
    assert_eq!(batch.size, 2);
    assert_eq!(q.len().await, 1);
    assert!(q.next_batch(None, Some(0), 100, 1000).await.is_none());
}

#[tokio::test]
async fn prefill_budget_stops_admission_without_chunking() {
    let q = Queue::new(paged(1000, 1, false));
    let (e1, _r1) = entry(60, 1);
    let (e2, _r2) = entry(60, 1);
    q.append(e1);
    q.append(e2);
    let (_, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    assert_eq!(batch.size, 1);
    assert_eq!(batch.requests[0].chunk_len, None);
    assert_eq!(q.len().await, 1);
}

#[tokio::test]
async fn chunking_admits_partial_prefill() {
    let q = Queue::new(paged(1000, 1, true));
    let (e1, _r1) = entry(60, 1);
    let (e2, _r2) = entry(60, 1);
    q.append(e1);
    q.append(e2);
    let (_, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    assert_eq!(batch.size, 2);
    assert_eq!(batch.requests[0].chunk_len, None);
    assert_eq!(batch.requests[1].chunk_len, Some(40));
    assert_eq!(q.len().await, 0);
}

#[tokio::test]
async fn prefill_budget_rounds_up_to_block_size() {
    let q = Queue::new(paged(10_000, 16, false));
    let (e1, _r1) = entry(20, 1);
    q.append(e1);
    // Budget 17 rounds up to 32, enough for 20 tokens.
    assert!(q.next_batch(None, None, 17, 10_000).await.is_some());
}

#[tokio::test]
async fn allocator_capacity_limits_admission_and_frees_on_drop() {
    // 4 blocks of 16, block 0 reserved: 48 usable slots.
    let q = Queue::new(paged(64, 16, false));
    let (e1, _r1) = entry(10, 20); // 29 slots -> 2 blocks
    let (e2, _r2) = entry(10, 20); // 2 more blocks: does not fit
    q.append(e1);
    q.append(e2);
    let (entries, batch) = q.next_batch(None, None, 1000, 1000).await.unwrap();
    assert_eq!(batch.size, 1);
    assert_eq!(batch.max_blocks, 2);
    assert!(!batch.requests[0].blocks.contains(&0));
    assert!(q.next_batch(None, None, 1000, 1000).await.is_none());
    drop(entries);
    let (_, batch) = q.next_batch(None, None, 1000, 1000).await.unwrap();
    assert_eq!(batch.requests[0].id, 1);
}

#[tokio::test]
async fn dropped_clients_are_skipped() {
    let q = Queue::new(paged(1000, 1, false));
    let (e1, r1) = entry(5, 5);
    let (e2, _r2) = entry(5, 5);
    q.append(e1);
    q.append(e2);
    drop(r1);
    let (entries, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    assert_eq!(batch.size, 1);
    assert!(entries.contains_key(&1));
    assert!(q.is_empty().await);
}

#[tokio::test]
async fn padding_models_use_token_budget() {
    let q = Queue::new(QueueConfig {
        requires_padding: true,
        block_size: 1,
        speculate: 0,
        max_batch_total_tokens: 1000,
        support_chunking: false,
    });
    let (e1, _r1) = entry(10, 10);
    let (e2, _r2) = entry(10, 10);
    q.append(e1);
    q.append(e2);
    // prefill 2*10=20 + decode 20 = 40 > 35: only one fits.
    let (_, batch) = q.next_batch(None, None, 100, 35).await.unwrap();
    assert_eq!(batch.size, 1);
    assert!(batch.requests[0].blocks.is_empty());
    assert_eq!(batch.max_tokens, 20);
}

#[tokio::test]
async fn wire_request_carries_parameters() {
    let q = Queue::new(paged(1000, 1, false));
    let (e1, _r1) = entry(3, 7);
    q.append(e1);
    let (_, batch) = q.next_batch(None, None, 100, 1000).await.unwrap();
    let r = &batch.requests[0];
    assert_eq!(r.inputs, "xxx");
    assert_eq!(r.truncate, 3);
    assert_eq!(r.stopping_parameters.as_ref().unwrap().max_new_tokens, 7);
    assert_eq!(r.parameters.as_ref().unwrap().temperature, 1.0);
    assert!(r.add_special_tokens);
    assert_eq!(r.cache_len, 0);
}

#[tokio::test]
async fn request_larger_than_the_cache_fails_instead_of_waiting() {
    // 4 blocks of 16, block 0 reserved: 48 usable slots.
    let q = Queue::new(paged(64, 16, false));
    let (big, mut big_rx) = entry(40, 20); // 59 slots: can never fit
    let (small, _small_rx) = entry(4, 4);
    q.append(big);
    q.append(small);
    let (entries, batch) = q.next_batch(None, None, 1000, 1000).await.unwrap();
    assert_eq!(batch.size, 1);
    assert!(entries.contains_key(&1));
    let err = big_rx.recv().await.unwrap().unwrap_err();
    assert_eq!(err.error_type(), "generation");
    assert!(err.to_string().contains("59 KV cache slots"), "{err}");
}
