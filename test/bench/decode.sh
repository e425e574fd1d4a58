#!/bin/bash
# decode.sh: batch-1 KV-cached decode of the C core on a SmolLM2-135M-shaped
# model (fp32) against the memory-bandwidth bound measured in the same run
# (weight bytes per token / read GB/s with the same thread count).
#   SFT_BENCH_THREADS (default 2)
set -u
cd "$(dirname "$0")/../.."
THREADS=${SFT_BENCH_THREADS:-2}
[ -x test/bench/bench_decode ] || make -s test/bench/bench_decode || exit 1
echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg) before)"
out=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_decode "$THREADS" 64 32) || {
	echo "$out"; echo "bench_decode failed"; exit 1; }
echo "$out" | grep -v '^RESULT'

# the other families on their real shapes (fp32, random weights):
# SFT_BENCH_FAMILIES="" skips them, a list of fixture names narrows them
for fam in ${SFT_BENCH_FAMILIES-gemma-3-270m qwen2.5-0.5b qwen3-0.6b}; do
	out=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_decode "$THREADS" 32 32 \
		"test/fixtures/configs/$fam.json") || { echo "$out"; echo "bench_decode $fam failed"; exit 1; }
	echo "$out" | grep -E '^(model|sft)'
done
