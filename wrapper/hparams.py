"""DATA_DIR/hparams.json: a preset, the user's overrides and the vocab size, type-checked.

    python -m wrapper.hparams --data-dir D [--preset NAME|PATH] [--overrides JSON]
                              [--model-name N]

Presets are hparams/NAME.json (keys starting with "_" are notes for the reader and are
dropped). HPARAMS_OVERRIDES is a JSON object merged over the preset; a
`model_hparam_overrides` object is merged key by key. vocab_size is the number of lines of
DATA_DIR/vocab.txt (counted by the builder's own reader). Every value is checked by the
trainer's own configure_pretraining: types here, key by key, naming the preset or the
overrides; then resolution into a full PretrainingConfig, whose validate() checks ranges and
sizes exactly as the trainer does, before anything is written.
"""
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

from wrapper import fsutil, paths
from wrapper.cli import ArgumentParser, UserError, run_main
from wrapper.electra import configure_pretraining
from wrapper.settings import count, default, preset_path, preset_vocab_size
from wrapper.vocab import read_tokens

NOTE_PREFIX = "_"


def parse_object(text: str, what: str) -> Dict[str, Any]:
    try:
        value = configure_pretraining.parse_json(text, what)
    except configure_pretraining.HparamError as e:
        raise UserError("%s: %s" % (e, text.strip()[:80]))
    if not isinstance(value, dict):
        raise UserError("%s must be a JSON object such as '{\"num_train_steps\": 500}', got %s"
                        % (what, text.strip()[:80]))
    return value


def check_types(hparams: Mapping[str, Any], what: str) -> None:
    """Every unknown key or wrongly typed value of one source, in one line."""
    errors = []
    for key, value in hparams.items():
        try:
            configure_pretraining.check_hparams({key: value})
        except configure_pretraining.HparamError as e:
            errors.append(str(e))
    if errors:
        raise UserError("%s: %s" % (what, "; ".join(errors)))


def merge(preset: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    merged = dict(preset)
    for key, value in overrides.items():
        if key == "model_hparam_overrides" and isinstance(value, dict) and \
                isinstance(merged.get(key), dict):
            merged[key] = dict(merged[key], **value)
        else:
            merged[key] = value
    return merged


def vocab_size_of(data_dir: str) -> int:
    """The number of token ids of DATA_DIR/vocab.txt, counted as the builder counts them."""
    path = paths.vocab_file(data_dir)
    if not os.path.isfile(path):
        raise UserError("%s is missing; run make vocab first (vocab_size is taken from it)"
                        % path)
    return len(read_tokens(path))


def resolve(hparams: Mapping[str, Any], model_name: str, data_dir: str
            ) -> configure_pretraining.PretrainingConfig:
    """The trainer's own resolution and validation (types, ranges, sizes)."""
    try:
        return configure_pretraining.PretrainingConfig(model_name, data_dir, **hparams)
    except configure_pretraining.HparamError as e:
        raise UserError(str(e))


def build(data_dir: str, preset: str, overrides_text: str, model_name: str,
          num_gpus: Optional[int] = None) -> Dict[str, Any]:
    source = preset_path(preset)
    with open(source, encoding="utf-8") as f:
        text = f.read()
    preset_hparams = parse_object(text, "PRESET file %s" % source)
    # The vocab size a preset's shape is meant for: its VOCAB_SIZE default (wrapper/settings.py).
    meant_vocab_size = preset_vocab_size(preset)
    preset_hparams = {k: v for k, v in preset_hparams.items() if not k.startswith(NOTE_PREFIX)}
    check_types(preset_hparams, "PRESET %s" % source)
    overrides = parse_object(overrides_text, "HPARAMS_OVERRIDES") \
        if overrides_text.strip() else {}
    check_types(overrides, "HPARAMS_OVERRIDES")
    hparams = merge(preset_hparams, overrides)
    if num_gpus is not None:   # NUM_GPUS=N: the same as {"num_gpus": N} in the overrides
        hparams["num_gpus"] = num_gpus

    vocab_size = vocab_size_of(data_dir)
    for where, value in (("vocab_size", hparams.get("vocab_size")),
                         ("model_hparam_overrides.vocab_size",
                          hparams.get("model_hparam_overrides", {}).get("vocab_size"))):
        if value is not None and value != vocab_size:
            raise UserError("%s = %d disagrees with %s (%d tokens); leave it out, it is taken "
                            "from the vocab" % (where, value, paths.vocab_file(data_dir),
                                                vocab_size))
    hparams["vocab_size"] = vocab_size
    if meant_vocab_size and meant_vocab_size != vocab_size:
        sys.stderr.write("hparams: note: PRESET %s is meant for a vocab of %d tokens (the "
                         "published model's); %s has %d, so the model's vocab_size differs: "
                         "for the published shape make the vocab with VOCAB=train VOCAB_SIZE=%d"
                         "\n" % (preset, meant_vocab_size, paths.vocab_file(data_dir),
                                  vocab_size, meant_vocab_size))
    resolved = resolve(hparams, model_name, data_dir)

    target = paths.hparams_file(data_dir)
    fsutil.check_replaceable(data_dir, target,
                             "to use it, run with PRESET=%s; else move it away" % target)
    fsutil.write_owned_text(data_dir, target, json.dumps(hparams, indent=2) + "\n")
    print("hparams: %s: preset %s%s, vocab_size %d, %d steps of batch %d, max_seq_length %d"
          % (target, preset, " + overrides" if overrides else "", vocab_size,
             resolved.num_train_steps, resolved.train_batch_size, resolved.max_seq_length))
    return hparams


def builder_flags(data_dir: str) -> str:
    """The dataset builder's flags that follow from DATA_DIR/hparams.json."""
    path = paths.hparams_file(data_dir)
    if not os.path.isfile(path):
        raise UserError("%s is missing; run make hparams first" % path)
    try:
        hparams = configure_pretraining.load_hparams(path)
        resolved = configure_pretraining.PretrainingConfig("unused", data_dir, **hparams)
    except configure_pretraining.HparamError as e:
        raise UserError("%s: %s; run make hparams again" % (path, e))
    return "--max-seq-length %d %s" % (
        resolved.max_seq_length, "--do-lower-case" if resolved.do_lower_case else
        "--no-lower-case")


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--preset", default=default("PRESET"))
    parser.add_argument("--overrides", default=default("HPARAMS_OVERRIDES"),
                        help="JSON object merged over the preset")
    parser.add_argument("--model-name", default=default("MODEL_NAME"))
    parser.add_argument("--num-gpus", default=default("NUM_GPUS"),
                        help="GPUs of this host to train on (NUM_GPUS)")
    args = parser.parse_args(argv)
    build(args.data_dir, args.preset.strip(), args.overrides, args.model_name,
          count("NUM_GPUS", args.num_gpus))


if __name__ == "__main__":
    run_main(main)
