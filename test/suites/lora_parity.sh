#!/bin/bash
# lora_parity.sh: LoRA training in the C core against a float64 PyTorch
# reference written from PEFT's lora/layer.py math
# (test/parity/torch/lora_ref.py over llama_ref.py's models; no server).
# parity_driver trains an adapter on a frozen tiny random model: 3 AdamW
# steps of 2 packed micro-batches, weight decay and clipping on; the
# reference recomputes the losses, every adapter gradient, the norms, the
# adapter after each step, and checks the base is byte-identical after.
# Cases: all-linear and subsets, dropout 0 and seeded dropout (the C side's
# draws replayed), rslora, every family, activation checkpointing.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PYTHON=${SFT_TORCH_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/sft-lora-parity.XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() {
	echo "not ok - $1"
	echo "0 passed, 1 failed"
	exit 1
}

"$PYTHON" -c 'import torch, numpy' 2>/dev/null ||
	fail "$PYTHON cannot import torch and numpy (make deps installs python3-torch)"
core_objs=$(ls src/core/*.c | sed 's/\.c$/.o/')
for o in $core_objs; do
	[ -f "$o" ] || fail "$o is missing (run make first)"
done
dep_cflags=$(pkg-config --cflags json-c openblas 2>/dev/null || echo "-I/usr/include/json-c -I/usr/include/x86_64-linux-gnu/openblas-pthread")
dep_libs=$(pkg-config --libs json-c libpcre2-8 openblas 2>/dev/null || echo "-ljson-c -lpcre2-8 -lopenblas")
if ! cc -std=gnu11 -O2 -Wall -Wextra -Isrc/core $dep_cflags -o "$work/parity_driver" \
	test/parity/torch/parity_driver.c $core_objs $dep_libs -lm -lpthread 2>"$work/cc.log"; then
	cat "$work/cc.log"
	fail "building parity_driver failed"
fi
# family tied targets r alpha dropout rslora [ckpt]
cases="
llama 1 all-linear 4 8 0 0
llama 0 q_proj,v_proj 3 6 0 0
llama 1 k_proj,o_proj,down_proj 2 5 0 1
llama 1 all-linear 4 8 0.25 0
llama 0 gate_proj,up_proj,q_proj 4 16 0.1 1
llama 1 all-linear 4 8 0.25 0 ckpt
qwen2 0 all-linear 4 8 0.1 0
qwen3 1 all-linear 4 8 0.1 0
smollm3 0 all-linear 4 8 0.1 0
gemma3 1 all-linear 4 8 0.1 0
gemma3 0 all-linear 4 8 0.1 1 ckpt
"
dirs=""
i=0
while read -r family tied targets r alpha dropout rslora ckpt; do
	[ -n "$family" ] || continue
	i=$((i + 1))
	d="$work/case$i"
	mkdir -p "$d"
	"$work/parity_driver" "$d" "$family" "$tied" lora "$targets" "$r" "$alpha" "$dropout" "$rslora" $ckpt ||
		fail "parity_driver $family $targets failed"
	dirs="$dirs $d"
done <<<"$cases"
"$PYTHON" test/parity/torch/lora_ref.py $dirs >"$work/out.txt" 2>&1
status=$?
cat "$work/out.txt"
ok=$(grep -cE '^ok ' "$work/out.txt")
bad=$(grep -cE '^not ok ' "$work/out.txt")
if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
	echo "not ok - lora_ref.py exited with status $status"
	bad=1
fi
echo "$ok passed, $bad failed"
