//! From a resolved plan to the engine: the models' weights, the tokenizer that reads the
//! data, the tokenized dataset, the run folder (and the checkpoint to resume), then the
//! training loop or an evaluation. `actions.rs` builds the plans; this file runs them.

use super::Args;
use crate::diag::Diagnostic;
use crate::engine::checkpoint::SpecialTokens;
use crate::engine::data::{prepare, DataOptions, Dataset};
use crate::engine::train::{self, checkpoint, Run};
use crate::eval::{Interp, ModelValue, TokenizerValue, Value};
use crate::spec::train::TrainPlan;
use crate::engine::cache::{cache_key, CacheMode, TeacherCache};
use crate::engine::llama::Llama;
use crate::spec::model::group_digits;
use crate::spec::train::TeacherCacheSpec;
use crate::spec::DataSpec;
use crate::syntax::Role;
use std::path::{Path, PathBuf};
use std::rc::Rc;

fn model_in(interp: &Interp, a: &Args, role: Role) -> Option<Rc<ModelValue>> {
    match super::actions::input(interp, a, role) {
        Some(Value::Model(m)) => Some(m),
        _ => None,
    }
}

/// The tokenizer that turns the data into ids: the student's, the tokenizer slot's, or
/// the teacher's.
pub(super) fn data_tokenizer(interp: &Interp, student: &ModelValue, teacher: Option<&ModelValue>) -> Option<Rc<TokenizerValue>> {
    student.tokenizer.clone().or_else(|| interp.known_tokenizer()).or_else(|| teacher.and_then(|t| t.tokenizer.clone()))
}

pub(super) fn engine_error(a: &Args, what: &str, e: String) -> Diagnostic {
    Diagnostic::error(e).label(a.call_span, what.to_string())
}

/// The ids a teacher reads must come from its own tokenizer: another tokenizer's ids
/// give it nonsense, and the numbers are wrong with nothing to say so.
pub(super) fn teacher_reads_same_tokens(a: &Args, tok: &TokenizerValue, teacher: &ModelValue) -> Result<(), Diagnostic> {
    match &teacher.tokenizer {
        Some(tt) if !tt.same_as(tok) => Err(Diagnostic::error(format!(
            "the data would be tokenized with {} ({} entries), but the teacher reads {} ({} entries)",
            tok.source,
            tok.vocab(),
            tt.source,
            tt.vocab()
        ))
        .label(a.call_span, "the teacher would read another tokenizer's ids here")
        .note("a teacher only understands ids from its own tokenizer")
        .help("leave out the `tokenizer` slot (the student then takes the teacher's), or set `tokenizer tokenizer(teacher)`")),
        _ => Ok(()),
    }
}

/// Reads and tokenizes `spec` for `student`; `teacher` frames documents (its end-of-text
/// token, its chat template), and when `teacher_reads` it is fed the same ids.
pub fn load_data(
    interp: &mut Interp,
    a: &Args,
    spec: &DataSpec,
    (seq, seed): (usize, u64),
    student: &ModelValue,
    teacher: Option<&ModelValue>,
    teacher_reads: bool,
) -> Result<(Dataset, Rc<TokenizerValue>), Diagnostic> {
    let tok = data_tokenizer(interp, student, teacher).ok_or_else(|| {
        Diagnostic::error("no tokenizer to read the data with")
            .label(a.call_span, "here")
            .help("set one with `tokenizer tokenizer(\"tokenizer.json\")` or `tokenizer bpe(vocab=8000, from=\"corpus.txt\")`, or use a teacher that has one")
    })?;
    if let (Some(t), true) = (teacher, teacher_reads) {
        teacher_reads_same_tokens(a, &tok, t)?;
    }
    let template = student.chat_template.clone().or_else(|| teacher.and_then(|t| t.chat_template.clone()));
    let opts = DataOptions {
        seq,
        seed,
        chat_template: template.as_deref(),
        // Documents are framed by the tokenizer's own special tokens; a model's "bos"
        // (SmolLM2's is <|im_start|>) belongs to chat turns, not to raw text.
        bos: None,
        eos: student.eos.first().or(teacher.and_then(|t| t.eos.first())).copied(),
        cache_dir: None,
    };
    let mut lines = Vec::new();
    let data = prepare(spec, &tok.tokenizer, &opts, &mut |l: &str| lines.push(l.to_string())).map_err(|e| engine_error(a, "reading the data for this", e))?;
    for l in lines {
        interp.say(&l);
    }
    Ok((data, tok))
}

