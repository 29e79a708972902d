"""The TF1 trainer's checkpoints, from and to the PyTorch model: same variables, same files.

A checkpoint holds every model variable under its TF name, its Adam slots
`<name>/adam_m` and `<name>/adam_v`, and the int64 `global_step` (1207 entries for
ELECTRA-small), in TF's tensor-bundle format (third_party/electra/tensor_bundle.py: no
TensorFlow needed), with the model directory's `checkpoint` state file. Either trainer
resumes the other's checkpoints.
"""
import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import torch

import tensor_bundle   # third_party/electra (electra_torch/__init__ puts it on sys.path)

from electra_torch.optimizer import AdamState

GLOBAL_STEP = "global_step"
SLOT_SUFFIXES = ("/adam_m", "/adam_v")
PREFIX_NAME = "model.ckpt-%d"


class CheckpointMismatch(ValueError):
    """A checkpoint whose variables are not this model's (the message names the first)."""


def tensors_of(names: List[str], state: AdamState, step: int) -> "OrderedDict[str, np.ndarray]":
    """TF name -> float32/int64 array of every variable, slot and the step (CPU copies)."""
    tensors = OrderedDict()
    for name, p, m, v in zip(names, state.params, state.m, state.v):
        tensors[name] = p.detach().float().cpu().numpy()
        tensors[name + SLOT_SUFFIXES[0]] = m.detach().float().cpu().numpy()
        tensors[name + SLOT_SUFFIXES[1]] = v.detach().float().cpu().numpy()
    tensors[GLOBAL_STEP] = np.array(step, dtype=np.int64)
    return tensors


def save(model_dir: str, names: List[str], state: AdamState, step: int,
         keep_checkpoint_max: int) -> str:
    """Writes model.ckpt-STEP (atomically) and the `checkpoint` file; returns the prefix."""
    prefix = os.path.join(model_dir, PREFIX_NAME % step)
    tensor_bundle.write_checkpoint(prefix, tensors_of(names, state, step))
    tensor_bundle.update_checkpoint_state(model_dir, prefix, keep_checkpoint_max)
    return prefix


def latest(model_dir: str) -> Optional[str]:
    if not os.path.isdir(model_dir):
        return None
    return tensor_bundle.latest_checkpoint(model_dir)


def step_of(prefix: str) -> int:
    found = re.search(r"-(\d+)$", prefix)
    return int(found.group(1)) if found else 0


def mismatch(prefix: str, names: List[str], shapes: Dict[str, List[int]],
             with_slots: bool = True) -> Optional[str]:
    """A phrase naming the first variable the checkpoint lacks or shapes otherwise, or None."""
    stored = {name: list(shape) for name, shape, _ in tensor_bundle.list_variables(prefix)}
    for name in names:
        wanted = [name] + ([name + s for s in SLOT_SUFFIXES] if with_slots else [])
        for entry in wanted:
            if entry not in stored:
                return "variable %s %s is not in checkpoint %s" % (entry, shapes[name], prefix)
            if stored[entry] != shapes[name]:
                return ("variable %s has shape %s in checkpoint %s but %s in this model"
                        % (entry, stored[entry], prefix, shapes[name]))
    return None


def restore(prefix: str, names: List[str], state: AdamState, with_slots: bool = True) -> int:
    """Loads variables (and slots) into state's tensors in place; returns the global step."""
    wanted = list(names)
    if with_slots:
        wanted += [n + s for n in names for s in SLOT_SUFFIXES]
    stored = tensor_bundle.read_checkpoint(prefix, wanted + [GLOBAL_STEP])
    with torch.no_grad():
        for name, p, m, v in zip(names, state.params, state.m, state.v):
            p.copy_(torch.from_numpy(np.ascontiguousarray(stored[name])))
            if with_slots:
                m.copy_(torch.from_numpy(np.ascontiguousarray(stored[name + SLOT_SUFFIXES[0]])))
                v.copy_(torch.from_numpy(np.ascontiguousarray(stored[name + SLOT_SUFFIXES[1]])))
    step = stored.get(GLOBAL_STEP)
    return int(step) if step is not None else step_of(prefix)
