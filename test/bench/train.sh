#!/bin/bash
# train.sh: training throughput of the C core against PyTorch on the same
# SmolLM2-135M-shaped model, the same step (one 512-token sequence, first
# third masked out, forward + backward + AdamW with clipping) and the same
# thread count, one after the other in this run.  Both validate first (loss
# finite and falling).  Medians; the ratio is C tokens/s over PyTorch's.
#   SFT_BENCH_THREADS (default 2), SFT_BENCH_STEPS (default 5 for C, 3 for torch)
set -u
cd "$(dirname "$0")/../.."
THREADS=${SFT_BENCH_THREADS:-2}
STEPS=${SFT_BENCH_STEPS:-5}
PYTHON=${SFT_TORCH_PYTHON:-/usr/bin/python3}
[ -x test/bench/bench_train ] || make -s test/bench/bench_train || exit 1

field() {	# RESULT line, key
	sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"
}

c_out=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_train "$THREADS" "$STEPS" 512) || {
	echo "$c_out"; echo "bench_train failed"; exit 1; }
echo "$c_out" | grep -v '^RESULT'
c_res=$(grep '^RESULT' <<<"$c_out")

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	echo "torch: $PYTHON cannot import torch; no reference measured (make deps)"
	exit 1
fi
t_out=$("$PYTHON" test/parity/torch/llama_ref.py bench "$THREADS" "${SFT_BENCH_TORCH_STEPS:-3}" 512) || {
	echo "$t_out"; echo "torch reference failed"; exit 1; }
echo "$t_out" | grep -v '^RESULT'
t_res=$(grep '^RESULT' <<<"$t_out")

c_tps=$(field "$c_res" tokens_per_s)
t_tps=$(field "$t_res" tokens_per_s)
printf '%-28s %12s %12s %8s\n' "train, 512 tokens/step" "C core" "PyTorch" "ratio"
printf '%-28s %12.1f %12.1f %7.2fx\n' "tokens/s (median)" "$c_tps" "$t_tps" \
	"$(awk -v a="$c_tps" -v b="$t_tps" 'BEGIN { print a / b }')"
printf '%-28s %12.2f %12.2f\n' "peak RSS (GB)" "$(field "$c_res" peak_rss_gb)" "$(field "$t_res" peak_rss_gb)"
printf '%-28s %12.1f %12s\n' "model GFLOP/s" "$(field "$c_res" gflops)" "-"
printf '%-28s %12.2f %12s\n' "  / sgemm GFLOP/s (same run)" \
	"$(awk -v a="$(field "$c_res" gflops)" -v b="$(field "$c_res" sgemm_gflops)" 'BEGIN { print a / b }')" "-"
