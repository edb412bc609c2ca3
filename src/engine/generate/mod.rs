//! Token generation with a KV cache: one prefill of the prompt, then one token per
//! forward (`decoder.rs`: a growing cache eagerly, or a fixed one whose step is captured
//! as a CUDA graph). Each token goes to a callback as soon as it is chosen, which is how
//! the CLI and REPL stream text. `batch.rs` decodes many prompts at once.

mod batch;
mod decoder;
mod sample;

pub use batch::{generate_batch, Answer, Request};
pub use decoder::Decoder;
pub use sample::Sampling;
use crate::engine::rng::SplitMix64 as Rng;
use sample::pick;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An end-of-sequence token was produced (it is not part of the output).
    Eos,
    /// `max` new tokens were produced.
    Length,
    /// The model's context is full.
    Context,
    /// The callback asked to stop (Ctrl-C).
    Interrupted,
}

/// Why `model` cannot continue `prompt`, if it cannot: empty, no room left in its
/// context, or an id outside its vocabulary.
pub(crate) fn check_prompt(model: &crate::engine::llama::Llama, prompt: &[u32]) -> Result<(), String> {
    if prompt.is_empty() {
        return Err("the prompt is empty: give at least one token".into());
    }
    let context = model.max_seq() as usize;
    if prompt.len() >= context {
        return Err(format!("the prompt has {} tokens but the model's context is {context}", prompt.len()));
    }
    let vocab = model.spec.vocab.unwrap_or(0) as u32;
    match prompt.iter().find(|&&t| t >= vocab) {
        Some(bad) => Err(format!("token id {bad} is outside the model's vocabulary of {vocab}")),
        None => Ok(()),
    }
}

/// Generates up to `max` tokens after `prompt` through a fresh `decoder`. `on_token`
/// sees each new token and returns false to stop early. Returns the new tokens (without an EOS) and why it
/// stopped.
pub fn generate(
    decoder: &mut Decoder,
    prompt: &[u32],
    max: usize,
    sampling: &Sampling,
    eos: &[u32],
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, Stop), String> {
    let model = decoder.model();
    check_prompt(model, prompt)?;
    let context = model.max_seq() as usize;
    let mut rng = Rng(sampling.seed ^ 0x6b64_6c5f_7361_6d70);
    let mut out = Vec::new();
    let ids: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    let mut logits = decoder.prefill(&ids)?;
    loop {
        if out.len() >= max {
            return Ok((out, Stop::Length));
        }
        let next = pick(&logits, sampling, &mut rng);
        if eos.contains(&next) {
            return Ok((out, Stop::Eos));
        }
        out.push(next);
        if !on_token(next) {
            return Ok((out, Stop::Interrupted));
        }
        if prompt.len() + out.len() >= context {
            return Ok((out, Stop::Context));
        }
        logits = decoder.step(next as i64)?;
    }
}
