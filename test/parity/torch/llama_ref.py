#!/usr/bin/python3
"""llama_ref.py: an independent PyTorch reference for the C core.

It implements the math of Hugging Face's LlamaForCausalLM (eager attention)
and of the other families the core computes -- Qwen2ForCausalLM (q/k/v
bias), Qwen3ForCausalLM (q/k RMSNorm per head), SmolLM3ForCausalLM (NoPE
layers), Gemma3ForCausalLM (scaled embeddings, (1 + w) norms, GeGLU with
tanh GELU, four norms a layer, q/k norms, query_pre_attn_scalar, sliding
-window layers with their own rope base, final logit softcapping) and the
llama3 / linear rope scalings -- from scratch, reading the family's
features from config.json as transformers' config classes do
(transformers is not imported), and either checks the C core's outputs
(parity mode) or times the same training step as bench_train (bench mode).

  llama_ref.py parity DIR      compare with what parity_driver wrote in DIR
  llama_ref.py bench [THREADS] [STEPS] [SEQ_LEN] [lean|hf] [TORCH_THREADS] [CONFIG.JSON|-] [LORA_R]
  (LORA_R > 0: PEFT-style LoRA on every projection, alpha 2 r, frozen base)
  (BLAS threads come from OPENBLAS_NUM_THREADS; TORCH_THREADS defaults to THREADS)

Bench "lean" computes LM-head logits only on the rows that predict a target,
like the C core; "hf" computes them for every position and masks the loss
with ignore_index, as LlamaForCausalLM(labels=...) does.

Parity mode recomputes, in float32 and in float64 ("truth"):
  - logits at every position of the first micro-batch's sequences,
  - the summed masked cross-entropy of every optimizer step,
  - every parameter's gradient at step 0 (micro-batches accumulated),
  - three AdamW steps (torch.optim.AdamW, decay on matrices only, global-norm
    clipping with torch.nn.utils.clip_grad_norm_, loss = sum / n_targets),
and prints TAP lines "ok N - ..." / "not ok N - ...".  Sequences run one by
one here, so the comparison also checks the C side's packing.
"""
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# The model, HF LlamaForCausalLM math
# ---------------------------------------------------------------------------

def rms_norm(x, w, eps, gemma=False):
    # HF LlamaRMSNorm: variance in fp32, x * rsqrt(var + eps), times weight;
    # Gemma3RMSNorm: the same times (1 + weight)
    var = x.pow(2).mean(-1, keepdim=True)
    if gemma:
        return (x * torch.rsqrt(var + eps)) * (1.0 + w)
    return w * (x * torch.rsqrt(var + eps))


def features(cfg_json):
    """What the family computes, read from config.json as its config class
    does (defaults included)."""
    mt = cfg_json.get("model_type", "llama")
    L = cfg_json["num_hidden_layers"]
    f = {"model_type": mt, "gemma": mt == "gemma3_text", "qkv_bias": mt == "qwen2",
         "qk_norm": mt in ("qwen3", "gemma3_text"), "rope": [True] * L, "window": [0] * L,
         "rope_scaling": cfg_json.get("rope_scaling"), "softcap": None}
    if mt == "smollm3":
        use = cfg_json.get("no_rope_layers")
        if use is None:
            k = cfg_json.get("no_rope_layer_interval", 4)
            use = [int((i + 1) % k != 0) for i in range(L)]
        f["rope"] = [bool(use[i]) for i in range(L)]
    if f["gemma"]:
        types = cfg_json.get("layer_types")
        if types is None:
            k = cfg_json.get("sliding_window_pattern", cfg_json.get("_sliding_window_pattern", 6))
            types = ["sliding_attention" if (i + 1) % k else "full_attention" for i in range(L)]
        W = cfg_json.get("sliding_window", 4096)
        f["window"] = [W if t == "sliding_attention" else 0 for t in types]
        f["local_theta"] = cfg_json.get("rope_local_base_freq", 10000.0)
        f["scaling"] = cfg_json.get("query_pre_attn_scalar", 256) ** -0.5
        f["softcap"] = cfg_json.get("final_logit_softcapping")
    return f


def inv_freq_of(head_dim, theta, scaling):
    # modeling_rope_utils: default, linear and llama3 inverse frequencies, fp32
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    else:
        assert kind == "default", kind
    return inv_freq


