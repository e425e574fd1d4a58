#!/bin/bash
# torch_parity.sh: the C model against an independent PyTorch reference of
# each family (HF LlamaForCausalLM, the llama3 and linear ropes, Qwen2, Qwen3, SmolLM3,
# Gemma3 text: test/parity/torch/llama_ref.py; no server needed).
# Builds test/parity/torch/parity_driver.c over the core objects, runs it on a
# tiny random model of each family with every feature of that family active,
# with tied and with untied embeddings (logits of every position through the
# KV-cached decoder, masked loss, every parameter gradient, three AdamW steps
# with weight decay and clipping, written as raw binary files), and lets
# llama_ref.py recompute all of it in float32 and float64.  Tolerances are
# printed on every line.  SFT_PARITY_FAMILIES narrows the list.
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PYTHON=${SFT_TORCH_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/sft-torch-parity.XXXXXX)
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
dirs=""
for family in ${SFT_PARITY_FAMILIES:-llama llama3 linear qwen2 qwen3 smollm3 gemma3}; do
	for tied in 1 0; do
		d="$work/$family-$tied"
		mkdir -p "$d"
		"$work/parity_driver" "$d" "$family" "$tied" || fail "parity_driver $family (tied $tied) failed"
		dirs="$dirs $d"
	done
done
"$PYTHON" test/parity/torch/llama_ref.py parity $dirs >"$work/out.txt" 2>&1
status=$?
cat "$work/out.txt"
ok=$(grep -cE '^ok ' "$work/out.txt")
bad=$(grep -cE '^not ok ' "$work/out.txt")
if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
	echo "not ok - llama_ref.py exited with status $status"
	bad=1
fi
echo "$ok passed, $bad failed"
