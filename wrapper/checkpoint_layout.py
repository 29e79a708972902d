"""What a pretraining checkpoint holds: its networks, their variable scopes and sizes, and
the Hugging Face config each network gets from them and the run's hparams.

The one description of the checkpoint's layout that the conversion (wrapper.convert,
wrapper.hf_export) and verify's TF logits (wrapper.tf_logits) share.
"""
import collections
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from wrapper import paths, tf_checkpoint
from wrapper.cli import UserError
from wrapper.electra import configure_pretraining

NETWORKS = ("discriminator", "generator")

# The Hugging Face config keys that describe an ELECTRA network (ElectraConfig's own).
HF_CONFIG_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                  "num_attention_heads", "intermediate_size", "hidden_act",
                  "hidden_dropout_prob", "attention_probs_dropout_prob",
                  "max_position_embeddings", "type_vocab_size", "initializer_range",
                  "layer_norm_eps", "pad_token_id")

# Which checkpoint scopes belong to which network. The embeddings are shared.
SHARED_SCOPE = "electra/embeddings/"
HEAD_SCOPES = {"discriminator": "discriminator_predictions/", "generator": "generator_predictions/"}
GENERATOR_SCOPE = "generator/"
DISCRIMINATOR_SCOPE = "electra/"


# ---- which tensors a network owns ------------------------------------------------------

def generator_body_scope(names: Iterable[str]) -> Optional[str]:
    """The generator's transformer: its own `generator/` scope, or the discriminator's
    `electra/` when it was trained with untied_generator false (shared weights)."""
    if any(n.startswith(GENERATOR_SCOPE) for n in names):
        return GENERATOR_SCOPE
    if any(n.startswith(HEAD_SCOPES["generator"]) for n in names):
        return DISCRIMINATOR_SCOPE
    return None


def has_network(names: Iterable[str], network: str) -> bool:
    """A network is in a checkpoint when its prediction head is."""
    return any(n.startswith(HEAD_SCOPES[network]) for n in names)


def split_by_network(names: Sequence[str], network: str
                     ) -> Tuple[List[str], List[str], List[str]]:
    """(tensors of `network`, tensors of the other network, unplaceable); training state
    (optimizer slots, global_step) is in none of them."""
    gen_body = generator_body_scope(names)
    own, other, unknown = [], [], []
    for name in sorted(names):
        if tf_checkpoint.is_training_state(name):
            continue
        if name.startswith(SHARED_SCOPE):
            own.append(name)
            continue
        owners = set()
        if name.startswith(HEAD_SCOPES["discriminator"]) or name.startswith(DISCRIMINATOR_SCOPE):
            owners.add("discriminator")
        if name.startswith(HEAD_SCOPES["generator"]) or (gen_body and name.startswith(gen_body)):
            owners.add("generator")
        if not owners:
            unknown.append(name)
        elif network in owners:
            own.append(name)
        else:
            other.append(name)
    return own, other, unknown


# ---- the run: its latest checkpoint and its configuration ------------------------------

def latest_checkpoint(data_dir: str, model_name: str) -> str:
    """The prefix of the latest checkpoint in DATA_DIR/models/NAME, or UserError."""
    model_dir = paths.model_dir(data_dir, model_name)
    if not os.path.isdir(model_dir):
        raise UserError("model directory %s does not exist; train first (make pretrain) or "
                        "check DATA_DIR/MODEL_NAME" % model_dir)
    return tf_checkpoint.resolve_checkpoint(model_dir)


@dataclass(frozen=True)
class TrainedRun:
    """What a pretraining run was trained with: the trainer's resolved configuration, the
    hparams as given, and the file they came from (None: no hparams.json, the defaults)."""
    config: Any                    # configure_pretraining.PretrainingConfig
    hparams: Dict[str, Any]
    hparams_file: Optional[str]


def load_run_config(data_dir: str, model_name: str) -> TrainedRun:
    """The run of DATA_DIR/models/MODEL_NAME, as DATA_DIR/hparams.json describes it."""
    source = paths.hparams_file(data_dir)
    if os.path.isfile(source):
        try:
            hparams = configure_pretraining.load_hparams(source)
            run_config = configure_pretraining.PretrainingConfig(model_name, data_dir,
                                                                 **hparams)
        except configure_pretraining.HparamError as e:
            raise UserError("%s: %s" % (source, e))
    else:
        hparams, source = {}, None
        run_config = configure_pretraining.PretrainingConfig(model_name, data_dir)
    return TrainedRun(run_config, hparams, source)


