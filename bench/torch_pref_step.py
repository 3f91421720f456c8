#!/usr/bin/env python3
"""The PyTorch reference for `cargo xtask bench step --vs-torch`: the same Llama-style model
config and the same DPO step as ropo's benchmark (policy forward + backward on chosen and
rejected in one batch, cached reference log-probs, AdamW update), in plain eager PyTorch.

    python3 bench/torch_pref_step.py --model llama-4x256 --batch 8 --seq 256 --iters 10
    python3 bench/torch_pref_step.py --model stories260K --lora-rank 16
    python3 bench/torch_pref_step.py --model stories260K --autocast bf16

Prints one JSON line: {"model", "backend": "torch", "tokens_per_s", "step_ms_p50", ...}.
Only PyTorch (CPU build is enough) is needed. `--check-args` prints the parsed options as
JSON and exits before importing torch: xtask's test of the options it passes uses it.
"""

import argparse
import contextlib
import json
import sys
import time

CONFIGS = {
    # dim, hidden, layers, heads, kv_heads, vocab
    "stories260K": (64, 172, 5, 8, 4, 512),
    "llama-4x256": (256, 1024, 4, 8, 8, 512),
}


def parse_args(argv=None):
    """The options, as `cargo xtask bench step --vs-torch` passes them (bench.rs)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="llama-4x256", choices=CONFIGS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--lora-rank", type=int, default=0,
                        help="LoRA rank on every projection, alpha twice the rank, the rest "
                             "frozen, as ropo's bench (0: full fine-tuning)")
    parser.add_argument("--autocast", default="none", choices=["none", "bf16"],
                        help="bf16: the forward under torch.autocast(device, dtype=torch.bfloat16)")
    parser.add_argument("--check-args", action="store_true",
                        help="print the parsed options as JSON and exit (needs no torch)")
    return parser.parse_args(argv)


# Before torch is imported, so that the options can be checked where torch is not installed.
if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.check_args:
        print(json.dumps(vars(ARGS)))
        sys.exit(0)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Block(torch.nn.Module):
    def __init__(self, dim, hidden, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.q = torch.nn.Linear(dim, heads * self.hd, bias=False)
        self.k = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.v = torch.nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.o = torch.nn.Linear(heads * self.hd, dim, bias=False)
        self.gate = torch.nn.Linear(dim, hidden, bias=False)
        self.up = torch.nn.Linear(dim, hidden, bias=False)
        self.down = torch.nn.Linear(hidden, dim, bias=False)
        self.n1 = torch.nn.RMSNorm(dim, eps=1e-5)
        self.n2 = torch.nn.RMSNorm(dim, eps=1e-5)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, s, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, -1))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LoraLinear(torch.nn.Module):
    """`base(x) + (alpha / rank) * b(a(x))` with `base` frozen and `b` starting at zero, as
    ropo's (and PEFT's) adapters with no dropout."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.a = torch.nn.Linear(base.in_features, rank, bias=False)
        self.b = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.zeros_(self.b.weight)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.scale * self.b(self.a(x))


def add_lora(model, rank):
    """Freezes every weight of `model` and adapts every projection of its blocks (ropo's
    `LoraTarget::ALL`) with rank `rank` and alpha twice the rank."""
    model.requires_grad_(False)
    for block in model.blocks:
        for name in ("q", "k", "v", "o", "gate", "up", "down"):
            setattr(block, name, LoraLinear(getattr(block, name), rank, 2.0 * rank))


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Model(torch.nn.Module):
    def __init__(self, dim, hidden, layers, heads, kv_heads, vocab, seq):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList(Block(dim, hidden, heads, kv_heads) for _ in range(layers))
        self.norm = torch.nn.RMSNorm(dim, eps=1e-5)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        hd = dim // heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(seq).float(), inv)
        ang = torch.cat([ang, ang], -1)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, ids):
        x = self.embed(ids)
        s = ids.shape[1]
        for block in self.blocks:
            x = block(x, self.cos[:s], self.sin[:s])
        return self.head(self.norm(x))


def peak_rss_mib():
    """This process's peak resident memory (Linux `VmHWM`). Not `ru_maxrss`, which after
    fork + exec also counts the parent's pages that the child was forked with."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(args):
    torch.manual_seed(0)
    torch.set_default_device(args.device)
    dim, hidden, layers, heads, kv, vocab = CONFIGS[args.model]
    model = Model(dim, hidden, layers, heads, kv, vocab, args.seq)
    if args.lora_rank > 0:
        add_lora(model, args.lora_rank)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4, eps=1e-8, weight_decay=0.0)
    prompt = min(32, args.seq // 2)
    rows = torch.arange(args.batch).unsqueeze(1)
    pos = torch.arange(args.seq).unsqueeze(0)
    chosen = (pos * 7 + rows * 13) % 500 + 3
    rejected = torch.where(pos < prompt, chosen, ((pos + 1) * 7 + rows * 13) % 500 + 3)
    ids = torch.cat([chosen, rejected])  # chosen and rejected in one forward
    mask = (pos[:, 1:] >= prompt).float().expand(2 * args.batch, -1)
    ref = torch.full((args.batch,), -500.0)

    def step():
        with autocast(args):
            logits = model(ids)[:, :-1]
        logps = torch.log_softmax(logits.float(), -1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
        sums = (logps * mask).sum(1)
        h = (sums[: args.batch] - ref) - (sums[args.batch :] - ref)
        loss = -F.logsigmoid(0.1 * h).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        if args.device == "cuda":
            torch.cuda.synchronize()  # the step is done when the GPU is, as ropo's read-back

    for _ in range(2):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    pct = lambda q: times[round((len(times) - 1) * q)] * 1e3
    tokens = 2 * args.batch * args.seq
    print(json.dumps({
        "model": args.model, "backend": backend_name(args.device),
        "batch": args.batch, "seq": args.seq,
        "tokens_per_s": tokens / (sum(times) / len(times)),
        "step_ms_p50": pct(0.5), "step_ms_p90": pct(0.9),
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
        "autocast": args.autocast,
    }))


def autocast(args):
    """The forward's context: `torch.autocast(device, dtype=torch.bfloat16)` for `--autocast
    bf16` (matrix products in bf16, softmax and reductions in f32), else none."""
    if args.autocast == "bf16":
        return torch.autocast(args.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def backend_name(device):
    if device == "cuda":
        return f"torch {torch.__version__} cuda, {torch.cuda.get_device_name()}"
    return f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    main(ARGS)
