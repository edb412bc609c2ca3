//! Actions: `train(...)` and `eval(...)`. Both resolve their inputs from named arguments
//! first, then from the role slots, and hand a complete plan to the engine.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, Value};
use crate::kind::{with_article, Kinds};
use crate::spec::train::{RunLength, TrainPlan};
use crate::spec::{OptimSpec, Schedule};
use crate::syntax::Role;

/// A slot's value: the same-named argument if given, else the slot.
pub(super) fn input(interp: &Interp, a: &Args, role: Role) -> Option<Value> {
    if a.given(role.name()) {
        a.get(role.name())
    } else {
        interp.slot(role)
    }
}

/// A role's model: the same-named argument, else the slot; another kind of value is an
/// error naming the builtin.
pub(super) fn model_input(interp: &Interp, a: &Args, role: Role) -> Result<Option<std::rc::Rc<crate::eval::ModelValue>>, Diagnostic> {
    match super::actions::input(interp, a, role) {
        Some(Value::Model(m)) => Ok(Some(m)),
        Some(other) => Err(a.error(role.name(), format!("`{}` needs a model as the {}, got {}", a.builtin.name, role.name(), with_article(other.kind())))),
        None => Ok(None),
    }
}

fn missing(a: &Args, role: Role) -> Diagnostic {
    missing_slot(a.builtin.name, role, a.call_span)
}

/// An action's input is neither passed nor set as a slot (shared with the checker).
pub fn missing_slot(callee: &str, role: Role, at: crate::diag::Span) -> Diagnostic {
    let example = match role {
        Role::Student | Role::Teacher => "llama(layers=8, dim=512)",
        Role::Data => "text(\"corpus.txt\")",
        Role::Loss => "0.5*ce + 0.5*kl(T=2)*T^2",
        Role::Tokenizer => "\"tokenizer.json\"",
        Role::Optim => "adamw(lr=3e-4)",
        Role::Schedule => "warmup(200) >> cosine(5e-4, 5e-5)",
    };
    let what = match role {
        Role::Data => "data".to_string(),
        Role::Optim => "an optimizer".to_string(),
        other => format!("a {}", other.name()),
    };
    Diagnostic::error(format!("`{callee}` needs {what}, but none is set"))
        .label(at, format!("no {} here", role.name()))
        .help(format!("set one before this line with `{} {example}`, or pass `{}=` to {callee}", role.name(), role.name()))
}

/// The loss has teacher terms but no teacher is set (shared with the checker).
pub fn missing_teacher(terms: Option<String>, at: crate::diag::Span) -> Diagnostic {
    let which = terms.map(|t| format!(" ({t})")).unwrap_or_default();
    Diagnostic::error(format!("the loss compares the student with a teacher{which}, but no teacher is set"))
        .label(at, "no teacher here")
        .help("set one with `teacher ...`, or train on the data alone with `loss ce`")
}

/// Neither steps= nor epochs= (shared with the checker).
pub fn missing_length(callee: &str, at: crate::diag::Span) -> Diagnostic {
    Diagnostic::error(format!("`{callee}` needs a length: steps= or epochs="))
        .label(at, "how long?")
        .help("e.g. train(steps=1000) or train(epochs=3)")
}

/// "kl, mse": the loss terms that need a teacher.
pub fn teacher_terms(loss: &crate::spec::LossExpr) -> String {
    let mut names: Vec<&str> = loss.terms.iter().filter(|(_, t)| t.kind.needs_teacher()).map(|(_, t)| t.kind.name()).collect();
    names.dedup();
    names.join(", ")
}

/// Why a student's vocabulary is not the teacher's, and what to change: the cause is
/// where the student's size came from, not always "the tokenizer".
fn vocab_mismatch_cause(student: &crate::eval::ModelValue, vocab_from: Option<&str>, tv: usize) -> String {
    match (vocab_from, &student.origin) {
        (Some(from), _) if from != "the teacher" => format!(
            "the student took its vocabulary from {from}; use the teacher's tokenizer (`tokenizer tokenizer(teacher)`, or no tokenizer slot), or pass vocab={tv}"
        ),
        (_, crate::eval::Origin::Loaded { path, .. }) => {
            format!("the student was loaded from {path} with a vocabulary of its own; distil into a student built with llama(...) and no vocab= (it inherits the teacher's {tv})")
        }
        _ => format!("the student's vocab= was given in llama(...); leave it out to inherit the teacher's {tv}"),
    }
}

