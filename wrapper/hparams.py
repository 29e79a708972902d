"""DATA_DIR/hparams.json: a preset, the user's overrides and the vocab size, type-checked.

    python -m wrapper.hparams --data-dir D [--preset NAME|PATH] [--overrides JSON]
                              [--model-name N]

Presets are hparams/NAME.json (keys starting with "_" are notes for the reader and are
dropped). HPARAMS_OVERRIDES is a JSON object merged over the preset; a
`model_hparam_overrides` object is merged key by key. vocab_size is the number of lines of
DATA_DIR/vocab.txt. Every value is checked by the trainer's own configure_pretraining (one
source of truth), then resolved into a full PretrainingConfig, before anything is written.
"""
import argparse
import json
import os

from wrapper import paths, stages
from wrapper.cli import UserError, run_main

NOTE_PREFIX = "_"
POSITIVE_INT_KEYS = ("num_train_steps", "train_batch_size", "max_seq_length",
                     "save_checkpoints_steps", "iterations_per_loop", "eval_batch_size",
                     "num_eval_steps", "keep_checkpoint_max")


def preset_names():
    return sorted(n[:-len(".json")] for n in os.listdir(paths.HPARAMS_PRESETS_DIR)
                  if n.endswith(".json"))


def preset_path(preset):
    """PRESET is a name in hparams/ or the path of a .json file."""
    if preset.endswith(".json") or os.sep in preset:
        if not os.path.isfile(preset):
            raise UserError("PRESET=%s: no such file" % preset)
        return preset
    path = os.path.join(paths.HPARAMS_PRESETS_DIR, preset + ".json")
    if not os.path.isfile(path):
        raise UserError("unknown PRESET %r; choose one of %s, or give a path to a .json file"
                        % (preset, ", ".join(preset_names())))
    return path


def parse_object(text, what):
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UserError("%s is not valid JSON (%s): %s" % (what, e, text.strip()[:80]))
    if not isinstance(value, dict):
        raise UserError("%s must be a JSON object such as '{\"num_train_steps\": 500}', got %s"
                        % (what, text.strip()[:80]))
    return value


def type_errors(config, hparams):
    """Every unknown key or wrongly typed value, checked one key at a time."""
    errors = []
    for key, value in hparams.items():
        try:
            config.check_hparams({key: value})
        except config.HparamError as e:
            errors.append(str(e))
    return errors


def check_part(config, hparams, what):
    errors = type_errors(config, hparams)
    if errors:
        raise UserError("%s: %s" % (what, "; ".join(errors)))


def merge(preset, overrides):
    merged = dict(preset)
    for key, value in overrides.items():
        if key == "model_hparam_overrides" and isinstance(value, dict) and \
                isinstance(merged.get(key), dict):
            merged[key] = dict(merged[key], **value)
        else:
            merged[key] = value
    return merged


