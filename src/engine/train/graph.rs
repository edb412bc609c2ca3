//! `train(graph=...)`: on CUDA, the whole step — teacher forward, student forward and
//! backward, the loss with its scheduled values read on the device, clipping and the
//! fused AdamW update — is captured once after a few warm-up steps and replayed from
//! then on, one launch per step instead of thousands. A captured step never syncs with
//! the host, so the loop reads the loss from a device accumulator every few steps.
//!
//! What cannot be captured runs eager, and the run says why in one line: a CPU, a build
//! without the shim, a teacher cache (read and filled on the host between steps), a
//! batch whose shape differs from the captured one. Evaluation and checkpoints run
//! between replays, eager, on the same weights.

use super::step::{Micro, StepSums, Stepper};
use super::Run;
use crate::engine::cuda_graph::{self, Graph};
use crate::engine::optim::Optimizer;
use crate::spec::GraphMode;
use tch::Tensor;

/// Eager steps before capture: they create the gradients, the optimizer state and
/// every lazily-built kernel handle, so the captured step allocates nothing new.
pub(super) const WARMUP_STEPS: u64 = 3;

/// How often a graphed run reads its loss back (the only host sync it has).
pub(super) const READ_EVERY: u64 = 10;

/// Why this run's steps cannot be captured, or `None` when they can.
pub(super) fn why_eager(run: &Run) -> Option<String> {
    let device = run.student.device();
    if !device.is_cuda() {
        return Some("the student is on the CPU, and CUDA graphs need a CUDA device (kdl run --device cuda)".into());
    }
    if !cuda_graph::built_in() {
        return Some(cuda_graph::NOT_BUILT.into());
    }
    if run.teacher_cache.is_some() {
        return Some("the teacher cache is read and filled on the host between steps".into());
    }
    if run.plan.checkpoint_layers && run.student.draws_random() {
        return Some("checkpoint_layers reseeds the adapter's dropout from the host for each recomputed block".into());
    }
    if run.teacher.is_some_and(|t| t.device() != device) {
        return Some("the teacher is on another device than the student".into());
    }
    None
}

/// Whether to capture, and the line that says so (or why not), for the plan's mode.
pub(super) fn decide(mode: GraphMode, run: &Run) -> (bool, Option<String>) {
    match mode.decide(why_eager(run)) {
        (true, _) => (true, Some(format!("graph: the whole step is captured after {WARMUP_STEPS} warm-up steps and replayed; the loss is read every {READ_EVERY} steps"))),
        eager => eager,
    }
}

/// A captured step with its static inputs and outputs.
pub(super) struct Captured {
    graph: Graph,
    micro: Vec<Micro>,
    sums: StepSums,
}

impl Captured {
    /// Captures one whole step over static copies of `micro`. Nothing runs during
    /// capture: call `replay` for this step too.
    pub fn capture(stepper: &Stepper, micro: &[Micro], optimizer: &mut Optimizer) -> Result<Captured, String> {
        let statics: Vec<Micro> = micro
            .iter()
            .map(|m| Micro { input: m.input.copy(), target: m.target.copy(), mask: m.mask.copy(), blocks: m.blocks.clone() })
            .collect();
        let mut graph = Graph::new()?;
        let sums = graph.capture(|| stepper.step(&statics, optimizer))??;
        Ok(Captured { graph, micro: statics, sums })
    }

    /// Whether `micro` can be fed to this graph.
    pub fn fits(&self, micro: &[Micro]) -> bool {
        self.micro.len() == micro.len() && self.micro.iter().zip(micro).all(|(a, b)| a.same_shape(b))
    }

    /// One step on `micro` (which must `fit`): refill the static inputs, replay. The
    /// sums are the graph's static outputs, overwritten by the next replay.
    pub fn replay(&mut self, micro: &[Micro]) -> Result<&StepSums, String> {
        for (s, m) in self.micro.iter_mut().zip(micro) {
            s.refill(m);
        }
        self.graph.replay()?;
        Ok(&self.sums)
    }
}

/// Steps' sums kept on the device until the loop reads them.
pub(super) struct Pending {
    loss: Option<Tensor>,
    terms: Vec<Tensor>,
    pub steps: u64,
}

impl Pending {
    pub fn new() -> Pending {
        Pending { loss: None, terms: Vec::new(), steps: 0 }
    }

    /// Adds one step's sums (copies: a graph's outputs change at its next replay).
    pub fn add(&mut self, sums: &StepSums) {
        self.loss = Some(match self.loss.take() {
            Some(acc) => acc + &sums.loss,
            None => sums.loss.copy(),
        });
        self.terms = if self.terms.is_empty() { sums.terms.iter().map(|t| t.copy()).collect() } else { self.terms.iter().zip(&sums.terms).map(|(a, b)| a + b).collect() };
        self.steps += 1;
    }

    /// The mean loss and terms per step since the last read (waits for the device), and
    /// how many steps that was; empties the accumulator.
    pub fn read(&mut self) -> (f64, Vec<f64>, u64) {
        let n = self.steps.max(1) as f64;
        let loss = self.loss.take().map(|l| l.double_value(&[]) / n).unwrap_or(f64::NAN);
        let terms = self.terms.drain(..).map(|t| t.double_value(&[]) / n).collect();
        let steps = std::mem::take(&mut self.steps);
        (loss, terms, steps)
    }
}
