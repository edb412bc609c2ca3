//! kdl's engine benchmark on the real teacher (SmolLM2-135M from the GGUF, f32, CPU):
//! GGUF load time, forward tokens/s on 1 × 256 ids, a 32-token forward, and greedy
//! generation tokens/s with the KV cache. The workload mirrors
//! bench/transformers_smollm2.py exactly (same ids, lengths, threads); bench/engine.sh
//! runs both and prints the ratios. Run: `cargo bench --bench engine -- [--threads N]
//! [--dtype bf16] [--weights int8]`; `--weights int8` decodes through the int8 copy of the
//! weights that `generate(weights="int8")` uses (the forwards, 256 and 32 rows, keep f32).

use kdl::engine::generate::{generate, Decoder, Sampling};
use kdl::engine::load::{alias, load_model};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const FORWARD_TOKENS: i64 = 256;
const PROMPT_IDS: [u32; 16] = [504, 3575, 282, 4649, 314, 7042, 30, 378, 3575, 282, 4521, 314, 11452, 28, 284, 260];
const NEW_TOKENS: usize = 64;
const RUNS: usize = 5;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Median seconds of `runs` calls after one warm-up call.
fn timed(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    median(samples)
}

fn fail(e: String) -> ! {
    eprintln!("{e}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        if let Some(n) = args.get(i + 1).and_then(|n| n.parse().ok()) {
            tch::set_num_threads(n);
        }
    }
    let dtype = match args.iter().position(|a| a == "--dtype").and_then(|i| args.get(i + 1)) {
        Some(d) => kdl::engine::device::parse_dtype(d, Device::Cpu).unwrap_or_else(|e| fail(e)),
        None => Kind::Float,
    };
    let path = match alias("smollm2") {
        Some(found) => found.unwrap_or_else(|e| fail(e)),
        None => fail("smollm2 is not an alias".into()),
    };
    let start = Instant::now();
    let model = load_model(&path, Device::Cpu, dtype).unwrap_or_else(|e| fail(e)).model;
    let load_s = start.elapsed().as_secs_f64();
    let int8 = args.iter().position(|a| a == "--weights").and_then(|i| args.get(i + 1)).is_some_and(|w| w == "int8");
    let start = Instant::now();
    let decoding = if int8 { model.int8_copy().unwrap_or_else(|e| fail(e)) } else { model.on_device(Device::Cpu).unwrap_or_else(|e| fail(e)) };
    let pack_s = start.elapsed().as_secs_f64();
    tch::manual_seed(0);
    let ids = Tensor::randint(49152, [1, FORWARD_TOKENS], (Kind::Int64, Device::Cpu));
    let forward_s = timed(RUNS, || {
        let _ = tch::no_grad(|| model.forward(&ids, None));
    });
    let short = ids.narrow(1, 0, 32);
    let forward32_s = timed(RUNS, || {
        let _ = tch::no_grad(|| model.forward(&short, None));
    });
    let generate_s = timed(RUNS, || {
        let (out, _) = generate(&mut Decoder::growing(&decoding), &PROMPT_IDS, NEW_TOKENS, &Sampling::greedy(), &[], |_| true).unwrap_or_else(|e| fail(e));
        assert_eq!(out.len(), NEW_TOKENS);
    });
    // With int8 weights, kdl's own f32 decode in the same run: the gain from the copy.
    let own_tps = if int8 {
        let s = timed(RUNS, || {
            let _ = generate(&mut Decoder::growing(&model), &PROMPT_IDS, NEW_TOKENS, &Sampling::greedy(), &[], |_| true).unwrap_or_else(|e| fail(e));
        });
        NEW_TOKENS as f64 / s
    } else {
        0.0
    };
    let threads = tch::get_num_threads();
    let forward_tps = FORWARD_TOKENS as f64 / forward_s;
    let generate_tps = NEW_TOKENS as f64 / generate_s;
    let forward32_ms = forward32_s * 1000.0;
    let dtype = kdl::engine::device::dtype_name(dtype);
    let weights = if int8 { "int8" } else { dtype };
    println!("kdl dtype={dtype} weights={weights} load_s={load_s:.2} pack_s={pack_s:.2} forward_tokens_per_s={forward_tps:.1} forward32_ms={forward32_ms:.1} generate_tokens_per_s={generate_tps:.2} threads={threads}");
    println!(
        "{{\"engine\": \"kdl\", \"dtype\": \"{dtype}\", \"weights\": \"{weights}\", \"threads\": {threads}, \"load_s\": {load_s:.3}, \"forward_tokens_per_s\": {forward_tps:.1}, \"forward32_ms\": {forward32_ms:.1}, \"generate_tokens_per_s\": {generate_tps:.2}, \"own_weights_generate_tokens_per_s\": {own_tps:.2}, \"pack_s\": {pack_s:.3}}}"
    );
}
