//! Llama-family models: `config` (the HF config.json), `rope`, `model` (weights and
//! forward), `cache` (KV caches) and `recompute` (gradient checkpointing) kept apart, as
//! in candle's and tch's examples.

pub mod cache;
pub mod config;
pub mod init;
pub mod model;
mod recompute;
pub mod rope;

pub use cache::{KvCache, StaticKvCache};
pub use config::HfConfig;
pub use model::Llama;
