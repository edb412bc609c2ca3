//! A training run, fully resolved from slots and `train(...)` arguments: what the engine
//! needs and what `train(dry=true)` prints.

use super::model::group_digits;
use super::{fmt_count, fmt_num, DataSpec, GraphMode, LlamaSpec, LossExpr, OptimSpec, Schedule};

#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub teacher: Option<LlamaSpec>,
    pub student: LlamaSpec,
    pub data: DataSpec,
    pub loss: LossExpr,
    pub optim: OptimSpec,
    /// The learning rate per step: the `schedule` slot if set, else the optimizer's lr.
    pub lr: Schedule,
    pub length: RunLength,
    pub batch: usize,
    pub seq: usize,
    pub accumulate: usize,
    pub clip: f64,
    pub seed: u64,
    pub eval_every: Option<u64>,
    pub save_every: Option<u64>,
    /// How many of the newest checkpoints a run keeps (0: all).
    pub keep_checkpoints: usize,
    pub out: Option<String>,
    pub resume: Option<String>,
    /// The student is a LoRA adapter: what it is and how many parameters train.
    pub adapter: Option<(String, u64)>,
    /// The student's precision ("f32", "bf16", "f16"): what its weights, gradients and
    /// optimizer moments are kept in.
    pub precision: String,
    /// `precision="bf16"` (or `"auto"` where bf16 measures faster): the student's forward
    /// runs under bf16 autocast over its f32 weights (mixed precision).
    pub mixed: bool,
    /// `teacher_cache=topk(k)` or `sample(n)`: the teacher is read from (and fills) its offline cache.
    pub teacher_cache: Option<TeacherCacheSpec>,
    /// `graph=`: capture the whole step as a CUDA graph where it can be.
    pub graph: GraphMode,
    /// `checkpoint_layers=true`: keep only each block's output in the forward and
    /// recompute the block in the backward (activation memory of one block, not all).
    pub checkpoint_layers: bool,
}

/// What the offline teacher cache keeps per position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheMode {
    /// `topk(k)`: the k most likely ids with their log-probabilities, the exact tail and
    /// the target's log-probability.
    TopK(usize),
    /// `sample(n)`: n draws from the teacher at T = 1, kept as distinct ids with counts
    /// (random-sampling KD), and the target's log-probability.
    Sample(usize),
}

impl CacheMode {
    pub fn describe(self) -> String {
        match self {
            CacheMode::TopK(k) => format!("topk({k})"),
            CacheMode::Sample(n) => format!("sample({n})"),
        }
    }

    /// What is stored, in words, for the plan.
    pub fn stores(self) -> String {
        match self {
            CacheMode::TopK(k) => format!("the teacher's top {k} log-probs + tail per position"),
            CacheMode::Sample(n) => format!("{n} draws per position from the teacher, kept as distinct ids with counts"),
        }
    }
}

/// `topk(64)`, `sample(50)`, either with `path="..."`: what the offline teacher cache keeps
/// per position and where it lives (default: the kdl cache folder, keyed by content).
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherCacheSpec {
    pub mode: CacheMode,
    pub path: Option<String>,
}

impl TeacherCacheSpec {
    pub fn describe(&self) -> String {
        let mode = self.mode.describe();
        match &self.path {
            Some(p) => format!("{}, path={p:?})", mode.trim_end_matches(')')),
            None => mode,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunLength {
    Steps(u64),
    Epochs(f64),
}

impl TrainPlan {
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch * self.seq * self.accumulate) as u64
    }

    pub fn describe(&self) -> String {
        let mut rows: Vec<(&str, String)> = Vec::new();
        let student_params = self.student.params().unwrap_or(0);
        if let Some(t) = &self.teacher {
            let tp = t.params().unwrap_or(0);
            rows.push(("teacher", format!("{}  {} params", t.one_line(), fmt_count(tp))));
            let ratio = if student_params > 0 { tp as f64 / student_params as f64 } else { 0.0 };
            rows.push(("student", format!("{}  {} params ({:.1}× smaller)", self.student.one_line(), fmt_count(student_params), ratio)));
        } else {
            rows.push(("teacher", "none (the loss uses only the data)".into()));
            rows.push(("student", format!("{}  {} params", self.student.one_line(), fmt_count(student_params))));
        }
        if self.precision != "f32" && self.adapter.is_some() {
            rows.push(("dtype", format!("the adapter trains in f32 on the frozen {} base", self.precision)));
        } else if self.mixed {
            rows.push(("dtype", "bf16 mixed: the student's matmuls in bf16 under autocast; f32 weights, gradients, softmax, loss and optimizer state".into()));
        } else if self.precision != "f32" {
            // Said out loud: with no f32 master weights, small updates round away.
            rows.push(("dtype", format!("{} throughout: weights, gradients and optimizer moments (pure {}, not mixed precision)", self.precision, self.precision)));
        } else {
            rows.push(("dtype", "f32".into()));
        }
        if self.checkpoint_layers {
            rows.push(("memory", "checkpoint_layers: each block recomputed in the backward; activations of one block held, not all".into()));
        }
        if let Some((what, trainable)) = &self.adapter {
            rows.push(("adapter", format!("lora({what})  {} trainable params; the student's weights stay frozen", fmt_count(*trainable))));
        }
        rows.push(("data", self.data.describe()));
        let temps: Vec<String> = self.loss.temperatures().iter().map(|t| t.describe()).collect();
        let temps = if temps.is_empty() { String::new() } else { format!("  [log-softmax at T = {}]", temps.join(", ")) };
        rows.push(("loss", format!("{}{temps}", self.loss.describe())));
        if let Some(c) = &self.teacher_cache {
            rows.push(("cache", format!("teacher_cache={}: {}, read where stored, filled where not", c.describe(), c.mode.stores())));
        }
        rows.push(("optim", self.optim.describe()));
        let length = match self.length {
            RunLength::Steps(s) => format!("{s} step{}", if s == 1 { "" } else { "s" }),
            RunLength::Epochs(e) => format!("{} epochs", fmt_num(e)),
        };
        rows.push((
            "run",
            format!(
                "{length} × batch {} × seq {}{} = {} tokens/step, clip {}, seed {}",
                self.batch,
                self.seq,
                if self.accumulate > 1 { format!(" × accumulate {}", self.accumulate) } else { String::new() },
                group_digits(self.tokens_per_step()),
                fmt_num(self.clip),
                self.seed
            ),
        ));
        if let RunLength::Steps(total) = self.length {
            let mut marks = vec![0, total / 10, total / 2, total.saturating_sub(1)];
            marks.dedup();
            let lr: Vec<String> = marks.iter().map(|&s| format!("step {s}: {}", fmt_num(self.lr.at(s, total)))).collect();
            rows.push(("lr", lr.join(", ")));
        } else if self.lr != *self.optim.lr() {
            // Epoch runs learn their step count from the data; show the schedule itself.
            rows.push(("lr", self.lr.describe()));
        }
        if let Some(o) = &self.out {
            rows.push(("out", o.clone()));
        }
        let mut out = String::from("train plan\n");
        for (k, v) in rows {
            out.push_str(&format!("  {k:<8} {v}\n"));
        }
        out.pop();
        out
    }
}
