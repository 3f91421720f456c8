#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with starting inputs: the kept regressions and seeds
# (fuzz/regressions/), the malformed files of tests/bad_inputs/, and small real files.
# Usage: fuzz/seed.sh [ASSETS]   (ASSETS: the shared assets folder, default ../shared/assets)
set -euo pipefail
cd "$(dirname "$0")/.."
assets="${1:-../shared/assets}"
for target in dataset config tokenizer llama2c safetensors; do
    mkdir -p "fuzz/corpus/$target"
    cp fuzz/regressions/$target/* "fuzz/corpus/$target/"
done
cp tests/bad_inputs/data/* fuzz/corpus/dataset/
cp tests/bad_inputs/configs/* configs/*.toml fuzz/corpus/config/
# The tokenizer target's first byte picks the kind: 0 tokenizer.json, 1 llama2.c, 2 encoder.json.
for file in tests/bad_inputs/tokenizers/*; do
    [ -f "$file" ] || continue
    case "$file" in
        *.bin) kind='\x01' ;;
        *encoder*) kind='\x02' ;;
        *) kind='\x00' ;;
    esac
    { printf "$kind"; cat "$file"; } > "fuzz/corpus/tokenizer/bad-$(basename "$file")"
done
cp tests/bad_inputs/checkpoints/l2c_*.bin fuzz/corpus/llama2c/
cp crates/ropo-models/tests/fixtures/llama/model.safetensors fuzz/corpus/safetensors/fixture-llama
for dir in tests/bad_inputs/checkpoints/weights_*; do
    [ -f "$dir/model.safetensors" ] && cp "$dir/model.safetensors" "fuzz/corpus/safetensors/bad-$(basename "$dir")"
done
if [ -d "$assets" ]; then
    { printf '\x01'; cat "$assets/models/tok512.bin"; } > fuzz/corpus/tokenizer/asset-tok512
    head -c 20000 "$assets/preferences/orca_dpo_pairs_validation.jsonl" > fuzz/corpus/dataset/asset-orca
fi
echo "corpus: $(find fuzz/corpus -type f | wc -l) files"
