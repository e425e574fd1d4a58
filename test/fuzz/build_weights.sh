#!/bin/bash
# build_weights.sh: builds the libFuzzer targets of the weight files and
# their seed corpora, and optionally runs one.
#
#   test/fuzz/build_weights.sh                      build into $OUT
#   test/fuzz/build_weights.sh run TARGET SECONDS   build, then fuzz TARGET
#                                                   (safetensors | config |
#                                                   checkpoint | gguf | peft)
#                                                   under nice
#
# OUT (default /tmp/sft-fuzz-weights) holds the binaries, corpora and any
# crash files; it is outside the repository on purpose (make clean removes
# test/fuzz/fuzz_* binaries by pattern).  The core is compiled with clang,
# ASan and UBSan, and FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes
# the checkpoint reader skip its checksums so the fuzzer gets past them.
set -eu
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sft-fuzz-weights}
CC=${FUZZ_CC:-clang}
mkdir -p "$OUT/obj"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=gnu11 -g -O1 $SAN -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Isrc/core \
	$(pkg-config --cflags json-c libpcre2-8 openblas 2>/dev/null || echo -I/usr/include/json-c)"
LIBS="$(pkg-config --libs json-c libpcre2-8 openblas 2>/dev/null || echo -ljson-c -lpcre2-8 -lopenblas) -lm -lpthread"

objs=()
for src in src/core/*.c; do
	obj="$OUT/obj/$(basename "${src%.c}").o"
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find src/core -name '*.h' -newer "$obj")" ]; then
		$CC $CFLAGS -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
	fi
	objs+=("$obj")
done
for target in safetensors config checkpoint gguf peft; do
	$CC $CFLAGS -fsanitize=fuzzer -o "$OUT/fuzz_$target" "test/fuzz/fuzz_$target.c" "${objs[@]}" $LIBS
done

# Seed corpora from the fixtures (and a few edge cases).  The safetensors
# target reads a selector byte first: 0 = untied model, 1 = tied model.
fx=test/fixtures/weights
mkdir -p "$OUT/corpus_safetensors" "$OUT/corpus_config" "$OUT/corpus_checkpoint"
{ printf '\0'; cat "$fx/untied_f32.safetensors"; } >"$OUT/corpus_safetensors/untied_f32"
{ printf '\1'; cat "$fx/tied_mixed.safetensors"; } >"$OUT/corpus_safetensors/tied_mixed"
printf '\0\2\0\0\0\0\0\0\0{}' >"$OUT/corpus_safetensors/empty_header"
cp "$fx"/config*.json "$OUT/corpus_config/"
# the families' published configs
for f in test/fixtures/configs/*.json; do cp "$f" "$OUT/corpus_config/family-$(basename "$f")"; done
printf '{"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 8, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}, "eos_token_id": [2, 3], "model_type": "mistral", "sliding_window": null}' \
	>"$OUT/corpus_config/variants.json"
cp "$fx"/*.ckpt "$OUT/corpus_checkpoint/"
# LoRA training checkpoints (adapter + moments) for the base the target assumes
cc -std=gnu11 -O1 -Isrc/core $(pkg-config --cflags json-c libpcre2-8 openblas 2>/dev/null || echo -I/usr/include/json-c) \
	-o "$OUT/gen_checkpoint_seeds" test/fuzz/gen_checkpoint_seeds.c src/core/*.c $LIBS
"$OUT/gen_checkpoint_seeds" "$OUT/corpus_checkpoint"
# GGUF seeds: the fixture tokenizers with tiny models in every dtype, written
# by our exporter (built without sanitizers: it only produces the corpus).
mkdir -p "$OUT/corpus_gguf"
cc -std=gnu11 -O1 -Isrc/core $(pkg-config --cflags json-c libpcre2-8 openblas 2>/dev/null || echo -I/usr/include/json-c) \
	-o "$OUT/gen_gguf_seeds" test/fuzz/gen_gguf_seeds.c src/core/*.c $LIBS
"$OUT/gen_gguf_seeds" "$OUT/corpus_gguf"

# PEFT seeds: adapters of the target's tiny bases, written by our writers.
mkdir -p "$OUT/corpus_peft"
cc -std=gnu11 -O1 -Isrc/core $(pkg-config --cflags json-c libpcre2-8 openblas 2>/dev/null || echo -I/usr/include/json-c) \
	-o "$OUT/gen_peft_seeds" test/fuzz/gen_peft_seeds.c src/core/*.c $LIBS
"$OUT/gen_peft_seeds" "$OUT/corpus_peft"

cat >"$OUT/weights.dict" <<'DICT'
"{"
"}"
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"BF16\""
"\"F16\""
"\"I64\""
"\"model.embed_tokens.weight\""
"\"lm_head.weight\""
"\"model.norm.weight\""
"\"model.layers.0.self_attn.rotary_emb.inv_freq\""
"\"hidden_size\""
"\"num_hidden_layers\""
"\"num_attention_heads\""
"\"num_key_value_heads\""
"\"head_dim\""
"\"intermediate_size\""
"\"vocab_size\""
"\"rope_theta\""
"\"rope_scaling\""
"\"rope_parameters\""
"\"tie_word_embeddings\""
"\"model_type\""
"\"mistral\""
"\"sliding_window\""
"\"use_sliding_window\""
"\"layer_types\""
"\"sliding_attention\""
"\"full_attention\""
"\"sliding_window_pattern\""
"\"rope_local_base_freq\""
"\"query_pre_attn_scalar\""
"\"final_logit_softcapping\""
"\"no_rope_layers\""
"\"no_rope_layer_interval\""
"\"rope_type\""
"\"llama3\""
"\"linear\""
"\"factor\""
"\"low_freq_factor\""
"\"high_freq_factor\""
"\"original_max_position_embeddings\""
"\"qwen2\""
"\"qwen3\""
"\"smollm3\""
"\"gemma3_text\""
"\"hidden_activation\""
"\"architectures\""
"\"bos_token_id\""
"\"eos_token_id\""
"null"
"true"
"false"
"SFTCKPT\x00"
"\"peft_type\""
"\"LORA\""
"\"r\""
"\"lora_alpha\""
"\"lora_dropout\""
"\"target_modules\""
"\"all-linear\""
"\"use_rslora\""
"\"use_dora\""
"\"rank_pattern\""
"\"layers_to_transform\""
"\"task_type\""
"\"CAUSAL_LM\""
"\"bias\""
"\"none\""
"\"q_proj\""
"\"k_proj\""
"\"v_proj\""
"\"o_proj\""
"\"gate_proj\""
"\"up_proj\""
"\"down_proj\""
"\"self_attn.\""
"\"mlp.\""
"base_model.model.model.layers."
".lora_A.weight"
".lora_B.weight"
DICT
echo "built $OUT/fuzz_{safetensors,config,checkpoint,gguf,peft}"

if [ "${1:-}" = run ]; then
	target=$2
	seconds=${3:-600}
	mkdir -p "$OUT/crashes_$target"
	cd "$OUT"
	exec nice -n 19 "./fuzz_$target" -max_total_time="$seconds" -max_len=16384 \
		-dict=weights.dict -artifact_prefix="crashes_$target/" -print_final_stats=1 \
		"corpus_$target"
fi
