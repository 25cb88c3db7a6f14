//! Request validation: TGI's rules, in TGI's order, with TGI's messages (§5).

mod tokenizer_pool;

pub use tokenizer_pool::TokenizerPool;

use crate::api::{GenerateRequest, GrammarType, SimpleToken};
use crate::error::ValidationError;
use crate::infer::types::{
    ValidGenerateRequest, ValidGrammar, ValidParameters, ValidStoppingParameters,
};
use std::sync::Arc;

/// Tokens scheduled per pass; longer generations are re-queued transparently.
pub const DEFAULT_GENERATION_LENGTH: u32 = 1024;

/// Limits the validator enforces.
#[derive(Clone, Debug)]
pub struct ValidationConfig {
    pub max_best_of: usize,
    pub max_stop_sequences: usize,
    pub max_top_n_tokens: u32,
    pub max_input_length: usize,
    pub max_total_tokens: usize,
    pub disable_grammar_support: bool,
}

/// Validates and tokenizes requests.
#[derive(Clone, Debug)]
pub struct Validation {
    config: ValidationConfig,
    tokenizer: Option<TokenizerPool>,
}

impl Validation {
    /// A validator; without a tokenizer input lengths are estimated as TGI does.
    pub fn new(config: ValidationConfig, tokenizer: Option<TokenizerPool>) -> Self {
        Validation { config, tokenizer }
    }

    /// The limits in force.
    pub fn config(&self) -> &ValidationConfig {
        &self.config
    }

    /// The tokenizer pool, if a tokenizer was loaded.
    pub fn tokenizer(&self) -> Option<&TokenizerPool> {
        self.tokenizer.as_ref()
    }

    /// `best_of` bounds (checked before the copies are validated).
    pub fn validate_best_of(&self, best_of: usize) -> Result<usize, ValidationError> {
        if self.config.max_best_of == 1 && best_of != 1 {
            return Err(ValidationError::BestOfDisabled);
        }
        if best_of > self.config.max_best_of {
            return Err(ValidationError::BestOf(self.config.max_best_of, best_of));
        }
        Ok(best_of)
    }

    /// Tokenizes for `/tokenize`: ids with byte offsets and the matching text.
    pub async fn tokenize(
        &self,
        inputs: String,
        add_special_tokens: bool,
    ) -> Result<Option<Vec<SimpleToken>>, ValidationError> {
        let Some(pool) = &self.tokenizer else {
            return Ok(None);
        };
        let encoding = pool.encode(inputs.clone(), add_special_tokens).await?;
        let tokens = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .map(|(&id, &(start, stop))| SimpleToken {
                id,
                text: inputs.get(start..stop).unwrap_or_default().to_string(),
                start,
                stop,
            })
            .collect();
        Ok(Some(tokens))
    }

