"""A small Llama (grouped-query attention, RoPE, SwiGLU, RMSNorm, a KV cache) in plain MLX-style code, with
random weights, generating tokens greedily in a plain Python decode loop, as the mlx-examples `llms/` programs
do (no `mx.compile`). Weights can be float32, float16, bfloat16, or quantized to 4 or 8 bits by `nn.quantize`.

Run (after `pip install .`):
    python examples/llama.py --dtype float16 --tokens 16
    python examples/llama.py --bits 4 --dim 512 --layers 2
Only the import lines differ from the MLX version: `import kiln.core as mx` / `import kiln.nn as nn`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import kiln.core as mx
import kiln.nn as nn


@dataclass
class ModelArgs:
    dim: int = 256
    n_layers: int = 2
    n_heads: int = 8
    n_kv_heads: int = 2
    hidden_dim: int = 704
    vocab_size: int = 1000
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads = args.n_heads, args.n_kv_heads
        self.scale = args.head_dim ** -0.5
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.rope = nn.RoPE(args.head_dim, traditional=True, base=args.rope_theta)

    def __call__(self, x, mask=None, cache=None):
        B, L, _ = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)
        q = q.reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)
        k = k.reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = v.reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        if cache is not None:
            key_cache, value_cache = cache
            q = self.rope(q, offset=key_cache.shape[2])
            k = self.rope(k, offset=key_cache.shape[2])
            k = mx.concatenate([key_cache, k], axis=2)
            v = mx.concatenate([value_cache, v], axis=2)
        else:
            q, k = self.rope(q), self.rope(k)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.wo(out.transpose(0, 2, 1, 3).reshape(B, L, -1)), (k, v)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias=False)

    def __call__(self, x):
        return self.w2(nn.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = nn.RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = nn.RMSNorm(args.dim, eps=args.norm_eps)

    def __call__(self, x, mask=None, cache=None):
        r, cache = self.attention(self.attention_norm(x), mask, cache)
        h = x + r
        return h + self.feed_forward(self.ffn_norm(h)), cache


class Llama(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = [TransformerBlock(args) for _ in range(args.n_layers)]
        self.norm = nn.RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)

    def __call__(self, x, cache=None):
        mask = None
        if x.shape[1] > 1:
            mask = nn.MultiHeadAttention.create_additive_causal_mask(x.shape[1]).astype(self.norm.weight.dtype)
        h = self.tok_embeddings(x)
        cache = [None] * len(self.layers) if cache is None else cache
        for i, layer in enumerate(self.layers):
            h, cache[i] = layer(h, mask, cache[i])
        return self.output(self.norm(h)), cache


def build(args: ModelArgs, dtype=mx.float32, bits: int | None = None, group_size: int = 64, seed: int = 0) -> Llama:
    """A Llama with random weights (scaled so activations stay O(1)), cast to `dtype`, optionally quantized."""
    mx.random.seed(seed)
    model = Llama(args)
    model.set_dtype(dtype)
    if bits is not None:
        nn.quantize(model, group_size=group_size, bits=bits)
    mx.eval(model.parameters())
    return model


def generate(model: Llama, prompt, max_tokens: int, step=None):
    """Greedy decoding: the prompt in one pass, then one token at a time with the KV cache.

    `step(model, tokens, cache)` computes (logits, cache); the default calls the model (uncompiled).
    Returns the generated token ids as a list.
    """
    step = step or (lambda m, t, c: m(t, c))
    logits, cache = step(model, mx.array([prompt]), None)
    token = mx.argmax(logits[:, -1, :], axis=-1)
    out = []
    for _ in range(max_tokens):
        mx.eval(token)
        out.append(token.item())
        logits, cache = step(model, token[:, None], cache)
        token = mx.argmax(logits[:, -1, :], axis=-1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=704)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--bits", type=int, default=None, help="quantize the Linear/Embedding weights (4 or 8)")
    parser.add_argument("--tokens", type=int, default=16)
    opts = parser.parse_args()
    args = ModelArgs(dim=opts.dim, n_layers=opts.layers, n_heads=opts.heads, n_kv_heads=opts.kv_heads,
                     hidden_dim=opts.hidden, vocab_size=opts.vocab)
    model = build(args, getattr(mx, opts.dtype), opts.bits)
    start = time.perf_counter()
    tokens = generate(model, [1, 2, 3, 4], opts.tokens)
    elapsed = time.perf_counter() - start
    print("tokens:", tokens)
    print(f"{opts.tokens / elapsed:.1f} tokens/s ({1e3 * elapsed / opts.tokens:.2f} ms/token, prompt included)")


if __name__ == "__main__":
    main()
