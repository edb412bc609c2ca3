//! Stage 4, engine: everything that touches tensors, on libtorch through tch. It reads the
//! plain `spec` values and knows nothing of syntax: models (`llama`), checkpoints in and
//! out (`checkpoint`, `gguf`, `load`), tokenizers (`bpe`), and inference (`generate`,
//! `chat`).

pub mod autocast;
pub mod bpe;
pub mod cache;
pub mod chat;
pub mod data;
pub mod checkpoint;
pub mod cuda_graph;
pub mod device;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod metrics;
pub mod mine;
pub mod load;
pub mod optim;
pub mod rng;
pub mod synth;
mod shim;
pub mod train;

pub use device::{choose_default_device, cpu_features, default_device, describe_cuda, describe_device};
