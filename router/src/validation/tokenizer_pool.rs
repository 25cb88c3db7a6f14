//! A pool of blocking tokenizer workers (`--validation-workers`), so tokenization never runs on
//! the async executor.

use crate::error::ValidationError;
use std::sync::{mpsc, Arc, Mutex};
use tokenizers::{Encoding, Tokenizer};
use tokio::sync::oneshot;

struct Job {
    inputs: String,
    add_special_tokens: bool,
    reply: oneshot::Sender<Result<Encoding, ValidationError>>,
}

/// Handle to the worker threads; cheap to clone.
#[derive(Clone)]
pub struct TokenizerPool {
    sender: mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
}

impl std::fmt::Debug for TokenizerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerPool").finish_non_exhaustive()
    }
}

impl TokenizerPool {
    /// Starts `workers` threads sharing one job queue.
    pub fn new(tokenizer: Tokenizer, workers: usize) -> Self {
        let tokenizer = Arc::new(tokenizer);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers.max(1) {
            let receiver = receiver.clone();
            let tokenizer = tokenizer.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tokenizer-{i}"))
                .spawn(move || loop {
                    let job = match receiver.lock() {
                        Ok(guard) => match guard.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let result = tokenizer
                        .encode(job.inputs.as_str(), job.add_special_tokens)
                        .map_err(|e| ValidationError::Tokenizer(e.to_string()));
                    let _ = job.reply.send(result);
                });
            if let Err(err) = spawned {
                tracing::error!("could not start tokenizer worker: {err}");
            }
        }
        TokenizerPool { sender, tokenizer }
    }

    /// Encodes `inputs` on a worker thread.
    pub async fn encode(
        &self,
        inputs: String,
        add_special_tokens: bool,
    ) -> Result<Encoding, ValidationError> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Job {
                inputs,
                add_special_tokens,
                reply,
            })
            .map_err(|_| ValidationError::Tokenizer("tokenizer workers are gone".into()))?;
        rx.await
            .map_err(|_| ValidationError::Tokenizer("tokenizer worker failed".into()))?
    }

    /// The underlying tokenizer (for decoding and vocabulary look-ups).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}