fn plan(interp: &Interp, a: &Args) -> Result<TrainPlan, Diagnostic> {
    let teacher_value = match input(interp, a, Role::Teacher) {
        Some(Value::Model(m)) => Some(m),
        _ => None,
    };
    let teacher = teacher_value.as_ref().map(|m| m.spec.clone());
    let (student_value, adapter) = match input(interp, a, Role::Student) {
        Some(Value::Model(m)) => {
            let adapter = m.lora().map(|c| (c.describe(), c.params(&m.spec)));
            (m, adapter)
        }
        _ => return Err(missing(a, Role::Student)),
    };
    let mut student = student_value.spec.clone();
    let data = match a.get("on").or_else(|| input(interp, a, Role::Data)) {
        Some(Value::Data(d)) => (*d).clone(),
        _ => return Err(missing(a, Role::Data)),
    };
    let loss = match input(interp, a, Role::Loss) {
        Some(Value::Loss(l)) => (*l).clone(),
        _ => return Err(missing(a, Role::Loss)),
    };
    if let Some((_, t)) = loss.terms.iter().find(|(_, t)| t.of == Some(crate::spec::Of::Teacher)) {
        return Err(a
            .error(if a.given("loss") { "loss" } else { "steps" }, format!("{} scores the teacher, which training does not change", t.describe()))
            .help("ce(teacher) belongs in mine(difficulty=...); train the student with ce, kl(T=2), ..."));
    }
    if loss.needs_teacher() && teacher.is_none() {
        return Err(missing_teacher(Some(teacher_terms(&loss)), a.call_span));
    }
    // Before the vocabularies are compared: a different tokenizer is the deeper cause.
    if let (Some(t), true) = (&teacher_value, loss.needs_teacher()) {
        if let Some(tok) = super::training::data_tokenizer(interp, &student_value, Some(t)) {
            super::training::teacher_reads_same_tokens(a, &tok, t)?;
        }
    }
    let mut vocab_from = student_value.vocab_from.clone();
    if student.vocab.is_none() {
        // The script's one rule (`Interp::vocab_source`); a `teacher=` argument stands in
        // for the teacher slot.
        let src = match (interp.slot(Role::Tokenizer), a.given("teacher")) {
            (None, true) => None,
            _ => interp.vocab_source(),
        };
        match src {
            Some(src) => (student.vocab, vocab_from) = (Some(src.vocab), Some(src.describe())),
            None => (student.vocab, vocab_from) = (teacher.as_ref().and_then(|t| t.vocab), Some("the teacher".into())),
        }
    }
    let Some(sv) = student.vocab else {
        return Err(Diagnostic::error("the student's vocabulary size is not known")
            .label(a.call_span, "training here")
            .help("pass vocab= to llama(...), or set a tokenizer or a teacher"));
    };
    if let Some(tv) = teacher.as_ref().and_then(|t| t.vocab) {
        if tv != sv && loss.terms.iter().any(|(_, t)| t.kind.is_kl_family()) {
            return Err(Diagnostic::error(format!("teacher and student vocabularies differ: teacher {tv}, student {sv}"))
                .label(a.call_span, "training here")
                .note("logit terms (kl, rkl, js, tvd, skl) compare distributions over the same tokens")
                .help(vocab_mismatch_cause(&student_value, vocab_from.as_deref(), tv)));
        }
    }
    let optim = match input(interp, a, Role::Optim) {
        Some(Value::Optim(o)) => (*o).clone(),
        _ => OptimSpec::AdamW { lr: Schedule::Const(3e-4), betas: (0.9, 0.999), wd: 0.01, eps: 1e-8 },
    };
    // `lr=` outranks the schedule slot and the optimizer's own rate.
    let lr = match a.get("lr").or_else(|| input(interp, a, Role::Schedule)) {
        Some(v) => v.as_schedule().unwrap_or_else(|| optim.lr().clone()),
        None => optim.lr().clone(),
    };
    if lr.range(lr.span_hint()).0 < 0.0 {
        return Err(Diagnostic::error(format!("the learning rate goes negative: {}", lr.describe()))
            .label(a.call_span, "training here")
            .help("check the `schedule` slot or the optimizer's lr"));
    }
    let length = match (a.opt_num("steps")?, a.opt_num("epochs")?) {
        (Some(s), None) => RunLength::Steps(s as u64),
        (None, Some(e)) => RunLength::Epochs(e),
        (Some(_), Some(_)) => {
            return Err(a.error("epochs", "give `steps=` or `epochs=`, not both").help("steps counts optimizer steps; epochs counts passes over the training split"))
        }
        (None, None) => return Err(missing_length(a.builtin.name, a.call_span)),
    };
    let teacher_cache = teacher_cache(a, &loss)?;
    let mixed = match a.string("precision")?.as_str() {
        "f32" => false,
        "bf16" | "auto" if student_value.dtype != tch::Kind::Float => {
            return Err(a
                .error("precision", format!("precision= mixes bf16 matmuls over f32 weights, but this student is {} already", crate::engine::device::dtype_name(student_value.dtype)))
                .help("build the student in f32 (leave out dtype=) for mixed precision, or leave out precision= to train it as it is"))
        }
        "bf16" => true,
        "auto" => crate::engine::device::bf16_pays_off(student_value.device),
        other => return Err(a.error("precision", format!("precision is \"f32\", \"bf16\" or \"auto\", not {other:?}")).help("\"bf16\": bf16 matmuls over f32 weights; \"auto\": bf16 where it measures faster (kdl info)")),
    };
    let graph = a.graph_mode()?;
    let device = super::models::run_device(a, student_value.device)?;
    if device != student_value.device {
        let (lives, asked) = (crate::engine::device::device_name(student_value.device), crate::engine::device::device_name(device));
        return Err(a
            .error("device", format!("the student lives on {lives}, so it trains there, not on {asked}"))
            .help(format!("build the student there: llama(..., device=\"{asked}\") (or kdl run --device {asked}), or leave out device=")));
    }
    let opt_str = |name: &str| -> Result<Option<String>, Diagnostic> { if a.given(name) { a.string(name).map(Some) } else { Ok(None) } };
    Ok(TrainPlan {
        teacher,
        student,
        data,
        loss,
        optim,
        lr,
        length,
        batch: a.count("batch")?,
        seq: a.count("seq")?,
        accumulate: a.count("accumulate")?,
        clip: a.num("clip")?,
        seed: a.num("seed")? as u64,
        eval_every: a.opt_num("eval_every")?.map(|x| x as u64),
        save_every: a.opt_num("save_every")?.map(|x| x as u64),
        keep_checkpoints: a.num("keep_checkpoints")? as usize,
        out: opt_str("out")?,
        resume: opt_str("resume")?,
        adapter,
        precision: crate::engine::device::dtype_name(student_value.dtype).to_string(),
        mixed,
        teacher_cache,
        graph,
        checkpoint_layers: a.boolean("checkpoint_layers")?,
    })
}

