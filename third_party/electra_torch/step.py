"""One training step: losses, gradients, the global norm, clipping and Adam, all on the device.

`TrainStep` holds the model, the optimizer state and the step counter (an int64 tensor on
the device), and runs a step without a host sync, so that on a GPU the whole step
(forward, backward, all-reduce, clip, update) is captured once in a CUDA graph and replayed.
A batch split over processes computes the one-process step: the loss denominators are the
global batch's, the gradients are summed, and the embedding rows' squares are summed too.
"""
import contextlib
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

from electra_torch import draws, objective, optimizer
from electra_torch.model import Electra, tf_variables

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# TF's dynamic loss scale (tf.train.experimental.DynamicLossScale's defaults).
LOSS_SCALE_START, LOSS_SCALE_PERIOD, LOSS_SCALE_FACTOR = 2.0 ** 15, 2000, 2.0
WARMUP_STEPS_BEFORE_GRAPH = 3   # real steps run eagerly (compiling) before the capture


@dataclass
class Device:
    device: torch.device
    rank: int = 0
    world: int = 1


def set_matmul_precision(precision: str) -> None:
    """fp32 means fp32 (the reference's numbers): no TF32 tensor cores unless asked."""
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


class TrainStep:
    def __init__(self, model: Electra, config, special: objective.SpecialIds, where: Device,
                 seed: int, precision: str = "fp32", use_graphs: bool = False,
                 use_compile: bool = False):
        self.model, self.config, self.special, self.where = model, config, special, where
        self.seed, self.precision = seed, precision
        variables = tf_variables(model)
        self.names: List[str] = list(variables)
        self.state = optimizer.new_adam_state(list(variables.values()), self.names)
        table_ids = {id(t) for t in model.row_counted_tables()}
        self.is_table = [id(p) in table_ids for p in self.state.params]
        device = where.device
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.probe = torch.zeros((), device=device, requires_grad=True)
        self.loss_scale = torch.full((), LOSS_SCALE_START if precision == "fp16" else 1.0,
                                     device=device)
        self.good_steps = torch.zeros((), dtype=torch.long, device=device)
        self.skips_nonfinite = precision != "fp32" and precision != "tf32"
        if use_compile:
            model.compile_regions(objective.generator_head_outputs)
        self.use_graphs = use_graphs and device.type == "cuda"
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static: Dict[str, torch.Tensor] = {}
        self._outputs: Dict[str, torch.Tensor] = {}
        self._eager_steps = 0
        self.dropout = True                     # False: dropout off (equality checks)
        self.given: Optional[objective.Given] = None   # draws to use instead of the step's own

    # ---- the computation ---------------------------------------------------------------

    def _losses(self, features, global_mask, rows, step):
        config = self.config
        key = draws.step_key(self.seed, step)
        features = features.long()
        ids, mask, segments = features[:, 0], features[:, 1], features[:, 2]
        mlm_count = objective.mask_weights(global_mask, config.mask_prob,
                                           config.max_predictions_per_seq).sum()
        disc_count = global_mask.sum().float()
        context = (torch.autocast(self.where.device.type, dtype=AUTOCAST[self.precision])
                   if self.precision in AUTOCAST else contextlib.nullcontext())
        with context:
            losses = objective.electra_losses(self.model, ids, mask, segments, self.special, key,
                                              rows, self.dropout, mlm_count, disc_count,
                                              given=self.given, probe=self.probe)
        return losses.total, losses.mlm_sum, losses.disc_sum, mlm_count, disc_count

    def _step(self, features, global_mask, rows) -> Dict[str, torch.Tensor]:
        config, state = self.config, self.state
        total, mlm_sum, disc_sum, mlm_count, disc_count = self._losses(
            features, global_mask, rows, self.step)
        grads = torch.autograd.grad(total * self.loss_scale, state.params + [self.probe],
                                    allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g
                 for g, p in zip(grads, state.params + [self.probe])]
        param_grads, sliced_squares = grads[:-1], grads[-1]
        if self.where.world > 1:
            partials = torch.stack([sliced_squares, mlm_sum.detach().float(),
                                    disc_sum.detach().float()])
            flat = torch.cat([g.reshape(-1) for g in param_grads] + [partials])
            dist.all_reduce(flat)
            sliced_squares, mlm_sum, disc_sum = flat[-3], flat[-2], flat[-1]
            param_grads = list(torch.split(flat[:-3], [g.numel() for g in param_grads]))
            param_grads = [g.view_as(p) for g, p in zip(param_grads, state.params)]
        dense = [g for g, table in zip(param_grads, self.is_table) if not table]
        norm = torch.sqrt(optimizer.squared_norm(dense) + sliced_squares) / self.loss_scale
        scale = optimizer.clip_scale(norm) / self.loss_scale
        rate = optimizer.learning_rate(self.step, config.learning_rate, config.num_train_steps,
                                       config.num_warmup_steps, config.lr_decay_power)
        applied = torch.isfinite(norm).float() if self.skips_nonfinite else None
        optimizer.adam_update(state, param_grads, rate, config.weight_decay_rate, scale, applied)
        with torch.no_grad():
            if applied is None:
                self.step += 1
            else:
                self.step += applied.long()
                self._update_loss_scale(applied)
        mlm = mlm_sum.detach().float() / (mlm_count + 1e-6)
        disc = disc_sum.detach().float() / (1e-6 + disc_count)
        loss = config.gen_weight * mlm + (config.disc_weight * disc if config.electra_objective
                                          else 0.0)
        out = {"total_loss": loss, "generator_loss": mlm, "learning_rate": rate,
               "global_norm": norm.detach()}
        if config.electra_objective:
            out["discriminator_loss"] = disc
        return out

    def _update_loss_scale(self, applied: torch.Tensor) -> None:
        if self.precision != "fp16":
            return
        good = (self.good_steps + 1) * applied.long()
        grow = good >= LOSS_SCALE_PERIOD
        self.loss_scale.copy_(torch.where(applied > 0, torch.where(
            grow, self.loss_scale * LOSS_SCALE_FACTOR, self.loss_scale),
            torch.clamp(self.loss_scale / LOSS_SCALE_FACTOR, min=1.0)))
        self.good_steps.copy_(torch.where(grow, torch.zeros_like(good), good))

    # ---- running it ----------------------------------------------------------------------

    def __call__(self, features: torch.Tensor, global_mask: torch.Tensor,
                 rows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One step on [b, 3, T] features (host tensors are copied over asynchronously)."""
        device = self.where.device
        if not self.use_graphs or self._eager_steps < WARMUP_STEPS_BEFORE_GRAPH:
            self._eager_steps += 1
            if self.use_graphs:     # warm-up steps on a side stream, as graph capture wants
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    out = self._step(features.to(device, non_blocking=True),
                                     global_mask.to(device, non_blocking=True), rows)
                torch.cuda.current_stream().wait_stream(side)
                return out
            return self._step(features.to(device, non_blocking=True),
                              global_mask.to(device, non_blocking=True), rows)
        if self._graph is None:
            self._static = {"features": features.to(device), "global_mask": global_mask.to(device),
                            "rows": rows}
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._outputs = self._step(self._static["features"], self._static["global_mask"],
                                           self._static["rows"])
        else:
            self._static["features"].copy_(features, non_blocking=True)
            self._static["global_mask"].copy_(global_mask, non_blocking=True)
        self._graph.replay()
        return self._outputs


def default_seed() -> int:
    """A fresh seed when none is given (each run its own draws, as the TF1 trainer's)."""
    return int.from_bytes(os.urandom(4), "little")
