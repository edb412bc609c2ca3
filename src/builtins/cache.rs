//! The offline teacher cache's two forms, for `train(teacher_cache=...)`:
//! `topk(64)` (the teacher's 64 most likely tokens per position, with the exact tail) and
//! `sample(50)` (50 draws per position from the teacher: random-sampling KD). `topk` with
//! a model is the explorer's next-token table; explore.rs sends the number form here.
//! `precompute(teacher, data, topk(64))` fills a cache ahead of training.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, Value};
use crate::kind::Kinds;
use crate::spec::train::{CacheMode, TeacherCacheSpec};
use crate::syntax::Role;
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

/// `precompute(teacher, data, topk(64), seq=256)`: runs the teacher over every training
/// and validation block of `data` the cache lacks and stores them, so the training run
/// with the same teacher, data, seq and cache never runs the teacher. Returns the cache.
fn precompute(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let spec = match a.get("cache") {
        Some(Value::Cache(c)) => c,
        Some(other) => return Err(a.error("cache", format!("`precompute` fills a teacher cache, topk(64) or sample(50), got {}", crate::kind::with_article(other.kind())))),
        None => return Err(a.error("cache", "`precompute` needs the cache to fill").help("e.g. precompute(teacher, data, topk(64), seq=128)")),
    };
    let teacher = super::actions::model_input(interp, a, Role::Teacher)?.ok_or_else(|| super::actions::missing_slot("precompute", Role::Teacher, a.call_span))?;
    // The student slot, when set, frames the data as the training run will; a student
    // from llama(...) has no tokens of its own, and the teacher's frame the data then.
    let framing = match interp.slot(Role::Student) {
        Some(Value::Model(m)) => m,
        _ => teacher.clone(),
    };
    let data = match super::actions::input(interp, a, Role::Data) {
        Some(Value::Data(d)) => d,
        Some(other) => return Err(a.error("data", format!("`precompute` needs data, got {}", crate::kind::with_article(other.kind())))),
        None => return Err(super::actions::missing_slot("precompute", Role::Data, a.call_span)),
    };
    let (seq, batch) = (a.count("seq")?, a.count("batch")?);
    if interp.dry_run {
        return Err(interp.stop_dry_run("`precompute`", a.call_span));
    }
    let (data, _) = super::training::load_data(interp, a, &data, (seq, 0), &framing, Some(&teacher), true)?;
    let weights = super::training::teacher_weights(a, &teacher, &a.string("teacher_dtype")?)?;
    let blocks = data.train.len() + data.val.len();
    let every: Vec<u32> = (0..blocks as u32).collect();
    let cache = std::cell::RefCell::new(super::training::open_teacher_cache(interp, a, &spec, &weights, &data, seq, &every)?);
    let bar = crate::engine::train::report::Progress::new(blocks as u64, 0, true);
    let started = std::time::Instant::now();
    let filled = crate::engine::cache::fill(&cache, &weights, &[&data.train, &data.val], batch, &mut |done, _| {
        bar.update(done as u64, "blocks");
    });
    bar.finish();
    // A failed fill keeps what it stored; the next precompute or run goes on from there.
    let flushed = cache.borrow_mut().flush();
    let computed = filled.and_then(|n| flushed.map(|_| n)).map_err(|e| super::training::engine_error(a, "filling the teacher cache", e))?;
    let tokens = computed * seq;
    interp.say(&format!(
        "precompute: the teacher ran on {} blocks in {:.1}s ({:.0} tokens/s)",
        crate::spec::model::group_digits(computed as u64),
        started.elapsed().as_secs_f64(),
        tokens as f64 / started.elapsed().as_secs_f64().max(1e-9)
    ));
    super::training::say_cache_holds(interp, &cache.borrow());
    Ok(Value::Cache(spec))
}

pub fn table() -> Vec<Builtin> {
    let (n, s) = (Kinds::NUMBER, Kinds::STRING);
    vec![
    Builtin {
        name: "precompute",
        family: Family::Actions,
        params: vec![
            param("teacher", Kinds::MODEL, Optional, "the teacher (default: the teacher slot)"),
            param("data", Kinds::DATA, Optional, "the data whose training and validation blocks are stored (default: the data slot)"),
            param("cache", Kinds::CACHE, Required, "the cache to fill: topk(64) or sample(50), with path= if the run names one"),
            param("seq", n, Num(256.0), "tokens per block: the seq of the training run that reads the cache").range(Range::PositiveInt),
            param("batch", n, Num(8.0), "blocks per teacher forward").range(Range::PositiveInt),
            param("teacher_dtype", s, Str("auto"), "teacher precision, as in train: the cache is keyed by the weights the teacher runs with"),
        ],
        returns: Kinds::CACHE,
        doc: "fills a teacher cache ahead of training: runs the teacher over every training and validation block the cache lacks and stores them, so train(teacher_cache=...) with the same teacher, data and seq never runs it; returns the cache",
        example: "let cache = precompute(teacher, data, topk(64), seq=128)",
        run: precompute,
        pure: false,
        slots: &[Role::Teacher, Role::Data],
    },
    Builtin {
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
    },
    ]
}