/// The teacher's weights in the precision the run asks for. `auto` runs the frozen
/// teacher in bf16 where that is fast — CUDA, and CPUs where a bf16 matmul measures at
/// least 1.3× f32 (AMX, AVX-512 bf16: `engine::device::bf16_pays_off`) — and as loaded
/// elsewhere.
pub fn teacher_weights(a: &Args, t: &ModelValue, choice: &str) -> Result<Rc<crate::engine::llama::Llama>, Diagnostic> {
    let w = t.weights().map_err(|e| engine_error(a, "using this teacher", e))?;
    let want = match choice {
        "auto" if crate::engine::device::bf16_pays_off(t.device) => tch::Kind::BFloat16,
        "auto" => t.dtype,
        other => crate::engine::device::parse_dtype(other, t.device).map_err(|e| a.error("teacher_dtype", e))?,
    };
    // A teacher with an adapter runs as it is (merge it first to convert it).
    if want == t.dtype || t.lora().is_some() {
        return Ok(w);
    }
    w.converted(want).map(Rc::new).map_err(|e| engine_error(a, "converting the teacher", e))
}

/// A run folder that does not hold another run yet: `runs/NAME`, else `runs/NAME-2`, ...
fn fresh_run_dir(base: PathBuf) -> PathBuf {
    if checkpoint::latest(&base).is_none() {
        return base;
    }
    (2..).map(|i| PathBuf::from(format!("{}-{i}", base.display()))).find(|p| checkpoint::latest(p).is_none()).unwrap_or(base)
}

/// `runs/<script name>` beside the script (`runs/kdl` for the REPL).
pub fn script_runs(interp: &Interp) -> PathBuf {
    let script = interp.loader.borrow().sources.name(interp.file).to_string();
    let stem = Path::new(&script).file_stem().and_then(|s| s.to_str()).filter(|s| !s.starts_with('<')).unwrap_or("kdl").to_string();
    interp.resolve_path(&format!("runs/{stem}"))
}

/// Where the run writes and which checkpoint it continues from.
///
/// A folder that already holds a run is never written into: a re-run of the same script
/// goes to `NAME-2`, `NAME-3`, ... with a note (lang/training.md#run-folders), whether
/// the folder came from `out=` or the default; `resume=` is how a run continues one.
fn run_dirs(interp: &Interp, a: &Args, plan: &TrainPlan) -> Result<(PathBuf, Option<PathBuf>), Diagnostic> {
    if let Some(r) = &plan.resume {
        let given = interp.resolve_path(r);
        if given.join("run_state.json").is_file() {
            // One checkpoint named by hand: it must be intact, there is no other to take.
            checkpoint::verify(&given).map_err(|e| {
                a.error("resume", e).help("resume from the run folder instead: it falls back to the newest checkpoint that verifies")
            })?;
            return Ok((given.parent().map(Path::to_path_buf).unwrap_or_default(), Some(given)));
        }
        let (ckpt, skipped) = checkpoint::latest_intact(&given);
        for why in &skipped {
            interp.say(&format!("warning: passing over a damaged checkpoint: {why}"));
        }
        let ckpt = ckpt.ok_or_else(|| match skipped.first() {
            Some(why) => a.error("resume", format!("no checkpoint in {} verifies; the newest: {why}", given.display())).help("start the run again without resume="),
            None => a
                .error("resume", format!("{} holds no checkpoint to resume from", given.display()))
                .help("give a run folder written by train(out=...) with save_every=, or one of its step-N folders"),
        })?;
        return Ok((given, Some(ckpt)));
    }
    let base = match &plan.out {
        Some(o) => interp.resolve_path(o),
        None => script_runs(interp),
    };
    let out = fresh_run_dir(base.clone());
    if out != base {
        interp.say(&format!(
            "note: {} holds an earlier run, kept as it is; this run writes {} (train(resume={:?}) continues the earlier one)",
            base.display(),
            out.display(),
            base.display().to_string()
        ));
    }
    Ok((out, None))
}

