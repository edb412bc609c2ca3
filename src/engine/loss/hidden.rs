//! Hidden-state terms (`mse`, `cosine`): the layer map resolved against the two models'
//! depths, one learned projection per layer pair when the widths differ (created under the
//! caller's `nn::Path`, so the optimizer and checkpoints see it), and the per-position values.

use crate::engine::llama::init;
use crate::spec::{LayerMap, LlamaSpec, TermKind};
use tch::{nn, Kind, Tensor};

/// Projections start from a fixed stream (keyed by their full variable name), so a run is
/// reproducible without touching libtorch's global generator.
const PROJECTION_SEED: u64 = 0x6b64_6c5f_7072_6f6a;
/// `F.cosine_similarity`'s default guard against zero-length vectors.
const COSINE_EPS: f64 = 1e-8;

pub(super) struct HiddenTerm {
    kind: TermKind,
    /// (student layer, teacher layer, projection `[teacher dim, student dim]` if widths differ)
    pairs: Vec<(usize, usize, Option<Tensor>)>,
}

/// The (student, teacher) layer pairs of a map, checked against both depths.
pub(super) fn resolve_layers(map: &LayerMap, student_layers: usize, teacher_layers: usize) -> Result<Vec<(usize, usize)>, String> {
    let pairs: Vec<(usize, usize)> = match map {
        LayerMap::Pairs(p) => p.clone(),
        LayerMap::Every(n) => (0..student_layers).map(|i| (i, (i + 1) * n - 1)).collect(),
    };
    if pairs.is_empty() {
        return Err("the layer map pairs no layers".into());
    }
    for &(s, t) in &pairs {
        if s >= student_layers {
            return Err(format!(
                "layers={} pairs student layer {s}, but the student has {student_layers} layers (0 to {})",
                map.describe(),
                student_layers.saturating_sub(1)
            ));
        }
        if t >= teacher_layers {
            return Err(format!(
                "layers={} pairs teacher layer {t}, but the teacher has {teacher_layers} layers (0 to {})",
                map.describe(),
                teacher_layers.saturating_sub(1)
            ));
        }
    }
    Ok(pairs)
}

impl HiddenTerm {
    /// `vs`: this term's own sub-path; projections are `s{s}_t{t}.weight` under it.
    pub fn new(kind: TermKind, map: &LayerMap, student: &LlamaSpec, teacher: &LlamaSpec, vs: &nn::Path) -> Result<HiddenTerm, String> {
        let layers = resolve_layers(map, student.layers, teacher.layers)?;
        let (ds, dt) = (student.dim as i64, teacher.dim as i64);
        let mut pairs = Vec::with_capacity(layers.len());
        for (s, t) in layers {
            let projection = if ds == dt { None } else { Some(projection(&(vs / format!("s{s}_t{t}")), ds, dt)?) };
            pairs.push((s, t, projection));
        }
        Ok(HiddenTerm { kind, pairs })
    }

    /// Per-row value `[N]`: the mean over layer pairs of the squared error (mean over the
    /// teacher's width) or the cosine distance 1 − cos. `rows`: indices of the valid
    /// positions in the flattened `[B·T]` order.
    pub fn per_token(&self, student: &[Tensor], teacher: &[Tensor], rows: &Tensor) -> Tensor {
        let mut sum: Option<Tensor> = None;
        for (s, t, projection) in &self.pairs {
            let x = valid_rows(&student[*s], rows);
            let x = match projection {
                Some(w) => x.linear::<Tensor>(&w.to_kind(Kind::Float), None),
                None => x,
            };
            let y = tch::no_grad(|| valid_rows(&teacher[*t], rows));
            let value = match self.kind {
                TermKind::Mse => (x - y).square().mean_dim(-1, false, Kind::Float),
                TermKind::Cosine => 1.0 - Tensor::cosine_similarity(&x, &y, -1, COSINE_EPS),
                other => unreachable!("{} is not a hidden-state term", other.name()),
            };
            sum = Some(match sum {
                Some(acc) => acc + value,
                None => value,
            });
        }
        sum.expect("a hidden-state term has at least one layer pair") / self.pairs.len() as f64
    }

    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.pairs.iter().map(|(s, t, _)| (*s, *t))
    }
}

/// A trainable `[dt, ds]` matrix, N(0, 1/ds) so a projected state keeps its scale.
fn projection(vs: &nn::Path, ds: i64, dt: i64) -> Result<Tensor, String> {
    let name = vs.path("weight");
    let data = init::normal(PROJECTION_SEED, &name, (ds * dt) as usize, 1.0 / (ds as f64).sqrt());
    let init = Tensor::from_slice(&data).view([dt, ds]);
    vs.f_var_copy("weight", &init).map_err(|e| format!("cannot create the projection {name}: {e}"))
}

/// `[B, T, D]` -> the valid rows `[N, D]`, in f32.
fn valid_rows(states: &Tensor, rows: &Tensor) -> Tensor {
    let d = *states.size().last().expect("hidden states are [B, T, D]");
    states.reshape([-1, d]).index_select(0, rows).to_kind(Kind::Float)
}
