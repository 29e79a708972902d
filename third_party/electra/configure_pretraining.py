"""Hyperparameters of ELECTRA pretraining: names, defaults, resolution order, type checks.

This module is the single source of truth for the trainer's configuration. The names,
defaults and resolution order are the reference's (google-research/electra); the type
check is ours: the reference accepts any JSON value, so the tutorial's published
`{"do_eval": "false"}` silently meant True (a non-empty string is truthy).
"""
import collections
import json
import os

# Every hparam the trainer accepts, with its default. Paths are filled in per run
# (see PretrainingConfig) and are listed here so that they can be overridden.
DEFAULTS = collections.OrderedDict([
    ("debug", False),                 # tiny model, 20 steps, wipes the model dir
    ("do_train", True),
    ("do_eval", False),
    ("electra_objective", True),      # False: plain masked-LM training of the generator
    ("electric_objective", False),    # ELECTRIC (energy-based cloze); see run_pretraining
    ("gen_weight", 1.0),              # weight of the generator's MLM loss
    ("disc_weight", 50.0),            # weight of the discriminator's loss
    ("mask_prob", 0.15),
    ("learning_rate", 5e-4),
    ("lr_decay_power", 1.0),          # 1.0: linear decay to 0
    ("weight_decay_rate", 0.01),
    ("num_warmup_steps", 10000),
    ("iterations_per_loop", 200),
    ("save_checkpoints_steps", 1000),
    ("num_train_steps", 1000000),
    ("num_eval_steps", 100),
    ("keep_checkpoint_max", 5),
    ("model_size", "small"),          # small | base | large
    ("model_hparam_overrides", {}),   # keys of the transformer config, see MODEL_HPARAM_TYPES
    ("embedding_size", None),         # None: the hidden size; 128 for model_size small
    ("vocab_size", 30522),
    ("do_lower_case", True),
    ("uniform_generator", False),     # generator replaced by uniform sampling
    ("two_tower_generator", False),   # ELECTRIC only
    ("untied_generator_embeddings", False),
    ("untied_generator", True),       # False: generator and discriminator share all weights
    ("generator_layers", 1.0),        # generator depth as a fraction of the discriminator's
    ("generator_hidden_size", 0.25),  # generator width as a fraction of the discriminator's
    ("disallow_correct", False),      # never sample the original token
    ("temperature", 1.0),             # sampling temperature of the generator
    ("max_seq_length", 128),
    ("train_batch_size", 128),
    ("eval_batch_size", 128),
    ("use_tpu", False),
    ("num_tpu_cores", 1),
    ("tpu_job_name", None),
    ("tpu_name", None),
    ("tpu_zone", None),
    ("gcp_project", None),
    ("num_gpus", 1),                  # replicas on this host's GPUs (MirroredStrategy)
    ("num_cpu_replicas", 0),          # >0: replicas on that many CPU devices instead
    ("use_amp", False),               # automatic mixed precision + dynamic loss scaling
    ("use_xla", False),               # XLA auto-clustering (the session's global JIT level)
    ("precision", "fp32"),            # PyTorch trainer: fp32 | tf32 | bf16 | fp16 (TF1: use_amp)
    ("seed", None),                   # random seed of initialization and draws (None: fresh)
    ("max_predictions_per_seq", 19),  # recomputed from mask_prob and max_seq_length
    ("model_name", None),
    ("pretrain_tfrecords", None),
    ("vocab_file", None),
    ("model_dir", None),
    ("results_txt", None),
    ("results_pkl", None),
])

# Hparams whose default is None, with the types they accept.
_NONE_DEFAULT_TYPES = {
    "embedding_size": (int,),
    "tpu_job_name": (str,), "tpu_name": (str,), "tpu_zone": (str,), "gcp_project": (str,),
    "model_name": (str,), "pretrain_tfrecords": (str,), "vocab_file": (str,),
    "model_dir": (str,), "results_txt": (str,), "results_pkl": (str,),
    "seed": (int,),
}

# Keys `model_hparam_overrides` may set: the transformer configuration (modeling.BertConfig).
MODEL_HPARAM_TYPES = {
    "vocab_size": int, "hidden_size": int, "num_hidden_layers": int,
    "num_attention_heads": int, "intermediate_size": int, "hidden_act": str,
    "hidden_dropout_prob": float, "attention_probs_dropout_prob": float,
    "max_position_embeddings": int, "type_vocab_size": int, "initializer_range": float,
}

