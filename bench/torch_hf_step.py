#!/usr/bin/env python3
"""The PyTorch reference for `cargo xtask bench step --model DIR --vs-torch`: the same DPO
step as ropo's benchmark (policy forward + backward on chosen and rejected in one batch of
2B sequences, cached reference log-probs, global-norm clipping, AdamW update) on a Hugging
Face model folder, run through `transformers` in eager PyTorch (optionally with `peft` LoRA
and gradient checkpointing).

    python3 bench/torch_hf_step.py --model DIR --batch 4 --seq 256 --iters 5
    python3 bench/torch_hf_step.py --model DIR --device cuda --dtype bf16 --lora-rank 16
    python3 bench/torch_hf_step.py --model DIR --autocast bf16
    python3 bench/torch_hf_step.py --model DIR --score   # `bench score --model DIR --vs-torch`

DIR holds a `config.json` and, optionally, weights (`*.safetensors`). Without weights the
model is built from the config with random weights (seeded), which times the same work.
`bench/make_random_model.py` writes such folders.

Prints one JSON line on stdout and nothing else: {"model", "backend", "batch", "seq",
"tokens_per_s", "step_ms_p50", "step_ms_p90", "peak_rss_mib", "peak_gpu_mib", "mfu",
"params", "trainable_params", ...}. Anything the libraries print goes to stderr.
Needs torch and transformers, and peft for `--lora-rank` > 0. `--check-args` prints the
parsed options as JSON and exits before importing torch: xtask's test of the options it passes
uses it.
"""

import argparse
import contextlib
import glob
import json
import os
import sys
import time


