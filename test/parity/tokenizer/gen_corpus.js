// gen_corpus.js: the tokenizer parity corpus, generated deterministically.
//
//   node gen_corpus.js [count] [--prose] > corpus.jsonl   (default 2400 strings;
//                                     --prose: English prose only, for benchmarks)
//
// One JSON string per line.  Families (each a share of the count): English
// prose, code, whitespace runs, digit runs, punctuation and contractions,
// emoji, CJK, Arabic and other scripts, accented and decomposed Unicode (NFC
// and NFD forms, reordered marks, Hangul jamo, singletons), strings that look
// like special tokens, control characters, random mixes and a few long
// documents.  A fixed seed makes the corpus identical on every machine.
'use strict';

let seed = 0x5eed1234;
function rand() {					// mulberry32
  seed = (seed + 0x6D2B79F5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const rep = (n, f) => Array.from({ length: n }, f).join('');

const words = ('the of and to in is was that for it with as his on be at by had are but from or have an ' +
  'they which one you were her all she there would their we him been has when who will more no if out so ' +
  'said what up its about into than them can only other new some could time these two may then do first ' +
  'any my now such like our over man me even most made after also did many before must through back years ' +
  'where much your way well down should because each just those people how too little state good very make ' +
  'world still own see men work long get here between both life being under never day same another know ' +
  'while last might us great old year off come since against go came right used take three tokenizer ' +
  'database training gradient Postgres PostgreSQL Llama SmolLM2 Qwen transformer attention embedding ' +
  'supercalifragilisticexpialidocious antidisestablishmentarianism floccinaucinihilipilification').split(' ');
const names = ['Alice', 'Bob', 'Carol', 'Dave', 'Eve', 'Mallory', "O'Brien", 'McDonald', 'van der Berg', 'José', 'Zoë'];

function sentence() {
  let s = rep(int(3, 18), () => pick(words) + ' ').trim();
  s = s[0].toUpperCase() + s.slice(1);
  if (rand() < 0.3) s = s.replace(/ (\w+) /, ` ${pick(names)} `);
  if (rand() < 0.2) s += ', ' + rep(int(2, 6), () => pick(words) + ' ').trim();
  return s + pick(['.', '.', '.', '?', '!', '...', ';', ':']);
}
function prose() {
  let p = rep(int(1, 6), () => sentence() + ' ').trimEnd();
  if (rand() < 0.3) p = p.replace(/ (\w+)/, " $1's");
  if (rand() < 0.2) p += '\n\n' + sentence();
  if (rand() < 0.15) p = p.toUpperCase();
  return p;
}

const codeSnippets = [
  () => `def ${pick(words)}_${pick(words)}(x, y=${int(0, 99)}):\n    """${sentence()}"""\n    if x > y:\n        return x ** 2 + y\n    return [i for i in range(${int(1, 9999)}) if i % ${int(2, 7)} == 0]\n`,
  () => `for (int i = 0; i < ${int(1, 1000)}; i++) {\n\tif (a[i] != b[i]) { ret |= 0x${int(0, 65535).toString(16)}; }\n}\n`,
  () => `SELECT ${pick(words)}, count(*) FROM t_${pick(words)} WHERE id >= ${int(1, 100000)} AND name LIKE '%${pick(words)}%' GROUP BY 1 ORDER BY 2 DESC;`,
  () => `const ${pick(words)}Map = new Map([[${int(0, 9)}, "${pick(words)}"], [${int(10, 99)}, '${pick(words)}']]);\nexport default async (req, res) => res.json({ ok: true, n: ${int(0, 1e6)} });`,
  () => `<div class="${pick(words)}-${pick(words)}" id='x${int(0, 99)}'>\n  <p>${sentence()}</p>\n  <a href="https://example.com/${pick(words)}?q=${int(0, 999)}&amp;x=1">link</a>\n</div>`,
  () => `{"${pick(words)}": [${int(0, 99)}, ${int(-99, 0)}.${int(0, 99)}, true, null], "nested": {"k": "${pick(words)}\\n\\t"}}`,
  () => `#include <stdio.h>\nint main(void)\n{\n    printf("%d\\n", ${int(0, 99)});\n    return 0;\n}\n`,
  () => `    \t  ${pick(words)} = lambda *args, **kw: (args[0] if args else None)  # ${sentence()}\n\t\t\treturn`,
  () => `$ git commit -m "${sentence()}" && make -j${int(1, 16)} CFLAGS='-O2 -Wall' 2>&1 | tee build.log`,
  () => `fn ${pick(words)}<'a>(s: &'a str) -> Option<&'a str> { s.split_whitespace().nth(${int(0, 5)}) }`,
];

const spaces = [' ', ' ', ' ', '  ', '\t', '\n', '\r\n', '\n\n', '\r', '\u00a0', '\u3000', '\u2009', '\u2003',
  '\u0085', '\u180e', '\ufeff', '\u200b', '\u2028', '\u2029', '\u000b', '\u000c', '\u202f', '\u205f', '\u1680'];
function whitespace() {
  const parts = [];
  for (let i = int(1, 8); i > 0; i--) {
    parts.push(rep(int(1, 6), () => pick(spaces)));
    if (rand() < 0.7) parts.push(pick(words));
    if (rand() < 0.2) parts.push(String(int(0, 999)));
    if (rand() < 0.2) parts.push(pick(['.', '!', '?', ',', '(', ')', '"']));
  }
  if (rand() < 0.2) return rep(int(1, 40), () => pick(spaces));
  return parts.join('');
}

function digits() {
  return pick([
    () => String(int(0, 9)),
    () => rep(int(2, 40), () => String(int(0, 9))),
    () => `${int(1, 999)},${String(int(0, 999)).padStart(3, '0')},${String(int(0, 999)).padStart(3, '0')}`,
    () => `${int(0, 99999)}.${int(0, 99999)}`,
    () => `+1 (${int(100, 999)}) ${int(100, 999)}-${int(1000, 9999)}`,
    () => `${int(1900, 2100)}-${String(int(1, 12)).padStart(2, '0')}-${String(int(1, 28)).padStart(2, '0')}T${int(10, 23)}:${int(10, 59)}:00Z`,
    () => `v${int(0, 9)}.${int(0, 99)}.${int(0, 999)}-rc${int(1, 9)}`,
    () => `0x${int(0, 2 ** 30).toString(16)} 0b${int(0, 255).toString(2)} 1e-${int(1, 99)} ${int(-1000, 1000)}`,
    () => `${pick(words)}${int(0, 99999)}${pick(words)} ${int(0, 9)}${pick(words)}`,
    () => `١٢٣٤ ٥٦٧ ۸۹ ०१२३ ๑๒๓ ①②③ ½ ¾ ² ³ Ⅻ ${int(0, 99)}`,
    () => `${int(0, 9)} ${int(0, 99)} ${int(0, 999)} ${int(0, 9999)} ${int(0, 99999)} ${int(0, 999999)}`,
  ])();
}

const puncts = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»„“”‘’…–—•·§¶†‡©®™°±×÷'.split('');
function punctuation() {
  return pick([
    () => rep(int(1, 20), () => pick(puncts)),
    () => `${pick(words)}${pick(puncts)}${pick(words)}${pick(puncts)}${pick(puncts)} ${pick(words)}`,
    () => pick(["don't", "I'M", "it's", "we'll", "they've", "she'd", "you're", "'S", "'s'", "O'Neil's", "rock'n'roll",
      "can't", "WON'T", "y'all'd've", "''", "'", "'ll", "'LL", "'Re", "'ſ", "'ſt", "'K"]) + ' ' + pick(words),
    () => `"${sentence()}" — ${pick(names)}, «${pick(words)}» (${int(1, 99)}%)...`,
    () => `${pick(words)}!!! ??? ... --- *** ___ === ~~~ ### @@@ $$$ %%% ^^^ &&& ||| <<< >>>`,
    () => `:) ;-) :-( ^_^ ¯\\_(ツ)_/¯ <3 </3 (╯°□°)╯︵ ┻━┻`,
    () => `path/to/${pick(words)}.txt C:\\Users\\${pick(names)}\\file_${int(0, 9)}.log user@example.org #tag @mention`,
  ])();
}

const emojis = ['😀', '😂', '🥲', '❤️', '👍', '👍🏽', '🙏🏿', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇺🇸', '🇯🇵', '🇩🇪', '🤖', '🧠', '🚀', '✨',
  '🔥', '💯', '👩🏻‍💻', '🧑‍🚀', '✅', '❌', '⚠️', '☕', '🍕', '🐍', '🦀', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐁𝐨𝐥𝐝', '🂡', '🀄', '©️', '#️⃣', '1️⃣'];
function emoji() {
  const n = int(1, 6);
  let s = '';
  for (let i = 0; i < n; i++) {
    s += rand() < 0.5 ? pick(emojis) : pick(words) + ' ' + pick(emojis);
    if (rand() < 0.4) s += ' ';
  }
  return s;
}

const cjkTexts = ['今天天气很好，我们去公园散步吧。', '機械学習は人工知能の一分野です。', 'これはテストです！カタカナとひらがな。',
  '한국어 문장을 토큰화합니다. 안녕하세요!', '中华人民共和国成立于1949年10月1日。', '「引用」と『二重引用』、そして（括弧）。',
  '数据库中的训练数据', 'ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３', '𠀀𠀁𪚥 rare ideographs', '臺灣 繁體中文 測試', 'ﾊﾝｶｸｶﾀｶﾅ ｶﾞｷﾞ'];
function cjk() {
  const n = int(1, 4);
  let s = rep(n, () => pick(cjkTexts) + (rand() < 0.5 ? ' ' : ''));
  if (rand() < 0.3) s += pick(words) + ' ' + int(0, 9999);
  return s;
}

const scripts = ['مرحبا بالعالم، هذا نص عربي للاختبار.', 'السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ', 'שלום עולם, זה מבחן.',
  'Привет, мир! Это тест токенизатора.', 'Γειά σου Κόσμε· ελληνικά κείμενα.', 'नमस्ते दुनिया, यह एक परीक्षण है।',
  'สวัสดีชาวโลก นี่คือการทดสอบ', 'ሰላም ልዑል', 'გამარჯობა მსოფლიო', 'Բարեւ աշխարհ', 'வணக்கம் உலகம்', 'ಕನ್ನಡ ನುಡಿ ಕೊ',
  'မင်္ဂလာပါ', 'ສະບາຍດີ', 'ᚠᚢᚦᚨᚱᚲ', 'Tiếng Việt có dấu: Nguyễn Thị Minh Khai', 'Ελληνικά ΆΈΉ ΐ ΰ'];
function otherScripts() {
  return rep(int(1, 3), () => pick(scripts) + ' ') + (rand() < 0.3 ? pick(words) : '');
}

const decomposedBits = ['e\u0301', 'a\u0300', 'o\u0308', 'n\u0303', 'c\u0327', 'A\u030a', 'u\u0308\u0301', 'a\u0323\u0302',
  'a\u0302\u0323', 'q\u0307\u0323', 'e\u0323\u0307', '\u1100\u1161', '\u1100\u1161\u11a8', '\u1112\u1175\u11ab', 'ᄀ각',
  '\u212b', '\u2126', '\u212a', '\u00c5', 'Å', '\u0344', '\u0958', '\u2adc', '\u0f73', 'ﬁ', 'ﬀ', 'ǅ', 'Ǆ', 'ﾞ', '\u0cc6\u0cc2',
  '\u0b47\u0b3e', 'i\u0307', 'ı', 'ß', 'ẞ', '\u1e9b\u0323', 'é', 'ñ', 'ü', 'Å', 'Ω', '\u0041\u030a\u0301', 'x\u0338', '≠',
  'o\u031b\u0323', 'ự', '\u05d1\u05bc', '\u0627\u0653', '\u0928\u093c', 'ক\u09bc', '\u0915\u094d\u0937'];
function accented() {
  const n = int(1, 8);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.5) s += pick(decomposedBits);
    else if (r < 0.7) s += pick(words);
    else if (r < 0.85) s += pick(['café', 'naïve', 'résumé', 'Ångström', 'Zürich', 'São Paulo', 'Œuvre', 'Łódź', 'Dvořák', 'façade']);
    else s += pick(['café'.normalize('NFD'), 'naïve'.normalize('NFD'), 'Ångström'.normalize('NFD'), 'Việt Nam'.normalize('NFD')]);
    if (rand() < 0.5) s += ' ';
  }
  return s;
}

const specials = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
  '<|start_header_id|>', '<|end_header_id|>', '<s>', '</s>', '<unk>', '<think>', '</think>', '<tool_call>', '</tool_call>',
  '<|fim_prefix|>', '<|reserved_special_token_7|>', '<|im_', '|im_end|>', '<<s>>', '< s>', '<0x0A>', '<0xFF>', '▁', '▁▁',
  '<|', '|>', '<|im_start|><|im_start|>', '<s><s>', '<|endoftext|>x', 'Ġ', 'ĠĠ', 'Ċ'];
