//! One optimizer step's device work: each micro-batch's teacher and student forwards,
//! the loss and its backward, then clipping and the update. The eager loop and the
//! CUDA-graph capture (`graph.rs`) run this same code, so what a graph replays is what
//! an eager step computes. Nothing here reads a value back to the host.

use super::Run;
use crate::engine::cache::SparseTeacher;
use crate::engine::loss::{LossInputs, LossPlan, StepValues};
use crate::engine::optim::Optimizer;
use tch::{Kind, Tensor};

/// One micro-batch on the models' device: `[B, T]` ids, next-token targets and mask,
/// and the training blocks it came from (the teacher cache's keys).
pub(super) struct Micro {
    pub input: Tensor,
    pub target: Tensor,
    pub mask: Tensor,
    pub blocks: Vec<u32>,
}

impl Micro {
    pub fn load(run: &Run, indices: &[usize]) -> Micro {
        let device = run.student.device();
        let (input, target, mask) = run.data.train.batch(indices);
        Micro { input: input.to_device(device), target: target.to_device(device), mask: mask.to_device(device), blocks: indices.iter().map(|&i| i as u32).collect() }
    }

    /// Refills this micro-batch's tensors in place (a captured graph's static inputs).
    pub fn refill(&mut self, from: &Micro) {
        let _ = self.input.copy_(&from.input);
        let _ = self.target.copy_(&from.target);
        let _ = self.mask.copy_(&from.mask);
        self.blocks.clone_from(&from.blocks);
    }

    pub fn same_shape(&self, other: &Micro) -> bool {
        self.input.size() == other.input.size()
    }
}

/// The step's loss and its terms, summed over its micro-batches: detached device scalars.
pub(super) struct StepSums {
    pub loss: Tensor,
    pub terms: Vec<Tensor>,
}

/// What a step needs besides its data.
pub(super) struct Stepper<'a> {
    pub run: &'a Run<'a>,
    pub losses: &'a LossPlan,
    /// The scheduled loss values, refilled by the caller before each step.
    pub values: StepValues,
    /// Every position computed and weighed by its mask (see `LossPlan::compute_with`).
    pub fixed_shapes: bool,
}

impl Stepper<'_> {
    /// Forward and backward over `micro`, gradients accumulated on the parameters.
    pub fn forward_backward(&self, micro: &[Micro]) -> Result<StepSums, String> {
        let (run, losses) = (self.run, self.losses);
        let mut loss = None::<Tensor>;
        let mut terms: Vec<Tensor> = Vec::new();
        for m in micro {
            let mut teacher_sparse: Option<SparseTeacher> = None;
            let (teacher_logits, teacher_states) = match (run.teacher.filter(|_| losses.needs_teacher()), run.teacher_cache) {
                (Some(t), _) if losses.needs_hidden() => {
                    let (l, s) = tch::no_grad(|| t.forward_with_states(&m.input));
                    (Some(l), Some(s))
                }
                (Some(t), Some(cache)) => {
                    teacher_sparse = Some(crate::engine::cache::read_or_fill(cache, t, &m.blocks, &m.input, &m.target)?);
                    (None, None)
                }
                (Some(t), None) => (Some(tch::no_grad(|| t.forward(&m.input, None))), None),
                (None, _) => (None, None),
            };
            // Adapter dropout is on for this forward only, never for evaluation.
            run.student.set_training(true);
            let mixed = run.plan.mixed && !losses.needs_hidden();
            let loss_of = |student_logits: &Tensor, student_states: Option<&[Tensor]>| {
                let inputs = LossInputs {
                    student_logits,
                    teacher_logits: teacher_logits.as_ref(),
                    teacher_sparse: teacher_sparse.as_ref(),
                    student_states,
                    teacher_states: teacher_states.as_deref(),
                    targets: &m.target,
                    mask: &m.mask,
                    // Read from `values` (the step's denominator), not from here.
                    denominator: 1.0,
                };
                losses.compute_with(&inputs, &self.values, self.fixed_shapes)
            };
            let out = if run.plan.checkpoint_layers {
                run.student.backward_checkpointed(&m.input, losses.needs_hidden(), mixed, |logits, states| {
                    let out = loss_of(logits, states);
                    (out.total.shallow_clone(), out)
                })
            } else {
                let (student_logits, student_states) = if losses.needs_hidden() {
                    let (l, s) = run.student.forward_with_states(&m.input);
                    (l, Some(s))
                } else if mixed {
                    (crate::engine::autocast::mixed(m.input.device(), || run.student.forward(&m.input, None))?, None)
                } else {
                    (run.student.forward(&m.input, None), None)
                };
                let out = loss_of(&student_logits, student_states.as_deref());
                out.total.backward();
                Ok(out)
            };
            run.student.set_training(false);
            let out = out?;
            let total = out.total.detach();
            loss = Some(match loss {
                Some(acc) => acc + total,
                None => total,
            });
            terms = if terms.is_empty() { out.terms } else { terms.iter().zip(&out.terms).map(|(a, b)| a + b).collect() };
        }
        let loss = loss.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, run.student.device())));
        Ok(StepSums { loss, terms })
    }

    /// The whole step: forward and backward, clipping, the update at the rate set on
    /// `optimizer`, and zeroed gradients for the next step.
    pub fn step(&self, micro: &[Micro], optimizer: &mut Optimizer) -> Result<StepSums, String> {
        let sums = self.forward_backward(micro)?;
        let _norm = optimizer.clip_grad_norm(self.run.plan.clip);
        optimizer.apply()?;
        optimizer.zero_grad();
        Ok(sums)
    }
}
