#!/usr/bin/python3
"""Python side of test/suites/template_parity.sh: renders conversations with
Jinja2 the way Hugging Face transformers' apply_chat_template does (sandboxed
environment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
tojson), from the tokenizer_config.json files the JavaScript driver wrote.

This is the engine the published templates are written for: unlike the
JavaScript one it runs Qwen3's own template, and its strip()/trim and
'' != false follow Python, so the contents here include what the JavaScript
comparison has to leave out.

    template_jinja_ref.py <out dir>
reads <out>/<name>/tokenizer_config.json for every setup directory and writes
<out>/jinja_cases.jsonl: {"tokenizer", "messages", "gen", "text"} per line.
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

POOL = [
    "Hello!", "What is 2+2?", "  spaced out  ", "line one\nline two\n\nline four",
    "\nstarts with a newline", "ends with a newline\n", "code:\n```c\nint x = 1;\n```\n",
    "emoji \U0001F600 and CJK \u6f22\u5b57", "numbers 1234567890", "", "   ",
    # Python's strip() takes these; JavaScript's trim() does not (or the reverse)
    "\x1cfile separator\x1f", "\x85next line\x85", "\ufeffbyte order mark\ufeff",
    "\u3000ideographic space\u3000", "it's, we'll", "x", " leading space", "trailing space ",
]
# Reasoning in replies, for Qwen3's template (plain text for the others would
# spell its <think> added token, which the reference splits out).
THINKING = [
    "<think>\nLet me add.\n</think>\n\n4", "<think></think>Short.", "no reasoning here",
    "<think>\n\nplan\n\n</think>\n\n\nanswer after blank lines",
    "prefix <think>inner</think>tail", "a</think>b</think>c", "\n\n</think>only an end tag",
]


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body and, while a
    tracker list is set (render_tracked), records the body's (start, end)
    character offsets in the output, as transformers' AssistantTracker does."""
    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(generation_tracker=None)

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        text = caller()
        tracker = self.environment.generation_tracker
        if tracker is not None:
            start = len("".join(tracker["blocks"]))
            tracker["spans"].append((start, start + len(text)))
        return text


def environment():
    """Jinja2 as transformers' apply_chat_template sets it up; strftime_now's
    clock is pinned by SFT_JINJA_NOW (seconds since the epoch) when set."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        pinned = os.environ.get("SFT_JINJA_NOW")
        now = datetime.datetime.fromtimestamp(int(pinned)) if pinned else datetime.datetime.now()
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render_tracked(template, **variables):
    """(text, generation spans) the way transformers renders with
    return_assistant_tokens_mask: the output generated chunk by chunk."""
    tracker = {"blocks": [], "spans": []}
    template.environment.generation_tracker = tracker
    try:
        for chunk in template.generate(**variables):
            tracker["blocks"].append(chunk)
    finally:
        template.environment.generation_tracker = None
    return "".join(tracker["blocks"]), tracker["spans"]


def conversations(thinking):
    convs = []
    k = [0, 0]

    def nxt():
        k[0] += 1
        return POOL[(k[0] - 1) % len(POOL)]

    def reply():
        if thinking and k[0] % 2 == 0:
            k[1] += 1
            return THINKING[(k[1] - 1) % len(THINKING)]
        return nxt()

    for i in range(45):
        messages = []
        if i % 3 == 0:
            messages.append({"role": "system", "content": nxt()})
        for _ in range(1 + i % 3):
            messages.append({"role": "user", "content": nxt()})
            messages.append({"role": "assistant", "content": reply()})
        convs.append((messages, False))
        if i % 3 == 1:
            convs.append((messages[:-1], True))
    if thinking:
        # a user message that is all tool response is not the last query
        convs.append(([{"role": "user", "content": "q"},
                       {"role": "assistant", "content": "<think>r</think>a"},
                       {"role": "user", "content": "<tool_response>x</tool_response>"},
                       {"role": "assistant", "content": "b"}], False))
    return convs


def main():
    OUT = sys.argv[1]
    env = environment()
    lines = []
    # every setup directory: the reference ones, and jx_* with our own Jinja
    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name, "tokenizer_config.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        template = env.from_string(config["chat_template"])
        # as transformers' special_tokens_map: an AddedToken object gives its content
        special = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                special[key] = value
        for messages, gen in conversations(name in ("ref_qwen3", "ref_deepseek_v3")):
            text = template.render(messages=messages, tools=None, documents=None,
                                   add_generation_prompt=gen, **special)
            lines.append(json.dumps({"tokenizer": name, "messages": messages, "gen": gen,
                                     "text": text}, ensure_ascii=False))
    with open(os.path.join(OUT, "jinja_cases.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("jinja2 %s: %d cases" % (jinja2.__version__, len(lines)))


if __name__ == "__main__":
    main()
