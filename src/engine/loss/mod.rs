//! Stage 4, losses: a `LossExpr` (Σ weightᵢ·termᵢ from `spec::loss`) compiles once into a
//! `LossPlan`; each step runs the plan on one micro-batch's logits and hidden states. The
//! plan keeps the valid positions only, log-softmaxes each model once per distinct
//! temperature (`terms`), and owns the hidden-state projections (`hidden`). The training
//! loop calls it; the conventions it implements are in lang/losses.md.

mod hidden;
mod terms;

use crate::spec::{LayerMap, LlamaSpec, LossExpr, Schedule, Term, TermKind};
use hidden::HiddenTerm;
use std::collections::HashMap;
use tch::{nn, Kind, Tensor};
use terms::{Needs, Tempered};

pub use terms::kl_rows;

/// KL(teacher ‖ student) at T = 1 per row over a cached teacher's k kept ids and tail:
/// `student` logits `[N, V]`, `ids`/`log_probs` `[N, k]`, `tail` `[N]`.
pub fn sparse_kl_rows(student: &Tensor, ids: &Tensor, log_probs: &Tensor, tail: &Tensor) -> Tensor {
    let needs = Needs::of(crate::spec::TermKind::Kl);
    let x = Tempered::sparse(0, None, needs, &student.to_kind(Kind::Float), &(ids.shallow_clone(), log_probs.shallow_clone(), tail.shallow_clone()));
    terms::divergence(crate::spec::TermKind::Kl, &x, 0.0)
}

/// `js`'s β and `skl`'s a when a term does not say (the builtins' defaults).
const DEFAULT_JS_BETA: f64 = 0.5;
const DEFAULT_SKL_A: f64 = 0.1;

/// One micro-batch, as the training loop has it.
pub struct LossInputs<'a> {
    /// `[B, T, V]`, any float kind (upcast to f32 here); requires grad.
    pub student_logits: &'a Tensor,
    /// `[B, T, V]`; read without a graph. Needed when `needs_teacher`, unless the teacher
    /// comes from its cache.
    pub teacher_logits: Option<&'a Tensor>,
    /// The teacher as its cache keeps it (top-k and a tail class): when given, the
    /// KL-family terms compare the two distributions over those k + 1 classes.
    pub teacher_sparse: Option<&'a crate::engine::cache::SparseTeacher>,
    /// Block outputs `[B, T, D]`, one per layer (`Llama::forward_with_states`). Needed when
    /// `needs_hidden`.
    pub student_states: Option<&'a [Tensor]>,
    pub teacher_states: Option<&'a [Tensor]>,
    /// `[B, T]` int64 next-token ids; read only where `mask` > 0 (-100 elsewhere is fine).
    pub targets: &'a Tensor,
    /// `[B, T]` float: 1 where the position's target counts, 0 for padding and prompt tokens.
    /// A position's per-token value is multiplied by its mask value.
    pub mask: &'a Tensor,
    /// Valid target positions of the whole optimizer step (all its micro-batches): the
    /// same number for every micro-batch of a step.
    pub denominator: f64,
}

pub struct LossOutput {
    /// Σᵢ wᵢ(step)·valueᵢ: a differentiable f32 scalar. Summed over a step's micro-batches
    /// it is the step's loss.
    pub total: Tensor,
    /// (name, valueᵢ) in `term_names` order, unweighted: valueᵢ = Σ over this micro-batch's
    /// valid positions of the per-token value, ÷ `denominator`. This is the micro-batch's
    /// share, so summing a term over a step's micro-batches gives its per-token mean.
    pub terms: Vec<(String, f64)>,
}

enum Compute {
    CrossEntropy,
    /// A KL-family term at temperature `t`; `mix` is js's β or skl's a.
    Divergence {
        kind: TermKind,
        /// The term's temperature: an index into the plan's `temperatures`.
        t: usize,
        mix: f64,
    },
    Hidden(HiddenTerm),
}