function specialLooking() {
  return pick([
    () => pick(specials),
    () => `${pick(specials)}${pick(['user', 'assistant', 'system'])}\n${sentence()}${pick(specials)}`,
    () => `${sentence()} ${pick(specials)} ${sentence()}`,
    () => `${pick(specials)} ${pick(specials)}${pick(specials)}  ${pick(words)}`,
    () => `<|start_header_id|>user<|end_header_id|>\n\n${sentence()}<|eot_id|>`,
    () => `[INST] <<SYS>>\n${sentence()}\n<</SYS>>\n\n${sentence()} [/INST] ${sentence()} </s><s>[INST] hi [/INST]`,
    () => `${pick(words)}<s>${pick(words)}</s>${pick(words)}`,
  ])();
}

function controls() {
  const cs = ['\u0000', '\u0001', '\u0007', '\u0008', '\u001b', '\u001f', '\u007f', '\u0080', '\u009f', '\u00ad', '\u200d',
    '\u200e', '\u2060', '\ufffd', '\ufff9', '\ue000', '\uf8ff', '\u{10ffff}', '\u{e0001}', '\u{1d400}'];
  return rep(int(1, 6), () => (rand() < 0.5 ? pick(cs) : pick(words) + pick(['', ' '])));
}

const families = [
  [prose, 18], [() => pick(codeSnippets)(), 10], [whitespace, 9], [digits, 8], [punctuation, 9], [emoji, 7],
  [cjk, 7], [otherScripts, 7], [accented, 9], [specialLooking, 8], [controls, 3],
];
function mixed() {
  return rep(int(2, 6), () => {
    const total = families.reduce((a, f) => a + f[1], 0);
    let r = rand() * total;
    for (const [f, w] of families) { if ((r -= w) < 0) return f() + pick(['', ' ', '\n']); }
    return '';
  });
}
function longDoc() {
  return rep(int(30, 120), () => mixed() + '\n');
}

