#!/usr/bin/python3
"""Reference side of test/suites/generate_reference.sh (numpy, no torch needed).

  craft DIR SPEC.json   write a hand-made model directory (config.json,
                        model.safetensors, tokenizer files) whose greedy
                        output is known in advance: a "bigram" Llama whose
                        attention and MLP weights are zero, so the hidden
                        state is the last token's embedding and the LM head
                        decides the next token from it alone.  SPEC lists the
                        chain edges (a -> b): lm_head row b is embedding a, so
                        after a the logit of b is |e_a|^2 = C while every other
                        logit is a dot product of random near-orthogonal
                        vectors (std sqrt(C)).  Also optional "decoys":
                        {"id": j, "after": a, "scale": s} puts s * e_a in row
                        j, to make an id outrank the chain.
  check DIR PROMPT_IDS GENERATED_IDS
                        reload an exported model (config.json +
                        model.safetensors) and run the Hugging Face Llama
                        forward in float64 over the whole sequence at every
                        step (no KV cache): each generated id must be the
                        argmax of the reference logits, up to ties within
                        1e-4.  Prints one JSON line with the counts.

The forward is written from the Hugging Face LlamaForCausalLM definition:
RMSNorm (x * rsqrt(mean(x^2) + eps) * w), rotary embedding with rotate_half
over the two halves of each head, grouped-query attention with a causal
mask, SwiGLU MLP, final norm, tied or separate LM head.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start:base + end], dtype="<f4").astype(np.float64)
        tensors[name] = arr.reshape(info["shape"])
    return tensors


def write_safetensors(path, tensors):
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------------------
# The Hugging Face Llama forward, float64, whole sequence
# ---------------------------------------------------------------------------

class Llama:
    def __init__(self, directory):
        with open(os.path.join(directory, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = read_safetensors(os.path.join(directory, "model.safetensors"))
        c = self.cfg
        self.C = c["hidden_size"]
        self.L = c["num_hidden_layers"]
        self.NH = c["num_attention_heads"]
        self.NKV = c.get("num_key_value_heads", self.NH)
        self.HD = c.get("head_dim", self.C // self.NH)
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        head = self.w.get("lm_head.weight")
        self.head = head if head is not None else self.w["model.embed_tokens.weight"]

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, T):
        # x [T, H, HD]; HF: emb = cat(freqs, freqs); x * cos + rotate_half(x) * sin
        inv_freq = 1.0 / (self.theta ** (np.arange(0, self.HD, 2, dtype=np.float64) / self.HD))
        freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
        half = self.HD // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def logits(self, ids):
        w, T, HD = self.w, len(ids), self.HD
        x = w["model.embed_tokens.weight"][np.array(ids)]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        for l in range(self.L):
            p = "model.layers.%d." % l
            h = self.rmsnorm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, self.NH, HD)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, self.NKV, HD)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, self.NKV, HD)
            q, k = self.rope(q, T), self.rope(k, T)
            group = self.NH // self.NKV
            k = np.repeat(k, group, axis=1)
            v = np.repeat(v, group, axis=1)
            scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(HD) + mask
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            att = np.einsum("hts,shd->thd", probs, v).reshape(T, self.NH * HD)
            x = x + att @ w[p + "self_attn.o_proj.weight"].T
            h = self.rmsnorm(x, w[p + "post_attention_layernorm.weight"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
        x = self.rmsnorm(x, w["model.norm.weight"])
        return x[-1] @ self.head.T


def check(directory, prompt, generated):
    model = Llama(directory)
    exact = 0
    within = 0
    worst = 0.0
    for i, token in enumerate(generated):
        logits = model.logits(prompt + generated[:i])
        best = float(logits.max())
        gap = best - float(logits[token])
        worst = max(worst, gap)
        exact += int(int(np.argmax(logits)) == token)
        within += int(gap <= 1e-4)
    print(json.dumps({"steps": len(generated), "exact_argmax": exact,
                      "within_1e-4": within, "worst_gap": worst}))


# ---------------------------------------------------------------------------
# Hand-made bigram models
# ---------------------------------------------------------------------------

def craft(directory, spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    C, V, F = 64, spec["vocab_size"], 32
    NH, NKV, HD = 4, 2, 16
    rng = np.random.default_rng(spec.get("seed", 1))
    embed = rng.standard_normal((V, C))
    embed /= np.sqrt(np.mean(embed * embed, axis=1, keepdims=True))   # rms 1: the norm is a no-op
    head = np.zeros((V, C))
    targets = {}
    for a, b in spec["chain"]:
        assert b not in targets, "token %d has two predecessors" % b
        targets[b] = a
        head[b] = embed[a]
    for d in spec.get("decoys", []):
        head[d["id"]] = d["scale"] * embed[d["after"]]
    froms = [a for a, _ in spec["chain"]]
    assert len(froms) == len(set(froms)), "a token has two successors: %r" % froms
    t = {"model.embed_tokens.weight": embed, "lm_head.weight": head,
         "model.norm.weight": np.ones(C)}
    p = "model.layers.0."
    t[p + "input_layernorm.weight"] = np.ones(C)
    t[p + "post_attention_layernorm.weight"] = np.ones(C)
    t[p + "self_attn.q_proj.weight"] = np.zeros((NH * HD, C))
    t[p + "self_attn.k_proj.weight"] = np.zeros((NKV * HD, C))
    t[p + "self_attn.v_proj.weight"] = np.zeros((NKV * HD, C))
    t[p + "self_attn.o_proj.weight"] = np.zeros((C, NH * HD))
    t[p + "mlp.gate_proj.weight"] = np.zeros((F, C))
    t[p + "mlp.up_proj.weight"] = np.zeros((F, C))
    t[p + "mlp.down_proj.weight"] = np.zeros((C, F))
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, "model.safetensors"), t)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": C, "num_hidden_layers": 1, "num_attention_heads": NH,
              "num_key_value_heads": NKV, "intermediate_size": F, "vocab_size": V,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": False,
              "eos_token_id": spec.get("eos_token_id", 378)}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    shutil.copy(spec["tokenizer_json"], os.path.join(directory, "tokenizer.json"))
    shutil.copy(spec["tokenizer_config_json"], os.path.join(directory, "tokenizer_config.json"))
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    os.chmod(directory, 0o755)


if __name__ == "__main__":
    if sys.argv[1] == "craft":
        craft(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]))
    else:
        sys.exit("usage: generate_reference.py craft DIR SPEC | check DIR PROMPT GENERATED")