MODEL_SIZES = {"small": (256, 12), "base": (768, 12), "large": (1024, 24)}
# debug: the trainer's tiny model, whatever model_size and the overrides say.
DEBUG_SIZES = {"hidden_size": 144, "num_hidden_layers": 3, "num_attention_heads": 4,
               "intermediate_size": 576}
HIDDEN_ACTS = ("gelu", "relu", "tanh", "linear")   # modeling.get_activation's names
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")

DEBUG_OVERRIDES = collections.OrderedDict([
    ("train_batch_size", 8), ("num_train_steps", 20), ("eval_batch_size", 4),
    ("iterations_per_loop", 1), ("num_eval_steps", 2),
])


class HparamError(ValueError):
  """An hparam that is unknown, of the wrong type or out of range; the message names it."""


def _type_name(types):
  names = {bool: "a boolean (true/false)", int: "an integer", float: "a number",
           str: "a string", dict: "a JSON object"}
  return " or ".join(names[t] for t in types)


def _accepts(types, value):
  # bool is an int in Python, but true/false is never a count or a rate.
  if isinstance(value, bool):
    return bool in types
  if float in types and isinstance(value, int):
    return True  # 1 is a fine value for a float such as disc_weight
  return isinstance(value, tuple(t for t in types if t is not bool))


# TensorFlow holds counts and sizes in int64: a larger integer is no value of any hparam.
MAX_INT = 2 ** 63 - 1


def shown(value, limit=80):
  """A value as JSON for an error line, cut at `limit` characters."""
  try:
    text = json.dumps(value)
  except RecursionError:
    text = "[[[..."
  return text if len(text) <= limit else text[:limit] + "..."


def _check_value(key, value, types, nullable, where="hparam"):
  if value is None and nullable:
    return
  if _accepts(types, value):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
      raise HparamError("%s %s = %s; it must be at most 2**63-1 (%d) in absolute value"
                        % (where, key, shown(value, 40), MAX_INT))
    return
  hint = ""
  if bool in types and isinstance(value, str):
    hint = (" (the reference reads any non-empty string as true, so %r would silently"
            " mean true; write %s without quotes)"
            % (value, "false" if value.strip().lower() in ("false", "0", "no") else "true"))
  elif isinstance(value, str) and (int in types or float in types):
    hint = " (write the number without quotes)"
  raise HparamError("%s %s = %s has type %s; expected %s%s" % (
      where, key, shown(value), type(value).__name__, _type_name(types), hint))


def expected_types(key):
  """The types hparam `key` accepts, and whether it may be null."""
  default = DEFAULTS[key]
  if default is None:
    return _NONE_DEFAULT_TYPES[key], True
  return (type(default),), False


