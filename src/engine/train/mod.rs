//! The training loop: the teacher frozen (no-grad), the student trained on the compiled
//! loss plan, with gradient accumulation under one token denominator per optimizer
//! step, clipping, scheduled learning rate, periodic evaluation and atomic checkpoints.
//! Resuming restores weights, optimizer moments and the sampler, so the loss curve
//! continues exactly; Ctrl-C saves and stops; a non-finite loss stops before saving.

pub mod checkpoint;
pub mod evaluate;
mod graph;
mod on_policy;
pub mod report;
mod step;

use self::checkpoint::{RunState, Snapshot};
use self::graph::{Captured, Pending};
use self::step::{Micro, Stepper};
use self::evaluate::{evaluate, EvalResult, Reference};
use self::report::{describe_eval, summary_table, Metrics, Progress};
use super::checkpoint::SpecialTokens;
use super::data::{Dataset, Sampler};
use super::llama::Llama;
use super::loss::LossPlan;
use super::optim::Optimizer;
use crate::spec::train::{RunLength, TrainPlan};
use super::cache::TeacherCache;
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::VarStore;

/// What the loop trains and where it writes.
pub struct Run<'a> {
    pub plan: &'a TrainPlan,
    pub teacher: Option<&'a Llama>,
    /// The teacher's offline cache: batches it holds are read instead of running the
    /// teacher, the rest are computed and stored. Block numbers: training blocks first,
    /// then validation blocks. The loop flushes it before each checkpoint; the caller
    /// flushes it once `train` returns, however the run ended.
    pub teacher_cache: Option<&'a RefCell<TeacherCache>>,
    pub student: &'a Llama,
    pub data: &'a Dataset,
    /// The run folder; `None` keeps nothing on disk.
    pub out: Option<PathBuf>,
    /// A checkpoint folder to continue from.
    pub resume: Option<PathBuf>,
    pub show_progress: bool,
    /// Files saved with every checkpoint (tokenizer.json, ...).
    pub extra: Vec<(&'a str, Vec<u8>)>,
    pub special: SpecialTokens,
    /// Measure only: no checkpoints, evaluation or summary; the last line is
    /// `tokens_per_s=N`, the median after two warm-up steps.
    pub bench: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub steps: u64,
    pub total_steps: u64,
    pub last_loss: f64,
    pub val: Option<EvalResult>,
    pub teacher_val: Option<EvalResult>,
    pub interrupted: bool,
    pub last_checkpoint: Option<PathBuf>,
}

/// Optimizer steps of a run over `blocks` training blocks.
pub fn total_steps(plan: &TrainPlan, blocks: usize) -> u64 {
    match plan.length {
        RunLength::Steps(n) => n,
        RunLength::Epochs(e) => {
            let per_step = (plan.batch * plan.accumulate).max(1) as f64;
            ((e * blocks as f64) / per_step).ceil().max(1.0) as u64
        }
    }
}


impl Run<'_> {
    /// The teacher evaluation compares with: from the cache when there is one.
    fn reference(&self, first_block: usize) -> Option<Reference<'_>> {
        let t = self.teacher?;
        Some(match self.teacher_cache {
            Some(cache) => Reference::Cached { teacher: t, cache, first_block },
            None => Reference::Live(t),
        })
    }
}

