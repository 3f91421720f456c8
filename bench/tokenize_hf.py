"""Python side of `cargo xtask bench tokenize`: Hugging Face `tokenizers` batch encoding.

Usage: tokenize_hf.py TOKENIZER_JSON TEXTS_JSON ITERS

TEXTS_JSON is a JSON list of the exact strings ropo encodes (prompt, chosen, rejected for
each pair). Encodes them all with `encode_batch` (no special tokens, no padding or
truncation) once to warm up, then ITERS timed times, and prints
`{"version": ..., "pass_seconds": [...]}` on stdout. Needs `pip install tokenizers`.
"""

import json
import sys
import time

import tokenizers


def main() -> None:
    tokenizer_path, texts_path, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokenizer = tokenizers.Tokenizer.from_file(tokenizer_path)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    tokenizer.encode_batch(texts, add_special_tokens=False)
    seconds = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        tokenizer.encode_batch(texts, add_special_tokens=False)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"version": tokenizers.__version__, "pass_seconds": seconds}))


if __name__ == "__main__":
    main()
