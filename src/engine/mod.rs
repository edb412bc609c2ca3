//! Stage 4, engine: everything that touches tensors, on libtorch through tch. It reads the
//! plain `spec` values and knows nothing of syntax. For now it answers what hardware a
//! run would use; models, losses and the training loop grow here.

pub mod checkpoint;
pub mod device;
pub mod llama;

pub use device::{cpu_features, default_device, describe_device};