struct PlannedTerm {
    name: String,
    weight: Schedule,
    compute: Compute,
}

/// A compiled loss: terms × weights, and what they need from the models.
pub struct LossPlan {
    terms: Vec<PlannedTerm>,
    /// The distinct temperature schedules the terms read (`ce` reads the constant 1):
    /// terms on one schedule share its log-softmaxes at every step.
    temperatures: Vec<Schedule>,
    needs_teacher: bool,
    needs_hidden: bool,
}

/// A step's scheduled values as f32 tensors on the models' device — the term weights,
/// the temperatures and the step's token denominator — so the loss reads them there:
/// a captured CUDA graph replays with the values refilled before each step, never with
/// the ones it saw at capture. `LossPlan::values` makes them, `set_values` refills them.
pub struct StepValues {
    /// weights, then temperatures, then the denominator.
    all: Tensor,
    weights: Vec<Tensor>,
    temperatures: Vec<Tensor>,
    denominator: Tensor,
}

/// One micro-batch's loss as tensors: nothing read back to the host.
pub struct StepLoss {
    /// As `LossOutput::total`.
    pub total: Tensor,
    /// Each term's unweighted value, detached, in `term_names` order.
    pub terms: Vec<Tensor>,
}

impl LossPlan {
    /// Checks the loss against the models (a teacher where terms need one, equal vocabularies
    /// for KL-family terms, layer numbers within both depths) and creates the hidden-state
    /// projections under `vs` (`{kind}_{i}.s{s}_t{t}.weight`, `i` the term's position in
    /// `expr`). Learned projections are trainable variables of `vs`'s var store.
    pub fn new(expr: &LossExpr, student: &LlamaSpec, teacher: Option<&LlamaSpec>, vs: &nn::Path) -> Result<LossPlan, String> {
        if expr.terms.is_empty() {
            return Err("the loss has no terms".into());
        }
        let teacher = match (expr.needs_teacher(), teacher) {
            (true, None) => return Err(format!("the loss {} compares the student with a teacher, but no teacher is set", expr.describe())),
            (_, t) => t,
        };
        if let Some((_, t)) = expr.terms.iter().find(|(_, t)| t.of == Some(crate::spec::Of::Teacher)) {
            return Err(format!("{} scores the teacher, which training does not change: it belongs in mine(difficulty=...), not in a training loss", t.describe()));
        }
        let names = display_names(expr);
        let mut terms = Vec::with_capacity(expr.terms.len());
        let mut temperatures = Vec::new();
        if expr.terms.iter().any(|(_, t)| t.kind == TermKind::Ce) {
            slot(&mut temperatures, &Schedule::Const(1.0));
        }
        for (i, ((weight, term), name)) in expr.terms.iter().zip(names).enumerate() {
            let compute = match term.kind {
                TermKind::Ce => Compute::CrossEntropy,
                TermKind::Mse | TermKind::Cosine => {
                    let teacher = teacher.ok_or("hidden-state terms need a teacher")?;
                    let map = term.layers.clone().unwrap_or(LayerMap::Every(1));
                    let hidden = HiddenTerm::new(term.kind, &map, student, teacher, &(vs / format!("{}_{i}", term.kind.name())))
                        .map_err(|e| format!("{}: {e}", term.describe()))?;
                    Compute::Hidden(hidden)
                }
                kind => {
                    let mix = check_divergence(term, student, teacher.ok_or("KL-family terms need a teacher")?)?;
                    Compute::Divergence { kind, t: slot(&mut temperatures, &term.t), mix }
                }
            };
            terms.push(PlannedTerm { name, weight: weight.clone(), compute });
        }
        let needs_hidden = terms.iter().any(|t| matches!(t.compute, Compute::Hidden(_)));
        Ok(LossPlan { terms, temperatures, needs_teacher: expr.needs_teacher(), needs_hidden })
    }

