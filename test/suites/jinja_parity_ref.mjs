// Second reference for test/suites/jinja_parity.sh: renders every case with
// @huggingface/jinja (the engine of huggingface.js / transformers.js).
//   node jinja_parity_ref.mjs <node_modules> <out dir>
// reads templates.json and cases.jsonl, writes javascript.jsonl.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, out] = process.argv.slice(2);
const { Template } = await import(pathToFileURL(path.join(modules, "@huggingface/jinja/dist/index.js")).href);
const templates = JSON.parse(fs.readFileSync(path.join(out, "templates.json"), "utf8"));
// @huggingface/jinja has its own strftime_now: pin the clock it reads (TZ is UTC)
if (process.env.SFT_JINJA_NOW) {
	const RealDate = Date;
	const pinned = Number(process.env.SFT_JINJA_NOW) * 1000;
	globalThis.Date = class extends RealDate {
		constructor(...args) {
			super(...(args.length ? args : [pinned]));
		}
		static now() {
			return pinned;
		}
	};
}
const compiled = {};
const lines = [];
for (const line of fs.readFileSync(path.join(out, "cases.jsonl"), "utf8").split("\n")) {
	if (!line.trim()) continue;
	const c = JSON.parse(line);
	let res;
	try {
		compiled[c.template] ??= new Template(templates[c.template]);
		res = { text: compiled[c.template].render(c.vars) };
	} catch (e) {
		res = { error: String(e && e.message || e) };
	}
	lines.push(JSON.stringify(res));
}
fs.writeFileSync(path.join(out, "javascript.jsonl"), lines.join("\n") + "\n");
console.log(`@huggingface/jinja: ${lines.length} cases`);