def check_hparams(hparams):
  """Raises HparamError unless every key is known and every value has the default's type."""
  if not isinstance(hparams, dict):
    raise HparamError("hparams must be a JSON object, got %s" % type(hparams).__name__)
  for key, value in hparams.items():
    if key not in DEFAULTS:
      raise HparamError("unknown hparam %r (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
    types, nullable = expected_types(key)
    _check_value(key, value, types, nullable)
  overrides = hparams.get("model_hparam_overrides", {})
  for key, value in overrides.items():
    if key not in MODEL_HPARAM_TYPES:
      raise HparamError("unknown key %r in model_hparam_overrides (known: %s)"
                        % (key, ", ".join(sorted(MODEL_HPARAM_TYPES))))
    _check_value(key, value, (MODEL_HPARAM_TYPES[key],), False,
                 where="model_hparam_overrides")
  if "model_size" in hparams and hparams["model_size"] not in MODEL_SIZES:
    raise HparamError("hparam model_size = %s; expected one of %s"
                      % (shown(hparams["model_size"]), ", ".join(MODEL_SIZES)))


def load_hparams(text_or_path):
  """--hparams: JSON text, or a path ending in .json to a file holding it (as the reference)."""
  if text_or_path.endswith(".json"):
    try:
      with open(text_or_path) as f:
        text = f.read()
    except (IOError, OSError) as e:
      raise HparamError("cannot read hparams file %s: %s" % (text_or_path, e.strerror or e))
    source = text_or_path
  else:
    text, source = text_or_path, "--hparams"
  hparams = parse_json(text, source)
  if not isinstance(hparams, dict):
    raise HparamError("%s must hold a JSON object, got %s" % (source, type(hparams).__name__))
  return hparams


def _refuse_constant(name):
  raise ValueError("%s is not a number JSON allows; write a finite number" % name)


def parse_json(text, source):
  """Strict JSON: Python's json would accept NaN and Infinity, which are no hparam values."""
  try:
    return json.loads(text, parse_constant=_refuse_constant)
  except ValueError as e:
    raise HparamError("%s is not valid JSON (%s)" % (source, e))
  except RecursionError:   # arrays or objects nested about 1,000 deep
    raise HparamError("%s nests arrays or objects too deeply to read; hparams are a JSON "
                      "object of values (model_hparam_overrides: one object inside it)"
                      % source)


# ---- sizes and ranges ------------------------------------------------------------------

def network_sizes(config):
  """The transformer sizes the graph is built with, from a resolved config.

  {"embedding_size": E, "discriminator": sizes, "generator": sizes}, each sizes a dict of
  vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size.
  Heads follow hidden // 64 and the feed-forward width 4 x hidden unless overridden; the
  generator (a network of its own when electra_objective and untied_generator, else the
  discriminator itself) is the discriminator scaled by generator_hidden_size and
  generator_layers, with heads and width following its hidden size. Pure Python: the graph
  code, the export and the hparams checks all call this one rule.
  """
  overrides = config.model_hparam_overrides
  hidden, layers = MODEL_SIZES[config.model_size]
  hidden = overrides.get("hidden_size", hidden)
  disc = collections.OrderedDict([
      ("vocab_size", overrides.get("vocab_size", config.vocab_size)),
      ("hidden_size", hidden),
      ("num_hidden_layers", overrides.get("num_hidden_layers", layers)),
      ("num_attention_heads", overrides.get("num_attention_heads", max(1, hidden // 64))),
      ("intermediate_size", overrides.get("intermediate_size", 4 * hidden)),
  ])
  if config.debug:
    disc.update(DEBUG_SIZES)
  gen = collections.OrderedDict(disc)
  if config.electra_objective and config.untied_generator:
    gen_hidden = int(round(disc["hidden_size"] * config.generator_hidden_size))
    gen.update(hidden_size=gen_hidden,
               num_hidden_layers=int(round(disc["num_hidden_layers"] *
                                           config.generator_layers)),
               num_attention_heads=max(1, gen_hidden // 64),
               intermediate_size=4 * gen_hidden)
  embedding_size = (disc["hidden_size"] if config.embedding_size is None
                    else config.embedding_size)
  return collections.OrderedDict([("embedding_size", embedding_size),
                                  ("discriminator", disc), ("generator", gen)])


def _finite(value):
  return value == value and value not in (float("inf"), float("-inf"))


# name -> (test, what the value must be); keys absent from a config are skipped.
_POSITIVE = (lambda v: _finite(v) and v > 0, "positive")
_AT_LEAST_ONE = (lambda v: v >= 1, "at least 1")
_NOT_NEGATIVE = (lambda v: _finite(v) and v >= 0, "zero or more")
# Replicas of one host, GPUs or CPU devices: the largest hosts have 16 GPUs, and CPU replicas
# beyond the cores only share them (each is a whole copy of the model). A fixed bound, not
# this machine's count: hparams.json is checked where it is made and may train elsewhere
# (the build_plan of the run checks num_gpus against the GPUs it sees). Without one, a typo
# such as 1000000 builds a million model copies, growing memory for minutes.
MAX_REPLICAS_PER_HOST = 64
_REPLICAS = "at most %d" % MAX_REPLICAS_PER_HOST
RANGES = collections.OrderedDict([
    ("learning_rate", _POSITIVE),
    ("lr_decay_power", _NOT_NEGATIVE),
    ("weight_decay_rate", _NOT_NEGATIVE),
    ("num_warmup_steps", _NOT_NEGATIVE),
    ("mask_prob", (lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]")),
    ("temperature", _POSITIVE),
    ("gen_weight", _NOT_NEGATIVE),
    ("disc_weight", _NOT_NEGATIVE),
    ("generator_hidden_size", _POSITIVE),
    ("generator_layers", _POSITIVE),
    ("iterations_per_loop", _AT_LEAST_ONE),
    ("save_checkpoints_steps", _AT_LEAST_ONE),
    ("num_train_steps", _AT_LEAST_ONE),
    ("num_eval_steps", _AT_LEAST_ONE),
    ("keep_checkpoint_max", _AT_LEAST_ONE),
    ("vocab_size", _AT_LEAST_ONE),
    ("embedding_size", _AT_LEAST_ONE),
    ("max_seq_length", _AT_LEAST_ONE),
    ("train_batch_size", _AT_LEAST_ONE),
    ("eval_batch_size", _AT_LEAST_ONE),
    ("num_tpu_cores", _AT_LEAST_ONE),
    ("num_gpus", (lambda v: 1 <= v <= MAX_REPLICAS_PER_HOST, "at least 1 and " + _REPLICAS)),
    ("num_cpu_replicas", (lambda v: 0 <= v <= MAX_REPLICAS_PER_HOST,
                          "zero or more and " + _REPLICAS)),
    ("precision", (lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS))),
    ("seed", (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)")),
])
_PROBABILITY = (lambda v: _finite(v) and 0 <= v < 1, "in [0, 1)")
MODEL_RANGES = collections.OrderedDict([
    ("vocab_size", _AT_LEAST_ONE), ("hidden_size", _AT_LEAST_ONE),
    ("num_hidden_layers", _AT_LEAST_ONE), ("num_attention_heads", _AT_LEAST_ONE),
    ("intermediate_size", _AT_LEAST_ONE), ("max_position_embeddings", _AT_LEAST_ONE),
    ("type_vocab_size", _AT_LEAST_ONE), ("initializer_range", _POSITIVE),
    ("hidden_dropout_prob", _PROBABILITY), ("attention_probs_dropout_prob", _PROBABILITY),
    ("hidden_act", (lambda v: v in HIDDEN_ACTS, "one of " + ", ".join(HIDDEN_ACTS))),
])


def range_errors(config):
  """What is wrong with a resolved config beyond types, one phrase per problem."""
  errors = []
  for key, (ok, what) in RANGES.items():
    value = getattr(config, key, None)
    if value is not None and not ok(value):
      errors.append("hparam %s = %s; it must be %s" % (key, value, what))
  for key, value in config.model_hparam_overrides.items():
    ok, what = MODEL_RANGES[key]
    if not ok(value):
      errors.append("model_hparam_overrides %s = %s; it must be %s" % (key, value, what))
  if config.do_train == config.do_eval:
    errors.append("exactly one of do_train and do_eval must be true (got do_train=%s, "
                  "do_eval=%s)" % (json.dumps(config.do_train), json.dumps(config.do_eval)))
  if errors:
    return errors   # the sizes below would only repeat these
  if config.max_predictions_per_seq < 1:
    errors.append("mask_prob %s with max_seq_length %d masks no token"
                  % (config.mask_prob, config.max_seq_length))
  positions = config.model_hparam_overrides.get("max_position_embeddings", 512)
  if config.max_seq_length > positions:
    errors.append("max_seq_length %d exceeds max_position_embeddings %d"
                  % (config.max_seq_length, positions))
  sizes = network_sizes(config)
  for network in ("discriminator", "generator"):
    net = sizes[network]
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size"):
      if net[key] < 1:
        errors.append("the %s's %s would be %d; raise generator_hidden_size or "
                      "generator_layers" % (network, key, net[key]))
    if net["hidden_size"] >= 1 and net["hidden_size"] % net["num_attention_heads"]:
      errors.append("the %s's hidden_size %d is not a multiple of num_attention_heads %d"
                    % (network, net["hidden_size"], net["num_attention_heads"]))
      break   # the generator shares the discriminator's sizes, or its heads follow hidden
  return errors


def validate(config):
  """Raises HparamError (one line, every problem) unless a resolved config can train."""
  errors = range_errors(config)
  if errors:
    raise HparamError("; ".join(errors))


class PretrainingConfig(object):
  """The resolved configuration, with the reference's order of resolution."""

  def __init__(self, model_name, data_dir, **hparams):
    check_hparams(hparams)
    for key, default in DEFAULTS.items():
      setattr(self, key, json.loads(json.dumps(default)))  # fresh copies of {} defaults
    self.model_name = model_name
    self.pretrain_tfrecords = os.path.join(
        data_dir, "pretrain_tfrecords/pretrain_data.tfrecord*")
    self.vocab_file = os.path.join(data_dir, "vocab.txt")
    self.model_dir = os.path.join(data_dir, "models", model_name)
    results_dir = os.path.join(self.model_dir, "results")
    self.results_txt = os.path.join(results_dir, "unsup_results.txt")
    self.results_pkl = os.path.join(results_dir, "unsup_results.pkl")

    self.update(hparams)
    self.max_predictions_per_seq = int((self.mask_prob + 0.005) * self.max_seq_length)
    if self.debug:
      self.update(DEBUG_OVERRIDES)
    if self.model_size == "small":
      self.embedding_size = 128
    # The hparams win over everything derived above (an explicit embedding_size, say).
    self.update(hparams)
    validate(self)

  def update(self, hparams):
    for key, value in hparams.items():
      if key not in DEFAULTS:
        raise HparamError("unknown hparam %r" % key)
      setattr(self, key, value)

  def to_dict(self):
    return collections.OrderedDict((k, getattr(self, k)) for k in DEFAULTS)
