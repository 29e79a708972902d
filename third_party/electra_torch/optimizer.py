"""The TF1 trainer's update: learning-rate schedule, global-norm clipping, Adam with decoupled
weight decay and no bias correction (third_party/electra/optimization.py; SPEC.md section 2).

All of it is tensor arithmetic on the device (the step counter included), with torch's
foreach kernels: no host sync, so a whole step can be captured in a CUDA graph. The float32
constants are TF's: 1 - 0.9 is computed in float32 as TF's kernel does (0.100000024, not 0.1).
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-6
CLIP_NORM = 1.0
NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")   # no weight decay on these
ONE_MINUS_BETA_1 = float(np.float32(1) - np.float32(BETA_1))
ONE_MINUS_BETA_2 = float(np.float32(1) - np.float32(BETA_2))


def uses_weight_decay(tf_name: str) -> bool:
    return not any(part in tf_name for part in NO_DECAY_NAME_PARTS)


def learning_rate(step: torch.Tensor, base_rate: float, num_train_steps: int,
                  num_warmup_steps: int, power: float) -> torch.Tensor:
    """Polynomial decay from base_rate to 0 over num_train_steps, times min(1, step / warmup),
    in float32 from the int64 step (the rate of the step that `step` counts before it)."""
    done = torch.clamp(step, max=num_train_steps).float() / float(num_train_steps)
    rate = base_rate * torch.pow(1.0 - done, power)
    if num_warmup_steps > 0:
        rate = rate * torch.clamp(step.float() / float(num_warmup_steps), max=1.0)
    return rate


def squared_norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    """Sum of squares of every element (float32), summed as TF sums (torch._foreach_norm's
    CPU kernel accumulates serially: 1e-5 off for a million elements, which moves every
    clipped gradient)."""
    return torch.stack([t.float().pow(2).sum() for t in tensors]).sum()


def clip_scale(norm: torch.Tensor) -> torch.Tensor:
    """tf.clip_by_global_norm's factor: clip * min(1 / norm, 1 / clip); NaN for a non-finite norm."""
    scale = CLIP_NORM * torch.clamp(1.0 / norm, max=1.0 / CLIP_NORM)
    return torch.where(torch.isfinite(norm), scale, torch.full_like(scale, float("nan")))


@dataclass
class AdamState:
    params: List[torch.Tensor]      # the variables that get gradients, in a fixed order
    decays: List[bool]              # weight decay per variable (by its TF name)
    m: List[torch.Tensor]           # `<variable>/adam_m`
    v: List[torch.Tensor]           # `<variable>/adam_v`


def new_adam_state(params: List[torch.Tensor], names: List[str]) -> AdamState:
    return AdamState(list(params), [uses_weight_decay(n) for n in names],
                     [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params])


@torch.no_grad()
def adam_update(state: AdamState, grads: List[torch.Tensor], rate: torch.Tensor,
                weight_decay_rate: float, scale: torch.Tensor,
                applied: Optional[torch.Tensor] = None) -> None:
    """One step on every variable, in place:
        g <- g * scale (the clip)
        m <- m + (g - m)(1 - beta_1);  v <- v + (g^2 - v)(1 - beta_2)
        p <- p - rate m / (sqrt(v) + epsilon) - rate * weight_decay_rate * p_before
    applied: a 0/1 float tensor; 0 leaves every variable and slot as it was (a skipped
    non-finite step of mixed precision; the gradients are then zeroed of NaN/inf first)."""
    params, m, v = state.params, state.m, state.v
    grads = list(grads)
    one_minus_b1 = torch.full((), ONE_MINUS_BETA_1, device=rate.device)
    one_minus_b2 = torch.full((), ONE_MINUS_BETA_2, device=rate.device)
    if applied is not None:
        grads = [torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) for g in grads]
        scale = torch.nan_to_num(scale, nan=0.0, posinf=0.0, neginf=0.0)
        one_minus_b1, one_minus_b2 = one_minus_b1 * applied, one_minus_b2 * applied
        rate = rate * applied
    torch._foreach_mul_(grads, scale)
    decaying = [p for p, d in zip(params, state.decays) if d]
    decay = torch._foreach_mul(decaying, rate * weight_decay_rate) if (
        weight_decay_rate and decaying) else []
    step_m = torch._foreach_sub(grads, m)
    torch._foreach_mul_(step_m, one_minus_b1)
    torch._foreach_add_(m, step_m)
    step_v = torch._foreach_mul(grads, grads)
    torch._foreach_sub_(step_v, v)
    torch._foreach_mul_(step_v, one_minus_b2)
    torch._foreach_add_(v, step_v)
    denominator = torch._foreach_sqrt(v)
    torch._foreach_add_(denominator, EPSILON)
    update = torch._foreach_mul(m, rate)
    torch._foreach_div_(update, denominator)
    torch._foreach_sub_(params, update)
    if decay:
        torch._foreach_sub_(decaying, decay)
