"""The tutorial's converter: one network of a TF ELECTRA checkpoint, with a hand-written
config, -> Hugging Face ElectraForPreTraining / ElectraForMaskedLM; also the strict tensor
mapping that `make convert` (wrapper.hf_export, configs derived from the run) uses.

Command line (the flags of the community converter script the tutorial used):

    python -m wrapper.convert --tf_checkpoint_path CKPT --electra_config_file CONFIG \
        --pytorch_dump_path OUT/pytorch_model.bin [--discriminator_or_generator generator]

writes the weights, model.safetensors (the same weights, as `make convert` writes them) and
config.json beside them. Unlike the tutorial's converters the mapping
is strict: every checkpoint tensor of the chosen network is placed exactly once, every model
parameter is set, optimizer slots and global_step are skipped by rule, and anything else (an
unknown tensor, a shape that contradicts the config, a parameter with no tensor) stops the
conversion with a message naming it. A misspelt config key (the tutorial's
`max_position_embedings`) is an error too, instead of a silently ignored value.
"""
import argparse
import collections
import difflib
import json
import os
import re
from types import ModuleType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from wrapper import fsutil, tf_checkpoint
from wrapper.checkpoint_layout import (DISCRIMINATOR_SCOPE, GENERATOR_SCOPE, HEAD_SCOPES,
                                       HF_CONFIG_KEYS, NETWORKS, SHARED_SCOPE,
                                       generator_body_scope, has_network, split_by_network)
from wrapper.cli import ArgumentParser, UserError, run_main

MODEL_CLASS = {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM"}

WEIGHTS_NAME = "pytorch_model.bin"
SAFETENSORS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

TIED_LM_HEAD = "generator_lm_head.weight"          # the word-embedding table, tied
WORD_EMBEDDINGS = "electra.embeddings.word_embeddings.weight"


# ---- names -----------------------------------------------------------------------------

def _hf_suffix(path):
    """`encoder/layer_3/attention/self/query/kernel` -> (`encoder.layer.3...query.weight`,
    transpose?); None when the last component is not a weight name."""
    parts = path.split("/")
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in parts]
    last = parts[-1]
    transpose = False
    if last == "kernel":
        parts[-1], transpose = "weight", True
    elif last == "gamma":
        parts[-1] = "weight"
    elif last == "beta":
        parts[-1] = "bias"
    elif last == "bias":
        pass
    elif last.endswith("_embeddings"):
        parts.append("weight")
    else:
        return None
    return ".".join(parts), transpose


def hf_parameter_name(tf_name: str, network: str, gen_body: Optional[str] = GENERATOR_SCOPE
                      ) -> Optional[Tuple[str, bool]]:
    """(Hugging Face parameter name, transpose?) for a tensor of `network`; None if none."""
    if tf_name.startswith(SHARED_SCOPE):
        prefix, rest = "electra.embeddings.", tf_name[len(SHARED_SCOPE):]
    elif network == "discriminator":
        if tf_name.startswith("discriminator_predictions/dense_1/"):
            prefix, rest = "discriminator_predictions.dense_prediction.", tf_name.split("/", 2)[2]
        elif tf_name.startswith("discriminator_predictions/dense/"):
            prefix, rest = "discriminator_predictions.dense.", tf_name.split("/", 2)[2]
        elif tf_name.startswith(DISCRIMINATOR_SCOPE):
            prefix, rest = "electra.", tf_name[len(DISCRIMINATOR_SCOPE):]
        else:
            return None
    else:
        if tf_name == "generator_predictions/output_bias":
            return "generator_lm_head.bias", False
        if tf_name.startswith(HEAD_SCOPES["generator"]):
            prefix, rest = "generator_predictions.", tf_name[len(HEAD_SCOPES["generator"]):]
        elif gen_body and tf_name.startswith(gen_body):
            prefix, rest = "electra.", tf_name[len(gen_body):]
        else:
            return None
    suffix = _hf_suffix(rest)
    if suffix is None:
        return None
    return prefix + suffix[0], suffix[1]


# ---- configs ---------------------------------------------------------------------------

def transformers_torch() -> ModuleType:
    """transformers without TensorFlow: 2.8.0 imports TensorFlow when it is installed, and
    conversion needs only torch (tensor_bundle reads the checkpoint)."""
    os.environ.setdefault("USE_TF", "0")
    import transformers
    return transformers


def _known_config_keys():
    ElectraConfig = transformers_torch().ElectraConfig
    return set(ElectraConfig().to_dict()) | {"architectures", "model_type"}


