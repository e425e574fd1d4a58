#!/bin/bash
# build_message_tree.sh: builds the message tree fuzz target (nested
# *.trees.jsonl documents and flat trees) with clang's libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer, and a small seed corpus.
#
#   test/fuzz/build_message_tree.sh [outdir]      (default /tmp/sft-fuzz)
#   nice outdir/fuzz_message_tree -max_total_time=600 -max_len=4096 \
#        -dict=test/fuzz/message_tree.dict outdir/corpus/message_tree outdir/seeds/message_tree
set -eu
cd "$(dirname "$0")/../.."
out=${1:-/tmp/sft-fuzz}
CC=${CLANG:-clang}
mkdir -p "$out/seeds/message_tree" "$out/corpus/message_tree"
dep_cflags=$(pkg-config --cflags json-c 2>/dev/null || echo "-I/usr/include/json-c")
dep_libs=$(pkg-config --libs json-c 2>/dev/null || echo "-ljson-c")
core="src/core/common.c src/core/conversation.c src/core/message_tree.c"
flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Isrc/core $dep_cflags"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
$CC $flags $san -o "$out/fuzz_message_tree" test/fuzz/fuzz_message_tree.c $core $dep_libs -lm
s=$out/seeds/message_tree
cat >"$s/oasst" <<'JSON'
{"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": {"message_id": "r", "parent_id": null,
 "role": "prompter", "text": "What is a tree?", "lang": "en", "rank": null, "deleted": false, "review_result": true,
 "replies": [{"message_id": "a1", "role": "assistant", "text": "A plant.", "rank": 1, "replies": []},
  {"message_id": "a0", "role": "assistant", "text": "A graph.", "rank": 0, "replies": [
   {"message_id": "p0", "role": "prompter", "text": "Example?", "rank": 0, "replies": [
    {"message_id": "b0", "role": "assistant", "text": "A family tree.", "review_result": null}]},
   {"message_id": "p1", "role": "prompter", "text": "Unanswered.", "rank": 1}]},
  {"message_id": "a2", "role": "assistant", "text": "Spam.", "rank": 2, "review_result": false},
  {"message_id": "a3", "role": "assistant", "text": "Gone.", "deleted": true}]}}
JSON
printf '{"prompt": {"role": "user", "text": "Q", "replies": [{"role": "assistant", "text": "A"}, {"role": "assistant", "text": "B", "rank": 0}]}}' >"$s/no_ids"
printf '{"prompt": {"role": "prompter", "text": "Q", "replies": [{"role": "prompter", "text": "bad"}]}}' >"$s/bad_roles"
printf '\xff\x00\x00\x01\x00\x01\x00\x02\x01\x00\x01\x03\x00\x05\x00\x04' >"$s/flat"
printf '\x01\x00\x00\x01\x00\x01\x00\x02' >"$s/flat_cycle"
echo "built $out/fuzz_message_tree; seeds in $s"