    pub fn needs_teacher(&self) -> bool {
        self.needs_teacher
    }

    /// When true, run both models with `forward_with_states` and pass the states.
    pub fn needs_hidden(&self) -> bool {
        self.needs_hidden
    }

    /// Term names in the expression's order: the builtin's name, with its arguments after
    /// `@` when the same builtin appears more than once (`kl`, `kl@T=4`), and `#2`, `#3` for
    /// exact repeats.
    pub fn term_names(&self) -> Vec<String> {
        self.terms.iter().map(|t| t.name.clone()).collect()
    }

    /// The loss of one micro-batch at `step` (0-based) of `total_steps`: weights and
    /// temperatures are the schedules' values there.
    ///
    /// Panics when the inputs break the contract the plan was built for: teacher logits or
    /// hidden states missing where `needs_teacher`/`needs_hidden` say so, mismatched
    /// shapes, or a non-positive denominator or temperature.
    pub fn compute(&self, inp: &LossInputs, step: u64, total_steps: u64) -> LossOutput {
        let mut values = self.values(inp.student_logits.device());
        self.set_values(&mut values, step, total_steps, inp.denominator);
        let out = self.compute_with(inp, &values, false);
        let terms = self.terms.iter().zip(&out.terms).map(|(t, v)| (t.name.clone(), v.double_value(&[]))).collect();
        LossOutput { total: out.total, terms }
    }

    /// Scheduled values for this plan on `device`, to be filled by `set_values`.
    pub fn values(&self, device: tch::Device) -> StepValues {
        let (n, k) = (self.terms.len() as i64, self.temperatures.len() as i64);
        let all = Tensor::zeros([n + k + 1], (Kind::Float, device));
        let weights = (0..n).map(|i| all.get(i)).collect();
        let temperatures = (n..n + k).map(|i| all.get(i)).collect();
        let denominator = all.get(n + k);
        StepValues { all, weights, temperatures, denominator }
    }

    /// Fills `values` in place with the schedules at `step` and the step's `denominator`
    /// (its valid target positions, over all its micro-batches).
    pub fn set_values(&self, values: &mut StepValues, step: u64, total_steps: u64, denominator: f64) {
        assert!(denominator > 0.0 && denominator.is_finite(), "the loss denominator must be a positive token count, got {denominator}");
        let mut host: Vec<f32> = self.terms.iter().map(|t| t.weight.at(step, total_steps) as f32).collect();
        host.extend(self.temperatures.iter().map(|t| temperature(t, step, total_steps) as f32));
        host.push(denominator as f32);
        let _ = values.all.copy_(&Tensor::from_slice(&host));
    }

    /// The loss of one micro-batch with the scheduled values in `values` (the
    /// denominator too: `inp.denominator` is not read), all on the device. With
    /// `fixed_shapes` every position is computed and the mask weighs it, where otherwise
    /// only the valid positions are gathered first: more work on padded batches, but no
    /// shape that depends on the data, which is what a captured step needs.
    pub fn compute_with(&self, inp: &LossInputs, values: &StepValues, fixed_shapes: bool) -> StepLoss {
        let rows = Rows::new(inp.mask, fixed_shapes);
        let tempered = self.tempered(inp, &rows, values);
        let targets = self.terms.iter().any(|t| matches!(t.compute, Compute::CrossEntropy)).then(|| {
            let selected = rows.select(inp.targets);
            // Masked positions may hold -100; their weight is 0, but gather needs an id.
            if fixed_shapes {
                selected.clamp_min(0)
            } else {
                selected
            }
        });

        let mut total: Option<Tensor> = None;
        let mut values_out = Vec::with_capacity(self.terms.len());
        for (term, weight) in self.terms.iter().zip(&values.weights) {
            let per_token = match &term.compute {
                Compute::CrossEntropy => terms::cross_entropy(at(&tempered, self.one()), targets.as_ref().expect("targets were selected for ce")),
                Compute::Divergence { kind, t, mix } => terms::divergence(*kind, at(&tempered, *t), *mix),
                Compute::Hidden(h) => {
                    let student = inp.student_states.expect("the loss has hidden-state terms: pass student_states (see needs_hidden)");
                    let teacher = inp.teacher_states.expect("the loss has hidden-state terms: pass teacher_states (see needs_hidden)");
                    for (s, t) in h.pairs() {
                        assert!(
                            s < student.len() && t < teacher.len(),
                            "{}: layer pair {s}↔{t}, but got {} student and {} teacher states",
                            term.name,
                            student.len(),
                            teacher.len()
                        );
                    }
                    h.per_token(student, teacher, &rows.index)
                }
            };
            let value = (per_token * &rows.weight).sum(Kind::Float) / &values.denominator;
            values_out.push(value.detach());
            let weighted = &value * weight;
            total = Some(match total {
                Some(acc) => acc + weighted,
                None => weighted,
            });
        }
        StepLoss { total: total.expect("a plan has at least one term"), terms: values_out }
    }

