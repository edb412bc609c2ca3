//! Progressive distillation bookkeeping: each `train(...)` leaves a record; each `stage`
//! turns its last record into a row (params, val ppl, retention against the chain's first
//! teacher); `require retention >= 85%` gates the chain on those figures; the rows print
//! as one table when the script ends (or when a gate stops it).

use super::env::Scope;
use super::interp::Interp;
use super::value::{StageFigures, Value};
use crate::diag::{Diagnostic, Span};
use crate::kind::with_article;
use crate::spec::fmt_count;
use crate::syntax::SExpr;

/// What one training run measured.
#[derive(Debug, Clone, Copy)]
pub struct TrainRecord {
    pub params: u64,
    pub val_loss: f64,
    pub ppl: f64,
    /// The teacher's params and validation perplexity on the same blocks.
    pub teacher: Option<(u64, f64)>,
}

#[derive(Debug, Clone)]
pub struct StageRow {
    pub name: String,
    pub record: TrainRecord,
}

/// The chain's reference: the first teacher any training in the script compared with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chain {
    pub first_teacher: Option<(u64, f64)>,
}

impl Interp {
    /// Called by `train(...)` with what it measured.
    pub fn record_training(&mut self, record: TrainRecord) {
        if self.chain.first_teacher.is_none() {
            self.chain.first_teacher = record.teacher;
        }
        self.last_train = Some(record);
    }

    /// Retention of `ppl` against the chain's first teacher: teacher ppl / ppl.
    pub fn retention(&self, ppl: f64) -> Option<f64> {
        self.chain.first_teacher.map(|(_, t)| t / ppl)
    }

    /// The stage table, when the script ran stages with training in them.
    pub fn stage_table(&self) -> Option<String> {
        if self.stage_rows.is_empty() {
            return None;
        }
        let name_width = self.stage_rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(7);
        let mut out = format!("{:<name_width$}  {:>8}  {:>8}  {:>9}  {:>9}", "stage", "params", "val loss", "val ppl", "retention");
        if let Some((params, ppl)) = self.chain.first_teacher {
            out.push_str(&format!("\n{:<name_width$}  {:>8}  {:>8.4}  {:>9.2}  {:>9}", "teacher", fmt_count(params), ppl.ln(), ppl, "100%"));
        }
        for row in &self.stage_rows {
            let r = row.record;
            let retention = self.retention(r.ppl).map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "-".into());
            out.push_str(&format!("\n{:<name_width$}  {:>8}  {:>8.4}  {:>9.2}  {:>9}", row.name, fmt_count(r.params), r.val_loss, r.ppl, retention));
        }
        out.push_str("\nretention = first teacher's val ppl / stage's val ppl");
        Some(out)
    }

    /// Ends a stage: its last training becomes a row of the table, and the figures
    /// the stage value carries.
    pub(super) fn finish_stage_row(&mut self, name: &str) -> Option<StageFigures> {
        let record = self.last_train.take()?;
        self.stage_rows.push(StageRow { name: name.to_string(), record });
        Some(StageFigures { params: record.params, val_loss: record.val_loss, val_ppl: record.ppl, retention: self.retention(record.ppl) })
    }

    /// `require COND`: `retention`, `ppl`, `val_loss` and `params` name the last training's
    /// figures; a false condition stops the script with the figures and the table.
    pub(super) fn exec_require(&mut self, cond: &SExpr, span: Span) -> Result<(), Diagnostic> {
        let record = self.last_train.or_else(|| self.stage_rows.last().map(|r| r.record)).ok_or_else(|| {
            Diagnostic::error("`require` checks a training's results, but nothing has been trained yet")
                .label(span, "no train(...) before this")
                .help("put `require` after train(...) in a stage")
        })?;
        let inner = Scope::child(&self.scope);
        let retention = self.retention(record.ppl);
        {
            let mut s = inner.borrow_mut();
            s.define("ppl", Value::Num(record.ppl));
            s.define("val_loss", Value::Num(record.val_loss));
            s.define("params", Value::Num(record.params as f64));
            if let Some(r) = retention {
                s.define("retention", Value::Num(r));
            }
        }
        let outer = std::mem::replace(&mut self.scope, inner);
        let result = self.eval(cond);
        self.scope = outer;
        let ok = match result? {
            Value::Bool(b) => b,
            other => {
                return Err(Diagnostic::error(format!("`require` needs a condition, got {}", with_article(other.kind())))
                    .label(cond.span, "not true or false")
                    .help("e.g. require retention >= 85%"))
            }
        };
        if ok {
            return Ok(());
        }
        let figures = match retention {
            Some(r) => format!("retention {:.1}%, val ppl {:.2}", 100.0 * r, record.ppl),
            None => format!("val ppl {:.2}", record.ppl),
        };
        Err(Diagnostic::error(format!("the chain stopped: this gate failed with {figures}"))
            .label(cond.span, "this condition is false")
            .note("later stages did not run; the checkpoints written so far are kept")
            .help("train this stage longer, or relax the gate"))
    }
}