pub fn run_training(interp: &mut Interp, a: &Args, plan: &TrainPlan) -> Result<Value, Diagnostic> {
    let mut student = model_in(interp, a, Role::Student).ok_or_else(|| super::actions::missing_slot("train", Role::Student, a.call_span))?;
    let teacher = if plan.loss.needs_teacher() { model_in(interp, a, Role::Teacher) } else { None };
    if student.vocab != plan.student.vocab {
        // The student learnt its vocabulary from the plan (teacher or tokenizer).
        let sized = Rc::new(student.with_vocab(plan.student.vocab.unwrap_or(0), data_tokenizer(interp, &student, teacher.as_deref())));
        if !a.given("student") {
            interp.slots.insert(Role::Student, Value::Model(sized.clone()));
        }
        student = sized;
    }
    // The teacher slot frames the data even when the loss does not use it, so runs with
    // and without a teacher see the same tokens.
    let framing = teacher.clone().or_else(|| model_in(interp, a, Role::Teacher));
    let (data, tok) = load_data(interp, a, &plan.data, (plan.seq, plan.seed), &student, framing.as_deref(), teacher.is_some())?;
    let student_w = student.weights().map_err(|e| engine_error(a, "training this student", e))?;
    let teacher_w = match &teacher {
        Some(t) => Some(teacher_weights(a, t, &a.string("teacher_dtype")?)?),
        None => None,
    };
    let bench = a.boolean("bench")?;
    let (out, resume) = if bench { (None, None) } else { let (o, r) = run_dirs(interp, a, plan)?; (Some(o), r) };
    if let Some(o) = &out {
        interp.say(&format!("run folder {}", o.display()));
    }
    let cache = match (&plan.teacher_cache, &teacher_w) {
        (Some(spec), Some(t)) => Some(std::cell::RefCell::new(open_teacher_cache(interp, a, spec, t, &data, plan.seq, &blocks_read(&data, plan))?)),
        _ => None,
    };
    let run = Run {
        plan,
        teacher: teacher_w.as_deref(),
        teacher_cache: cache.as_ref(),
        student: &student_w,
        data: &data,
        out,
        resume,
        show_progress: true,
        // Every checkpoint is a complete Hugging Face folder, tokenizer included.
        extra: student.tokenizer_files(&tok).map_err(|e| engine_error(a, "training here", e))?,
        special: SpecialTokens { bos: student.bos, eos: student.eos.clone() },
        bench,
    };
    let out = interp.out.clone();
    let mut log = |line: &str| {
        let mut o = out.borrow_mut();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    let outcome = train::train(&run, &mut log);
    // Whatever ended the run, the teacher work it did is kept for the next one.
    let flushed = cache.as_ref().map(|c| c.borrow_mut().flush()).unwrap_or(Ok(()));
    let outcome = outcome.and_then(|o| flushed.map(|_| o)).map_err(|e| engine_error(a, "training here", e))?;
    if let Some(c) = &cache {
        say_cache_holds(interp, &c.borrow());
    }
    // Without a validation split, the perplexity on (at most 32) training blocks.
    let val = outcome.val.or_else(|| {
        let some: Vec<usize> = (0..data.train.len().min(32)).collect();
        train::evaluate::evaluate(&student_w, None, &data.train.subset(&some), plan.batch).ok().flatten()
    });
    let ppl = val.map(|v| v.ppl).unwrap_or(f64::NAN);
    if !bench {
        let teacher = match (&framing, outcome.teacher_val) {
            (Some(t), Some(tv)) => Some((t.params().unwrap_or(0), tv.ppl)),
            _ => None,
        };
        interp.record_training(crate::eval::TrainRecord { params: student.params().unwrap_or(0), val_loss: val.map(|v| v.loss).unwrap_or(f64::NAN), ppl, teacher });
    }
    Ok(Value::Num(ppl))
}

/// What `eval` measured on, for its line: "val" for a validation split, else the name
/// the data was given by (`eval(data=hard)` → "hard"), else what it is.
fn eval_label(interp: &Interp, a: &Args, spec: &DataSpec, blocks: usize, on_val: bool) -> String {
    if on_val {
        return "val".into();
    }
    let written = if a.given("data") { interp.loader.borrow().sources.slice(a.span("data")).trim().to_string() } else { String::new() };
    if !written.is_empty() && written.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return written;
    }
    match spec.subset {
        Some(_) => format!("hard set ({blocks} blocks)"),
        None => format!("all {blocks} blocks"),
    }
}

/// What a teacher cache holds after a run wrote to it.
pub fn say_cache_holds(interp: &Interp, c: &TeacherCache) {
    interp.say(&format!(
        "teacher cache {}: {} of {} blocks stored ({} this run), {:.0} B/token, {} on disk",
        c.dir.display(),
        group_digits(c.filled() as u64),
        group_digits(c.blocks as u64),
        group_digits(c.written as u64),
        c.bytes_per_token().unwrap_or(0.0),
        train::report::fmt_bytes(c.disk_bytes())
    ));
}

