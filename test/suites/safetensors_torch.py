"""safetensors_torch.py: cross-check of the C weight files with PyTorch.

PyTorch (1.13, no safetensors library) writes safetensors files by hand --
JSON header plus raw tensor bytes, bf16 and fp16 produced by torch's own
conversions -- and the C loader (through the driver) must read exactly the
values torch.to(float32) gives.  The other way round, this script parses the
safetensors files and checkpoints the C code writes, checksums included
(zlib.crc32), and compares every value.

usage: safetensors_torch.py DRIVER WORKDIR   (prints TAP lines, then a summary)
"""
import json
import os
import struct
import subprocess
import sys
import zlib

import torch

DRIVER, WORK = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {what}")
    else:
        failed += 1
        print(f"not ok - {what}")


def llama_tensors(cfg, seed):
    """HF LlamaForCausalLM state dict shapes for cfg, random values."""
    g = torch.Generator().manual_seed(seed)
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    NH = cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    HD = cfg.get("head_dim", C // NH)
    F, V = cfg["intermediate_size"], cfg["vocab_size"]
    t = {"model.embed_tokens.weight": torch.randn(V, C, generator=g)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = torch.randn(C, generator=g)
        t[p + "self_attn.q_proj.weight"] = torch.randn(NH * HD, C, generator=g)
        t[p + "self_attn.k_proj.weight"] = torch.randn(NKV * HD, C, generator=g)
        t[p + "self_attn.v_proj.weight"] = torch.randn(NKV * HD, C, generator=g)
        t[p + "self_attn.o_proj.weight"] = torch.randn(C, NH * HD, generator=g)
        t[p + "post_attention_layernorm.weight"] = torch.randn(C, generator=g)
        t[p + "mlp.gate_proj.weight"] = torch.randn(F, C, generator=g)
        t[p + "mlp.up_proj.weight"] = torch.randn(F, C, generator=g)
        t[p + "mlp.down_proj.weight"] = torch.randn(C, F, generator=g)
    t["model.norm.weight"] = torch.randn(C, generator=g)
    if not cfg.get("tie_word_embeddings", False):
        t["lm_head.weight"] = torch.randn(V, C, generator=g)
    return t


TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def raw_bytes(t, dtype):
    x = t.to(TORCH_DTYPE[dtype]).contiguous()
    if dtype == "BF16":  # numpy has no bfloat16: reinterpret the bits
        x = x.view(torch.int16)
    return x.numpy().tobytes()


def as_loaded(t, dtype):
    """What a correct loader must produce: torch's own conversion to fp32."""
    return t.to(TORCH_DTYPE[dtype]).to(torch.float32)


def write_safetensors(path, entries, order=None, metadata=None):
    """entries: name -> (tensor, dtype); written in order (default sorted)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name in order if order is not None else sorted(entries):
        t, dtype = entries[name]
        b = raw_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_dir(name, cfg):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return d


def run_load(d):
    out = os.path.join(WORK, "dump.bin")
    r = subprocess.run([DRIVER, "load", d, out], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    data = torch.frombuffer(bytearray(open(out, "rb").read()), dtype=torch.float32)
    res, off = {}, 0
    for line in r.stdout.splitlines():
        name, ndim, d0, d1 = line.split()
        shape = [int(d0)] if ndim == "1" else [int(d0), int(d1)]
        n = shape[0] * (shape[1] if len(shape) == 2 else 1)
        res[name] = data[off:off + n].view(shape)
        off += n
    return res, "loaded"


def same_tensors(got, want):
    """got: loaded fp32 by name; want: name -> expected fp32. Exact equality."""
    if got is None or set(got) != set(want):
        return False
    return all(torch.equal(got[k], want[k]) for k in want)


def read_safetensors(path):
    """Parse a safetensors file by hand; returns (header, tensors, data_start)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        assert e["dtype"] == "F32"
        tensors[name] = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).view(e["shape"])
    return header, tensors, 8 + n, len(data)


BASE = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 24, "vocab_size": 32,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "bos_token_id": 1, "eos_token_id": [2, 3],
}