def _layers(shapes, scope):
    found = {int(m.group(1)) for m in (re.match(re.escape(scope) + r"encoder/layer_(\d+)/", n)
                                       for n in shapes) if m}
    return max(found) + 1 if found else 0


def _contradiction(what, from_hparams, from_checkpoint, source):
    raise UserError("%s is %s by %s but %s in the checkpoint; was the model trained with "
                    "these hparams? (fix %s or export the matching run)"
                    % (what, from_hparams, source or "the default hparams (no hparams.json)",
                       from_checkpoint, source or "DATA_DIR/hparams.json"))


EMBEDDINGS = ("electra/embeddings/word_embeddings", "electra/embeddings/position_embeddings",
              "electra/embeddings/token_type_embeddings")


def checkpoint_sizes(shapes: Mapping[str, Sequence[int]], scope: str) -> Dict[str, int]:
    """The sizes a network of the checkpoint was built with, read from its variable shapes
    (the number of attention heads shows in no shape)."""
    query = scope + "encoder/layer_0/attention/self/query/kernel"
    ffn = scope + "encoder/layer_0/intermediate/dense/kernel"
    for name in EMBEDDINGS + (query, ffn):
        if name not in shapes:
            raise UserError("the checkpoint has no %s; is it an ELECTRA pretraining checkpoint?"
                            % name)
    vocab_size, embedding_size = shapes[EMBEDDINGS[0]]
    return collections.OrderedDict([
        ("vocab_size", vocab_size), ("embedding_size", embedding_size),
        ("hidden_size", shapes[query][1]), ("num_hidden_layers", _layers(shapes, scope)),
        ("intermediate_size", shapes[ffn][1]),
        ("max_position_embeddings", shapes[EMBEDDINGS[1]][0]),
        ("type_vocab_size", shapes[EMBEDDINGS[2]][0]),
    ])


def network_scopes(names: Sequence[str]) -> Dict[str, str]:
    """{network: variable scope of its transformer} for the networks the checkpoint holds."""
    scopes = collections.OrderedDict()
    if has_network(names, "discriminator"):
        scopes["discriminator"] = DISCRIMINATOR_SCOPE
    if has_network(names, "generator"):
        scopes["generator"] = generator_body_scope(names)
    if not scopes:
        raise UserError("the checkpoint holds neither discriminator_predictions/ nor "
                        "generator_predictions/; is it an ELECTRA pretraining checkpoint?")
    return scopes


def derive_hf_configs(run_config: configure_pretraining.PretrainingConfig,
                      shapes: Mapping[str, Sequence[int]],
                      pad_token_id: int = 0, source: Optional[str] = None
                      ) -> Dict[str, Dict[str, Any]]:
    """{network: Hugging Face config dict} for the networks the checkpoint holds.

    Sizes come from the checkpoint's shapes; what shapes cannot show (attention heads,
    activation) from the hparams, resolved as the trainer does
    (configure_pretraining.network_sizes). Where both say something they must agree.
    """
    overrides = run_config.model_hparam_overrides
    want_sizes = configure_pretraining.network_sizes(run_config)
    hf_configs = collections.OrderedDict()
    for network, scope in network_scopes(list(shapes)).items():
        # untied_generator false: the generator is the discriminator's own transformer.
        want = want_sizes["discriminator" if scope == DISCRIMINATOR_SCOPE else network]
        got = checkpoint_sizes(shapes, scope)
        for key, value in (("vocab_size", want["vocab_size"]),
                           ("embedding_size", want_sizes["embedding_size"])):
            if value != got[key]:
                _contradiction(key, value, got[key], source)
        for key in ("hidden_size", "num_hidden_layers", "intermediate_size"):
            if want[key] != got[key]:
                _contradiction("the %s's %s" % (network, key), want[key], got[key], source)
        hf_config = collections.OrderedDict(got)
        hf_config.update([
            ("num_attention_heads", want["num_attention_heads"]),
            ("hidden_act", overrides.get("hidden_act", "gelu")),
            ("hidden_dropout_prob", overrides.get("hidden_dropout_prob", 0.1)),
            ("attention_probs_dropout_prob",
             overrides.get("attention_probs_dropout_prob", 0.1)),
            ("initializer_range", overrides.get("initializer_range", 0.02)),
            ("layer_norm_eps", 1e-12),
            ("pad_token_id", pad_token_id),
        ])
        hf_configs[network] = collections.OrderedDict(
            (k, hf_config[k]) for k in HF_CONFIG_KEYS)
    return hf_configs