pub fn train(run: &Run, log: &mut dyn FnMut(&str)) -> Result<Outcome, String> {
    let plan = run.plan;
    let device = run.student.device();
    let total = total_steps(plan, run.data.train.len());
    let aux = VarStore::new(device);
    let losses = LossPlan::new(&plan.loss, &run.student.spec, run.teacher.map(|t| &t.spec), &aux.root())?;
    if losses.needs_teacher() && run.teacher.is_none() {
        return Err("the loss compares with a teacher, but there is none".into());
    }
    let mut on_policy = match plan.loss.on_policy {
        None => None,
        Some(_) if !matches!(plan.data.source, crate::spec::DataSource::Chat { .. }) => {
            return Err("gkd continues the data's prompts with the student's own samples, so it needs chat data: train on conversations(...)".into())
        }
        Some(_) if run.teacher_cache.is_some() => return Err("gkd scores the student's own samples, which no teacher cache holds: leave teacher_cache= out".into()),
        Some(p) => Some(on_policy::OnPolicyRun::new(p, plan.seed)),
    };
    let mut params: Vec<(String, tch::Tensor)> = run.student.vs.variables().into_iter().collect();
    params.extend(aux.variables().into_iter().map(|(n, t)| (format!("loss.{n}"), t)));
    let mut optimizer = Optimizer::new(&plan.optim, params);
    let mut sampler = Sampler::new(plan.seed);
    let plan_text = plan.describe();
    let mut start = 0;
    if let Some(dir) = &run.resume {
        let state = checkpoint::read_state(dir)?;
        checkpoint::restore_weights(run.student, dir)?;
        checkpoint::restore_into(&aux.variables(), &checkpoint::read_tensors(&dir.join("loss_params.safetensors"))?, dir)?;
        optimizer.load_state(&checkpoint::read_tensors(&dir.join("optimizer.safetensors"))?, state.step)?;
        if state.plan != plan_text {
            log("warning: the run's plan changed since this checkpoint; continuing with the new plan");
        }
        sampler = state.sampler;
        start = state.step;
        log(&format!("resuming from {} at step {start} of {total}", dir.display()));
    }
    if let Some(out) = &run.out {
        std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        std::fs::write(out.join("plan.txt"), &plan_text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let metrics = Metrics::open(run.out.as_deref(), run.resume.as_ref().map(|_| start))?;
    let names = losses.term_names();
    let progress = Progress::new(total, start, run.show_progress);
    let mut outcome = Outcome { steps: start, total_steps: total, last_loss: f64::NAN, val: None, teacher_val: None, interrupted: false, last_checkpoint: run.resume.clone() };
    let save = |step: u64, sampler: &Sampler, optimizer: &Optimizer| -> Result<Option<PathBuf>, String> {
        // The cache first: a checkpoint never claims teacher work that a kill could lose.
        if let Some(c) = run.teacher_cache {
            c.borrow_mut().flush()?;
        }
        let Some(out) = &run.out else { return Ok(None) };
        let state = RunState { step, total_steps: total, sampler: sampler.clone(), seed: plan.seed, plan: plan_text.clone() };
        let snap = Snapshot {
            student: run.student,
            optimizer: optimizer.state_tensors(),
            aux: aux.variables().into_iter().collect(),
            state: &state,
            special: &run.special,
            extra: &run.extra,
        };
        let dir = checkpoint::save(out, &snap)?;
        checkpoint::prune(out, plan.keep_checkpoints)?;
        Ok(Some(dir))
    };
    crate::interrupt::clear();
    let mut speeds = Vec::new();
    let (capture, graph_line) = graph::decide(plan.graph, run);
    if let Some(line) = graph_line {
        log(&line);
    }
    let mut stepper = Stepper { run, losses: &losses, values: losses.values(device), fixed_shapes: capture };
    let mut captured: Option<Captured> = None;
    let mut said_shape = false;
    let mut pending = Pending::new();
    let mut since = Instant::now();
    for step in start..total {
        let lr = plan.lr.at(step, total);
        let indices: Vec<Vec<usize>> = (0..plan.accumulate).map(|_| sampler.next_batch(run.data.train.len(), plan.batch)).collect();
        let mut denominator = indices.iter().map(|m| run.data.train.valid_tokens(m)).sum::<u64>().max(1) as f64;
        let mut micro: Vec<Micro> = indices.iter().map(|i| Micro::load(run, i)).collect();
        if let Some(op) = on_policy.as_mut() {
            micro = op.apply(step, run.student, &run.special.eos, micro)?;
            // The targets that count are now the sampled ones.
            denominator = micro.iter().map(|m| m.mask.sum(tch::Kind::Double).double_value(&[])).sum::<f64>().max(1.0);
        }
        losses.set_values(&mut stepper.values, step, total, denominator);
        optimizer.set_lr(lr);
        if capture && captured.is_none() && step >= start + graph::WARMUP_STEPS {
            match Captured::capture(&stepper, &micro, &mut optimizer) {
                Ok(c) => captured = Some(c),
                Err(e) => {
                    log(&format!("graph: capture failed ({e}); running eager"));
                    stepper.fixed_shapes = false;
                }
            }
        }
        match captured.as_mut().filter(|c| c.fits(&micro)) {
            Some(c) => pending.add(c.replay(&micro)?),
            None => {
                if captured.is_some() && !said_shape {
                    log(&format!("graph: step {} has a batch of another shape than the captured one; such steps run eager", step + 1));
                    said_shape = true;
                }
                pending.add(&stepper.step(&micro, &mut optimizer)?);
            }
        }
        optimizer.count_step();
        let done = step + 1;
        let evaluates = plan.eval_every.is_some_and(|n| done % n == 0) && done < total && !run.bench;
        let saves = plan.save_every.is_some_and(|n| done % n == 0) && !run.bench;
        // A captured step is read every READ_EVERY steps, an eager one every step.
        let read = captured.is_none() || done % graph::READ_EVERY == 0 || done == total || evaluates || saves || crate::interrupt::requested();
        if !read {
            continue;
        }
        let (loss, term_means, steps) = pending.read();
        if !loss.is_finite() {
            progress.finish();
            // Only a checkpoint that verifies is called good: one changed on disk may be
            // the very reason the loss broke.
            let kept = match outcome.last_checkpoint.as_deref().map(|c| (c, checkpoint::verify(c))) {
                Some((c, Ok(()))) => format!("the last good checkpoint is {} (verified)", c.display()),
                Some((_, Err(e))) => format!("the last checkpoint does not verify ({e})"),
                None => "no checkpoint was written before it".into(),
            };
            let at = if steps > 1 { format!("in steps {}–{done}", done + 1 - steps) } else { format!("at step {done}") };
            return Err(format!("the loss became {loss} {at}; training stopped and {kept} (lower the learning rate or add clipping)"));
        }
        let tokens_per_s = (plan.batch * plan.seq * plan.accumulate) as f64 * steps as f64 / since.elapsed().as_secs_f64();
        speeds.push(tokens_per_s);
        let mut row = serde_json::json!({"step": done, "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s.round()});
        if steps > 1 {
            // A graphed run's row is the mean of the steps since the last one.
            row["steps"] = steps.into();
        }
        let mut message = format!("loss {loss:.4}");
        for (name, v) in names.iter().zip(&term_means) {
            row[name.as_str()] = (*v).into();
            if names.len() > 1 {
                message.push_str(&format!(" · {name} {v:.4}"));
            }
        }
        message.push_str(&format!(" · {tokens_per_s:.0} tok/s"));
        metrics.write(&row)?;
        if let Some(line) = progress.update(done, &message) {
            log(&line);
        }
        outcome.steps = done;
        outcome.last_loss = loss;
        if evaluates {
            if let Some(e) = evaluate(run.student, run.reference(run.data.train.len()).as_ref(), &run.data.val, plan.batch)? {
                progress.println(&format!("step {done}: {}", describe_eval(&e)), log);
                metrics.write(&eval_row(done, &e))?;
            }
        }
        let interrupted = crate::interrupt::requested();
        if (saves || interrupted) && !run.bench {
            if let Some(dir) = save(done, &sampler, &optimizer)? {
                outcome.last_checkpoint = Some(dir);
            }
        }
        // Evaluation and saving are not training speed.
        since = Instant::now();
        if interrupted {
            crate::interrupt::clear();
            progress.finish();
            outcome.interrupted = true;
            let resume = run.out.as_ref().map(|o| format!("; continue with train(resume={:?})", o.display().to_string())).unwrap_or_default();
            log(&format!("stopped by Ctrl-C after step {done}{resume}"));
            return Ok(outcome);
        }
    }
    progress.finish();
    if let Some(op) = &on_policy {
        log(&format!("on-policy: {} of {} steps trained on the student's own samples ({} tokens sampled)", op.sampled_steps, total - start, op.sampled_tokens));
    }
    if run.bench {
        let mut steady: Vec<f64> = speeds.iter().skip(2.min(speeds.len().saturating_sub(1))).copied().collect();
        steady.sort_by(|a, b| a.total_cmp(b));
        log(&format!("tokens_per_s={:.1}", steady.get(steady.len() / 2).copied().unwrap_or(0.0)));
        return Ok(outcome);
    }
    // The final weights are always kept, unless the last step was just saved.
    let final_dir = run.out.as_ref().map(|o| checkpoint::step_dir(o, total));
    if outcome.last_checkpoint != final_dir {
        if let Some(dir) = save(total, &sampler, &optimizer)? {
            outcome.last_checkpoint = Some(dir);
        }
    }
    let reference = run.reference(run.data.train.len());
    outcome.val = evaluate(run.student, reference.as_ref(), &run.data.val, plan.batch)?;
    outcome.teacher_val = match &reference {
        Some(r) => r.own_eval(&run.data.val, plan.batch)?,
        None => None,
    };
    if let Some(e) = &outcome.val {
        metrics.write(&eval_row(total, e))?;
    }
    let student_params = run.student.spec.params().unwrap_or(0);
    let teacher = run.teacher.map(|t| (t.spec.params().unwrap_or(0), outcome.teacher_val));
    log(&summary_table(teacher, (student_params, outcome.val)));
    if let Some(out) = &run.out {
        let kept = if plan.keep_checkpoints == 0 { "every checkpoint kept".to_string() } else if plan.keep_checkpoints == 1 { "the newest checkpoint kept (keep_checkpoints=)".to_string() } else { format!("the newest {} checkpoints kept (keep_checkpoints=)", plan.keep_checkpoints) };
        log(&format!("run folder {}: {} on disk, {kept}", out.display(), report::fmt_bytes(report::folder_bytes(out))));
    }
    Ok(outcome)
}

fn eval_row(step: u64, e: &EvalResult) -> serde_json::Value {
    let mut row = serde_json::json!({"step": step, "val_loss": e.loss, "val_ppl": e.ppl, "val_tokens": e.tokens});
    if let Some(a) = e.agreement {
        row["agreement"] = a.into();
    }
    if let Some(k) = e.kl {
        row["val_kl"] = k.into();
    }
    row
}
