//! What a run tells its user: `metrics.jsonl` (one JSON object per step, and one per
//! evaluation), an indicatif progress bar with the loss terms, tokens/s and ETA on a
//! terminal (plain log lines otherwise), and the summary table at the end.

use super::evaluate::EvalResult;
use crate::spec::fmt_count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Appends to `RUN/metrics.jsonl`; on resume, drops lines past the checkpoint's step so
/// the file reads as one uninterrupted run.
pub struct Metrics {
    path: Option<PathBuf>,
}

impl Metrics {
    pub fn open(run: Option<&Path>, resume_step: Option<u64>) -> Result<Metrics, String> {
        let Some(run) = run else { return Ok(Metrics { path: None }) };
        let path = run.join("metrics.jsonl");
        match resume_step {
            Some(step) if path.is_file() => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let kept: String = text
                    .lines()
                    .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
                    .map(|l| format!("{l}\n"))
                    .collect();
                crate::atomic::write_file(&path, kept.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            _ => {
                std::fs::write(&path, "").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
        Ok(Metrics { path: Some(path) })
    }

    pub fn write(&self, row: &serde_json::Value) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut f = std::fs::OpenOptions::new().append(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "{row}").map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The progress bar on a terminal; log lines every tenth of the run elsewhere.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    /// What is counted, for the log lines: "step", or "answer".
    unit: &'static str,
}

impl Progress {
    pub fn new(total: u64, start: u64, show: bool) -> Progress {
        Progress::counting(total, start, show, "step")
    }

    /// A bar over `total` of `unit` (log lines read "answer 40/400  ...").
    pub fn counting(total: u64, start: u64, show: bool, unit: &'static str) -> Progress {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(start);
            bar
        });
        Progress { bar, total, unit }
    }

    /// Shows step `step` (1-based) with its message; returns a line to log when there is
    /// no bar and this step is a tenth of the run.
    pub fn update(&self, step: u64, message: &str) -> Option<String> {
        match &self.bar {
            Some(bar) => {
                bar.set_message(message.to_string());
                bar.set_position(step);
                None
            }
            None => {
                let every = (self.total / 10).max(1);
                (step % every == 0 || step == self.total).then(|| format!("{} {step}/{}  {message}", self.unit, self.total))
            }
        }
    }

    /// Changes the bar's message between steps (nothing without a bar).
    pub fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn println(&self, line: &str, log: &mut dyn FnMut(&str)) {
        match &self.bar {
            Some(bar) => bar.suspend(|| log(line)),
            None => log(line),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `val loss 3.210 · ppl 24.8 · top-1 agreement 41.2% · kl 0.87`
pub fn describe_eval(e: &EvalResult) -> String {
    let mut s = format!("val loss {:.4} · ppl {:.2}", e.loss, e.ppl);
    if let Some(a) = e.agreement {
        s.push_str(&format!(" · top-1 agreement {:.1}%", a * 100.0));
    }
    if let Some(k) = e.kl {
        s.push_str(&format!(" · kl {:.4}", k));
    }
    s
}

/// The table at the end of a run: params, validation loss and perplexity of each model,
/// the compression and how much of the teacher's perplexity the student retains.
pub fn summary_table(teacher: Option<(u64, Option<EvalResult>)>, student: (u64, Option<EvalResult>)) -> String {
    let cell = |e: &Option<EvalResult>, f: fn(&EvalResult) -> String| e.as_ref().map(f).unwrap_or_else(|| "-".into());
    let mut rows = vec![["".to_string(), "params".into(), "val loss".into(), "val ppl".into(), "retention".into()]];
    let teacher_ppl = teacher.as_ref().and_then(|(_, e)| e.map(|e| e.ppl));
    if let Some((p, e)) = &teacher {
        rows.push(["teacher".into(), fmt_count(*p), cell(e, |e| format!("{:.4}", e.loss)), cell(e, |e| format!("{:.2}", e.ppl)), "100%".into()]);
    }
    let (sp, se) = &student;
    let retention = match (teacher_ppl, se) {
        (Some(tp), Some(e)) => format!("{:.1}%", 100.0 * tp / e.ppl),
        _ => "-".into(),
    };
    rows.push(["student".into(), fmt_count(*sp), cell(se, |e| format!("{:.4}", e.loss)), cell(se, |e| format!("{:.2}", e.ppl)), retention]);
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(c, s)| if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) }).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if let Some((tp, _)) = teacher {
        if *sp > 0 {
            out.push_str(&format!("compression {:.1}× (retention = teacher ppl / student ppl)\n", tp as f64 / *sp as f64));
        }
    }
    out.trim_end().to_string()
}

/// Bytes under `dir`, counted through sub-folders (a run folder and its checkpoints).
pub fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// "412.3 MB": a size as people read it (decimal units, as `du -h --si`).
pub fn fmt_bytes(n: u64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1000.0 && u + 1 < units.len() {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} bytes") } else { format!("{x:.1} {}", units[u]) }
}
