#!/usr/bin/env bash
# The GPU checks and benchmarks, run from prebuilt binaries on a machine with a card and no Rust
# toolchain. Every GPU result is compared with the CPU (flex) build's result on the same machine.
#
#   ROPO_CPU_BIN=path/to/xtask-cpu ROPO_GPU_BIN=path/to/xtask-cuda \
#   ROPO_GPU_TESTS=path/to/backend_agreement-cuda \
#   ROPO_ASSETS=../shared/assets ROPO_OUT=gpu-out bash bench/gpu.sh
#
# Build the binaries on any x86-64 machine: `cargo build --release -p xtask` (CPU),
# `cargo build --release -p xtask --features cuda` (GPU), and the GPU test set,
# `cargo test --release --features cuda --test backend_agreement --no-run` (it prints the test
# binary's path; the script runs it from the repository root, where its paths point, with the
# shared assets beside the repository as `../shared/assets`). The GPU machine needs the NVIDIA
# driver and CUDA's nvrtc (burn compiles its kernels at run time) and, for `bench step`, a
# Python with torch (`ROPO_PYTHON`, else `python3`). Each check prints PASS or FAIL; the script
# exits non-zero if any failed; a command that fails outright stops it. Without the GPU test
# set it ran in about 5 minutes on one H200 (2026-11-28); the test set is not yet timed there.
set -euo pipefail
cd "$(dirname "$0")/.."

cpu=${ROPO_CPU_BIN:?set ROPO_CPU_BIN to the CPU build of xtask}
gpu=${ROPO_GPU_BIN:?set ROPO_GPU_BIN to the GPU build of xtask}
tests=${ROPO_GPU_TESTS:?set ROPO_GPU_TESTS to the GPU build of the backend_agreement test}
assets=${ROPO_ASSETS:-../shared/assets}
out=${ROPO_OUT:-gpu-out}
model="$assets/models/stories260K.bin"
for bin in "$cpu" "$gpu" "$tests"; do
  [ -x "$bin" ] || { echo "error: $bin is not an executable build" >&2; exit 2; }
done
[ -f "$model" ] || { echo "error: $model not found (set ROPO_ASSETS to the assets folder)" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

check() {
  local name=$1
  shift
  if "$@"; then
    echo "PASS $name"
  else
    echo "FAIL $name"
    failures=$((failures + 1))
  fi
}

echo "== the GPU test set (tests/backend_agreement.rs), each result against flex's"
start=$(date +%s)
check "GPU test set" bash -c '"$1" --nocapture --test-threads 1 2>&1 | tee "$2"' _ "$tests" "$out/gpu-tests.txt"
echo "took $(($(date +%s) - start)) s"

echo "== greedy generation: stories260K, 64 tokens"
"$cpu" generate --model "$model" --prompt "Once upon a time" --temperature 0 >"$out/generate-cpu.txt"
"$gpu" generate --model "$model" --prompt "Once upon a time" --temperature 0 >"$out/generate-gpu.txt"
check "greedy text identical" test -s "$out/generate-cpu.txt" -a "$(cat "$out/generate-cpu.txt")" = "$(cat "$out/generate-gpu.txt")"

echo "== scoring: summed log-prob within 1e-4 relative"
score_args=(score --model "$model" --prompt "Once upon a time" --response " there was a little girl named Lily")
"$cpu" "${score_args[@]}" >"$out/score-cpu.json"
"$gpu" "${score_args[@]}" >"$out/score-gpu.json"
check "log-prob agrees" python3 - "$out/score-cpu.json" "$out/score-gpu.json" <<'EOF'
import json, sys
cpu, gpu = (json.load(open(p))["logp_sum"] for p in sys.argv[1:])
print(f"cpu {cpu:.7f} gpu {gpu:.7f} relative {abs(cpu - gpu) / abs(cpu):.2e}")
sys.exit(abs(cpu - gpu) > 1e-4 * abs(cpu))
EOF

echo "== preference steps from one SFT model (trained on the CPU, resumed on each backend)"
run=(train --losses sigmoid,ropo --noise 0.4 --seeds 1 --steps 20 --quiet)
"$cpu" "${run[@]}" --out "$work/cpu" >/dev/null
cp -r "$work/cpu" "$work/gpu"
rm -f "$work/gpu/checkpoints/finished.jsonl" "$work/gpu/metrics.jsonl" "$work/gpu/summary.json"
"$gpu" train --resume "$work/gpu" --quiet >/dev/null
cp "$work/cpu/metrics.jsonl" "$out/steps-cpu.jsonl"
cp "$work/gpu/metrics.jsonl" "$out/steps-gpu.jsonl"
check "step-1 gradient norm and loss within 1e-4 relative" python3 - "$out/steps-cpu.jsonl" "$out/steps-gpu.jsonl" <<'EOF'
import json, sys
cpu, gpu = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
worst = 0.0
for a, b in zip(cpu, gpu):
    for key in ("grad_norm", "loss"):
        rel = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12)
        if a["step"] in (1, 2, 20):
            print(f"{a['method']:8} step {a['step']:2} {key:9} cpu {a[key]:.7f} gpu {b[key]:.7f} rel {rel:.1e}")
        if a["step"] == 1:
            worst = max(worst, rel)
sys.exit(worst > 1e-4)
EOF

echo "== the same short run trained wholly on each backend (SFT included)"
"$gpu" "${run[@]}" --out "$work/gpu-fresh" >/dev/null
cp "$work/gpu-fresh/summary.json" "$out/short-run-gpu.json"
cp "$work/cpu/summary.json" "$out/short-run-cpu.json"
python3 - "$out/short-run-cpu.json" "$out/short-run-gpu.json" <<'EOF'
import json, sys
cpu, gpu = ({(r["loss"], r["metric"]): r["mean"] for r in json.load(open(p))["results"]} for p in sys.argv[1:])
for key in sorted(cpu):
    print(f"{key[0]:8} {key[1]:15} cpu {cpu[key]:.3f} gpu {gpu[key]:.3f}")
EOF

echo "== DPO step against PyTorch on the same card"
check "bench step 8x256" bash -c '"$1" bench step --stories "$2" --vs-torch | tee "$3"' _ "$gpu" "$model" "$out/bench-step.txt"
check "bench step 16x512" bash -c '"$1" bench step --stories "$2" --batch 16 --seq 512 --vs-torch | tee "$3"' _ "$gpu" "$model" "$out/bench-step-16x512.txt"

echo "== the default run on the GPU"
start=$(date +%s)
status=0
timeout 240 "$gpu" train --out "$work/gold" --quiet >"$out/default-run-gpu.txt" 2>&1 || status=$?
echo "exit $status after $(($(date +%s) - start)) s"
tail -n 16 "$out/default-run-gpu.txt"

echo "$failures check(s) failed"
exit "$failures"