/// `teacher_cache=`: "off" (the default) or `topk(k)`. The cache keeps next-token
/// distributions only, so a loss that reads the teacher's hidden states cannot use it.
pub(super) fn teacher_cache(a: &Args, loss: &crate::spec::LossExpr) -> Result<Option<crate::spec::train::TeacherCacheSpec>, Diagnostic> {
    let spec = match a.get("teacher_cache") {
        None => return Ok(None),
        Some(Value::Str(s)) if &*s == "off" => return Ok(None),
        Some(Value::Cache(c)) => (*c).clone(),
        Some(other) => {
            return Err(a
                .error("teacher_cache", format!("`teacher_cache` is topk(k), sample(n) or \"off\", got {}", crate::kind::with_article(other.kind())))
                .help("e.g. teacher_cache=topk(64): the teacher's 64 most likely tokens per position, stored once"))
        }
    };
    if let Some((_, t)) = loss.terms.iter().find(|(_, t)| matches!(t.kind, crate::spec::TermKind::Mse | crate::spec::TermKind::Cosine)) {
        return Err(a
            .error("teacher_cache", format!("{} compares hidden states, which the teacher cache does not keep", t.describe()))
            .note("the cache keeps the teacher's next-token distributions: kl, rkl, js, tvd and skl read it")
            .help("leave out teacher_cache= for a loss with hidden-state terms"));
    }
    if !loss.needs_teacher() {
        return Err(a
            .error("teacher_cache", format!("the loss {} does not use the teacher, so there is nothing to cache", loss.describe()))
            .help("add a KL-family term such as kl(T=2)*T^2, or leave out teacher_cache="));
    }
    if let crate::spec::train::CacheMode::Sample(n) = spec.mode {
        // The draws estimate the teacher's distribution at T = 1 without bias, so the
        // student's cross-entropy on them has forward KL's gradient; other divergences and
        // temperatures of an estimate are biased, and need the kept probabilities of topk.
        let tempered = |t: &crate::spec::Term| t.t != crate::spec::Schedule::Const(1.0);
        if let Some((_, t)) = loss.terms.iter().find(|(_, t)| t.kind.is_kl_family() && (t.kind != crate::spec::TermKind::Kl || tempered(t))) {
            let why = if t.kind == crate::spec::TermKind::Kl { "at T=1 only: draws at one temperature do not give the distribution at another" } else { "for kl only" };
            return Err(a
                .error("teacher_cache", format!("sample({n}) cannot serve {}: a sampled cache estimates the teacher {why}", t.describe()))
                .note("sample(n) stores n draws per position, an unbiased estimate of the teacher at T=1 that kl reads as cross-entropy on the draws")
                .help("use teacher_cache=topk(64) for this loss, or kl at T=1 with sample(n)"));
        }
    }
    Ok(Some(spec))
}

