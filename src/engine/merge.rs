//! Model merging with mergekit's semantics (arcee-ai/mergekit, `mergekit/merge_methods/`):
//! linear, slerp, task arithmetic, TIES and DARE over whole state dicts, plus checkpoint
//! averaging. Pure tensor code: the language parses a `merge` call into `MergeOptions`, and
//! `checkpoint`/`load` supply the state dicts. Everything is computed in f32, whatever the
//! inputs' dtype; errors are one-line strings that say the cause and the fix.

use crate::engine::rng::SplitMix64;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// slerp falls back to lerp above this |cos θ| (mergekit/merge_methods/slerp.py `DOT_THRESHOLD`).
const SLERP_DOT_THRESHOLD: f64 = 0.9995;
/// slerp normalises a tensor for the angle only when its norm exceeds this (slerp.py `eps`).
const SLERP_EPS: f64 = 1e-8;
/// A non-consensus weight sum smaller than this is not divided by
/// (generalized_task_arithmetic.py: `divisor[divisor.abs() < 1e-8] = 1`).
const DIVISOR_EPS: f64 = 1e-8;
/// L1 rescaling is skipped when either norm is below this (sparsify.py `rescaled_masked_tensor`).
const RESCALE_EPS: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Linear,
    Slerp,
    Ties,
    DareTies,
    DareLinear,
    TaskArithmetic,
}

/// How each task vector is thinned before mixing (mergekit/sparsify.py).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sparsify {
    /// Keep the `density` fraction of largest magnitudes (`magnitude`).
    Magnitude,
    /// Keep each entry with probability `density` (`bernoulli`, DARE).
    Random,
}

impl Method {
    pub const ALL: [Method; 6] = [Method::Linear, Method::Slerp, Method::Ties, Method::DareTies, Method::DareLinear, Method::TaskArithmetic];
    pub const NAMES: &'static [&'static str] = &["linear", "slerp", "ties", "dare_ties", "dare_linear", "task_arithmetic"];

    pub fn parse(s: &str) -> Result<Method, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown merge method `{s}`: use one of {}", Method::NAMES.join(", ")))
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::Slerp => "slerp",
            Method::Ties => "ties",
            Method::DareTies => "dare_ties",
            Method::DareLinear => "dare_linear",
            Method::TaskArithmetic => "task_arithmetic",
        }
    }

    /// Every method but linear starts from a base model: slerp's t = 0 end, or the point
    /// task vectors (model − base) are measured from and added back to.
    pub fn needs_base(self) -> bool {
        self != Method::Linear
    }

    /// mergekit's defaults: linear.py (`normalize` true); merge_methods/registry.py for the
    /// task-arithmetic family (`default_normalize`: ties true; task_arithmetic, dare_ties,
    /// dare_linear false). slerp has no such parameter.
    pub fn default_normalize(self) -> bool {
        matches!(self, Method::Linear | Method::Ties)
    }

    /// registry.py `default_rescale`: true for dare_ties and dare_linear, false otherwise.
    pub fn default_rescale(self) -> bool {
        matches!(self, Method::DareTies | Method::DareLinear)
    }

    fn is_task_arithmetic(self) -> bool {
        !matches!(self, Method::Linear | Method::Slerp)
    }

    /// registry.py `sparsification_method`.
    fn sparsify(self) -> Option<Sparsify> {
        match self {
            Method::Ties => Some(Sparsify::Magnitude),
            Method::DareTies | Method::DareLinear => Some(Sparsify::Random),
            _ => None,
        }
    }

    /// registry.py `consensus_method`: `sum` for ties and dare_ties, none otherwise.
    fn sign_consensus(self) -> bool {
        matches!(self, Method::Ties | Method::DareTies)
    }
}

