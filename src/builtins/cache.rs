//! The offline teacher cache's two forms, for `train(teacher_cache=...)`:
//! `topk(64)` (the teacher's 64 most likely tokens per position, with the exact tail) and
//! `sample(50)` (50 draws per position from the teacher: random-sampling KD). `topk` with
//! a model is the explorer's next-token table; explore.rs sends the number form here.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, Value};
use crate::kind::Kinds;
use crate::spec::train::{CacheMode, TeacherCacheSpec};
use std::rc::Rc;

fn spec(a: &Args, mode: CacheMode) -> Result<Value, Diagnostic> {
    let path = if a.given("path") { Some(a.string("path")?) } else { None };
    Ok(Value::Cache(Rc::new(TeacherCacheSpec { mode, path })))
}

/// `topk(k, path=)` as a teacher cache.
pub fn topk_cache(a: &Args, k: f64) -> Result<Value, Diagnostic> {
    if k < 1.0 || k.fract() != 0.0 || k > 65_536.0 {
        return Err(a.error("model", format!("a teacher cache keeps a whole number of tokens per position, 1 to 65536, not {}", crate::spec::fmt_num(k))).help("e.g. topk(64)"));
    }
    for extra in ["text", "k", "T"] {
        if a.given(extra) {
            return Err(a.error(extra, format!("`{extra}=` belongs to topk(model, text), not to a teacher cache")).help("a teacher cache is topk(64) or topk(64, path=\"cache/teacher\")"));
        }
    }
    spec(a, CacheMode::TopK(k as usize))
}

fn sample(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let n = a.count("n")?;
    if n > crate::engine::cache::sample::MAX_DRAWS {
        return Err(a
            .error("n", format!("a sampled teacher cache keeps at most {} draws per position (their counts are stored in a byte), not {n}", crate::engine::cache::sample::MAX_DRAWS))
            .help("50 draws is the RS-KD default and stores about 12 distinct tokens per position"));
    }
    spec(a, CacheMode::Sample(n))
}

pub fn table() -> Vec<Builtin> {
    vec![Builtin {
        name: "sample",
        family: Family::Actions,
        params: vec![
            param("n", Kinds::NUMBER, Required, "draws per position from the teacher at T=1").range(Range::PositiveInt),
            param("path", Kinds::STRING, Optional, "the cache's folder (default: the kdl cache, keyed by content)"),
        ],
        returns: Kinds::CACHE,
        doc: "a sampled teacher cache for train(teacher_cache=...): n draws per position from the teacher, kept as distinct tokens with counts (random-sampling KD); count/n estimates every token's probability without bias, the tail's too. Serves kl at T=1",
        example: "train(steps=200, teacher_cache=sample(50))",
        run: sample,
        pure: true,
        slots: &[],
    }]
}
