//! Teacher-generated training data (`synthesize`): the teacher answers a file of prompts
//! through its chat template, many at once (`generate::generate_batch`), and the answers
//! go to a `{"messages": [...]}` JSONL file as they come (`answers.rs`), which a re-run
//! resumes. The result is what `conversations(..)` reads: sequence-level KD data.

mod answers;
mod prompts;

pub use answers::Answers;
pub use prompts::{read_prompts, read_references};

use crate::engine::chat::Message;
use crate::engine::generate::{generate_batch, Answer, Request, Sampling, Stop};
use crate::engine::llama::Llama;
use crate::engine::train::report::Progress;
use std::time::Instant;
use tokenizers::Tokenizer;

/// How answers are decoded.
pub struct Decoding {
    pub max_new: usize,
    pub sampling: Sampling,
    /// Sequences decoded together.
    pub batch: usize,
    /// A progress bar on a terminal (log lines every tenth otherwise).
    pub progress: bool,
}

/// What a run did, for its closing line.
#[derive(Debug, Default)]
pub struct SynthReport {
    pub prompts: usize,
    /// Answers the file already had (a resumed run).
    pub resumed: usize,
    pub written: usize,
    /// Answers cut at max_new (or the context) rather than ended by the teacher.
    pub truncated: usize,
    /// Answers with no text (the teacher ended its turn at once, or wrote only special tokens).
    pub empty: usize,
    /// Prompts skipped because they alone fill the teacher's context.
    pub too_long: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub interrupted: bool,
}