def parse_args(argv=None):
    """The parser and the options, as `cargo xtask bench step --model DIR --vs-torch` passes
    them (bench.rs)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--iters", type=int, default=5, help="timed steps after 2 warm-up steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    parser.add_argument("--lora-rank", type=int, default=0, help="0: full fine-tuning")
    parser.add_argument("--lora-alpha", type=float, default=None, help="default 2 * rank")
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--lora-targets", default=None,
                        help="comma list of HF module names (default: every linear layer)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--autocast", default="none", choices=["none", "bf16"],
                        help="bf16: the forward under torch.autocast(device, dtype=torch.bfloat16)")
    parser.add_argument("--score", action="store_true",
                        help="time the reference pass's scoring instead of a step: the same "
                             "sequences' log-prob sums under torch.no_grad(), in eval mode")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the device's peak TFLOP/s for --dtype, for `mfu` "
                             "(default: H100/H200 bf16 dense)")
    parser.add_argument("--check-args", action="store_true",
                        help="print the parsed options as JSON and exit (needs no torch)")
    return parser, parser.parse_args(argv)


# Before torch is imported, so that the options can be checked where torch is not installed.
if __name__ == "__main__":
    PARSER, ARGS = parse_args()
    if ARGS.check_args:
        print(json.dumps(vars(ARGS)))
        sys.exit(0)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_pref_step import peak_rss_mib  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# Every linear layer of a family's decoder (HF module names), the default LoRA targets.
LORA_TARGETS = {
    "llama": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    "mistral": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    "qwen2": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    "gpt_neox": "query_key_value,dense,dense_h_to_4h,dense_4h_to_h",
    "gpt2": "c_attn,c_proj,c_fc",
}


def dtype_kwarg(dtype):
    """transformers >= 4.56 names the load dtype `dtype`; older releases `torch_dtype`."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_model(folder, device, dtype):
    """The causal LM in `folder`: its weights when it has some, else random (seed 0) weights
    of its `config.json`'s shape. Returns (model, config, has_weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    weights = glob.glob(os.path.join(folder, "*.safetensors")) + glob.glob(
        os.path.join(folder, "pytorch_model*.bin")
    )
    torch.manual_seed(0)
    if weights:
        model = AutoModelForCausalLM.from_pretrained(folder, **dtype_kwarg(dtype)).to(device)
    else:
        with torch.device(device):  # initialise in place: no CPU copy of a large model
            model = AutoModelForCausalLM.from_config(config, **dtype_kwarg(dtype))
    return model, config, bool(weights)


def synthetic_pairs(batch, seq, vocab, device):
    """The benchmark's pairs, as ropo's `bench step` and `torch_pref_step.py` build them: a
    prompt of min(32, seq/2) tokens, token (pos*7 + row*13) % 500 + 3 at position pos of the
    chosen sequence, the rejected one the same prompt followed by the next position's
    token. The modulus shrinks to vocab-3 for vocabularies under 503 tokens."""
    modulus = min(500, vocab - 3)
    prompt = min(32, seq // 2)
    rows = torch.arange(batch, device=device).unsqueeze(1)
    pos = torch.arange(seq, device=device).unsqueeze(0)
    chosen = (pos * 7 + rows * 13) % modulus + 3
    rejected = torch.where(pos < prompt, chosen, ((pos + 1) * 7 + rows * 13) % modulus + 3)
    ids = torch.cat([chosen, rejected])  # chosen and rejected in one forward
    mask = (pos[:, 1:] >= prompt).float().expand(2 * batch, -1)  # response tokens only
    return ids, mask


def check_args(parser, args):
    """Refuses a half dtype on the CPU, CUDA without a device, and no timed iteration."""
    if args.device == "cpu" and args.dtype != "f32":
        parser.error("--dtype on cpu must be f32")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    if args.iters < 1:
        parser.error("--iters must be at least 1")


def main(parser, args):
    check_args(parser, args)

    # Libraries print banners and notices on stdout; the caller parses stdout as one JSON
    # value, so all of that goes to stderr and only the result line to stdout.
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args, parser)
    print(json.dumps(result), flush=True)


def run(args, parser):
    device = torch.device(args.device)
    model, config, _ = load_model(args.model, device, DTYPES[args.dtype])
    model_type = config.model_type
    if model_type == "gpt2" and args.seq > config.n_positions:
        parser.error(f"--seq {args.seq} exceeds this gpt2 model's n_positions {config.n_positions}")
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and args.seq > limit:
        print(f"warning: --seq {args.seq} exceeds max_position_embeddings {limit}", file=sys.stderr)

    if args.gradient_checkpointing:
        # transformers 5 renamed gradient_checkpointing_enable (kept as a deprecated alias).
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if args.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = args.lora_targets or LORA_TARGETS.get(model_type)
        if targets is None:
            parser.error(f"no default LoRA targets for model_type '{model_type}': pass --lora-targets")
        lora = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.lora_alpha if args.lora_alpha is not None else 2 * args.lora_rank,
            lora_dropout=args.lora_dropout,
            target_modules=[t.strip() for t in targets.split(",") if t.strip()],
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.train()  # gradient checkpointing and LoRA dropout act only in training mode

    params = [p for p in model.parameters() if p.requires_grad]
    n_total = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in params)
    optim = torch.optim.AdamW(params, lr=1e-4, eps=1e-8, weight_decay=0.0)

    ids, mask = synthetic_pairs(args.batch, args.seq, config.vocab_size, device)
    # Cached reference log-probs: a constant, as ropo's benchmark passes them.
    ref = torch.full((args.batch,), -500.0, device=device)
    beta = 0.1

    from torch_pref_step import autocast

    def score():
        with torch.no_grad():
            with autocast(args):
                logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
            logits = logits.float()
            logps = torch.log_softmax(logits, -1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
            sums = (logps * mask).sum(1)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return sums[0]

    def step():
        with autocast(args):
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        logits = logits.float()
        logps = torch.log_softmax(logits, -1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
        sums = (logps * mask).sum(1)
        h = (sums[: args.batch] - ref) - (sums[args.batch :] - ref)
        loss = -F.logsigmoid(beta * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()  # the step is done when the GPU is, as ropo's read-back
        return loss.detach()

    if args.score:
        model.eval()
        step = score
    for _ in range(2):
        step()
    if args.device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    times.sort()
    pct = lambda q: times[round((len(times) - 1) * q)] * 1e3
    tokens_per_s = 2 * args.batch * args.seq / (sum(times) / len(times))

    cuda = args.device == "cuda"
    # Model FLOPs per token (a step's): forward 2N, backward 2N for activation gradients plus 2N per
    # trained weight for weight gradients (6N for full fine-tuning). Attention scores are
    # left out, as in the usual 6N approximation.
    flops_per_token = 6 * n_total if args.lora_rank == 0 else 4 * n_total + 2 * n_trainable
    if args.score:
        flops_per_token = 2 * n_total  # a forward only
    return {
        "model": os.path.basename(os.path.normpath(args.model)) + " (PyTorch)",
        "backend": "torch cuda" if cuda else "torch cpu",
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_s": tokens_per_s,
        "step_ms_p50": pct(0.5),
        "step_ms_p90": pct(0.9),
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "mfu": flops_per_token * tokens_per_s / (args.peak_tflops * 1e12) if cuda else None,
        "params": n_total,
        "trainable_params": n_trainable,
        "dtype": args.dtype,
        "lora_rank": args.lora_rank,
        "gradient_checkpointing": args.gradient_checkpointing,
        "autocast": args.autocast,
        "score": args.score,
        "loss": loss.item(),
        "detail": backend_detail(args.device),
    }


def backend_detail(device):
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if device == "cuda":
        return f"{versions}, cuda {torch.cuda.get_device_name()}"
    return f"{versions}, cpu, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    main(PARSER, ARGS)
