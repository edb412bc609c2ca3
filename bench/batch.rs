//! Batched generation against one prompt at a time, on the real teacher (SmolLM2-135M
//! from the GGUF, f32, CPU): the 16 chat prompts below through the model's chat
//! template, 64 new tokens each (no stop at the end of turn, so every run decodes the
//! same number), sampled as `synthesize` samples by default (T=0.7, top_p=0.9). The peer
//! is kdl's own single-prompt decode (`generate` with the growing KV cache, what
//! `generate`/`chat` run), so the ratio is the gain of batching alone. `synthesize`
//! targets >= 3x at batch=16. Run: `cargo bench --bench batch -- [--threads N] [--batch N]`.

use kdl::engine::chat::{render, Message};
use kdl::engine::generate::{generate, generate_batch, Decoder, Request, Sampling};
use kdl::engine::load::{alias, load_model};
use std::time::Instant;
use tch::{Device, Kind};

const PROMPTS: [&str; 16] = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about the sea.",
    "What is a neural network?",
    "Give me three tips for learning to cook.",
    "Who wrote Moby-Dick?",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What does a compiler do?",
    "Name a famous painting and its painter.",
    "How do vaccines work?",
    "What is the boiling point of water at sea level?",
    "Suggest a name for a pet turtle.",
    "What is the difference between weather and climate?",
    "Summarise the plot of Romeo and Juliet.",
    "How many legs does a spider have?",
];
const NEW_TOKENS: usize = 64;

fn fail(e: String) -> ! {
    eprintln!("{e}");
    std::process::exit(2)
}

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = arg(&args, "--threads") {
        tch::set_num_threads(n as i32);
    }
    let batch = arg(&args, "--batch").unwrap_or(16);
    let path = match alias("smollm2") {
        Some(found) => found.unwrap_or_else(|e| fail(e)),
        None => fail("smollm2 is not an alias".into()),
    };
    let loaded = load_model(&path, Device::Cpu, Kind::Float).unwrap_or_else(|e| fail(e));
    let (model, tok) = (&loaded.model, loaded.tokenizer.as_ref().unwrap_or_else(|| fail("the GGUF has no tokenizer".into())));
    let template = loaded.chat_template.clone().unwrap_or_else(|| fail("the GGUF has no chat template".into()));
    let requests: Vec<Request> = PROMPTS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let text = render(&template, &[Message { role: "user".into(), content: p.to_string() }], true, "", "").unwrap_or_else(|e| fail(e));
            Request { prompt: tok.encode(text.as_str(), false).unwrap_or_else(|e| fail(e.to_string())).get_ids().to_vec(), seed: i as u64 }
        })
        .collect();
    let sampling = Sampling { temperature: 0.7, top_k: None, top_p: Some(0.9), seed: 0 };
    // Warm-up: one short batch.
    let _ = generate_batch(model, &requests[..2], 4, &sampling, &[], |_| true);

    let start = Instant::now();
    let mut single_tokens = 0;
    for r in &requests {
        let s = Sampling { seed: r.seed, ..sampling.clone() };
        let (out, _) = generate(&mut Decoder::growing(model), &r.prompt, NEW_TOKENS, &s, &[], |_| true).unwrap_or_else(|e| fail(e));
        single_tokens += out.len();
    }
    let single_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut batched_tokens = 0;
    for chunk in requests.chunks(batch) {
        let out = generate_batch(model, chunk, NEW_TOKENS, &sampling, &[], |_| true).unwrap_or_else(|e| fail(e));
        batched_tokens += out.iter().map(|a| a.tokens.len()).sum::<usize>();
    }
    let batched_s = start.elapsed().as_secs_f64();
    let (single, batched) = (single_tokens as f64 / single_s, batched_tokens as f64 / batched_s);
    let threads = tch::get_num_threads();
    println!("one prompt at a time: {single_tokens} tokens in {single_s:.1} s, {single:.1} tok/s");
    println!("batch={batch}: {batched_tokens} tokens in {batched_s:.1} s, {batched:.1} tok/s");
    println!("ratio batched/single {:.2}x  (target >= 3.0, {threads} threads)", batched / single);
    println!("{{\"bench\": \"batch\", \"threads\": {threads}, \"batch\": {batch}, \"single_tokens_per_s\": {single:.2}, \"batched_tokens_per_s\": {batched:.2}, \"ratio\": {:.3}}}", batched / single);
}
