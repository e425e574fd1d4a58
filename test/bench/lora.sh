#!/bin/bash
# lora.sh: LoRA training speed and memory.
#  1. SmolLM2-135M shape, one 512-token sequence per step: LoRA (all-linear,
#     r = 16) against full fine-tuning in the C core, rounds alternating the
#     two (medians of the per-round figures and of the per-round ratios),
#     and the same LoRA step in PyTorch (PEFT's math, llama_ref.py bench with
#     LORA_R, at its faster setting of 1 torch thread).
#  2. Peak resident memory of one LoRA step, T = 512, batch 1, fp32 base, on
#     big shapes (test/fixtures/configs/): Qwen2.5-1.5B, and Llama-3.2-3B with
#     activation checkpointing.  Each is run only when MemAvailable covers
#     its estimate + 3 GB (a shared machine); otherwise the line says so.
# SFT_BENCH_THREADS (2), SFT_BENCH_ROUNDS (3), SFT_BENCH_STEPS (3),
# SFT_LORA_BIG ("qwen2.5-1.5b:0 llama-3.2-3b:1", name:checkpointing; "" skips).
set -u
cd "$(dirname "$0")/../.."
THREADS=${SFT_BENCH_THREADS:-2}
ROUNDS=${SFT_BENCH_ROUNDS:-3}
STEPS=${SFT_BENCH_STEPS:-3}
PYTHON=${SFT_TORCH_PYTHON:-/usr/bin/python3}
BIG=${SFT_LORA_BIG-qwen2.5-1.5b:0 llama-3.2-3b:1}
[ -x test/bench/bench_train ] || make -s test/bench/bench_train || exit 1

field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"; }
load() { echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg) $1)"; }
med() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

full=() lora=() torch=() ratios=() tratios=()
for r in $(seq 1 "$ROUNDS"); do
	load "round $r, full fine-tuning"
	f=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_train "$THREADS" "$STEPS" 512 - 0 0) || {
		echo "$f"; echo "bench_train (full) failed"; exit 1; }
	[ "$r" = 1 ] && grep -E '^(validation|sft)' <<<"$f"
	load "round $r, LoRA"
	l=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_train "$THREADS" "$STEPS" 512 - 16 0) || {
		echo "$l"; echo "bench_train (LoRA) failed"; exit 1; }
	[ "$r" = 1 ] && grep -E '^(validation|sft|bf16)' <<<"$l"
	load "round $r, PyTorch LoRA"
	t=$(OPENBLAS_NUM_THREADS=$THREADS "$PYTHON" test/parity/torch/llama_ref.py bench "$THREADS" "$STEPS" 512 lean 1 - 16) || {
		echo "$t"; echo "torch LoRA reference failed"; exit 1; }
	[ "$r" = 1 ] && grep -E '^(validation|torch)' <<<"$t"
	ft=$(field "$(grep '^RESULT' <<<"$f")" tokens_per_s)
	lt=$(field "$(grep '^RESULT' <<<"$l")" tokens_per_s)
	tt=$(field "$(grep '^RESULT' <<<"$t")" tokens_per_s)
	full+=("$ft") lora+=("$lt") torch+=("$tt")
	ratios+=("$(awk -v a="$lt" -v b="$ft" 'BEGIN { print a / b }')")
	tratios+=("$(awk -v a="$lt" -v b="$tt" 'BEGIN { print a / b }')")
	lrss=$(field "$(grep '^RESULT' <<<"$l")" peak_rss_gb)
	frss=$(field "$(grep '^RESULT' <<<"$f")" peak_rss_gb)
	trss=$(field "$(grep '^RESULT' <<<"$t")" peak_rss_gb)
	echo "  round $r: full $ft, LoRA $lt, PyTorch LoRA $tt tokens/s"
done
load "at the end of the 135M rounds"
printf '\n%-36s %10s %10s %12s\n' "135M shape, T=512, $THREADS threads" "full FT" "LoRA r=16" "PyTorch LoRA"
printf '%-36s %10.1f %10.1f %12.1f\n' "tokens/s (median of $ROUNDS rounds)" \
	"$(printf '%s\n' "${full[@]}" | med)" "$(printf '%s\n' "${lora[@]}" | med)" "$(printf '%s\n' "${torch[@]}" | med)"
printf '%-36s %10.2f %10.2f %12.2f\n' "peak RSS (GB, last round)" "$frss" "$lrss" "$trss"
printf '%-36s %10s %10s\n' "LoRA / full FT (median of ratios)" "" "$(printf '%s\n' "${ratios[@]}" | med | awk '{ printf "%.2fx", $1 }')"
printf '%-36s %10s %10s\n' "LoRA C / PyTorch LoRA" "" "$(printf '%s\n' "${tratios[@]}" | med | awk '{ printf "%.2fx", $1 }')"

# --- peak memory on big shapes ---------------------------------------------
[ -n "$BIG" ] && printf '\n%-30s %6s %10s %10s %10s\n' "LoRA r=16, T=512, batch 1" "ckpt" "params" "peak RSS" "step (s)"
for spec in $BIG; do
	name=${spec%%:*} ckpt=${spec##*:}
	cfgf=test/fixtures/configs/$name.json
	# the estimate: fp32 base + adapter + activations, as sft.max_memory sees it
	need_gb=$(field "$(test/bench/bench_train 1 0 512 "$cfgf" 16 "$ckpt" estimate 2>/dev/null)" estimate_gb)
	avail_gb=$(awk '/MemAvailable/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
	if [ -z "$need_gb" ] || awk -v n="$need_gb" -v a="$avail_gb" 'BEGIN { exit !(a < n + 3) }'; then
		printf '%-30s %6s   skipped: needs about %s GB + 3, %s GB available\n' "$name" "$ckpt" "${need_gb:-?}" "$avail_gb"
		continue
	fi
	load "before $name (estimate $need_gb GB, $avail_gb GB available)"
	b=$(OPENBLAS_NUM_THREADS=$THREADS test/bench/bench_train "$THREADS" 0 512 "$cfgf" 16 "$ckpt") || {
		echo "$b"; echo "bench_train $name failed"; exit 1; }
	grep '^sft' <<<"$b"
	res=$(grep '^RESULT' <<<"$b")
	printf '%-30s %6s %10s %9.2f GB %10.1f   (estimate %s GB)\n' "$name" "$ckpt" \
		"$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' <<<"$b")" "$(field "$res" peak_rss_gb)" \
		"$(field "$res" step_s)" "$need_gb"
done
