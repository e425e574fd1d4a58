// llama_ref.mjs: llama.cpp (npm node-llama-cpp, prebuilt CPU binary) as the
// reference engine for our GGUF exports; used by test/suites/gguf_llamacpp.sh
// and test/bench/gguf.sh.  SFT_LLAMA_MODULES must point at the node_modules
// that install_ref.sh prints (ES modules do not follow NODE_PATH).
//
//   node llama_ref.mjs tokenize MODEL STRINGS.json OUT.json
//        per string: llama.cpp's ids as plain text (special tokens not
//        parsed), with special tokens parsed, and of the NFC form (plain)
//   node llama_ref.mjs meta MODEL CONVS.json OUT.json
//        bos/eos/eot/pad ids and texts, add_bos_token, whether eot ends generation, vocabulary
//        size, and each conversation rendered with the chat template as the
//        GGUF carries it (@huggingface/jinja, add_generation_prompt true), and
//        the tokens the file marks normal that llama.cpp makes control tokens
//   node llama_ref.mjs probs MODEL SEQS.json OUT.bin
//        for every sequence (array of ids) and position: log of llama.cpp's
//        next-token probabilities (temperature 1, no truncation), V float32
//   node llama_ref.mjs greedy MODEL PROMPTS.json N OUT.json
//        N greedy ids after each prompt (argmax, lowest id on ties)
//   node llama_ref.mjs bench MODEL PROMPT_IDS N THREADS
//        N single-token greedy steps after the prompt (all but its last
//        token fed before the clock); prints "tokens_per_s X" and the ids
'use strict';
import fs from 'node:fs';
import {pathToFileURL} from 'node:url';

const modules = process.env.SFT_LLAMA_MODULES;
const {getLlama} = await import(pathToFileURL(`${modules}/node-llama-cpp/dist/index.js`));

const [cmd, modelPath, ...rest] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: 'never', logLevel: 'error'});

async function load(vocabOnly) {
	return llama.loadModel({modelPath, vocabOnly, gpuLayers: 0});
}

function argmax(probs) {
	let best = -1, bestP = -1;
	for (const [tok, p] of probs)
		if (p > bestP || (p === bestP && tok < best)) { best = tok; bestP = p; }
	return best;
}

const fullDistribution = {probabilities: true, options: {temperature: 1, topK: 1 << 30, topP: 1, minP: 0}};

if (cmd === 'tokenize') {
	const model = await load(true);
	const strings = JSON.parse(fs.readFileSync(rest[0], 'utf8'));
	const out = strings.map((s) => ({
		plain: Array.from(model.tokenize(s, false)),
		special: Array.from(model.tokenize(s, true)),
		nfc: Array.from(model.tokenize(s.normalize('NFC'), false)),
	}));
	fs.writeFileSync(rest[1], JSON.stringify(out));
} else if (cmd === 'meta') {
	const {Template} = await import(pathToFileURL(`${modules}/@huggingface/jinja/dist/index.js`));
	const model = await load(true);
	const md = model.fileInfo.metadata;
	const text = (id) => (id == null ? null : model.detokenize([id], true));
	const t = model.tokens;
	const source = md.tokenizer.chat_template ?? null;
	const convs = JSON.parse(fs.readFileSync(rest[0], 'utf8'));
	const rendered = source == null ? [] : convs.map((messages) =>
		new Template(source).render({messages, add_generation_prompt: true,
			bos_token: text(t.bos) ?? '', eos_token: text(t.eos) ?? ''}));
	// tokens the file marks NORMAL or USER_DEFINED that llama.cpp treats as
	// control tokens (its loader overrides the type of tokens with
	// end-of-generation names, "</s>" among them)
	const types = md.tokenizer.ggml.token_type;
	const overridden = [];
	for (let id = 0; id < types.length; id++)
		if ((types[id] === 1 || types[id] === 4) && model.getTokenAttributes(id).control)
			overridden.push({id, type: types[id], text: model.detokenize([id], true), eog: model.isEogToken(id)});
	fs.writeFileSync(rest[1], JSON.stringify({
		overridden,
		bos: t.bos, eos: t.eos, eot: t.eot, bos_text: text(t.bos), eos_text: text(t.eos),
		eot_is_eog: t.eot == null ? null : model.isEogToken(t.eot),
		eos_is_eog: t.eos == null ? null : model.isEogToken(t.eos),
		n_vocab: model.fileInfo.metadata[md.general.architecture].vocab_size,
		pre: md.tokenizer.ggml.pre, rendered,
		add_bos: md.tokenizer.ggml.add_bos_token ?? null, pad: md.tokenizer.ggml.padding_token_id ?? null,
	}));
} else if (cmd === 'probs' || cmd === 'greedy') {
	const model = await load(false);
	const context = await model.createContext({contextSize: 512, threads: 1, batchSize: 512});
	const seq = context.getSequence();
	const V = model.fileInfo.metadata[model.fileInfo.metadata.general.architecture].vocab_size;
	const inputs = JSON.parse(fs.readFileSync(rest[0], 'utf8'));
	const rows = [];
	const results = [];
	for (const ids of inputs) {
		await seq.clearHistory();
		if (cmd === 'probs') {
			const out = await seq.controlledEvaluate(ids.map((id) => [id, {generateNext: fullDistribution}]));
			for (let i = 0; i < ids.length; i++) {
				const row = new Float32Array(V).fill(Math.log(1e-30));
				for (const [tok, p] of out[i].next.probabilities) row[tok] = Math.log(Math.max(p, 1e-30));
				rows.push(row);
			}
		} else {
			const n = Number(rest[1]);
			const got = [];
			let out = await seq.controlledEvaluate(ids.map((id, i) => (i === ids.length - 1 ? [id, {generateNext: fullDistribution}] : id)));
			let probs = out[ids.length - 1].next.probabilities;
			for (let k = 0; k < n; k++) {
				const next = argmax(probs);
				got.push(next);
				if (k === n - 1) break;
				out = await seq.controlledEvaluate([[next, {generateNext: fullDistribution}]]);
				probs = out[0].next.probabilities;
			}
			results.push(got);
		}
	}
	if (cmd === 'probs') {
		const buf = Buffer.alloc(rows.length * V * 4);
		rows.forEach((r, i) => Buffer.from(r.buffer).copy(buf, i * V * 4));
		fs.writeFileSync(rest[1], buf);
	} else
		fs.writeFileSync(rest[2], JSON.stringify(results));
} else if (cmd === 'bench') {
	const model = await load(false);
	const threads = Number(rest[2]);
	const context = await model.createContext({contextSize: 512, threads, batchSize: 512});
	const seq = context.getSequence();
	const prompt = rest[0].split(',').map(Number);
	const n = Number(rest[1]);
	await seq.controlledEvaluate(prompt.slice(0, -1));
	let last = prompt[prompt.length - 1];
	const ids = [];
	const t0 = process.hrtime.bigint();
	for (let k = 0; k < n; k++) {
		const out = await seq.controlledEvaluate([[last, {generateNext: {token: true, options: {temperature: 0}}}]]);
		last = out[0].next.token;
		ids.push(last);
	}
	const s = Number(process.hrtime.bigint() - t0) / 1e9;
	console.log(`tokens_per_s ${(n / s).toFixed(2)}\nids ${ids.join(',')}`);
} else {
	console.error(`unknown command ${cmd}`);
	process.exit(2);
}
process.exit(0);