    /// The temperature slot of the constant 1 (`ce`'s), present whenever a `ce` is.
    fn one(&self) -> usize {
        self.temperatures.iter().position(|t| t.as_const() == Some(1.0)).expect("ce's temperature was planned")
    }

    /// One `Tempered` per temperature schedule, holding just what the terms on it read.
    /// The selected `[N, V]` logits are dropped on return.
    fn tempered(&self, inp: &LossInputs, rows: &Rows, values: &StepValues) -> Vec<Tempered> {
        let mut needs: Vec<(usize, Needs)> = Vec::new();
        let mut need = |t: usize, n: Needs| match needs.iter_mut().find(|(x, _)| *x == t) {
            Some((_, have)) => *have = have.union(n),
            None => needs.push((t, n)),
        };
        for term in &self.terms {
            match &term.compute {
                Compute::CrossEntropy => need(self.one(), Needs::default()),
                Compute::Divergence { kind, t, .. } => need(*t, Needs::of(*kind)),
                Compute::Hidden(_) => {}
            }
        }
        if needs.is_empty() {
            return Vec::new();
        }
        // A constant 1 divides nothing; every other temperature is read on the device.
        let divisor = |t: usize| (self.temperatures[t].as_const() != Some(1.0)).then(|| &values.temperatures[t]);
        let logits = inp.student_logits;
        assert_eq!(logits.dim(), 3, "student logits must be [B, T, V], got {:?}", logits.size());
        let student = rows.select(logits).to_kind(Kind::Float);
        if let Some(sparse) = inp.teacher_sparse {
            let kept = (rows.select(&sparse.ids), rows.select(&sparse.log_probs), rows.select(&sparse.tail));
            assert_eq!(kept.0.size()[0], student.size()[0], "the cached teacher and the student cover different positions");
            return needs.into_iter().map(|(t, n)| Tempered::sparse(t, divisor(t), n, &student, &kept)).collect();
        }
        let teacher = needs.iter().any(|(_, n)| n.teacher_log_probs || n.teacher_probs).then(|| {
            let t = inp.teacher_logits.expect("the loss compares logits with the teacher's: pass teacher_logits (see needs_teacher)");
            let (sv, tv) = (logits.size()[2], t.size().last().copied().unwrap_or(0));
            assert_eq!(sv, tv, "the teacher's logits have {tv} classes and the student's {sv}: KL-family terms need one vocabulary");
            tch::no_grad(|| rows.select(t).to_kind(Kind::Float))
        });
        needs.into_iter().map(|(t, n)| Tempered::new(t, divisor(t), n, &student, teacher.as_ref())).collect()
    }
}

