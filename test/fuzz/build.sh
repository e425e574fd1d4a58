#!/bin/bash
# build.sh: builds the tokenizer fuzz targets with clang's libFuzzer and
# AddressSanitizer + UndefinedBehaviorSanitizer (Debian: clang,
# libclang-rt-14-dev), and their seed corpora.
#
#   test/fuzz/build.sh [outdir]            (default /tmp/sft-fuzz)
#
# Then, for example (one at a time on a shared machine):
#   nice outdir/fuzz_tokenizer_load -dict=test/fuzz/tokenizer.dict \
#        -max_total_time=600 outdir/corpus/load outdir/seeds/load
#   SFT_FUZZ_TOKENIZER=path/to/tokenizer.json nice outdir/fuzz_tokenizer_encode \
#        -max_total_time=600 -max_len=4096 outdir/corpus/encode outdir/seeds/encode
set -eu
cd "$(dirname "$0")/../.."
out=${1:-/tmp/sft-fuzz}
CC=${CLANG:-clang}
mkdir -p "$out/seeds/load" "$out/seeds/encode" "$out/corpus/load" "$out/corpus/encode"
dep_cflags=$(pkg-config --cflags json-c libpcre2-8 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c libpcre2-8 2>/dev/null || echo "-ljson-c -lpcre2-8")
core="src/core/common.c src/core/unicode.c src/core/unicode_tables.c src/core/tokenizer.c \
src/core/tokenizer_encode.c src/core/tokenizer_decode.c"
flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Isrc/core -Itest/unit $dep_cflags"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
for t in fuzz_tokenizer_load fuzz_tokenizer_encode; do
	$CC $flags $san -o "$out/$t" "test/fuzz/$t.c" $core $dep_libs -lm
done
$CC $flags -o "$out/gen_tokenizer_seeds" test/fuzz/gen_tokenizer_seeds.c src/core/common.c -lm
"$out/gen_tokenizer_seeds" "$out/seeds"
echo "built $out/fuzz_tokenizer_load $out/fuzz_tokenizer_encode; seeds in $out/seeds"