# 1. F32, sorted by name (what the reference library writes), untied.
cfg = dict(BASE)
src = llama_tensors(cfg, 1)
d_f32 = make_dir("f32", cfg)
write_safetensors(os.path.join(d_f32, "model.safetensors"),
                  {k: (v, "F32") for k, v in src.items()}, metadata={"format": "pt"})
got, err = run_load(d_f32)
check(same_tensors(got, src), f"F32 file from torch loads exactly ({err})")

# 2. BF16, tied, table order, no metadata.
cfg_tied = dict(BASE, tie_word_embeddings=True)
src_tied = llama_tensors(cfg_tied, 2)
d_bf16 = make_dir("bf16", cfg_tied)
write_safetensors(os.path.join(d_bf16, "model.safetensors"),
                  {k: (v, "BF16") for k, v in src_tied.items()}, order=list(src_tied))
got, err = run_load(d_bf16)
check(same_tensors(got, {k: as_loaded(v, "BF16") for k, v in src_tied.items()}),
      f"BF16 file loads as torch's bf16->fp32 ({err})")

# 3. F16 over a wide range of magnitudes (subnormals to near 65504).
g = torch.Generator().manual_seed(3)
src_f16 = {k: (v * torch.pow(10.0, torch.empty(v.shape).uniform_(-9, 4, generator=g))).clamp(-65000, 65000)
           for k, v in llama_tensors(cfg, 3).items()}
d_f16 = make_dir("f16", cfg)
write_safetensors(os.path.join(d_f16, "model.safetensors"),
                  {k: (v, "F16") for k, v in src_f16.items()})
got, err = run_load(d_f16)
want = {k: as_loaded(v, "F16") for k, v in src_f16.items()}
n_sub = sum(int(((w != 0) & (w.abs() < 2 ** -14)).sum()) for w in want.values())
check(same_tensors(got, want) and n_sub > 0,
      f"F16 file (incl. {n_sub} subnormals) loads as torch's fp16->fp32 ({err})")

# 4. Every finite fp16 bit pattern: 63488 = 1984 x 32 embedding values.
cfg_all = dict(BASE, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
               num_key_value_heads=2, intermediate_size=8, vocab_size=1984,
               tie_word_embeddings=True, eos_token_id=2)
src_all = llama_tensors(cfg_all, 4)
bits = torch.arange(65536, dtype=torch.int32)
bits = bits[((bits >> 10) & 0x1F) != 0x1F].to(torch.int16)
src_all["model.embed_tokens.weight"] = bits.view(torch.float16).to(torch.float32).view(1984, 32)
d_all = make_dir("f16_all", cfg_all)
write_safetensors(os.path.join(d_all, "model.safetensors"),
                  {k: (v, "F16") for k, v in src_all.items()})
got, err = run_load(d_all)
check(same_tensors(got, {k: as_loaded(v, "F16") for k, v in src_all.items()}),
      f"all 63488 finite fp16 patterns convert exactly as torch does ({err})")

# 5. Sharded, mixed dtypes, tied with a stray lm_head.weight and rotary buffers.
d_sh = make_dir("sharded", cfg_tied)
names = list(src_tied)
dtypes = ["F32", "BF16", "F16"]
entries = {k: (src_tied[k], dtypes[i % 3]) for i, k in enumerate(names)}
half = len(names) // 2
shard1 = {k: entries[k] for k in names[:half]}
shard2 = {k: entries[k] for k in names[half:]}
shard1["model.layers.0.self_attn.rotary_emb.inv_freq"] = (torch.rand(2), "F32")
shard2["lm_head.weight"] = (torch.full((32, 16), 42.0), "BF16")
write_safetensors(os.path.join(d_sh, "model-00001-of-00002.safetensors"), shard1,
                  metadata={"format": "pt"})
write_safetensors(os.path.join(d_sh, "model-00002-of-00002.safetensors"), shard2,
                  metadata={"format": "pt"})