    /// Validates a generate request; `add_special_tokens` is false for templated chat prompts.
    pub async fn validate(
        &self,
        request: GenerateRequest,
        add_special_tokens: bool,
    ) -> Result<ValidGenerateRequest, ValidationError> {
        let p = request.parameters;
        let cfg = &self.config;
        let best_of = p.best_of.unwrap_or(1);
        let sampling = p.do_sample
            || p.temperature.is_some()
            || p.top_k.is_some()
            || p.top_p.is_some()
            || p.typical_p.is_some();
        if best_of > 1 && !sampling {
            return Err(ValidationError::BestOfSampling);
        }
        let temperature = p.temperature.unwrap_or(1.0);
        if temperature <= 0.0 {
            return Err(ValidationError::Temperature);
        }
        let repetition_penalty = p.repetition_penalty.unwrap_or(1.0);
        if repetition_penalty <= 0.0 {
            return Err(ValidationError::RepetitionPenalty);
        }
        let frequency_penalty = p.frequency_penalty.unwrap_or(0.0);
        if !(-2.0..=2.0).contains(&frequency_penalty) {
            return Err(ValidationError::FrequencyPenalty);
        }
        let top_p = match p.top_p {
            Some(v) if v <= 0.0 || v >= 1.0 => return Err(ValidationError::TopP),
            Some(v) => v,
            None => 1.0,
        };
        let typical_p = match p.typical_p {
            Some(v) if v <= 0.0 || v >= 1.0 => return Err(ValidationError::TypicalP),
            Some(v) => v,
            None => 1.0,
        };
        let top_k: u32 = match p.top_k {
            Some(v) if v <= 0 => return Err(ValidationError::TopK),
            Some(v) => v as u32,
            None => 0,
        };
        if p.max_new_tokens == Some(0) {
            return Err(ValidationError::NegativeMaxNewTokens);
        }
        if p.stop.len() > cfg.max_stop_sequences {
            return Err(ValidationError::StopSequence(
                cfg.max_stop_sequences,
                p.stop.len(),
            ));
        }
        let seed = match p.seed {
            None => rand::random::<u64>(),
            Some(_) if best_of > 1 => return Err(ValidationError::BestOfSeed),
            Some(seed) => seed,
        };
        let top_n_tokens = match p.top_n_tokens {
            Some(n) if n > cfg.max_top_n_tokens => {
                return Err(ValidationError::TopNTokens(cfg.max_top_n_tokens, n))
            }
            Some(n) => n,
            None => 0,
        };
        if request.inputs.is_empty() {
            return Err(ValidationError::EmptyInput);
        }
        if let Some(truncate) = p.truncate {
            if truncate == 0 || truncate > cfg.max_input_length {
                return Err(ValidationError::Truncate(cfg.max_input_length, truncate));
            }
        }

        let (input_ids, input_length) = match &self.tokenizer {
            Some(pool) => {
                let encoding = pool
                    .encode(request.inputs.clone(), add_special_tokens)
                    .await?;
                let mut ids = encoding.get_ids().to_vec();
                if let Some(truncate) = p.truncate {
                    if truncate < ids.len() {
                        // Left truncation: keep the last `truncate` tokens.
                        ids = ids.split_off(ids.len() - truncate);
                    }
                }
                let len = ids.len();
                (Some(Arc::new(ids)), len)
            }
            None => {
                if p.max_new_tokens.is_none() && p.truncate.is_none() {
                    return Err(ValidationError::UnsetMaxNewTokens);
                }
                (None, p.truncate.unwrap_or(cfg.max_input_length))
            }
        };
        let (max_new_tokens, max_total_new_tokens) = match p.max_new_tokens {
            Some(n) => (n.min(DEFAULT_GENERATION_LENGTH), n),
            None => {
                let total = cfg.max_total_tokens.saturating_sub(input_length) as u32;
                (total.min(DEFAULT_GENERATION_LENGTH), total)
            }
        };
        // Without a tokenizer the prompt length is a guess: make room for the new tokens (TGI).
        let input_length = if input_ids.is_none()
            && input_length + max_new_tokens as usize > cfg.max_total_tokens
        {
            cfg.max_total_tokens.saturating_sub(max_new_tokens as usize)
        } else {
            input_length
        };
        if input_length + max_new_tokens as usize > cfg.max_total_tokens {
            return Err(ValidationError::MaxTotalTokens(
                cfg.max_total_tokens,
                input_length,
                max_new_tokens,
            ));
        }
        if input_length > cfg.max_input_length {
            return Err(ValidationError::InputLength(
                cfg.max_input_length,
                input_length,
            ));
        }
        let grammar = match p.grammar {
            None => None,
            Some(_) if cfg.disable_grammar_support => return Err(ValidationError::Grammar),
            Some(GrammarType::Regex(regex)) => Some(ValidGrammar::Regex(regex)),
            Some(GrammarType::Json(value)) => Some(ValidGrammar::Json(validate_schema(value)?)),
            Some(GrammarType::JsonSchema(config)) => {
                Some(ValidGrammar::Json(validate_schema(config.schema)?))
            }
        };

        Ok(ValidGenerateRequest {
            inputs: request.inputs,
            input_ids,
            input_length: input_length as u32,
            truncate: p.truncate.unwrap_or(cfg.max_input_length) as u32,
            add_special_tokens,
            decoder_input_details: p.decoder_input_details,
            parameters: ValidParameters {
                temperature,
                repetition_penalty,
                frequency_penalty,
                top_k,
                top_p,
                typical_p,
                do_sample: p.do_sample,
                seed,
                watermark: p.watermark,
                grammar,
            },
            stopping_parameters: ValidStoppingParameters {
                max_new_tokens,
                max_total_new_tokens,
                stop_sequences: p.stop,
                ignore_eos_token: false,
            },
            top_n_tokens,
            adapter_id: p.adapter_id,
        })
    }
}

/// A JSON grammar must be an object (or a string holding one) with top-level `properties`.
fn validate_schema(value: serde_json::Value) -> Result<String, ValidationError> {
    let schema = match value {
        serde_json::Value::String(text) => serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| ValidationError::InvalidGrammar(e.to_string()))?,
        value @ serde_json::Value::Object(_) => value,
        _ => return Err(ValidationError::Grammar),
    };
    let Some(object) = schema.as_object() else {
        return Err(ValidationError::Grammar);
    };
    if !object.contains_key("properties") {
        return Err(ValidationError::InvalidGrammar(
            "Grammar must have a 'properties' field".to_string(),
        ));
    }
    Ok(schema.to_string())
}

#[cfg(test)]
mod tests;
