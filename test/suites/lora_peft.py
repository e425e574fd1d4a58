#!/usr/bin/python3
"""Reference side of test/suites/lora_peft.sh: PEFT LoRA files and PEFT's
math in float64 PyTorch (torch 1.13, one thread; no peft or safetensors
package needed).

  fixture WORK        write WORK/base, a random-weight Llama directory
                      (config.json, model.safetensors, the tiny tokenizer),
                      and two PEFT adapter directories for it, as
                      peft.save_pretrained writes them: adapter_config.json
                      with every key PEFT 0.17 writes, adapter_model.safetensors
                      with PEFT's tensor names (lora_A [r, in], lora_B
                      [out, r], random and non-zero), F32, metadata
                      {"format": "pt"}, laid out as the safetensors library
                      lays out F32 tensors (metadata first, names sorted,
                      compact JSON, header padded with spaces to 8 bytes).
                        WORK/peft_all  all-linear, r 8, alpha 16
                        WORK/peft_sub  q_proj, v_proj, down_proj, r 4,
                                       alpha 8, use_rslora (s = alpha / sqrt r)
  check WORK ADAPTER MERGED PROMPT GENERATED
                      (1) the merged model exported by sft_model_export
                      (MERGED, an HF directory) holds W + s B A of the base
                      and the adapter (float64) up to fp32 rounding; (2) its
                      logits, in float64, equal those of base + adapter with
                      PEFT's unmerged math over prompt + generated, within
                      fp32 rounding; (3) every greedy token of the adapter
                      (GENERATED, ids) is the argmax of the float64 base +
                      adapter logits, up to ties within 1e-4.
  keys DIR ORIGINAL   an exported adapter directory DIR is a PEFT directory:
                      adapter_config.json (peft_type LORA, r, lora_alpha,
                      target_modules, use_rslora as ORIGINAL's), tensor names
                      and shapes as PEFT names them for the base, metadata
                      {"format": "pt"}, F32, and the values of ORIGINAL's.

PEFT's math, from its lora/layer.py (Linear.forward, merge):
    result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling
    scaling = lora_alpha / r   (use_rslora: lora_alpha / sqrt(r))
    merge: W += (B @ A) * scaling
The Llama forward follows transformers' LlamaForCausalLM (RMSNorm, rotary
embedding with rotate_half, grouped-query causal attention, SwiGLU).
Prints TAP lines ("ok - ..." / "not ok - ...").
"""
import json
import math
import os
import re
import shutil
import struct
import sys

import torch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

MODULES = {  # PEFT target name -> parent submodule
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}
PREFIX = "base_model.model.model.layers."
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 96, "vocab_size": 386, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "hidden_act": "silu",
}


def tap(cond, what):
    print(("ok - " if cond else "not ok - ") + what)
    return cond


# ---------------------------------------------------------------------------
# safetensors (F32 only)
# ---------------------------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    tensors, dtypes = {}, {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtypes[name] = info["dtype"]
        raw = bytearray(data[8 + n + start:8 + n + end])
        t = torch.frombuffer(raw, dtype=torch.float32) if raw else torch.zeros(0, dtype=torch.float32)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta, dtypes


def write_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        raw = tensors[name].to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

