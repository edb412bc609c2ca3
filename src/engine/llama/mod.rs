//! Llama-family models: `config` (the HF config.json), `rope`, `model` (weights and
//! forward), `cache` (KV caches), `recompute` (gradient checkpointing) and `int8`
//! (weight-only int8 for CPU decode) kept apart, as in candle's and tch's examples.

pub mod cache;
pub mod config;
pub mod init;
pub mod int8;
pub mod model;
mod recompute;
pub mod rope;

pub use cache::{KvCache, StaticKvCache};
pub use config::HfConfig;
pub use model::Llama;
