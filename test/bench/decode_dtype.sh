#!/bin/bash
# decode_dtype.sh: decode with reduced-precision weights (sft.generate_dtype)
# against f32, side by side in one run: tokens/s on the SmolLM2-135M shape
# (medians, and the median of per-round ratios), and the quality cost on a
# small model trained in the same run (per-token KL against f32, top-1 and
# greedy agreement).  SFT_BENCH_THREADS (default 2).
set -u
cd "$(dirname "$0")/../.."
THREADS=${SFT_BENCH_THREADS:-2}
[ -x test/bench/bench_decode_dtype ] || make -s test/bench/bench_decode_dtype || exit 1
echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg) before)"
out=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_decode_dtype "$THREADS" 64 32) || {
	echo "$out"; echo "bench_decode_dtype failed"; exit 1; }
echo "$out" | grep -v '^RESULT' | sed 's/^/  /'