#[derive(Clone, Debug)]
pub struct MergeOptions {
    pub method: Method,
    /// One per model (the base is not a model here); empty means all 1.
    pub weights: Vec<f64>,
    /// Fraction of each task vector kept: one per model or one for all; empty means 1.
    pub density: Vec<f64>,
    /// slerp's position: 0 is the base, 1 the other model.
    pub t: f64,
    /// None: the method's mergekit default (`Method::default_normalize`).
    pub normalize: Option<bool>,
    /// None: the method's mergekit default (`Method::default_rescale`).
    pub rescale: Option<bool>,
    /// Scales the mixed task vector (generalized_task_arithmetic.py `lambda`, default 1).
    pub lambda: f64,
    /// Seeds DARE's drop masks, one stream per (seed, tensor name, model).
    pub seed: u64,
}

impl MergeOptions {
    pub fn new(method: Method) -> MergeOptions {
        MergeOptions { method, weights: Vec::new(), density: Vec::new(), t: 0.5, normalize: None, rescale: None, lambda: 1.0, seed: 0 }
    }

    pub fn normalize(&self) -> bool {
        self.normalize.unwrap_or(self.method.default_normalize())
    }

    pub fn rescale(&self) -> bool {
        self.rescale.unwrap_or(self.method.default_rescale())
    }

    fn weight(&self, model: usize) -> f64 {
        self.weights.get(model).copied().unwrap_or(1.0)
    }

    fn density(&self, model: usize) -> f64 {
        match self.density.as_slice() {
            [] => 1.0,
            [all] => *all,
            each => each[model],
        }
    }

    /// Checks the options against the method, the number of models and whether a base is
    /// given, before any tensor is touched.
    pub fn check(&self, models: usize, has_base: bool) -> Result<(), String> {
        let m = self.method;
        let name = m.name();
        if models == 0 {
            return Err(format!("{name} merge got no models: pass at least one model"));
        }
        match (m, has_base) {
            (Method::Slerp, false) => {
                return Err("slerp needs a base model (the t = 0 end) besides the other model (t = 1): pass base".into())
            }
            (Method::Slerp, true) if models != 1 => {
                return Err(format!(
                    "slerp interpolates exactly two models, the base (t = 0) and one other (t = 1), but got the base and {models} others: pass one model besides the base, or use linear"
                ))
            }
            (Method::Linear, true) => {
                return Err("linear does not use a base model: drop base, or list it among the models with a weight".into())
            }
            (_, false) if m.needs_base() => {
                return Err(format!("{name} adds task vectors (model − base) to a base model, and none was given: pass base"))
            }
            _ => {}
        }
        if m == Method::Slerp {
            if !self.weights.is_empty() {
                return Err("slerp takes t, not weights: drop weights and set t (0 = base, 1 = the other model)".into());
            }
            if !self.t.is_finite() {
                return Err(format!("slerp's t is {}: give a number, 0 = base, 1 = the other model", self.t));
            }
        }
        if !self.weights.is_empty() && self.weights.len() != models {
            return Err(format!("{} but {}: give one weight per model, or none for all 1", count(models, "model"), count(self.weights.len(), "weight")));
        }
        if let Some((i, w)) = self.weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(format!("weight {w} for model {} is not a number: give finite weights", i + 1));
        }
        if m == Method::Linear && self.normalize() && self.weights.iter().sum::<f64>() == 0.0 && !self.weights.is_empty() {
            return Err("linear weights sum to 0, so normalize would divide by zero: change the weights or set normalize=false".into());
        }
        if m.sparsify().is_none() {
            if self.density.iter().any(|&d| d != 1.0) {
                return Err(format!("{name} keeps every entry, so density does not apply: drop density, or use ties, dare_ties or dare_linear"));
            }
            if self.rescale.is_some() {
                return Err(format!("{name} drops nothing, so rescale does not apply: drop rescale, or use ties, dare_ties or dare_linear"));
            }
        }
        if self.density.len() > 1 && self.density.len() != models {
            return Err(format!("{} but {} densities: give one density per model, or one for all", count(models, "model"), self.density.len()));
        }
        if let Some((i, d)) = self.density.iter().enumerate().find(|(_, &d)| !(d > 0.0 && d <= 1.0)) {
            let whose = if self.density.len() == 1 { String::new() } else { format!(" for model {}", i + 1) };
            return Err(format!("density {d}{whose} is outside (0, 1]: density is the fraction of each task vector kept"));
        }
        if !m.is_task_arithmetic() {
            if self.lambda != 1.0 {
                return Err(format!("{name} has no task vector to scale, so lambda does not apply: drop lambda"));
            }
            if m == Method::Slerp && self.normalize.is_some() {
                return Err("slerp has no weights to normalize: drop normalize".into());
            }
        } else if !self.lambda.is_finite() {
            return Err(format!("lambda is {}: give a finite scale for the merged task vector", self.lambda));
        }
        Ok(())
    }
}

