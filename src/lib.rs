//! kdl, the knowledge-distillation language.
//!
//! The pipeline, one module per stage, each importing only those before it:
//! `syntax` (text → spanned tree) → `check` (names, kinds, ranges → diagnostics) →
//! `eval` (values, role slots, builtins) → `engine` (libtorch). `diag` renders every
//! stage's diagnostics; `spec` holds the plain values the engine consumes; `builtins`
//! is the one table of builtin functions; `session` is the host API.

pub mod atomic;
pub mod builtins;
pub mod checksum;
pub mod check;
pub mod diag;
pub mod engine;
pub mod eval;
pub mod interrupt;
pub mod kind;
pub mod loader;
pub mod session;
pub mod spec;
pub mod suggest;
pub mod syntax;

pub use session::Session;