const count = parseInt(process.argv[2] || '2400', 10);
const out = [];
if (process.argv.includes('--prose')) {
  while (out.length < count) out.push(prose());
  for (const s of out) process.stdout.write(JSON.stringify(s) + '\n');
  process.exit(0);
}
// Fixed edge cases first.
out.push('', ' ', '  ', '\n', 'a', 'A', '0', '\t\t', ' a', 'a ', '  a  ', "'", "'s", ' \n ', '\r\n', 'Hello', ' Hello',
  'Hello world', '    def', '1234567890', '1,000,000', 'ĠĠ', '▁', '<s>', '<|im_start|>', '\u00a0', '\u3000x', 'x\u0085y',
  ' \ufeffz', '\u180e', 'e\u0301', '\u1100\u1161\u11a8', 'A\u030a\u0301', '\u{1F600}', '日本');
const weightTotal = families.reduce((a, f) => a + f[1], 0) + 6;
while (out.length < count) {
  let r = rand() * weightTotal;
  let s = null;
  for (const [f, w] of families) { if ((r -= w) < 0) { s = f(); break; } }
  if (s === null) s = out.length % 40 === 0 ? longDoc() : mixed();
  out.push(s);
}
for (const s of out) process.stdout.write(JSON.stringify(s) + '\n');
