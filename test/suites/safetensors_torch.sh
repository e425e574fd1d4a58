#!/bin/bash
# safetensors_torch.sh: the C weight files against PyTorch (no server needed).
# Builds the small driver test/suites/safetensors_torch.c over the core
# objects, then safetensors_torch.py writes safetensors files by hand with
# torch (F32, BF16, F16, sharded) for the C loader and parses what the C code
# writes (safetensors, config.json, checkpoints with zlib's CRC-32).
# Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PYTHON=${SFT_TORCH_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/sft-safetensors-torch.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
	echo "not ok - $PYTHON cannot import torch (make deps installs python3-torch)"
	echo "0 passed, 1 failed"
	exit 1
fi
core_objs=$(ls src/core/*.c | sed 's/\.c$/.o/')
for o in $core_objs; do
	if [ ! -f "$o" ]; then
		echo "not ok - $o is missing (run make first)"
		echo "0 passed, 1 failed"
		exit 1
	fi
done
dep_cflags=$(pkg-config --cflags json-c openblas 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c libpcre2-8 openblas 2>/dev/null || echo "-ljson-c -lpcre2-8 -lopenblas")
if ! cc -std=gnu11 -O2 -Wall -Wextra -Isrc/core $dep_cflags -o "$work/driver" \
	test/suites/safetensors_torch.c $core_objs $dep_libs -lm -lpthread 2>"$work/cc.log"; then
	cat "$work/cc.log"
	echo "not ok - building the driver failed"
	echo "0 passed, 1 failed"
	exit 1
fi
"$PYTHON" test/suites/safetensors_torch.py "$work/driver" "$work"
