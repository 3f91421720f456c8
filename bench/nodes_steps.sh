#!/bin/bash
# Steps/s of 1, 2 and 4 ranks in 1 process and over 2 processes (`--nodes 2` on loopback),
# the table in docs/distributed.md ("Across machines"): a random 3M-parameter Llama (hidden
# 256, 4 layers, 8 heads over 4 kv heads, the tiny fixture's 96-token vocabulary) trained on
# tests/fixtures/tiny_pairs.jsonl with batches of 8; steps/s = 36 / (wall time of 44 steps −
# wall time of 8 steps), so loading and the reference pass (both runs are over an epoch, so
# both score every pair first) cancel out. Run with nothing else
# busy, after `cargo build --release -p xtask`:  bench/nodes_steps.sh [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
xtask=$root/target/release/xtask
fixtures=$root/tests/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$fixtures/tiny_llama" "$work/model" <<'PY'
import array, json, os, random, shutil, struct, sys
source, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(source, name), out)
random.seed(0)
H, L, NH, KV, I, V, HD = 256, 4, 8, 4, 688, 96, 32
config = json.load(open(os.path.join(source, "config.json")))
config.update(hidden_size=H, num_hidden_layers=L, num_attention_heads=NH,
              num_key_value_heads=KV, intermediate_size=I, head_dim=HD,
              max_position_embeddings=256)
json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
shapes = {"lm_head.weight": [V, H], "model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({
        p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
        p + "mlp.down_proj.weight": [H, I], p + "mlp.gate_proj.weight": [I, H],
        p + "mlp.up_proj.weight": [I, H], p + "self_attn.q_proj.weight": [NH * HD, H],
        p + "self_attn.k_proj.weight": [KV * HD, H], p + "self_attn.v_proj.weight": [KV * HD, H],
        p + "self_attn.o_proj.weight": [H, NH * HD]})
header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(shapes):
    count = 1
    for d in shapes[name]:
        count *= d
    norm = name.endswith("norm.weight")
    values = array.array("f", [1.0] * count if norm else [random.gauss(0, 0.02) for _ in range(count)])
    blob = values.tobytes()
    header[name] = {"dtype": "F32", "shape": shapes[name], "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
text = json.dumps(header).encode()
text += b" " * ((8 - len(text) % 8) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
train() { # STEPS OUT [FLAGS…]
  local steps=$1 out=$2 log
  log=$(mktemp -p "$work")
  shift 2
  "$xtask" train --quiet --model "$work/model" --data "$fixtures/tiny_pairs.jsonl" \
    --template plain --max-length 64 --batch 8 --lr 1e-4 --steps "$steps" --out "$out" "$@" \
    >/dev/null 2>"$log" || { cat "$log" >&2; return 1; }
}
seconds() { # STEPS PROCESSES RANKS_PER_PROCESS: wall seconds of one run
  local steps=$1 processes=$2 ranks=$3 out=$work/run start
  rm -rf "$out"
  # Ports below Linux's range for outgoing connections (32768–60999).
  local port=$((20000 + RANDOM % 10000)) coordinator=""
  if [ "$processes" = 2 ]; then
    "$xtask" coordinator --port "$port" >/dev/null 2>&1 &
    coordinator=$!
    sleep 0.5
  fi
  start=$(date +%s.%N)
  if [ "$processes" = 1 ]; then
    train "$steps" "$out" --data-parallel "$ranks"
  else
    local nodes=(--data-parallel "$ranks" --nodes 2 --coordinator "127.0.0.1:$port")
    train "$steps" "$out" "${nodes[@]}" --node-rank 1 --node-address "127.0.0.1:$((port + 1))" &
    local other=$!
    train "$steps" "$out" "${nodes[@]}" --node-rank 0 --node-address "127.0.0.1:$((port + 2))"
    wait "$other"
  fi
  echo "$(date +%s.%N) - $start" | bc
  if [ -n "$coordinator" ]; then kill "$coordinator"; wait "$coordinator" 2>/dev/null || true; fi
}
for repeat in $(seq 1 "${1:-2}"); do
  for setting in "1 1" "1 2" "1 4" "2 1" "2 2"; do
    set -- $setting
    short=$(seconds 8 "$1" "$2")
    long=$(seconds 44 "$1" "$2")
    echo "$1 process(es) × $2 rank(s), run $repeat: $(echo "scale=2; 36 / ($long - $short)" | bc) steps/s"
  done
done