def shapes(cfg):
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    HD = cfg.get("head_dim", C // cfg["num_attention_heads"])
    QH, KVH = cfg["num_attention_heads"] * HD, cfg["num_key_value_heads"] * HD
    return {"q_proj": (QH, C), "k_proj": (KVH, C), "v_proj": (KVH, C), "o_proj": (C, QH),
            "gate_proj": (F, C), "up_proj": (F, C), "down_proj": (C, F)}


def peft_config(r, alpha, targets, rslora):
    """adapter_config.json with every key PEFT 0.17 writes."""
    return {
        "alpha_pattern": {}, "auto_mapping": None,
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M", "bias": "none",
        "corda_config": None, "eva_config": None, "exclude_modules": None,
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": alpha, "lora_bias": False, "lora_dropout": 0.05,
        "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "qalora_group_size": 16, "r": r, "rank_pattern": {},
        "revision": None, "target_modules": targets, "target_parameters": None,
        "task_type": "CAUSAL_LM", "trainable_token_indices": None, "use_dora": False,
        "use_qalora": False, "use_rslora": rslora,
    }


def write_adapter(directory, cfg, r, alpha, targets, rslora, gen):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(peft_config(r, alpha, targets, rslora), f, indent=2, sort_keys=True)
    tensors = {}
    for layer in range(cfg["num_hidden_layers"]):
        for m in targets:
            out_dim, in_dim = shapes(cfg)[m]
            name = "%s%d.%s.%s" % (PREFIX, layer, MODULES[m], m)
            # A as PEFT initialises it (Kaiming-uniform, a = sqrt 5: U(+-1/sqrt(in)));
            # B random instead of zero, as after training
            bound = 1.0 / math.sqrt(in_dim)
            tensors[name + ".lora_A.weight"] = (torch.rand(r, in_dim, generator=gen) * 2 - 1) * bound
            tensors[name + ".lora_B.weight"] = torch.randn(out_dim, r, generator=gen) * 0.05
    write_safetensors(os.path.join(directory, "adapter_model.safetensors"), tensors)


def fixture(work):
    gen = torch.Generator().manual_seed(1234)
    cfg = CONFIG
    C, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    base = os.path.join(work, "base")
    os.makedirs(base, exist_ok=True)
    t = {"model.embed_tokens.weight": torch.randn(V, C, generator=gen) * 0.5,
         "model.norm.weight": 1 + 0.1 * torch.randn(C, generator=gen),
         "lm_head.weight": torch.randn(V, C, generator=gen) * 0.2}
    for layer in range(L):
        p = "model.layers.%d." % layer
        t[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        for m, (out_dim, in_dim) in shapes(cfg).items():
            t[p + MODULES[m] + "." + m + ".weight"] = torch.randn(out_dim, in_dim, generator=gen) / math.sqrt(in_dim)
    write_safetensors(os.path.join(base, "model.safetensors"), t)
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "../fixtures/tiny_bpe.json"), os.path.join(base, "tokenizer.json"))
    shutil.copy(os.path.join(here, "../fixtures/tiny_config_chatml.json"), os.path.join(base, "tokenizer_config.json"))
    write_adapter(os.path.join(work, "peft_all"), cfg, 8, 16, sorted(MODULES), False, gen)
    write_adapter(os.path.join(work, "peft_sub"), cfg, 4, 8, ["q_proj", "v_proj", "down_proj"], True, gen)


# ---------------------------------------------------------------------------
# The model, float64, with PEFT's unmerged LoRA
# ---------------------------------------------------------------------------

class Adapter:
    def __init__(self, directory):
        with open(os.path.join(directory, "adapter_config.json")) as f:
            self.cfg = json.load(f)
        self.tensors, self.meta, self.dtypes = read_safetensors(os.path.join(directory, "adapter_model.safetensors"))
        r, alpha = self.cfg["r"], self.cfg["lora_alpha"]
        self.scaling = alpha / math.sqrt(r) if self.cfg.get("use_rslora") else alpha / r

    def pair(self, layer, module):
        name = "%s%d.%s.%s" % (PREFIX, layer, MODULES[module], module)
        a = self.tensors.get(name + ".lora_A.weight")
        return None if a is None else (a.double(), self.tensors[name + ".lora_B.weight"].double())


class Llama:
    def __init__(self, directory, adapter=None):
        with open(os.path.join(directory, "config.json")) as f:
            self.cfg = json.load(f)
        w, _, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
        self.w = {k: v.double() for k, v in w.items()}
        self.adapter = adapter
        c = self.cfg
        self.C, self.L = c["hidden_size"], c["num_hidden_layers"]
        self.NH = c["num_attention_heads"]
        self.NKV = c.get("num_key_value_heads", self.NH)
        self.HD = c.get("head_dim", self.C // self.NH)
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def linear(self, x, layer, module):
        y = x @ self.w["model.layers.%d.%s.%s.weight" % (layer, MODULES[module], module)].T
        pair = self.adapter.pair(layer, module) if self.adapter else None
        if pair is not None:
            a, b = pair
            y = y + ((x @ a.T) @ b.T) * self.adapter.scaling
        return y

    def rmsnorm(self, x, weight):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * weight

    def rope(self, x, T):
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.HD, 2, dtype=torch.float64) / self.HD))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
        half = self.HD // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def logits(self, ids):
        w, T, HD = self.w, len(ids), self.HD
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        mask = torch.triu(torch.full((T, T), float("-inf")), 1)
        for l in range(self.L):
            p = "model.layers.%d." % l
            h = self.rmsnorm(x, w[p + "input_layernorm.weight"])
            q = self.linear(h, l, "q_proj").reshape(T, self.NH, HD)
            k = self.linear(h, l, "k_proj").reshape(T, self.NKV, HD)
            v = self.linear(h, l, "v_proj").reshape(T, self.NKV, HD)
            q, k = self.rope(q, T), self.rope(k, T)
            g = self.NH // self.NKV
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
            scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(HD) + mask
            att = torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(T, self.NH * HD)
            x = x + self.linear(att, l, "o_proj")
            h = self.rmsnorm(x, w[p + "post_attention_layernorm.weight"])
            gate, up = self.linear(h, l, "gate_proj"), self.linear(h, l, "up_proj")
            x = x + self.linear(torch.nn.functional.silu(gate) * up, l, "down_proj")
        return self.rmsnorm(x, w["model.norm.weight"]) @ self.head.T


