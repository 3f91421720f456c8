#!/usr/bin/env python3
"""Writes a Hugging Face model folder of a known shape for the benchmarks: `config.json`
only (the benchmarks then build seeded random weights), or with `--weights` also random
(seed 0) weights as `model.safetensors`.

    python3 bench/make_random_model.py --shape pythia-160m --out /tmp/pythia-160m
    python3 bench/make_random_model.py --shape tiny-neox --out /tmp/tiny-neox --weights

Shapes: pythia-160m (GPT-NeoX, EleutherAI/pythia-160m's config), llama-1b (Llama-3.2-1B's
config, 4096 positions, no rope scaling), tiny-neox (a 2-layer GPT-NeoX for tests).
Needs transformers (and torch for `--weights`).
"""

import argparse
import inspect
import os

SHAPES = ("pythia-160m", "llama-1b", "tiny-neox")


def make_config(shape):
    from transformers import GPTNeoXConfig, LlamaConfig

    if shape == "pythia-160m":
        config = GPTNeoXConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, vocab_size=50304, max_position_embeddings=2048,
            rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False,
            bos_token_id=0, eos_token_id=0,
        )
        config.architectures = ["GPTNeoXForCausalLM"]
    elif shape == "llama-1b":
        config = LlamaConfig(
            hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, intermediate_size=8192, vocab_size=128256,
            max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=True,
            rms_norm_eps=1e-5, head_dim=64, bos_token_id=128000, eos_token_id=128001,
        )
        config.architectures = ["LlamaForCausalLM"]
    elif shape == "tiny-neox":
        config = GPTNeoXConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=256, vocab_size=1000, max_position_embeddings=2048,
            rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False,
            bos_token_id=0, eos_token_id=0,
        )
        config.architectures = ["GPTNeoXForCausalLM"]
    else:
        raise ValueError(f"unknown shape {shape}")
    return config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", required=True, choices=SHAPES)
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--weights", action="store_true",
                        help="also write random (seed 0) weights as model.safetensors")
    args = parser.parse_args()
    config = make_config(args.shape)
    os.makedirs(args.out, exist_ok=True)
    config.save_pretrained(args.out)
    if args.weights:
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        # transformers 5 always writes safetensors and dropped the flag.
        kwargs = {}
        if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
            kwargs["safe_serialization"] = True
        model.save_pretrained(args.out, **kwargs)
    print(f"wrote {args.shape} to {args.out}" + (" with weights" if args.weights else ""))


if __name__ == "__main__":
    main()
