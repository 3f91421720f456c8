#!/usr/bin/env python3
"""The PyTorch reference for sampling throughput: `transformers`' `model.generate` with a KV
cache, plain sampling from the full distribution (temperature 1, no top-k, no top-p), on a
Hugging Face model folder (weights if it has them, else random seeded weights of its
`config.json`, as `bench/torch_hf_step.py` loads it).

    python3 bench/torch_hf_generate.py --model DIR --batch 4 --prompt-len 32 --new-tokens 128

Prompts are the step benchmark's synthetic tokens. End-of-sequence is switched off so every
row generates exactly `--new-tokens` tokens. One warm-up call, then `--iters` timed calls.
Prints one JSON line on stdout and nothing else: {"model", "backend", "batch", "new_tokens",
"tokens_per_s", "peak_rss_mib", ...}. Needs torch and transformers.
"""

import argparse
import contextlib
import json
import os
import sys
import time

import torch

from torch_hf_step import DTYPES, check_args, load_model, peak_rss_mib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--iters", type=int, default=1, help="timed calls after 1 warm-up")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="f32", choices=DTYPES)
    args = parser.parse_args()
    check_args(parser, args)
    with contextlib.redirect_stdout(sys.stderr):  # only the result line goes to stdout
        result = run(args)
    print(json.dumps(result), flush=True)


def run(args):
    device = torch.device(args.device)
    model, config, _ = load_model(args.model, device, DTYPES[args.dtype])
    model.eval()
    model.config.use_cache = True
    # No early stop: every row samples exactly --new-tokens tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    modulus = min(500, config.vocab_size - 3)
    rows = torch.arange(args.batch, device=device).unsqueeze(1)
    pos = torch.arange(args.prompt_len, device=device).unsqueeze(0)
    input_ids = (pos * 7 + rows * 13) % modulus + 3
    attention_mask = torch.ones_like(input_ids)

    def generate():
        out = model.generate(
            input_ids,
            attention_mask=attention_mask,
            max_new_tokens=args.new_tokens,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            use_cache=True,
        )
        if args.device == "cuda":
            torch.cuda.synchronize()
        return out.shape[1] - args.prompt_len

    torch.manual_seed(0)
    generate()  # warm-up
    times, new_tokens = [], None
    for _ in range(args.iters):
        start = time.perf_counter()
        new_tokens = generate()
        times.append(time.perf_counter() - start)
    seconds = sum(times) / len(times)
    cuda = args.device == "cuda"
    return {
        "model": os.path.basename(os.path.normpath(args.model)) + " (PyTorch)",
        "backend": "torch cuda" if cuda else "torch cpu",
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": new_tokens,
        "tokens_per_s": args.batch * new_tokens / seconds,
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "dtype": args.dtype,
    }


if __name__ == "__main__":
    main()