def check(work, adapter_dir, merged_dir, prompt, generated):
    adapter = Adapter(adapter_dir)
    base = Llama(os.path.join(work, "base"))
    peft = Llama(os.path.join(work, "base"), adapter)
    merged = Llama(merged_dir)
    label = os.path.basename(adapter_dir)

    # (1) merged weights = W + s B A
    worst_w, scale_w = 0.0, 0.0
    for l in range(base.L):
        for m in MODULES:
            key = "model.layers.%d.%s.%s.weight" % (l, MODULES[m], m)
            want = base.w[key].clone()
            pair = adapter.pair(l, m)
            if pair is not None:
                want += (pair[1] @ pair[0]) * adapter.scaling
            worst_w = max(worst_w, float((merged.w[key] - want).abs().max()))
            scale_w = max(scale_w, float(want.abs().max()))
    others = all(torch.equal(merged.w[k], base.w[k]) for k in base.w if not re.search(r"_proj\.weight$", k))
    tap(worst_w <= 1e-6 * scale_w,
        "%s: merged projections are W + s B A to fp32 rounding (worst %.2g, |W| <= %.3g)" % (label, worst_w, scale_w))
    tap(others, "%s: merged norms, embeddings and LM head are the base's" % label)

    # (2) logits of the merged model = base + adapter (PEFT, unmerged)
    seq = prompt + generated
    ref = peft.logits(seq)
    got = merged.logits(seq)
    worst = float((ref - got).abs().max())
    top = float(ref.abs().max())
    moved = float((ref - base.logits(seq)).abs().max())
    tap(moved > 0.1, "%s: the adapter moves the logits (by up to %.3g)" % (label, moved))
    tap(worst <= 1e-5 * top, "%s: merged model's logits = base + adapter's within fp32 rounding "
        "(worst %.2g of %.3g over %d positions)" % (label, worst, top, len(seq)))

    # (3) greedy tokens of the adapter = argmax of base + adapter
    within = 0
    gaps = 0.0
    for i, token in enumerate(generated):
        row = ref[len(prompt) + i - 1]
        gap = float(row.max() - row[token])
        gaps = max(gaps, gap)
        within += gap <= 1e-4
    tap(within == len(generated) and len(generated) > 0,
        "%s: %d of %d greedy tokens of the adapter are the float64 argmax (worst gap %.2g)" % (label, within, len(generated), gaps))


def keys(directory, original):
    with open(os.path.join(directory, "adapter_config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(original, "adapter_config.json")) as f:
        ocfg = json.load(f)
    label = os.path.basename(directory)
    same = all(cfg.get(k) == ocfg.get(k) for k in ("peft_type", "r", "lora_alpha", "use_rslora", "bias", "task_type"))
    tap(same and sorted(cfg["target_modules"]) == sorted(ocfg["target_modules"]),
        "%s: adapter_config.json keeps peft_type, r, lora_alpha, use_rslora, bias, task_type, target_modules" % label)
    tensors, meta, dtypes = read_safetensors(os.path.join(directory, "adapter_model.safetensors"))
    otensors, _, _ = read_safetensors(os.path.join(original, "adapter_model.safetensors"))
    tap(meta == {"format": "pt"}, "%s: metadata {\"format\": \"pt\"}" % label)
    tap(set(dtypes.values()) == {"F32"}, "%s: every tensor F32" % label)
    pattern = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
    ok = True
    want = set()
    for l in range(CONFIG["num_hidden_layers"]):
        for m in cfg["target_modules"]:
            for ab in "AB":
                want.add("%s%d.%s.%s.lora_%s.weight" % (PREFIX, l, MODULES[m], m, ab))
    for name, t in tensors.items():
        hit = pattern.match(name)
        if not hit or MODULES.get(hit.group(3)) != hit.group(2):
            ok = False
            continue
        out_dim, in_dim = shapes(CONFIG)[hit.group(3)]
        ok &= list(t.shape) == ([cfg["r"], in_dim] if hit.group(4) == "A" else [out_dim, cfg["r"]])
    tap(ok and set(tensors) == want, "%s: %d tensors, PEFT's names, A [r, in] and B [out, r]" % (label, len(tensors)))
    tap(set(tensors) == set(otensors) and all(torch.equal(tensors[k], otensors[k]) for k in tensors),
        "%s: every value is the original file's" % label)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fixture":
        fixture(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), json.loads(sys.argv[6]))
    elif cmd == "keys":
        keys(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
