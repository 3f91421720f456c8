#!/usr/bin/env python3
"""Checks a Hugging Face Llama folder (such as the one bench/smollm2_from_gguf.py writes) with a
plain numpy forward pass, no torch: renders the folder's chat template for one user message
(with the generation prompt), encodes it with `tokenizers`, greedily decodes 32 tokens with a KV
cache, and scores a fixed response. Prints the text, the token ids and the log-probabilities,
and saves them to FOLDER/check.json as a reference for ropo.

    python3 bench/numpy_llama_check.py /work/smollm2-hf
    python3 bench/numpy_llama_check.py /work/smollm2-hf --message "Hi" --response " Hello"

A good conversion answers sensibly (for the default question, naming Paris); a wrong Q/K
permutation gives garbage. Needs numpy, safetensors, tokenizers and jinja2. All in float32.
"""

import argparse
import json
import os

import jinja2
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


class Llama:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.c = c = json.load(f)
        self.w = load_file(os.path.join(folder, "model.safetensors"))
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        exps = np.arange(0, self.hd, 2, dtype=np.float64) / self.hd
        self.inv_freq = 1.0 / c["rope_theta"] ** exps

    def norm(self, x, weight):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.c["rms_norm_eps"]) * weight

    def rope(self, x, pos):  # x: (heads, T, hd); HF's rotate-half layout
        ang = pos[:, None] * self.inv_freq[None, :]
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2 :]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def forward(self, ids, cache):
        """Logits (T, vocab) for `ids`, which follow the len(cache[0][0]) positions in `cache`."""
        c, w = self.c, self.w
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], self.hd
        past = cache[0][0].shape[1] if cache else 0
        T = len(ids)
        pos = np.arange(past, past + T, dtype=np.float64)
        mask = np.triu(np.full((T, past + T), -np.inf, np.float32), past + 1)
        x = w["model.embed_tokens.weight"][ids]
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd).transpose(1, 0, 2)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd).transpose(1, 0, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if len(cache) <= i:
                cache.append((k, v))
            else:
                cache[i] = tuple(np.concatenate([old, new], 1) for old, new in zip(cache[i], (k, v)))
            k, v = (np.repeat(t, nh // nkv, axis=0) for t in cache[i])
            s = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(hd)) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            x = x + a.transpose(1, 0, 2).reshape(T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
        return self.norm(x, w["model.norm.weight"]) @ self.head.T


def log_softmax(logits):
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--message", default="What is the capital of France?")
    ap.add_argument("--response", default=" Paris", help="text to score after the prompt")
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens to decode")
    args = ap.parse_args()

    tok = Tokenizer.from_file(os.path.join(args.folder, "tokenizer.json"))
    with open(os.path.join(args.folder, "tokenizer_config.json")) as f:
        tc = json.load(f)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(tc["chat_template"]).render(
        messages=[{"role": "user", "content": args.message}], add_generation_prompt=True,
        bos_token=tc.get("bos_token"), eos_token=tc.get("eos_token"))
    prompt_ids = tok.encode(prompt, add_special_tokens=False).ids
    model = Llama(args.folder)

    cache, greedy, logprobs = [], [], []
    logits = first = model.forward(prompt_ids, cache)[-1]
    top5 = np.argsort(-first)[:5]
    for _ in range(args.tokens):
        nxt = int(np.argmax(logits))
        greedy.append(nxt)
        logprobs.append(float(log_softmax(logits)[nxt]))
        logits = model.forward([nxt], cache)[-1]

    resp_ids = tok.encode(args.response, add_special_tokens=False).ids
    lp = log_softmax(model.forward(prompt_ids + resp_ids, [])[len(prompt_ids) - 1 : -1])
    resp_lp = [float(lp[i, t]) for i, t in enumerate(resp_ids)]

    out = {
        "message": args.message, "prompt": prompt, "prompt_ids": prompt_ids,
        "last_prompt_top5": {"ids": top5.tolist(), "logits": first[top5].tolist()},
        "greedy_ids": greedy, "greedy_text": tok.decode(greedy, skip_special_tokens=False),
        "greedy_logprobs": logprobs, "greedy_logprob_sum": sum(logprobs),
        "response": args.response, "response_ids": resp_ids,
        "response_logprobs": resp_lp, "response_logprob_sum": sum(resp_lp),
    }
    print(f"prompt ({len(prompt_ids)} tokens): {prompt!r}\nprompt ids: {prompt_ids}")
    print(f"greedy, first 20: {tok.decode(greedy[:20], skip_special_tokens=False)!r}")
    for key in ("greedy_ids", "greedy_text", "greedy_logprob_sum", "last_prompt_top5",
                "response_ids", "response_logprobs", "response_logprob_sum"):
        print(f"{key}: {out[key]}")
    with open(os.path.join(args.folder, "check.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