fn role_param(role: Role, kinds: Kinds, doc: &'static str) -> super::ParamSpec {
    param(role.name(), kinds, Optional, doc)
}

fn train(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let plan = plan(interp, a)?;
    interp.say(&plan.describe());
    if interp.dry_run {
        return Err(interp.stop_dry_run("training", a.call_span));
    }
    if a.boolean("dry")? {
        return Ok(Value::Nothing);
    }
    super::training::run_training(interp, a, &plan)
}

fn eval_action(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let model = match input(interp, a, Role::Student) {
        Some(Value::Model(m)) => m,
        Some(other) => return Err(a.error("student", format!("`eval` needs a model, got {}", with_article(other.kind())))),
        None => return Err(missing(a, Role::Student)),
    };
    let data = match input(interp, a, Role::Data) {
        Some(Value::Data(d)) => d,
        _ => return Err(missing(a, Role::Data)),
    };
    interp.say(&format!("eval {} on {}", model.one_line(), data.describe()));
    super::training::run_eval(interp, a, &data, a.count("seq")?, a.count("batch")?)
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    let s = Kinds::STRING;
    vec![
        Builtin {
            name: "train",
            family: Family::Actions,
            params: vec![
                role_param(Role::Student, Kinds::MODEL, "the model to train — a student, or a lora(...) adapter (default: the student slot)"),
                param("on", Kinds::DATA, Optional, "the data to train on, e.g. a mined hard set (default: the data slot)"),
                param("lr", Kinds::SCALAR, Optional, "learning rate or schedule (default: the schedule slot, else the optimizer's)"),
                param("steps", n, Optional, "optimizer steps (or give epochs=)").range(Range::PositiveInt),
                param("epochs", n, Optional, "passes over the training split").range(Range::Positive),
                param("batch", n, Num(8.0), "sequences per micro-batch").range(Range::PositiveInt),
                param("seq", n, Num(256.0), "tokens per sequence").range(Range::PositiveInt),
                param("accumulate", n, Num(1.0), "micro-batches per optimizer step").range(Range::PositiveInt),
                param("clip", n, Num(1.0), "gradient-norm clipping (0 = off)").range(Range::NonNegative),
                param("seed", n, Num(0.0), "seed of the data order (the student's init comes from llama(seed=))").range(Range::NonNegativeInt),
                param("eval_every", n, Optional, "steps between validation passes").range(Range::PositiveInt),
                param("save_every", n, Optional, "steps between checkpoints").range(Range::PositiveInt),
                param("keep_checkpoints", n, Num(2.0), "how many of the newest checkpoints to keep (0 = all)").range(Range::NonNegativeInt),
                param("out", s, Optional, "run folder, e.g. \"runs/telugu-50m\""),
                param("resume", s, Optional, "run folder to continue from"),
                param("dry", Kinds::BOOL, Bool(false), "print the plan without training"),
                param("bench", Kinds::BOOL, Bool(false), "measure only: no checkpoints or evaluation; ends with tokens_per_s=N (median after 2 warm-up steps)"),
                param("teacher_cache", Kinds::CACHE | s, Str("off"), "the offline teacher cache: topk(64) keeps the teacher's 64 most likely tokens per position, sample(50) 50 draws from it; later runs read it instead of running the teacher; \"off\" runs it every step"),
                param("precision", s, Str("f32"), "the student's arithmetic: \"f32\", \"bf16\" (mixed: bf16 matmuls under autocast over f32 weights, gradients and optimizer state) or \"auto\" (bf16 on CUDA and where it measures faster on this CPU, see kdl info)"),
                param("teacher_dtype", s, Str("auto"), "teacher precision: \"auto\" (bf16 on CUDA and on CPUs where bf16 measures faster, see kdl info), \"f32\" or \"bf16\""),
                param("device", s, Str("auto"), "where to train: \"auto\" where the student lives; \"cpu\", \"cuda\" or \"cuda:N\" must be where it was built (llama(device=...) or kdl run --device)"),
                param("checkpoint_layers", Kinds::BOOL, Bool(false), "gradient checkpointing: keep only each block's output in the forward and recompute the block in the backward, for students whose activations do not fit in memory (about one more forward of compute)"),
                param("graph", s, Str("auto"), "CUDA graphs: \"auto\" captures the whole step after 3 warm-up steps and replays it where it can (CUDA, no teacher cache); \"on\" says why when it cannot; \"off\" always runs eager"),
                role_param(Role::Teacher, Kinds::MODEL, "teacher (default: the teacher slot)"),
                role_param(Role::Data, Kinds::DATA, "data (default: the data slot)"),
                role_param(Role::Loss, Kinds::LOSS, "loss (default: the loss slot)"),
                role_param(Role::Optim, Kinds::OPTIM, "optimizer (default: the optim slot, else adamw())"),
                role_param(Role::Schedule, Kinds::SCALAR, "learning-rate schedule (default: the schedule slot)"),
            ],
            returns: Kinds::NUMBER,
            doc: "distils the teacher into the student on the data with the loss; returns the student's held-out perplexity (nothing with dry=true)",
            example: "train(steps=1000, batch=8, seq=256, out=\"runs/quick\")",
            run: train,
            pure: false,
            slots: &[Role::Student, Role::Data, Role::Loss],
        },
        Builtin {
            name: "eval",
            family: Family::Actions,
            params: vec![
                role_param(Role::Student, Kinds::MODEL, "model to evaluate (default: the student slot)"),
                role_param(Role::Data, Kinds::DATA, "data (default: the data slot's validation split)"),
                role_param(Role::Teacher, Kinds::MODEL, "a teacher to compare with: top-1 agreement and KL (default: the teacher slot)"),
                param("seq", n, Num(256.0), "tokens per sequence").range(Range::PositiveInt),
                param("batch", n, Num(8.0), "sequences per forward").range(Range::PositiveInt),
            ],
            returns: Kinds::NUMBER,
            doc: "validation loss and perplexity of a model (the data's validation split, else all of it; a mined hard set: its own blocks); returns the perplexity",
            example: "eval()",
            run: eval_action,
            pure: false,
            slots: &[Role::Student, Role::Data],
        },
    ]
}