/// Merges one named tensor of several models; `base` is the base model's (never counted
/// among `models`). The result is f32, on the first model's device.
pub fn merge_tensor(name: &str, models: &[&Tensor], base: Option<&Tensor>, o: &MergeOptions) -> Result<Tensor, String> {
    o.check(models.len(), base.is_some())?;
    let shape = models[0].size();
    for (i, m) in models.iter().enumerate().skip(1) {
        if m.size() != shape {
            return Err(shape_mismatch(&format!("model {}", i + 1), name, &m.size(), &shape, "model", "merge"));
        }
    }
    if let Some(b) = base {
        if b.size() != shape {
            return Err(shape_mismatch("the base model", name, &b.size(), &shape, "model", "merge"));
        }
    }
    let device = models[0].device();
    let as_f32 = |t: &Tensor| t.detach().to_device(device).to_kind(Kind::Float);
    tch::no_grad(|| {
        let xs: Vec<Tensor> = models.iter().map(|t| as_f32(t)).collect();
        let base = base.map(as_f32);
        match (o.method, base) {
            (Method::Linear, _) => Ok(linear(&xs, o)),
            (Method::Slerp, Some(base)) => Ok(slerp(o.t, &base, &xs[0])),
            (_, Some(base)) => task_arithmetic(name, &xs, &base, o),
            (method, None) => Err(format!("{} needs a base model: pass base", method.name())),
        }
    })
}

/// Merges whole state dicts tensor by tensor, after checking that every model (and the
/// base) has the same names and shapes.
pub fn merge_states(
    models: &[BTreeMap<String, Tensor>],
    base: Option<&BTreeMap<String, Tensor>>,
    o: &MergeOptions,
) -> Result<BTreeMap<String, Tensor>, String> {
    o.check(models.len(), base.is_some())?;
    check_same_architecture(models, base, "model", "merge")?;
    let mut merged = BTreeMap::new();
    for name in models[0].keys() {
        let tensors: Vec<&Tensor> = models.iter().map(|m| &m[name]).collect();
        merged.insert(name.clone(), merge_tensor(name, &tensors, base.map(|b| &b[name]), o)?);
    }
    Ok(merged)
}

/// Checkpoint averaging: the element-wise mean of same-architecture state dicts, in f32.
pub fn average(states: &[BTreeMap<String, Tensor>]) -> Result<BTreeMap<String, Tensor>, String> {
    if states.is_empty() {
        return Err("average got no checkpoints: pass at least one".into());
    }
    check_same_architecture(states, None, "checkpoint", "average")?;
    let n = states.len() as f64;
    tch::no_grad(|| {
        let mut mean = BTreeMap::new();
        for (name, first) in &states[0] {
            let device = first.device();
            let mut sum = first.detach().to_kind(Kind::Float);
            for s in &states[1..] {
                sum += s[name].detach().to_device(device).to_kind(Kind::Float);
            }
            mean.insert(name.clone(), sum / n);
        }
        Ok(mean)
    })
}

