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

# the other families on their real shapes (fp32, random weights), one table:
# tokens/s against the bandwidth bound of the same run.  SFT_BENCH_FAMILIES=""
# skips them, a list of fixture names narrows them; a model is skipped (said
# so) when MemAvailable is below its fp32 weights + 3 GB (SmolLM3-3B: 12 GB).
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"; }
printf '\n%-16s %11s %10s %10s %8s %8s  %s\n' "decode, fp32" "weights GB" "tokens/s" "bound t/s" \
	"reached" "best" "load average"
for fam in ${SFT_BENCH_FAMILIES-gemma-3-270m qwen2.5-0.5b qwen3-0.6b llama-3.2-1b smollm3-3b}; do
	cfgf=test/fixtures/configs/$fam.json
	out=$(OPENBLAS_NUM_THREADS=$THREADS SFT_BENCH_MIN_AVAILABLE_GB=3 test/bench/bench_decode "$THREADS" 32 32 "$cfgf") || {
		echo "$out"; echo "bench_decode $fam failed"; exit 1; }
	if grep -q '^SKIPPED' <<<"$out"; then
		printf '%-16s %s\n' "$fam" "$(grep '^SKIPPED' <<<"$out" | cut -d' ' -f2-)"
		continue
	fi
	res=$(grep '^RESULT' <<<"$out")
	printf '%-16s %11.2f %10.2f %10.2f %8.2f %8.2f  %s\n' "$fam" "$(field "$res" weights_gb)" \
		"$(field "$res" tokens_per_s)" "$(field "$res" bound_tokens_per_s)" "$(field "$res" fraction)" \
		"$(field "$res" best_fraction)" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