def load_config_file(path: str) -> Dict[str, Any]:
    """A Hugging Face ELECTRA config (JSON) given by the user; unknown keys are errors."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (IOError, OSError) as e:
        raise UserError("cannot read config %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise UserError("config %s is not valid JSON (%s)" % (path, e))
    if not isinstance(config, dict):
        raise UserError("config %s must hold a JSON object" % path)
    known = _known_config_keys()
    for key in sorted(config):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise UserError("config %s: unknown key %r%s; transformers would silently ignore "
                            "it; fix or remove it (or let `python -m wrapper.hf_export` derive the "
                            "config from the run)" % (path, key,
                                                      " (did you mean %r?)" % close[0]
                                                      if close else ""))
    return config


def clean_config(config: Mapping[str, Any], network: str) -> Dict[str, Any]:
    """The config.json we write: ElectraConfig's keys (defaults filled in) and the class."""
    ElectraConfig = transformers_torch().ElectraConfig
    full = ElectraConfig(**{k: v for k, v in config.items()
                            if k not in ("architectures", "model_type")}).to_dict()
    out = collections.OrderedDict([("architectures", [MODEL_CLASS[network]]),
                                   ("model_type", "electra")])
    for key in HF_CONFIG_KEYS:
        out[key] = full[key]
    return out


def build_model(config: Mapping[str, Any], network: str):
    transformers = transformers_torch()
    hf_config = transformers.ElectraConfig(**{k: v for k, v in config.items()
                                             if k not in ("architectures", "model_type")})
    heads = hf_config.num_attention_heads
    if heads < 1 or hf_config.hidden_size % heads:
        raise UserError("config: hidden_size %d is not a multiple of num_attention_heads %d"
                        % (hf_config.hidden_size, heads))
    return getattr(transformers, MODEL_CLASS[network])(hf_config)


# ---- the mapping -----------------------------------------------------------------------

def _shape(shape):
    return "[%s]" % ", ".join(str(d) for d in shape)


def require_network(names: Iterable[str], network: str) -> None:
    if not has_network(names, network):
        raise UserError("the checkpoint has no %s (no %s* tensors)%s"
                        % (network, HEAD_SCOPES[network],
                           "; it was trained without a generator (uniform_generator or "
                           "electra_objective settings); convert the discriminator"
                           if network == "generator" else ""))


def map_checkpoint(shapes: Mapping[str, Sequence[int]], network: str,
                   parameter_shapes: Mapping[str, List[int]], what: str = "the config"
                   ) -> Dict[str, Tuple[str, bool]]:
    """Plans the conversion: OrderedDict HF parameter -> (TF tensor, transpose?).

    `shapes`: checkpoint name -> shape; `parameter_shapes`: HF parameter -> shape (the
    model's state dict). Raises UserError on anything that does not fit exactly.
    """
    names = list(shapes)
    require_network(names, network)
    own, _, unknown = split_by_network(names, network)
    if unknown:
        raise UserError("checkpoint tensor %s %s belongs to no ELECTRA network; is this an "
                        "ELECTRA pretraining checkpoint?"
                        % (unknown[0], _shape(shapes[unknown[0]])))
    gen_body = generator_body_scope(names)
    plan = collections.OrderedDict()
    for tf_name in own:
        mapped = hf_parameter_name(tf_name, network, gen_body)
        if mapped is None:
            raise UserError("checkpoint tensor %s %s has no place in %s"
                            % (tf_name, _shape(shapes[tf_name]), MODEL_CLASS[network]))
        hf_name, transpose = mapped
        if hf_name not in parameter_shapes:
            raise UserError("checkpoint tensor %s %s would be %s, which the %s built from %s "
                            "does not have%s" % (tf_name, _shape(shapes[tf_name]), hf_name,
                                                 MODEL_CLASS[network], what,
                                                 _missing_hint(hf_name)))
        if hf_name in plan:
            raise UserError("checkpoint tensors %s and %s both map to %s"
                            % (plan[hf_name][0], tf_name, hf_name))
        tf_shape = list(shapes[tf_name])
        as_hf = tf_shape[::-1] if transpose else tf_shape
        if as_hf != list(parameter_shapes[hf_name]):
            raise UserError("checkpoint tensor %s has shape %s but %s from %s needs %s for %s; "
                            "the config contradicts the checkpoint"
                            % (tf_name, _shape(tf_shape), MODEL_CLASS[network], what,
                               _shape(parameter_shapes[hf_name][::-1] if transpose
                                      else parameter_shapes[hf_name]), hf_name))
        plan[hf_name] = (tf_name, transpose)
    if network == "generator" and TIED_LM_HEAD in parameter_shapes and WORD_EMBEDDINGS in plan:
        # The reference's generator scores tokens against the shared embedding table.
        plan[TIED_LM_HEAD] = plan[WORD_EMBEDDINGS]
    missing = [p for p in parameter_shapes if p not in plan]
    if missing:
        raise UserError("model parameter %s %s of %s (from %s) has no tensor in the checkpoint%s"
                        % (missing[0], _shape(parameter_shapes[missing[0]]),
                           MODEL_CLASS[network], what,
                           " (and %d more)" % (len(missing) - 1) if len(missing) > 1 else ""))
    return collections.OrderedDict((p, plan[p]) for p in parameter_shapes)