/// Opens the teacher cache of this (teacher, data, seq) — the key every run over them
/// shares, whatever reads it: train, mine or precompute — and says what it holds of the
/// blocks `reads` this caller reads: all of them and the teacher is not run.
pub fn open_teacher_cache(interp: &Interp, a: &Args, spec: &TeacherCacheSpec, teacher: &Llama, data: &Dataset, seq: usize, reads: &[u32]) -> Result<TeacherCache, Diagnostic> {
    let mode = spec.mode;
    let key = cache_key(teacher, &[&data.train, &data.val], mode);
    let dir = match &spec.path {
        Some(p) => interp.resolve_path(p).join(&key),
        None => crate::engine::data::default_cache_root().join("teacher").join(&key),
    };
    let vocab = teacher.spec.vocab.unwrap_or(0);
    let mut warnings = Vec::new();
    let blocks = data.train.len() + data.val.len();
    let cache = TeacherCache::open(&dir, mode, seq, vocab, blocks, &mut warnings).map_err(|e| a.error("teacher_cache", e))?;
    for w in warnings {
        interp.say(&format!("warning: {w}"));
    }
    let filled = cache.filled();
    interp.say(&if filled == blocks {
        format!("teacher cache {}: complete ({} blocks), the teacher is not run", dir.display(), group_digits(blocks as u64))
    } else if cache.has_all(reads) {
        format!("teacher cache {}: holds every block this run reads ({} of {}), the teacher is not run", dir.display(), group_digits(reads.len() as u64), group_digits(blocks as u64))
    } else if filled > 0 {
        format!("teacher cache {}: {} of {} blocks stored; blocks not yet stored are computed by the teacher and added", dir.display(), group_digits(filled as u64), group_digits(blocks as u64))
    } else {
        let size = |per_token: f64| train::report::fmt_bytes((per_token * (blocks * seq) as f64) as u64);
        match (cache.mode, cache.bytes_per_token()) {
            (CacheMode::TopK(k), Some(b)) => format!("teacher cache {}: empty; it fills as the run trains (top {k} per position, {b:.0} B/token, about {} when full)", dir.display(), size(b)),
            (mode, _) => format!("teacher cache {}: empty; it fills as the run trains ({}, its size is reported as it is written)", dir.display(), mode.stores()),
        }
    });
    Ok(cache)
}

/// The cache's block numbers a fresh run of `plan` reads: the training blocks its steps
/// draw (all of them once the run covers an epoch; else the start of the first epoch's
/// order, which is the sampler's) and every validation block.
fn blocks_read(data: &Dataset, plan: &TrainPlan) -> Vec<u32> {
    let n = data.train.len();
    let drawn = train::total_steps(plan, n) as usize * plan.batch * plan.accumulate;
    let mut reads: Vec<u32> = if drawn >= n { (0..n as u32).collect() } else { crate::engine::data::Sampler::new(plan.seed).order(n)[..drawn].iter().map(|&i| i as u32).collect() };
    reads.extend((n..n + data.val.len()).map(|i| i as u32));
    reads
}

/// `eval(...)`: validation loss and perplexity; returns the perplexity.
pub fn run_eval(interp: &mut Interp, a: &Args, spec: &DataSpec, seq: usize, batch: usize) -> Result<Value, Diagnostic> {
    let model = model_in(interp, a, Role::Student).ok_or_else(|| super::actions::missing_slot("eval", Role::Student, a.call_span))?;
    let teacher = model_in(interp, a, Role::Teacher).filter(|t| t.vocab == model.vocab && !Rc::ptr_eq(t, &model));
    let (data, _) = load_data(interp, a, spec, (seq, 0), &model, teacher.as_deref(), teacher.is_some())?;
    let w = model.weights().map_err(|e| engine_error(a, "evaluating this model", e))?;
    let tw = match &teacher {
        Some(t) => Some(t.weights().map_err(|e| engine_error(a, "comparing with this teacher", e))?),
        None => None,
    };
    // A hard set is evaluated on its own blocks; other data on the validation split when
    // there is one, else on every block.
    let blocks = if spec.subset.is_none() && data.val.len() > 0 { &data.val } else { &data.train };
    let reference = tw.as_deref().map(train::evaluate::Reference::Live);
    let result = train::evaluate::evaluate(&w, reference.as_ref(), blocks, batch)
        .map_err(|e| engine_error(a, "evaluating here", e))?
        .ok_or_else(|| engine_error(a, "evaluating here", "the data has no tokens to evaluate on".into()))?;
    let label = eval_label(interp, a, spec, blocks.len(), std::ptr::eq(blocks, &data.val));
    let line = train::report::describe_eval(&result);
    interp.say(&if label == "val" { line } else { line.replacen("val loss", &format!("{label}: loss"), 1) });
    Ok(Value::Num(result.ppl))
}