def rope_cos_sin(n, head_dim, theta, dtype, scaling=None):
    # HF rotary embedding: inv_freq and angles in fp32, cos/sin cast to the dtype
    inv_freq = inv_freq_of(head_dim, theta, scaling)
    pos = torch.arange(n, dtype=torch.int64).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(h, p, name):
    # every projection of a layer goes through here (lora_ref.py wraps it)
    y = h @ p[name + ".weight"].T
    return y + p[name + ".bias"] if name + ".bias" in p else y


def layer_forward(x, p, l, cfg, ropes):
    """One decoder layer on one sequence x [S, C]."""
    S = x.shape[0]
    NH, NKV, HD = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    f = cfg.get("features") or features({"num_hidden_layers": cfg["n_layers"]})
    gemma, eps = f["gemma"], cfg["rms_norm_eps"]
    pre = "model.layers.%d." % l
    window = f["window"][l]
    h = rms_norm(x, p[pre + "input_layernorm.weight"], eps, gemma)
    q = linear(h, p, pre + "self_attn.q_proj").view(S, NH, HD)
    k = linear(h, p, pre + "self_attn.k_proj").view(S, NKV, HD)
    v = linear(h, p, pre + "self_attn.v_proj").view(S, NKV, HD)
    if f["qk_norm"]:
        # Qwen3 / Gemma3: RMSNorm over head_dim, one weight for all heads, before RoPE
        q = rms_norm(q, p[pre + "self_attn.q_norm.weight"], eps, gemma)
        k = rms_norm(k, p[pre + "self_attn.k_norm.weight"], eps, gemma)
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if f["rope"][l]:
        cos, sin = ropes["local" if window else "global"]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
    # repeat_kv: kv head g serves query heads g*group .. (g+1)*group-1
    k = k.repeat_interleave(NH // NKV, dim=0)
    v = v.repeat_interleave(NH // NKV, dim=0)
    scaling = f["scaling"] if gemma else HD ** -0.5
    scores = (q @ k.transpose(1, 2)) * scaling
    i = torch.arange(S)
    masked = i[None, :] > i[:, None]                      # causal: kv_idx <= q_idx
    if window:
        masked |= i[None, :] <= i[:, None] - window       # sliding: kv_idx > q_idx - window
    scores = scores.masked_fill(masked, float("-inf"))
    att = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
    att = att.transpose(0, 1).reshape(S, NH * HD)
    a = linear(att, p, pre + "self_attn.o_proj")
    if gemma:
        a = rms_norm(a, p[pre + "post_attention_layernorm.weight"], eps, True)
        x = x + a
        h = rms_norm(x, p[pre + "pre_feedforward_layernorm.weight"], eps, True)
    else:
        x = x + a
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
    gate = linear(h, p, pre + "mlp.gate_proj")
    up = linear(h, p, pre + "mlp.up_proj")
    act = F.gelu(gate, approximate="tanh") if gemma else F.silu(gate)
    m = linear(act * up, p, pre + "mlp.down_proj")
    if gemma:
        m = rms_norm(m, p[pre + "post_feedforward_layernorm.weight"], eps, True)
    return x + m


def hidden_states(tokens, p, cfg):
    """Final-normed hidden states [S, C] of one sequence (a LongTensor)."""
    f = cfg.get("features") or features({"num_hidden_layers": cfg["n_layers"]})
    x = p["model.embed_tokens.weight"][tokens]
    if f["gemma"]:
        # Gemma3TextScaledWordEmbedding: embed_scale is an fp32 buffer cast to the dtype
        x = x * torch.tensor(cfg["hidden_size"] ** 0.5).to(x.dtype)
    ropes = {"global": rope_cos_sin(len(tokens), cfg["head_dim"], cfg["rope_theta"], x.dtype,
                                    f["rope_scaling"])}
    if f["gemma"]:
        ropes["local"] = rope_cos_sin(len(tokens), cfg["head_dim"], f["local_theta"], x.dtype)
    for l in range(cfg["n_layers"]):
        x = layer_forward(x, p, l, cfg, ropes)
    return rms_norm(x, p["model.norm.weight"], cfg["rms_norm_eps"], f["gemma"])


def lm_head(p, cfg):
    return p["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else p["lm_head.weight"]


def project(hs, p, cfg):
    logits = hs @ lm_head(p, cfg).T
    f = cfg.get("features")
    if f and f["softcap"]:
        # Gemma3ForCausalLM: logits / cap, tanh, * cap
        logits = torch.tanh(logits / f["softcap"]) * f["softcap"]
    return logits


def logits_all(tokens, p, cfg):
    return project(hidden_states(tokens, p, cfg), p, cfg)


def masked_loss_sum(tokens, mask, p, cfg):
    """Sum of -log p(token t) over t >= 1 with mask[t] = 1, and the count.
    Only the rows that predict a target go through the LM head."""
    rows = [t - 1 for t in range(1, len(tokens)) if mask[t]]
    if not rows:
        return None, 0
    idx = torch.tensor(rows, dtype=torch.long)
    hs = hidden_states(tokens, p, cfg)[idx]
    logits = project(hs, p, cfg)
    return F.cross_entropy(logits, tokens[idx + 1], reduction="sum"), len(rows)


# ---------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------

def read_kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, v = line.split()
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%sok %d - %s" % ("" if cond else "not ", self.n, what))
        sys.stdout.flush()


def parity(d, tap, label):
    cfg = read_kv(os.path.join(d, "config.txt"))
    with open(os.path.join(d, "config.json")) as f:
        cfg["features"] = features(json.load(f))
    label = "%s %s" % (cfg["family"], label)
    n_params = cfg["n_params"]
    tensors = []
    with open(os.path.join(d, "tensors.txt")) as f:
        for line in f:
            name, off, ndim, d0, d1, wd = line.split()
            shape = (int(d0), int(d1)) if int(ndim) == 2 else (int(d0),)
            tensors.append((name, int(off), shape, int(wd)))

    def slab(name):
        return np.fromfile(os.path.join(d, name), dtype=np.float32, count=n_params)

    def as_dict(flat, dtype, grad):
        p = {}
        for name, off, shape, _ in tensors:
            n = int(np.prod(shape))
            t = torch.tensor(flat[off:off + n].reshape(shape), dtype=dtype)
            p[name] = t.requires_grad_(grad)
        return p

    def flat_of(p, what="data"):
        out = np.zeros(n_params, dtype=np.float64)
        for name, off, shape, _ in tensors:
            t = p[name].grad if what == "grad" else p[name].detach()
            out[off:off + t.numel()] = t.detach().double().numpy().reshape(-1)
        return out

    def batch(s, j):
        lens = np.fromfile(os.path.join(d, "b%d_%d_lens.bin" % (s, j)), dtype=np.int32)
        toks = np.fromfile(os.path.join(d, "b%d_%d_tokens.bin" % (s, j)), dtype=np.int32)
        mask = np.fromfile(os.path.join(d, "b%d_%d_mask.bin" % (s, j)), dtype=np.int32)
        seqs, start = [], 0
        for n in lens:
            seqs.append((torch.tensor(toks[start:start + n], dtype=torch.long),
                         mask[start:start + n].tolist()))
            start += n
        return seqs

    p0 = slab("params0.bin")
    c_losses = [tuple(map(float, l.split())) for l in open(os.path.join(d, "loss.txt"))]
    c_steps = [tuple(map(float, l.split())) for l in open(os.path.join(d, "steps.txt"))]
    c_logits = np.fromfile(os.path.join(d, "logits.bin"), dtype=np.float32)
    c_grads = slab("grads0.bin").astype(np.float64)
    n_steps, n_micro = cfg["n_steps"], cfg["n_micro"]

    results = {}
    for dtype in (torch.float32, torch.float64):
        p = as_dict(p0, dtype, True)
        res = {"loss": [], "norm": [], "params": []}
        # logits of every position of micro-batch b0_0
        with torch.no_grad():
            res["logits"] = torch.cat([logits_all(t, p, cfg) for t, _ in batch(0, 0)]).double().numpy()
        decay = [p[n] for n, _, _, wd in tensors if wd]
        no_decay = [p[n] for n, _, _, wd in tensors if not wd]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=1.0, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
        params = [p[n] for n, _, _, _ in tensors]
        for s in range(n_steps):
            parts, n_targets = [], 0
            for j in range(n_micro):
                for toks, mask in batch(s, j):
                    l, n = masked_loss_sum(toks, mask, p, cfg)
                    if l is not None:
                        parts.append(l)
                        n_targets += n
            loss_sum = torch.stack(parts).sum()
            opt.zero_grad()
            (loss_sum / n_targets).backward()
            if s == 0:
                # the C side reports the summed gradient (before / n_targets)
                res["grads0"] = flat_of(p, "grad") * n_targets
            lr, _, max_norm = c_steps[s]
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            res["loss"].append((float(loss_sum), n_targets))
            res["norm"].append(float(norm))
            res["params"].append(flat_of(p))
        results[dtype] = res

    t32, t64 = results[torch.float32], results[torch.float64]

    def maxabs(a, b):
        return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

    def report(what, c_err, t_err, tol, fp32_factor=None):
        # fp32_factor: where float32 itself cannot meet tol (Adam divides by
        # sqrt(v), which turns fp32 rounding of a small v into a visible step),
        # the C core may be off by that many times torch's own fp32 error
        limit = max(tol, fp32_factor * t_err) if fp32_factor else tol
        tap.ok(c_err <= limit,
               "%s %s: C vs torch fp64 %.2e (torch fp32 vs fp64 %.2e), tolerance %.0e%s"
               % (label, what, c_err, t_err, tol,
                  " or %g x torch fp32" % fp32_factor if fp32_factor else ""))

    V = cfg["vocab_size"]
    cl = c_logits.reshape(-1, V)
    report("logits (KV-cached decoder, every position)", maxabs(cl, t64["logits"]),
           maxabs(t32["logits"], t64["logits"]), 2e-5)
    tap.ok(maxabs(cl, t32["logits"]) <= 2e-5,
           "%s logits: C vs torch fp32 %.2e" % (label, maxabs(cl, t32["logits"])))
    for s in range(n_steps):
        (cls, cn), (tls, tn) = c_losses[s], t64["loss"][s]
        rel = abs(cls - tls) / abs(tls)
        rel32 = abs(t32["loss"][s][0] - tls) / abs(tls)
        tap.ok(cn == tn and rel <= 1e-6,
               "%s step %d masked loss sum %.6f over %d targets: C vs torch fp64 rel %.2e "
               "(torch fp32 %.2e), tolerance 1e-6" % (label, s, cls, int(cn), rel, rel32))
    gscale = float(np.max(np.abs(t64["grads0"])))
    report("every parameter gradient (max abs err / max abs grad)",
           maxabs(c_grads, t64["grads0"]) / gscale, maxabs(t32["grads0"], t64["grads0"]) / gscale, 1e-5)
    for s in range(n_steps):
        cn, tn = c_steps[s][1], t64["norm"][s]
        tap.ok(abs(cn - tn) / tn <= 1e-5 and tn > c_steps[s][2],
               "%s step %d gradient norm %.6f (clipped to %.4f): C vs torch fp64 rel %.2e, tolerance 1e-5"
               % (label, s, cn, c_steps[s][2], abs(cn - tn) / tn))
    # Parameters move by about lr per step, so errors are measured in units of
    # lr.  Adam divides by sqrt(v): for a gradient entry near the float32
    # noise floor (~1e-7 of the largest), that noise becomes a visible part of
    # its update, in torch fp32 as much as here.  Hence two tolerances: tight
    # on entries whose gradient is >= 1e-3 of the largest, looser on all.
    g_abs = np.abs(t64["grads0"])
    solid = g_abs >= 1e-3 * g_abs.max()
    for s in range(n_steps):
        cp = slab("params%d.bin" % (s + 1)).astype(np.float64)
        lr = c_steps[s][0]
        tp, tp32 = t64["params"][s], t32["params"][s]
        report("parameters after AdamW step %d, %d entries with gradient >= 1e-3 max (max abs err / lr)"
               % (s + 1, int(solid.sum())),
               maxabs(cp[solid], tp[solid]) / lr, maxabs(tp32[solid], tp[solid]) / lr, 1e-3, 3)
        report("parameters after AdamW step %d, all %d entries (max abs err / lr)" % (s + 1, n_params),
               maxabs(cp, tp) / lr, maxabs(tp32, tp) / lr, 5e-2, 3)
    # entries with an exactly zero gradient (rows of tokens that never occur)
    # move by weight decay alone: p (1 - lr wd) per step, the decay Adam's
    # normalisation cannot hide
    zero = (c_grads == 0) & (t64["grads0"] == 0)
    decayed = np.zeros(n_params, dtype=bool)
    for name, off, shape, wd in tensors:
        decayed[off:off + int(np.prod(shape))] = wd == 1
    want = p0.astype(np.float64)
    for s in range(n_steps):
        want = want * (1.0 - c_steps[s][0] * cfg["weight_decay"])
    if zero.any():
        # later steps may give these entries a gradient; step 1 alone is exact
        cp1 = slab("params1.bin").astype(np.float64)
        w1 = p0.astype(np.float64) * np.where(decayed, 1.0 - c_steps[0][0] * cfg["weight_decay"], 1.0)
        tap.ok(maxabs(cp1[zero], w1[zero]) <= 1e-7,
               "%s %d zero-gradient entries after step 1 = p (1 - lr wd) (max err %.2e)"
               % (label, int(zero.sum()), maxabs(cp1[zero], w1[zero])))


# ---------------------------------------------------------------------------
# Benchmark: the bench_train step in PyTorch
# ---------------------------------------------------------------------------

def hf_loss_sum(tokens, mask, p, cfg):
    """LlamaForCausalLM-style: logits for every position, masked labels."""
    logits = logits_all(tokens, p, cfg)
    labels = tokens.clone()
    labels[torch.tensor(mask, dtype=torch.bool).logical_not()] = -100
    loss = F.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="sum")
    return loss, int((labels[1:] != -100).sum())


def hf_tensors(cj):
    """(name, shape) of every parameter of the family's HF model, as in the checkpoint."""
    f = features(cj)
    C, L, NH = cj["hidden_size"], cj["num_hidden_layers"], cj["num_attention_heads"]
    NKV = cj.get("num_key_value_heads") or NH
    defaults = {"qwen3": 128, "gemma3_text": 256}
    HD = cj.get("head_dim") or defaults.get(f["model_type"], C // NH)
    F_, V = cj["intermediate_size"], cj["vocab_size"]
    tied = cj.get("tie_word_embeddings", f["model_type"] in ("smollm3", "gemma3_text"))
    out = [("model.embed_tokens.weight", (V, C)), ("model.norm.weight", (C,))]
    for l in range(L):
        pre = "model.layers.%d." % l
        out += [(pre + "input_layernorm.weight", (C,)), (pre + "post_attention_layernorm.weight", (C,))]
        if f["gemma"]:
            out += [(pre + "pre_feedforward_layernorm.weight", (C,)),
                    (pre + "post_feedforward_layernorm.weight", (C,))]
        for name, shape in (("q_proj", (NH * HD, C)), ("k_proj", (NKV * HD, C)), ("v_proj", (NKV * HD, C))):
            out.append((pre + "self_attn." + name + ".weight", shape))
            if f["qkv_bias"]:
                out.append((pre + "self_attn." + name + ".bias", (shape[0],)))
        if f["qk_norm"]:
            out += [(pre + "self_attn.q_norm.weight", (HD,)), (pre + "self_attn.k_norm.weight", (HD,))]
        out += [(pre + "self_attn.o_proj.weight", (C, NH * HD)), (pre + "mlp.gate_proj.weight", (F_, C)),
                (pre + "mlp.up_proj.weight", (F_, C)), (pre + "mlp.down_proj.weight", (C, F_))]
    if not tied:
        out.append(("lm_head.weight", (V, C)))
    cfg = dict(hidden_size=C, n_layers=L, n_heads=NH, n_kv_heads=NKV, head_dim=HD, intermediate_size=F_,
               vocab_size=V, rms_norm_eps=cj.get("rms_norm_eps", 1e-6),
               rope_theta=cj.get("rope_theta", 10000.0), tie_word_embeddings=int(tied), features=f)
    return out, cfg


def bench(threads, steps, T, variant, intra, config_path=None, lora_r=0):
    # The matrix products run on OpenBLAS's own threads (Debian's torch is
    # built with BLAS_INFO=generic: libblas.so.3 is OpenBLAS), sized by
    # OPENBLAS_NUM_THREADS; torch.set_num_threads sizes torch's OpenMP pool
    # for everything else.  Both spinning on the same cores oversubscribes
    # them, so the caller measures intra = threads and intra = 1.
    torch.set_num_threads(intra)
    torch.manual_seed(1)
    cfg = dict(hidden_size=576, n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64,
               intermediate_size=1536, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
               tie_word_embeddings=1)
    C, F_, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    QH, KVH = cfg["n_heads"] * cfg["head_dim"], cfg["n_kv_heads"] * cfg["head_dim"]
    if config_path:
        with open(config_path) as fh:
            tensors, cfg = hf_tensors(json.load(fh))
        V = cfg["vocab_size"]
        gemma = cfg["features"]["gemma"]
        p = {}
        for name, shape in tensors:
            if len(shape) == 2:
                p[name] = torch.randn(*shape) * 0.02
            else:
                p[name] = torch.zeros(shape) if name.endswith(".bias") or gemma else torch.ones(shape)
    else:
        p = {"model.embed_tokens.weight": torch.randn(V, C) * 0.02, "model.norm.weight": torch.ones(C)}
    for l in range(cfg["n_layers"] if not config_path else 0):
        pre = "model.layers.%d." % l
        p[pre + "input_layernorm.weight"] = torch.ones(C)
        p[pre + "post_attention_layernorm.weight"] = torch.ones(C)
        for name, shape in (("self_attn.q_proj", (QH, C)), ("self_attn.k_proj", (KVH, C)),
                            ("self_attn.v_proj", (KVH, C)), ("self_attn.o_proj", (C, QH)),
                            ("mlp.gate_proj", (F_, C)), ("mlp.up_proj", (F_, C)),
                            ("mlp.down_proj", (C, F_))):
            p[pre + name + ".weight"] = torch.randn(*shape) * 0.02
    if lora_r:
        # PEFT's LoRA on every projection (all-linear), frozen base: the step
        # lora_ref.py checks, timed; alpha = 2 r, no adapter dropout
        global linear
        base_linear = linear
        adapters = {}
        for name in list(p):
            if name.endswith("_proj.weight"):
                out_dim, in_dim = p[name].shape
                A = (torch.rand(lora_r, in_dim) * 2 - 1) / math.sqrt(in_dim)
                B = torch.randn(out_dim, lora_r) * 0.01
                adapters[name[:-len(".weight")]] = (A.requires_grad_(True), B.requires_grad_(True))

        def lora_linear(h, params, name):
            y = base_linear(h, params, name)
            A, B = adapters[name]
            return y + ((h @ A.T) @ B.T) * 2.0

        linear = lora_linear
        trained = [t for ab in adapters.values() for t in ab]
        opt = torch.optim.AdamW(trained, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    else:
        for t in p.values():
            t.requires_grad_(True)
        decay = [t for n, t in p.items() if t.dim() == 2]
        no_decay = [t for n, t in p.items() if t.dim() == 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        trained = list(p.values())
    tokens = torch.randint(0, V, (T,))
    mask = [1 if i >= T // 3 else 0 for i in range(T)]

    loss_fn = hf_loss_sum if variant == "hf" else masked_loss_sum

    def step():
        opt.zero_grad()
        loss, n = loss_fn(tokens, mask, p, cfg)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        return float(loss) / n

    l0 = step()
    l1 = step()
    if not (math.isfinite(l1) and l1 < l0):
        print("torch bench: validation failed: loss %.4f -> %.4f" % (l0, l1))
        sys.exit(1)
    print("validation: mean loss %.4f -> %.4f" % (l0, l1))
    for g in opt.param_groups:
        g["lr"] = 1e-4
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1048576.0
    except ImportError:
        rss = float("nan")
    print("torch %s (%s%s): %d BLAS threads, %d torch threads, %d-token steps, median of %d: %.3f s/step, "
          "%.1f tokens/s, peak RSS %.2f GB"
          % (torch.__version__, variant, ", LoRA r=%d all-linear" % lora_r if lora_r else "", threads, intra, T,
             steps, med, T / med, rss))
    print("RESULT tokens_per_s=%.2f step_s=%.4f peak_rss_gb=%.3f" % (T / med, med, rss))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "parity":
        tap = Tap()
        for d in sys.argv[2:]:
            cfg = read_kv(os.path.join(d, "config.txt"))
            parity(d, tap, "tied" if cfg["tie_word_embeddings"] else "untied")
        print("1..%d" % tap.n)
        sys.exit(1 if tap.failed else 0)
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        variant = sys.argv[5] if len(sys.argv) > 5 else "lean"
        if variant not in ("lean", "hf"):
            print(__doc__)
            sys.exit(2)
        args = [int(a) for a in sys.argv[2:5]]
        threads = args[0] if len(args) > 0 else 2
        steps = args[1] if len(args) > 1 else 3
        T = args[2] if len(args) > 2 else 512
        intra = int(sys.argv[6]) if len(sys.argv) > 6 else threads
        config = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] != "-" else None
        bench(threads, steps, T, variant, intra, config, int(sys.argv[8]) if len(sys.argv) > 8 else 0)
        return
    print(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main()
