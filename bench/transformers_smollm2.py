"""The peer for kdl's engine benchmark: SmolLM2-135M-Instruct (GGUF) in transformers on CPU.

Measures, on the same torch that kdl links, with the same token ids kdl's bench uses:
  load_s                 AutoModelForCausalLM.from_pretrained(gguf_file=...) in float32
                         (reads and de-quantizes the GGUF), one measurement
  forward_tokens_per_s   one no-grad forward of 1 x 256 tokens (FORWARD_IDS), tokens / median s
  forward32_ms           one no-grad forward of 1 x 32 tokens, median ms
  generate_tokens_per_s  greedy generate with the KV cache, 16-token prompt (PROMPT_IDS),
                         64 new tokens (no stop at <|im_end|>), new tokens / median s
Each timed figure is the median of --runs runs after one warm-up run.

Usage: python bench/transformers_smollm2.py GGUF_PATH [--threads N] [--runs N]
Prints one line `transformers load_s=... forward_tokens_per_s=... ...` and one JSON line.
"""

import argparse
import importlib.metadata
import json
import os
import statistics
import time

# The GGUF is a local file: never ask the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

VOCAB = 49152
FORWARD_TOKENS = 256
FORWARD_SEED = 0  # FORWARD_IDS = torch.randint(0, VOCAB, (1, 256), generator=seed 0)
# "The capital of France is Paris. The capital of Germany is Berlin, and the"
PROMPT_IDS = [504, 3575, 282, 4649, 314, 7042, 30, 378, 3575, 282, 4521, 314, 11452, 28, 284, 260]
NEW_TOKENS = 64


def median_seconds(fn, runs):
    fn()  # warm-up: first-call allocations and kernel selection are not the steady state
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    folder, name = os.path.split(os.path.abspath(args.gguf))
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start

    forward_ids = torch.randint(0, VOCAB, (1, FORWARD_TOKENS), generator=torch.Generator().manual_seed(FORWARD_SEED))
    prompt = torch.tensor([PROMPT_IDS])

    def generate():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=0,
            eos_token_id=None,
            pad_token_id=2,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        assert out.shape[1] == len(PROMPT_IDS) + NEW_TOKENS, out.shape

    with torch.no_grad():
        forward_s = median_seconds(lambda: model(forward_ids, use_cache=False), args.runs)
        forward32_s = median_seconds(lambda: model(forward_ids[:, :32], use_cache=False), args.runs)
        generate_s = median_seconds(generate, max(1, args.runs // 2))

    result = {
        "engine": "transformers",
        "threads": args.threads,
        "load_s": round(load_s, 3),
        "forward_tokens_per_s": round(FORWARD_TOKENS / forward_s, 1),
        "forward32_ms": round(forward32_s * 1000, 1),
        "generate_tokens_per_s": round(NEW_TOKENS / generate_s, 2),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
    }
    figures = ["load_s", "forward_tokens_per_s", "forward32_ms", "generate_tokens_per_s", "threads"]
    print("transformers " + " ".join(f"{k}={result[k]}" for k in figures))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
