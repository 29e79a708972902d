"""Reading an ELECTRA TF checkpoint: finding it, checking it is whole, and its tensors.

A checkpoint is a prefix (`model.ckpt-40`) with an `.index` file and one or more
`.data-SSSSS-of-NNNNN` shards. TensorFlow reports a half-copied or damaged checkpoint with
a long traceback; here it is one line naming the missing, truncated or corrupt file. The
files are read by tensor_bundle (no TensorFlow import).
"""
import glob
import os
import re
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional

from wrapper.cli import UserError
from wrapper.electra import tensor_bundle

# Checkpoint entries that are not weights of either network, skipped by rule.
OPTIMIZER_SLOT_SUFFIXES = ("/adam_m", "/adam_v")
GLOBAL_STEP = "global_step"


def is_training_state(name: str) -> bool:
    return name == GLOBAL_STEP or name.endswith(OPTIMIZER_SLOT_SUFFIXES)


def _latest_in_directory(directory):
    """The newest checkpoint prefix of a model directory (its `checkpoint` file, else by step)."""
    state = os.path.join(directory, "checkpoint")
    if os.path.isfile(state):
        with open(state, encoding="utf-8") as f:
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.M)
        if match:
            path = match.group(1)
            if not os.path.isabs(path):
                path = os.path.join(directory, path)
            if not os.path.exists(path + ".index"):
                # An absolute path recorded elsewhere (a container's /workspace/data, say):
                # the checkpoint travelled with its directory.
                beside = os.path.join(directory, os.path.basename(path))
                if os.path.exists(beside + ".index"):
                    path = beside
            return path
    indexes = glob.glob(os.path.join(directory, "*.index"))
    if not indexes:
        return None

    def step(path):
        found = re.search(r"-(\d+)\.index$", path)
        return int(found.group(1)) if found else -1
    return max(indexes, key=step)[:-len(".index")]


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a model directory; checks that it is complete."""
    if os.path.isdir(path):
        prefix = _latest_in_directory(path)
        if prefix is None:
            raise UserError("no checkpoint in %s (no *.index file); train first (make pretrain) "
                            "or pass a checkpoint prefix such as DIR/model.ckpt-1000" % path)
    else:
        prefix = path
        for suffix in (".index", ".meta"):
            if prefix.endswith(suffix):   # a file of the checkpoint named instead of its prefix
                prefix = prefix[:-len(suffix)]
        prefix = re.sub(r"\.data-\d{5}-of-\d{5}$", "", prefix)
    index = prefix + ".index"
    shards = sorted(glob.glob(glob.escape(prefix) + ".data-?????-of-?????"))
    if not os.path.isfile(index) and not shards:
        raise UserError("checkpoint %s not found (neither %s nor %s.data-* exist); pass the "
                        "prefix of a checkpoint, e.g. DATA_DIR/models/NAME/model.ckpt-1000"
                        % (prefix, index, prefix))
    if not os.path.isfile(index):
        raise UserError("checkpoint %s is incomplete: %s is missing (copy the whole checkpoint: "
                        ".index and .data-* files)" % (prefix, index))
    if not shards:
        raise UserError("checkpoint %s is incomplete: its data file %s.data-00000-of-NNNNN is "
                        "missing beside %s (copy the whole checkpoint: .index and .data-* files)"
                        % (prefix, prefix, index))
    total = int(shards[0][-5:])
    expected = ["%s.data-%05d-of-%05d" % (prefix, i, total) for i in range(total)]
    missing = [p for p in expected if p not in shards]
    if missing:
        raise UserError("checkpoint %s is incomplete: %s is missing (%d of %d data shards present)"
                        % (prefix, missing[0], total - len(missing), total))
    return prefix


def quiet_tensorflow() -> ModuleType:
    """tensorflow.compat.v1, imported on first use, without its log and deprecation chatter."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow.compat.v1 as tf
    tf.logging.set_verbosity(tf.logging.ERROR)
    return tf


def _damaged(prefix, error):
    return UserError("cannot read checkpoint %s: %s (copy the checkpoint again, or pass an "
                     "earlier one)" % (prefix, error))


def read_shapes(prefix: str) -> Dict[str, List[int]]:
    """name -> shape (list) of every checkpoint entry."""
    try:
        return {name: shape for name, shape, _ in tensor_bundle.list_variables(prefix)}
    except tensor_bundle.CheckpointError as e:
        raise _damaged(prefix, e)


def read_tensors(prefix: str, names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """OrderedDict name -> numpy array, sorted by name (all entries when names is None);
    every tensor's checksum is checked."""
    try:
        return tensor_bundle.read_checkpoint(prefix, names)
    except tensor_bundle.CheckpointError as e:
        raise _damaged(prefix, e)


def check_whole(prefix: str) -> None:
    """Raises UserError unless every tensor of the checkpoint reads back whole (checksums)."""
    try:
        tensor_bundle.verify_checkpoint(prefix)
    except tensor_bundle.CheckpointError as e:
        raise _damaged(prefix, e)


def global_step(prefix: str) -> Optional[int]:
    if GLOBAL_STEP in read_shapes(prefix):
        return int(read_tensors(prefix, [GLOBAL_STEP])[GLOBAL_STEP])
    found = re.search(r"-(\d+)$", prefix)
    return int(found.group(1)) if found else None
