"""An independent all-MiniLM-L6-v2 forward pass in numpy (no torch), used to
check the Rust LocalEmbedder: BERT encoder, mean pooling, L2 normalisation."""
import json, sys
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from math import erf, sqrt

d = sys.argv[1]
W = load_file(d + "/model.safetensors")
cfg = json.load(open(d + "/config.json"))
tok = Tokenizer.from_file(d + "/tokenizer.json")
tok.no_padding(); tok.enable_truncation(256)
H, NH = cfg["hidden_size"], cfg["num_attention_heads"]; hd = H // NH
def ln(x, p): 
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + cfg["layer_norm_eps"]) * W[p + ".weight"] + W[p + ".bias"]
def lin(x, p): return x @ W[p + ".weight"].T + W[p + ".bias"]
verf = np.vectorize(erf)
def gelu(x): return 0.5 * x * (1 + verf(x / sqrt(2)))
def embed(text):
    ids = np.array(tok.encode(text).ids)
    n = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:n] + W["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q = lin(x, p + "attention.self.query").reshape(n, NH, hd).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(n, NH, hd).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(n, NH, hd).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        a = np.exp(a - a.max(-1, keepdims=True)); a /= a.sum(-1, keepdims=True)
        c = (a @ v).transpose(1, 0, 2).reshape(n, H)
        x = ln(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = gelu(lin(x, p + "intermediate.dense"))
        x = ln(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    m = x.mean(0)
    return m / np.linalg.norm(m)
texts = [l.rstrip("\n") for l in open(sys.argv[2])]
json.dump({"texts": texts, "vectors": [[round(float(f), 6) for f in embed(t)] for t in texts]}, sys.stdout)
