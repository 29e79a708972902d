"""Counter-based random numbers: every draw a pure function of (seed, step, stream, row, index).

Why not torch's generator: the trainer splits a global batch over processes (torchrun), and
step N must be step N of the one-process run. A draw that depends only on the batch row it
belongs to, not on which process holds the row or how many rows came before it, gives that.
It also compiles: torch.compile fuses the hash into the kernel that consumes the noise, so
the Gumbel noise of the generator's [B, N, V] logits is never written to memory.

The hash is a 32-bit integer finalizer (xor-shift, multiply, twice), computed in int64
without overflow: products are formed from 16-bit halves. Each row's counter starts at a
hashed key of (seed, step, stream, row); an element is its row's counter plus its index,
hashed, xored with a second key of the row and hashed again. One finalizer round is not
enough on consecutive counters: the first xor-shift leaves neighbours differing in their low
bits only, so the values of elements 2 and 3 apart are visibly dependent (a 16 x 16 pair
histogram is 15 standard deviations off uniform), and the generator trained on such draws
ended 0.2 above TF1's loss (docs/BENCHMARKS.md). Two rounds pass that test and train as TF1.
"""
from typing import Sequence

import torch

MASK_POSITIONS = 1   # streams: which positions are masked,
MASK_KEEP = 2        # which of them become [MASK],
GUMBEL = 3           # the generator's sample,
DROPOUT = 16         # hidden dropout, one stream per call site from here on

_M32 = 0xFFFFFFFF
_MUL_1, _MUL_2 = 0x7FEB352D, 0x846CA68B
_GOLDEN = 0x9E3779B9
_ROW_KEY_2 = 0x5BD1E995   # the second round's key of a row: its counter's hash xor this


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), without int64 overflow."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + ((hi * (c & 0xFFFF)) << 16)) & _M32


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, _MUL_1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MUL_2)
    return x ^ (x >> 16)


def step_key(seed: int, step: torch.Tensor) -> torch.Tensor:
    """The key of one training step: an int64 scalar tensor (step may live on the GPU)."""
    return _mix(_mix((step & _M32) ^ (seed & _M32)) ^ ((step >> 32) & _M32))


def substream(key: torch.Tensor, place: int) -> torch.Tensor:
    """A key of its own for one place of the step (a layer, say), from the step's key."""
    return _mix(_mix(key) ^ ((place * 0x2545F491) & _M32))


def uniform(key: torch.Tensor, stream: int, rows: torch.Tensor,
            shape: Sequence[int]) -> torch.Tensor:
    """Uniform floats in [0, 1) of shape [len(rows), *shape]; rows are global row indices."""
    n = 1
    for d in shape:
        n *= int(d)
    base = _mix((key + stream * _GOLDEN) & _M32)
    row = _mix(base ^ _mix(rows.long() & _M32))                        # [B]
    index = torch.arange(n, device=rows.device, dtype=torch.long)
    second = _mix(row ^ _ROW_KEY_2)                                      # [B]
    x = _mix(_mix((row[:, None] + index[None, :]) & _M32) ^ second[:, None])   # [B, n]
    return ((x >> 8).float() * (1.0 / (1 << 24))).view(len(rows), *shape)