/// Same names and shapes everywhere, else a one-line error naming the first difference.
/// `noun` is what the inputs are called ("model", "checkpoint"), `verb` who needs it.
fn check_same_architecture(
    states: &[BTreeMap<String, Tensor>],
    base: Option<&BTreeMap<String, Tensor>>,
    noun: &str,
    verb: &str,
) -> Result<(), String> {
    let first = &states[0];
    let first_label = format!("{noun} 1");
    let others = states.iter().enumerate().skip(1).map(|(i, s)| (format!("{noun} {}", i + 1), s));
    for (label, state) in others.chain(base.map(|b| ("the base model".to_string(), b))) {
        let fix = format!("{verb} needs {noun}s of the same architecture");
        if let Some(name) = first.keys().find(|n| !state.contains_key(*n)) {
            return Err(format!("{label} has no tensor {name} ({first_label} has it): {fix}"));
        }
        if let Some(name) = state.keys().find(|n| !first.contains_key(*n)) {
            return Err(format!("{label} has {name}, which {first_label} lacks: {fix}"));
        }
        for (name, t) in state {
            let want = first[name].size();
            if t.size() != want {
                return Err(shape_mismatch(&label, name, &t.size(), &want, noun, verb));
            }
        }
    }
    Ok(())
}

/// "1 model", "3 models".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn shape_mismatch(label: &str, name: &str, got: &[i64], want: &[i64], noun: &str, verb: &str) -> String {
    format!("{label} has {name} of shape {got:?}, {noun} 1 {want:?}: {verb} needs {noun}s of the same architecture")
}

/// Σ wᵢ·xᵢ, divided by Σ wᵢ when normalizing (mergekit/merge_methods/linear.py).
fn linear(xs: &[Tensor], o: &MergeOptions) -> Tensor {
    let mut sum = &xs[0] * o.weight(0);
    for (i, x) in xs.iter().enumerate().skip(1) {
        sum += x * o.weight(i);
    }
    if o.normalize() {
        let total: f64 = (0..xs.len()).map(|i| o.weight(i)).sum();
        sum /= total;
    }
    sum
}

/// Spherical interpolation of the whole tensors as two vectors, `v0` at t = 0
/// (mergekit/merge_methods/slerp.py `slerp`): the angle comes from normalised copies (left
/// as they are when the norm is ≤ eps), and nearly colinear tensors are lerped.
fn slerp(t: f64, v0: &Tensor, v1: &Tensor) -> Tensor {
    let unit = |v: &Tensor| {
        let norm = v.norm().double_value(&[]);
        if norm > SLERP_EPS {
            v / norm
        } else {
            v.shallow_clone()
        }
    };
    let dot = (unit(v0) * unit(v1)).sum(Kind::Float).double_value(&[]);
    if dot.abs() > SLERP_DOT_THRESHOLD {
        return v0 * (1.0 - t) + v1 * t;
    }
    let theta_0 = dot.acos();
    let theta_t = theta_0 * t;
    let (s0, s1) = ((theta_0 - theta_t).sin() / theta_0.sin(), theta_t.sin() / theta_0.sin());
    v0 * s0 + v1 * s1
}