def vocab_size_of(data_dir):
    path = paths.vocab_file(data_dir)
    if not os.path.isfile(path):
        raise UserError("%s is missing; run make vocab first (vocab_size is taken from it)"
                        % path)
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def check_consistency(config, hparams, model_name, data_dir):
    """What types alone do not catch, then the trainer's full resolution."""
    for key in POSITIVE_INT_KEYS:
        if key in hparams and hparams[key] <= 0:
            raise UserError("hparam %s = %s; it must be positive" % (key, hparams[key]))
    if bool(hparams.get("do_train", True)) == bool(hparams.get("do_eval", False)):
        raise UserError("exactly one of do_train and do_eval must be true (got do_train=%s, "
                        "do_eval=%s)" % (json.dumps(hparams.get("do_train", True)),
                                         json.dumps(hparams.get("do_eval", False))))
    try:
        resolved = config.PretrainingConfig(model_name, data_dir, **hparams)
    except (config.HparamError, TypeError, ValueError) as e:
        raise UserError("hparams do not resolve: %s" % e)
    model = dict(hparams.get("model_hparam_overrides", {}))
    hidden = model.get("hidden_size", config.MODEL_SIZES[resolved.model_size][0])
    heads = model.get("num_attention_heads", max(1, hidden // 64))
    if hidden % heads:
        raise UserError("hidden_size %d is not a multiple of num_attention_heads %d"
                        % (hidden, heads))
    positions = model.get("max_position_embeddings", 512)
    if resolved.max_seq_length > positions:
        raise UserError("max_seq_length %d exceeds max_position_embeddings %d"
                        % (resolved.max_seq_length, positions))
    if resolved.max_predictions_per_seq < 1:
        raise UserError("mask_prob %s with max_seq_length %d masks no token"
                        % (resolved.mask_prob, resolved.max_seq_length))
    return resolved


def build(data_dir, preset, overrides_text, model_name):
    config = paths.import_electra_config()
    source = preset_path(preset)
    with open(source, encoding="utf-8") as f:
        text = f.read()
    preset_hparams = parse_object(text, "PRESET file %s" % source)
    preset_hparams = {k: v for k, v in preset_hparams.items() if not k.startswith(NOTE_PREFIX)}
    check_part(config, preset_hparams, "PRESET %s" % source)
    overrides = parse_object(overrides_text, "HPARAMS_OVERRIDES") \
        if overrides_text.strip() else {}
    check_part(config, overrides, "HPARAMS_OVERRIDES")
    hparams = merge(preset_hparams, overrides)

    vocab_size = vocab_size_of(data_dir)
    for where, value in (("vocab_size", hparams.get("vocab_size")),
                         ("model_hparam_overrides.vocab_size",
                          hparams.get("model_hparam_overrides", {}).get("vocab_size"))):
        if value is not None and value != vocab_size:
            raise UserError("%s = %d disagrees with %s (%d tokens); leave it out, it is taken "
                            "from the vocab" % (where, value, paths.vocab_file(data_dir),
                                                vocab_size))
    hparams["vocab_size"] = vocab_size
    check_part(config, hparams, "hparams")
    try:
        config.check_hparams(hparams)
    except config.HparamError as e:
        raise UserError("hparams: %s" % e)
    resolved = check_consistency(config, hparams, model_name, data_dir)

    target = paths.hparams_file(data_dir)
    stages.check_replaceable(data_dir, target,
                             "to use it, run with PRESET=%s; else move it away" % target)
    stages.write_owned_text(data_dir, target, json.dumps(hparams, indent=2) + "\n")
    print("hparams: %s: preset %s%s, vocab_size %d, %d steps of batch %d, max_seq_length %d"
          % (target, preset, " + overrides" if overrides else "", vocab_size,
             resolved.num_train_steps, resolved.train_batch_size, resolved.max_seq_length))
    return hparams


def builder_flags(data_dir):
    """The dataset builder's flags that follow from DATA_DIR/hparams.json."""
    path = paths.hparams_file(data_dir)
    if not os.path.isfile(path):
        raise UserError("%s is missing; run make hparams first" % path)
    config = paths.import_electra_config()
    try:
        hparams = config.load_hparams(path)
        resolved = config.PretrainingConfig("unused", data_dir, **hparams)
    except config.HparamError as e:
        raise UserError("%s: %s; run make hparams again" % (path, e))
    return "--max-seq-length %d %s" % (
        resolved.max_seq_length, "--do-lower-case" if resolved.do_lower_case else
        "--no-lower-case")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--preset", default="tutorial")
    parser.add_argument("--overrides", default="", help="JSON object merged over the preset")
    parser.add_argument("--model-name", default="electra-spanish")
    parser.add_argument("--builder-flags", action="store_true",
                        help="print the dataset builder's flags implied by DATA_DIR/hparams.json")
    args = parser.parse_args(argv)
    if args.builder_flags:
        print(builder_flags(args.data_dir))
        return
    if not args.preset.strip():
        raise UserError("PRESET is empty; choose one of %s" % ", ".join(preset_names()))
    build(args.data_dir, args.preset.strip(), args.overrides, args.model_name)


if __name__ == "__main__":
    run_main(main, "hparams")