/// 64-bit FNV-1a: a stable seed per prompt, whatever its place in the file.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The seed of answer `sample` to `prompt`: the same in a resumed run as in one that
/// was never stopped.
pub fn answer_seed(seed: u64, prompt: &[Message], sample: usize) -> u64 {
    seed ^ fnv(&answers::key(prompt)) ^ (sample as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `164 tok/s` since `start`.
fn rate(tokens: usize, start: Instant) -> String {
    format!("{:.0} tok/s", tokens as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// The ids of `prompt` rendered by `render` (the assistant's turn opened), or `None`
/// when it leaves no room in the model's context for an answer.
pub fn encode_prompt(tokenizer: &Tokenizer, render: &dyn Fn(&[Message]) -> Result<String, String>, prompt: &[Message], context: usize) -> Result<Option<Vec<u32>>, String> {
    let text = render(prompt)?;
    // The template wrote the special tokens; the tokenizer must not add more.
    let ids = tokenizer.encode(text.as_str(), false).map_err(|e| format!("cannot tokenize a prompt: {e}"))?.get_ids().to_vec();
    Ok((!ids.is_empty() && ids.len() + 1 < context).then_some(ids))
}

/// What `decode_batches` did.
#[derive(Debug, Default)]
pub struct Decoded {
    pub tokens: usize,
    pub seconds: f64,
    pub interrupted: bool,
}

/// Decodes `requests` `d.batch` at a time with a progress bar (tokens/s, ETA); after
/// each batch `on_batch(first, answers)` gets its answers, `first` being the index of
/// the batch's first request. Ctrl-C stops after the batch in flight (its unfinished
/// answers come back `Interrupted`).
pub fn decode_batches(
    model: &Llama,
    requests: &[Request],
    d: &Decoding,
    eos: &[u32],
    log: &mut dyn FnMut(&str),
    mut on_batch: impl FnMut(usize, &[Answer]) -> Result<(), String>,
) -> Result<Decoded, String> {
    let start = Instant::now();
    let progress = Progress::counting(requests.len() as u64, 0, d.progress, "answer");
    let mut done = Decoded::default();
    crate::interrupt::clear();
    for (b, chunk) in requests.chunks(d.batch.max(1)).enumerate() {
        let before = done.tokens;
        let mut produced_here = 0usize;
        let out = generate_batch(model, chunk, d.max_new, &d.sampling, eos, |produced| {
            produced_here += produced;
            progress.message(&rate(before + produced_here, start));
            !crate::interrupt::requested()
        })?;
        done.tokens += out.iter().map(|a| a.tokens.len()).sum::<usize>();
        done.interrupted |= out.iter().any(|a| a.stop == Stop::Interrupted);
        on_batch(b * d.batch.max(1), &out)?;
        let finished = (b * d.batch.max(1) + chunk.len()) as u64;
        if let Some(line) = progress.update(finished, &rate(done.tokens, start)) {
            progress.println(&line, log);
        }
        if done.interrupted {
            break;
        }
    }
    progress.finish();
    done.seconds = start.elapsed().as_secs_f64();
    Ok(done)
}

/// The text of an answer's tokens, trimmed.
pub fn answer_text(tokenizer: &Tokenizer, answer: &Answer) -> Result<String, String> {
    tokenizer.decode(&answer.tokens, true).map(|t| t.trim().to_string()).map_err(|e| format!("cannot decode an answer: {e}"))
}

/// Answers `prompts` with `model`, `n` answers each, into `answers` (skipping what it
/// already holds). `render` turns a conversation into the template's text with the
/// assistant's turn opened; `hidden`, when given, goes first in what the teacher sees
/// but not into the file (context distillation: the data carries the behaviour a system
/// prompt asked for, without the prompt). `log` prints a line.
#[allow(clippy::too_many_arguments)]
pub fn synthesize(
    model: &Llama,
    tokenizer: &Tokenizer,
    render: &dyn Fn(&[Message]) -> Result<String, String>,
    eos: &[u32],
    prompts: &[Vec<Message>],
    hidden: Option<&Message>,
    n: usize,
    answers: &mut Answers,
    d: &Decoding,
    log: &mut dyn FnMut(&str),
) -> Result<SynthReport, String> {
    let mut report = SynthReport { prompts: prompts.len(), ..Default::default() };
    let context = model.max_seq() as usize;
    let (mut jobs, mut requests) = (Vec::new(), Vec::new());
    for prompt in prompts {
        let have = answers.count(prompt);
        report.resumed += have.min(n);
        if have >= n {
            continue;
        }
        let own_system = prompt.first().is_some_and(|m| m.role == "system");
        let seen: Vec<Message> = hidden.filter(|_| !own_system).into_iter().chain(prompt).cloned().collect();
        let Some(ids) = encode_prompt(tokenizer, render, &seen, context)? else {
            report.too_long += 1;
            continue;
        };
        for sample in have..n {
            requests.push(Request { prompt: ids.clone(), seed: answer_seed(d.sampling.seed, prompt, sample) });
            jobs.push(prompt);
        }
    }
    if report.resumed > 0 {
        log(&format!("synthesize: resuming, {} of {} answers already written", report.resumed, prompts.len() * n));
    }
    let decoded = decode_batches(model, &requests, d, eos, log, |first, out| {
        let mut written = Vec::with_capacity(out.len());
        for (prompt, answer) in jobs[first..].iter().zip(out) {
            match answer.stop {
                Stop::Interrupted => continue,
                Stop::Length | Stop::Context => report.truncated += 1,
                Stop::Eos => {}
            }
            let text = answer_text(tokenizer, answer)?;
            report.empty += text.is_empty() as usize;
            written.push(((*prompt).clone(), text));
        }
        answers.append(&written)?;
        report.written += written.len();
        Ok(())
    })?;
    report.tokens = decoded.tokens;
    report.seconds = decoded.seconds;
    report.interrupted = decoded.interrupted;
    Ok(report)
}

impl SynthReport {
    /// `synthesize: 40 answers (12 cut at max_new) · 5,120 tokens in 31.2 s, 164 tok/s`
    pub fn describe(&self) -> String {
        let mut s = format!("synthesize: {} new answer{}", self.written, if self.written == 1 { "" } else { "s" });
        let notes: Vec<String> = [(self.truncated, "cut at max_new"), (self.empty, "empty")].iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        if !notes.is_empty() {
            s.push_str(&format!(" ({})", notes.join(", ")));
        }
        if self.written > 0 {
            s.push_str(&format!(" · {} tokens in {:.1} s, {:.0} tok/s", crate::spec::fmt_count(self.tokens as u64), self.seconds, self.tokens as f64 / self.seconds.max(1e-9)));
        }
        if self.too_long > 0 {
            s.push_str(&format!(" · {} prompt{} skipped: longer than the teacher's context", self.too_long, if self.too_long == 1 { "" } else { "s" }));
        }
        if self.interrupted {
            s.push_str(" · interrupted: run it again to resume");
        }
        s
    }
}
