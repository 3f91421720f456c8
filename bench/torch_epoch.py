#!/usr/bin/env python3
"""The PyTorch reference for `cargo xtask bench epoch --vs-torch`: one epoch of DPO over
tokenized pairs the way a TRL-style trainer runs it — shuffled batches, chosen and rejected
concatenated into one right-padded batch, the reference model's log-probs recomputed every
step under `no_grad`, the prompt computed twice (once per response), AdamW, global-norm
clipping — on the stories260K model config (`bench/torch_pref_step.py`'s `Model`).

    python3 bench/torch_epoch.py --pairs PAIRS.json --batch 8

PAIRS.json: `[[prompt ids], [chosen ids], [rejected ids]]` per pair, as ropo writes it.
Prints one JSON line: {"pairs", "tokens", "seconds", "pairs_per_s", "tokens_per_s", ...}.
"""

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F

from torch_pref_step import CONFIGS, Model, peak_rss_mib


def sums(model, ids, mask):
    logps = torch.log_softmax(model(ids)[:, :-1], -1).gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)
    return (logps * mask).sum(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args()
    pairs = json.load(open(args.pairs))
    torch.manual_seed(0)
    longest = max(len(p) + max(len(c), len(r)) for p, c, r in pairs)
    model = Model(*CONFIGS["stories260K"], longest)
    reference = copy.deepcopy(model).eval()
    optim = torch.optim.AdamW(model.parameters(), lr=5e-4, eps=1e-8, weight_decay=0.0)
    order = torch.randperm(len(pairs)).tolist()
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in pairs)
    start = time.perf_counter()
    for first in range(0, len(order), args.batch):
        batch = [pairs[i] for i in order[first : first + args.batch]]
        rows = [p + c for p, c, _ in batch] + [p + r for p, _, r in batch]
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
        mask = torch.tensor(
            [[float(len(p) <= t + 1 < len(row)) for t in range(width - 1)]
             for (p, _, _), row in zip(batch + batch, rows)]
        )
        with torch.no_grad():
            ref = sums(reference, ids, mask)
        policy = sums(model, ids, mask)
        n = len(batch)
        h = (policy[:n] - ref[:n]) - (policy[n:] - ref[n:])
        loss = -F.logsigmoid(args.beta * h).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "backend": f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads",
        "pairs": len(pairs), "tokens": tokens, "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds, "tokens_per_s": tokens / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }))


if __name__ == "__main__":
    main()