/// base + λ·mix(sparsified wᵢ·τᵢ), τᵢ = modelᵢ − base
/// (mergekit/merge_methods/generalized_task_arithmetic.py `GTATask.execute`).
fn task_arithmetic(name: &str, xs: &[Tensor], base: &Tensor, o: &MergeOptions) -> Result<Tensor, String> {
    let n = xs.len();
    let mut weighted = Vec::with_capacity(n);
    for (i, x) in xs.iter().enumerate() {
        let tau = x - base;
        let tau = match o.method.sparsify() {
            None => tau,
            Some(Sparsify::Magnitude) => keep_largest(name, i, &tau, o.density(i), o.rescale())?,
            Some(Sparsify::Random) => drop_random(&tau, o.density(i), o.rescale(), &mut dare_stream(o.seed, name, i)),
        };
        weighted.push(tau * o.weight(i));
    }
    let deltas = Tensor::stack(&weighted, 0);
    let mut mixed = if o.method.sign_consensus() {
        // TIES "sum" consensus: an entry's sign is that of Σ wᵢ·τᵢ (ties to +), and only the
        // task vectors agreeing with it (zeros never do) are summed and counted.
        let majority = deltas.sum_dim_intlist(0, false, Kind::Float).ge(0.0).to_kind(Kind::Float) * 2.0 - 1.0;
        let agree = deltas.sign().eq_tensor(&majority).to_kind(Kind::Float);
        let mixed = (&deltas * &agree).sum_dim_intlist(0, false, Kind::Float);
        if o.normalize() {
            let mut shape = vec![1i64; base.dim() + 1];
            shape[0] = n as i64;
            let weights: Vec<f32> = (0..n).map(|i| o.weight(i) as f32).collect();
            let w = Tensor::from_slice(&weights).to_device(base.device()).reshape(&shape);
            let divisor = (w * &agree).sum_dim_intlist(0, false, Kind::Float);
            // Where no task vector agrees, divide by 1 (mergekit: `divisor[divisor == 0] = 1`).
            let divisor = &divisor + divisor.eq(0.0).to_kind(Kind::Float);
            mixed / divisor
        } else {
            mixed
        }
    } else {
        let mut mixed = deltas.sum_dim_intlist(0, false, Kind::Float);
        let total: f64 = (0..n).map(|i| o.weight(i)).sum();
        if o.normalize() && total.abs() >= DIVISOR_EPS {
            mixed /= total;
        }
        mixed
    };
    if o.lambda != 1.0 {
        mixed *= o.lambda;
    }
    Ok(base + mixed)
}

/// TIES trimming: keeps the int(density·numel) largest |τ| entries
/// (mergekit/sparsify.py `magnitude`); rescale matches the L1 norm before and after.
fn keep_largest(name: &str, model: usize, tau: &Tensor, density: f64, rescale: bool) -> Result<Tensor, String> {
    if density >= 1.0 {
        return Ok(tau.shallow_clone());
    }
    let numel = tau.numel();
    let k = (density * numel as f64) as i64;
    if k == 0 {
        return Err(format!(
            "ties with density {density} keeps no entry of {name} (model {}, {numel} entries): raise density to at least {}",
            model + 1,
            1.0 / numel as f64
        ));
    }
    let magnitude = tau.abs().reshape([-1]);
    let largest = magnitude.argsort(0, true).narrow(0, 0, k);
    let mask = magnitude.zeros_like().index_fill(0, &largest, 1.0).reshape(tau.size());
    let kept = tau * &mask;
    if !rescale {
        return Ok(kept);
    }
    let (before, after) = (tau.abs().sum(Kind::Float).double_value(&[]), kept.abs().sum(Kind::Float).double_value(&[]));
    if before < RESCALE_EPS || after < RESCALE_EPS {
        return Ok(kept);
    }
    Ok(kept * (before / after))
}

/// DARE: keeps each entry with probability `density`, and divides the kept ones by it when
/// rescaling, so the task vector keeps its expected value (the DARE paper; mergekit's
/// sparsify.py `bernoulli` until 2025, which now matches the L1 norm instead). The mask
/// comes from our own generator, so a seed gives the same mask on every device.
fn drop_random(tau: &Tensor, density: f64, rescale: bool, rng: &mut SplitMix64) -> Tensor {
    if density >= 1.0 {
        return tau.shallow_clone();
    }
    let keep: Vec<f32> = (0..tau.numel()).map(|_| if rng.uniform() < density { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::from_slice(&keep).reshape(tau.size()).to_device(tau.device());
    let kept = tau * mask;
    if rescale {
        kept / density
    } else {
        kept
    }
}

/// One stream per (seed, tensor name, model), like llama/init.rs's per-name streams, so a
/// tensor's mask does not depend on which tensors were merged before it.
fn dare_stream(seed: u64, name: &str, model: usize) -> SplitMix64 {
    // FNV-1a over the name, a separator and the model index: stable across runs and platforms.
    let bytes = name.bytes().chain([0xff]).chain((model as u64).to_le_bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    SplitMix64(seed ^ hash)
}
