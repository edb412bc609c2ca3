//! Stage 3, eval: runs checked statements. Values (`value.rs`) include the spec values the
//! engine consumes; builtins are called through the table in `crate::builtins`. The
//! entry point is `Interp::exec_module`; `Session` wraps it for hosts.

mod chain;
mod env;
mod expr;
mod interp;
mod model;
pub mod ops;
pub(crate) mod save;
mod value;

pub use chain::TrainRecord;
pub use env::Scope;
pub use expr::{member, CallArgs};
pub use interp::{global_scope, Interp, Out};
pub use model::{ModelValue, Origin, TensorValue};
pub use value::{Closure, ModuleValue, StageFigures, StageValue, TokenizerValue, Value, VocabSource};