def _missing_hint(hf_name):
    if ".layer." in hf_name:
        return " (num_hidden_layers too small?)"
    if "embeddings_project" in hf_name:
        return " (embedding_size equal to hidden_size?)"
    return ""


def convert(prefix: str, config: Mapping[str, Any], network: str, what: str = "the config"
            ) -> Tuple[Any, Dict[str, np.ndarray]]:
    """(model with the checkpoint's weights loaded, OrderedDict name -> numpy array)."""
    import torch
    shapes = tf_checkpoint.read_shapes(prefix)
    require_network(list(shapes), network)
    model = build_model(config, network)
    state = model.state_dict()
    plan = map_checkpoint(shapes, network, {k: list(v.shape) for k, v in state.items()}, what)
    tensors = tf_checkpoint.read_tensors(prefix, {tf_name for tf_name, _ in plan.values()})
    arrays = collections.OrderedDict()
    for hf_name, (tf_name, transpose) in plan.items():
        array = tensors[tf_name]
        if array.dtype != np.float32:
            raise UserError("checkpoint tensor %s is %s, expected float32" % (tf_name, array.dtype))
        arrays[hf_name] = np.ascontiguousarray(array.T if transpose else array)
    model.load_state_dict(collections.OrderedDict(
        (k, torch.from_numpy(v.copy())) for k, v in arrays.items()), strict=True)
    model.eval()
    return model, arrays


def write_model(out_dir: str, model, arrays: Mapping[str, np.ndarray],
                config: Mapping[str, Any], network: str, safetensors: bool = False) -> None:
    """config.json, pytorch_model.bin (and model.safetensors) into an existing directory."""
    import torch
    from safetensors.numpy import save_file
    fsutil.atomic_write_text(os.path.join(out_dir, CONFIG_NAME),
                             json.dumps(clean_config(config, network), indent=2) + "\n")
    torch.save(model.state_dict(), os.path.join(out_dir, WEIGHTS_NAME))
    if safetensors:
        save_file(arrays, os.path.join(out_dir, SAFETENSORS_NAME), metadata={"format": "pt"})


# ---- command line ----------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m wrapper.convert",
        description="Convert an ELECTRA TF checkpoint into a Hugging Face (transformers 2.8.0) "
                    "ElectraForPreTraining (discriminator) or ElectraForMaskedLM (generator).")
    parser.add_argument("--tf_checkpoint_path", required=True,
                        help="checkpoint prefix (DIR/model.ckpt-N) or a model directory (latest)")
    parser.add_argument("--electra_config_file", required=True,
                        help="Hugging Face ELECTRA config (JSON) of the chosen network")
    parser.add_argument("--pytorch_dump_path", required=True,
                        help="where the weights go; config.json is written beside them")
    parser.add_argument("--discriminator_or_generator", default="discriminator", choices=NETWORKS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    prefix = tf_checkpoint.resolve_checkpoint(args.tf_checkpoint_path)
    out_dir = os.path.dirname(os.path.abspath(args.pytorch_dump_path))
    weights_name = os.path.basename(args.pytorch_dump_path)
    if not weights_name:
        raise UserError("--pytorch_dump_path must name a file, e.g. OUT/pytorch_model.bin")
    if weights_name in (CONFIG_NAME, SAFETENSORS_NAME):
        raise UserError("--pytorch_dump_path names %s, which the converter writes beside the "
                        "weights; name the weights file, e.g. OUT/pytorch_model.bin" % weights_name)
    network = args.discriminator_or_generator
    owned = {weights_name, CONFIG_NAME, SAFETENSORS_NAME}
    fsutil.refuse_foreign(out_dir, lambda rel: rel in owned, "output directory")
    config = load_config_file(args.electra_config_file)
    model, arrays = convert(prefix, config, network, what=args.electra_config_file)
    with fsutil.atomic_output_dir(out_dir, owned=lambda rel: rel in owned) as partial:
        write_model(partial, model, arrays, config, network, safetensors=True)
        if weights_name != WEIGHTS_NAME:
            os.rename(os.path.join(partial, WEIGHTS_NAME), os.path.join(partial, weights_name))
    print("converted %s of %s: %d tensors -> %s (+ %s, %s)"
          % (network, prefix, len(arrays), args.pytorch_dump_path, SAFETENSORS_NAME,
             CONFIG_NAME))
    return 0


if __name__ == "__main__":
    run_main(main)