wm = {k: "model-00001-of-00002.safetensors" for k in shard1}
wm.update({k: "model-00002-of-00002.safetensors" for k in shard2})
with open(os.path.join(d_sh, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f, indent=2)
got, err = run_load(d_sh)
check(same_tensors(got, {k: as_loaded(v, entries[k][1]) for k, v in src_tied.items()}),
      f"sharded mixed-dtype directory loads; inv_freq and tied lm_head ignored ({err})")

# 6. Files the loader must refuse, with the reason named.
d_bad = make_dir("bad_dtype", cfg)
bad = {k: (v, "F32") for k, v in src.items()}
write_safetensors(os.path.join(d_bad, "model.safetensors"), bad)
raw = bytearray(open(os.path.join(d_bad, "model.safetensors"), "rb").read())
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8:8 + n])
e = hdr["model.norm.weight"]
e["dtype"] = "I32"  # same byte size, a dtype we do not load
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(os.path.join(d_bad, "model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
got, err = run_load(d_bad)
check(got is None and "model.norm.weight" in err and "I32" in err,
      f"I32 tensor refused by name: {err}")
open(os.path.join(d_bad, "model.safetensors"), "wb").write(bytes(raw[:-4]))
got, err = run_load(d_bad)
check(got is None and "truncated" in err, f"truncated file refused: {err}")

# 7. The reverse: Python reads what the C code writes.
d_out = os.path.join(WORK, "exported")
os.makedirs(d_out, exist_ok=True)
for label, d_in, want in [("F32", d_f32, src),
                          ("BF16", d_bf16, {k: as_loaded(v, "BF16") for k, v in src_tied.items()})]:
    r = subprocess.run([DRIVER, "save", d_in, d_out], capture_output=True, text=True)
    header, tensors, data_start, data_len = read_safetensors(os.path.join(d_out, "model.safetensors"))
    spans = sorted(e["data_offsets"] for k, e in header.items() if k != "__metadata__")
    tiled = spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) \
        and spans[-1][1] == data_len
    check(r.returncode == 0 and header.get("__metadata__") == {"format": "pt"}
          and data_start % 8 == 0 and tiled,
          f"{label} export: metadata, aligned data, offsets tile the data ({r.stderr.strip()})")
    check(set(tensors) == set(want) and all(torch.equal(tensors[k], want[k]) for k in want),
          f"{label} export: every tensor equal in Python")
    exported_cfg = json.load(open(os.path.join(d_out, "config.json")))
    ref_cfg = json.load(open(os.path.join(d_in, "config.json")))
    keys = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size", "max_position_embeddings", "rms_norm_eps",
            "rope_theta", "tie_word_embeddings", "bos_token_id"]
    check(all(exported_cfg[k] == ref_cfg[k] for k in keys)
          and exported_cfg["eos_token_id"] == 2 and exported_cfg["torch_dtype"] == "float32"
          and exported_cfg["architectures"] == ["LlamaForCausalLM"]
          and exported_cfg["head_dim"] == 4,
          f"{label} export: config.json fields as HF expects")

# 8. Checkpoint layout and CRC-32 checked with zlib.
ck = os.path.join(WORK, "model.ckpt")
r = subprocess.run([DRIVER, "ckpt", d_f32, ck], capture_output=True, text=True)
raw = open(ck, "rb").read()
magic, version, flags, clen, mlen, nparams, step = struct.unpack("<8sIIQQQq", raw[:48])
hdr_end = 48 + clen + mlen
(hcrc,) = struct.unpack("<I", raw[hdr_end:hdr_end + 4])
payload = raw[hdr_end + 4:-4]
(dcrc,) = struct.unpack("<I", raw[-4:])
check(r.returncode == 0 and magic == b"SFTCKPT\0" and version == 1 and flags == 1 and step == 77
      and json.loads(raw[48 + clen:hdr_end]) == {"run": 3, "note": "from the suite"}
      and json.loads(raw[48:48 + clen])["hidden_size"] == 16,
      f"checkpoint header fields ({r.stderr.strip()})")
check(hcrc == zlib.crc32(raw[:hdr_end]) and dcrc == zlib.crc32(payload),
      "checkpoint CRC-32s agree with zlib.crc32")
vals = torch.frombuffer(bytearray(payload), dtype=torch.float32)
params = torch.cat([src[k].reshape(-1) for k in src])  # table order == insertion order
check(len(payload) == 3 * 4 * nparams and torch.equal(vals[:nparams], params)
      and torch.equal(vals[nparams:2 * nparams], params / 2)
      and torch.equal(vals[2 * nparams:], params * params),
      "checkpoint params, m and v equal in Python")

print(f"{passed} passed, {failed} failed")