/// The index of `t` in `slots`, added when new.
fn slot(slots: &mut Vec<Schedule>, t: &Schedule) -> usize {
    match slots.iter().position(|s| s == t) {
        Some(i) => i,
        None => {
            slots.push(t.clone());
            slots.len() - 1
        }
    }
}

/// The positions that count: their flat indices into `[B·T]` and their mask values.
struct Rows {
    index: Tensor,
    weight: Tensor,
    /// Every position counts: select with a reshape, not a copy.
    all: bool,
}

impl Rows {
    /// With `fixed`, every position, weighed by its mask value (0 for the ones that do
    /// not count), so no shape depends on the data.
    fn new(mask: &Tensor, fixed: bool) -> Rows {
        let flat = mask.reshape([-1]);
        if fixed {
            let index = Tensor::arange(flat.size()[0], (Kind::Int64, flat.device()));
            return Rows { index, weight: flat.to_kind(Kind::Float), all: true };
        }
        let index = flat.gt(0.0).nonzero().squeeze_dim(1);
        let all = index.size()[0] == flat.size()[0];
        let weight = if all { flat.to_kind(Kind::Float) } else { flat.index_select(0, &index).to_kind(Kind::Float) };
        Rows { index, weight, all }
    }

    /// `[B, T, ..]` -> the valid rows `[N, ..]`.
    fn select(&self, x: &Tensor) -> Tensor {
        let shape: Vec<i64> = std::iter::once(-1).chain(x.size().into_iter().skip(2)).collect();
        let flat = x.reshape(shape);
        if self.all {
            flat
        } else {
            flat.index_select(0, &self.index)
        }
    }
}

fn temperature(t: &Schedule, step: u64, total_steps: u64) -> f64 {
    let value = t.at(step, total_steps);
    assert!(value > 0.0 && value.is_finite(), "temperature {} is {value} at step {step}: it must stay above 0", t.describe());
    value
}

fn at(tempered: &[Tempered], t: usize) -> &Tempered {
    tempered.iter().find(|x| x.t == t).expect("every temperature a term reads was planned")
}

/// Checks a KL-family term against the models; returns its mixing weight.
fn check_divergence(term: &Term, student: &LlamaSpec, teacher: &LlamaSpec) -> Result<f64, String> {
    if let (Some(sv), Some(tv)) = (student.vocab, teacher.vocab) {
        if sv != tv {
            return Err(format!("{} compares next-token distributions, but the teacher's vocabulary has {tv} tokens and the student's {sv}", term.describe()));
        }
    }
    if let Some(t) = term.t.as_const() {
        if t <= 0.0 || !t.is_finite() {
            return Err(format!("{}: the temperature must be above 0", term.describe()));
        }
    }
    let mix = match term.kind {
        TermKind::Js => term.mix.unwrap_or(DEFAULT_JS_BETA),
        TermKind::Skl | TermKind::Srkl => term.mix.unwrap_or(DEFAULT_SKL_A),
        _ => return Ok(0.0),
    };
    if !(mix > 0.0 && mix < 1.0) {
        return Err(format!("{}: the mixing weight must be strictly between 0 and 1", term.describe()));
    }
    Ok(mix)
}

/// `kl`, or `kl@T=4` when another `kl` is in the loss; `#2` on exact repeats.
fn display_names(expr: &LossExpr) -> Vec<String> {
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    for (_, t) in &expr.terms {
        *per_kind.entry(t.kind.name()).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    expr.terms
        .iter()
        .map(|(_, t)| {
            let kind = t.kind.name();
            let described = t.describe();
            let base = match described.strip_prefix(kind).and_then(|r| r.strip_prefix('(')).and_then(|r| r.strip_suffix(')')) {
                Some(args) if per_kind[kind] > 1 => format!("{kind}@{args}"),
                _ => kind.to_string(),
            };
            let n = seen.entry(base.clone()).or_default();
            *n += 1;
            if *n == 1 {
                base
            } else {
                format!("{base}#{n}")
            }
        })
        .collect()
}
