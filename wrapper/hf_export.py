"""`make convert`: a trained run -> two complete Hugging Face directories (the tutorial's
one-network converter with a hand-written config is wrapper.convert).

    python -m wrapper.hf_export --data-dir D --model-name N

reads the latest checkpoint in D/models/N and the run's hparams (D/hparams.json, resolved by
the trainer's own configure_pretraining), derives the discriminator's and the generator's
Hugging Face configs from them and from the checkpoint's shapes (no hand-written config: the
two must agree, or it stops), and writes D/models/N/hf/discriminator and .../generator, each
with config.json, pytorch_model.bin, model.safetensors, the tokenizer files (vocab.txt,
tokenizer_config.json with the run's lower-case/accent settings, special_tokens_map.json) and
a model card README.md. Each directory is complete or absent.
"""
import collections
import datetime
import json
import os
import shutil
from typing import Any, Callable, Dict, List, Mapping, Optional

from wrapper import checkpoint_layout, convert, fsutil, hf_tokenizer, paths, tf_checkpoint
from wrapper.cli import UserError, model_parser, run_main

OUTPUT_FILES = (convert.CONFIG_NAME, convert.WEIGHTS_NAME, convert.SAFETENSORS_NAME,
                "README.md") + hf_tokenizer.TOKENIZER_FILES


# ---- model card ------------------------------------------------------------------------

def _corpus_summary(data_dir):
    corpus = paths.corpus_dir(data_dir)
    if not os.path.isdir(corpus):
        return "not found under %s" % corpus
    files = sorted(f for f in os.listdir(corpus) if not f.startswith("."))
    size = sum(os.path.getsize(os.path.join(corpus, f)) for f in files
               if os.path.isfile(os.path.join(corpus, f)))
    return "%d file(s) in `corpus/` (%s), %.1f MB" % (
        len(files), ", ".join(files[:5]) + (", ..." if len(files) > 5 else ""), size / 1e6)


def read_eval_results(path: str) -> Dict[str, str]:
    """name -> value lines (`name = value`) of results/unsup_results.txt, in order."""
    results = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if "=" in line:
                key, value = line.split("=", 1)
                results[key.strip()] = value.strip()
    return results


def model_card(network: str, model_name: str, hf_config: Mapping[str, Any],
               run: checkpoint_layout.TrainedRun, step: Optional[int], vocab_size: int,
               do_lower_case: bool, data_dir: str) -> str:
    run_config, hparams, hparams_source = run.config, run.hparams, run.hparams_file
    cls = convert.MODEL_CLASS[network]
    lines = [
        "---", "language: es", "tags:", "- electra", "- %s" % network, "---", "",
        "# %s (%s)" % (model_name, network), "",
        "ELECTRA %s (model_size %s) pretrained on Spanish text with this project's "
        "reproduction of google-research/electra (TensorFlow 1.15), converted to transformers "
        "`%s` by `python -m wrapper.hf_export` with a strict tensor mapping."
        % (network, run_config.model_size, cls), "",
        "| | |", "|---|---|",
        "| checkpoint | `model.ckpt-%s` (global step %s of %d) |" % (
            step, step, run_config.num_train_steps),
        "| corpus | %s |" % _corpus_summary(data_dir),
        "| vocab | `vocab.txt`, %d WordPiece tokens, %s |" % (
            vocab_size, "lower-cased, accents stripped" if do_lower_case
            else "cased, accents kept"),
        "| model | hidden %d, %d layers, %d heads, intermediate %d, embedding %d, "
        "max positions %d |" % (hf_config["hidden_size"], hf_config["num_hidden_layers"],
                                hf_config["num_attention_heads"],
                                hf_config["intermediate_size"], hf_config["embedding_size"],
                                hf_config["max_position_embeddings"]),
        "| converted | %s UTC |" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
        "", "## Hyperparameters", "",
        "As given (%s):" % ("`hparams.json`" if hparams_source else "none; the defaults"), "",
        "```json", json.dumps(hparams, indent=2, sort_keys=True), "```", "",
        "Resolved (the trainer's configure_pretraining):", "",
        "| hparam | value |", "|---|---|",
    ]
    for key in ("model_size", "model_hparam_overrides", "embedding_size", "vocab_size",
                "do_lower_case", "max_seq_length", "mask_prob", "learning_rate",
                "lr_decay_power", "weight_decay_rate", "num_warmup_steps", "train_batch_size",
                "num_train_steps", "generator_hidden_size", "generator_layers", "gen_weight",
                "disc_weight", "temperature"):
        lines.append("| %s | `%s` |" % (key, json.dumps(getattr(run_config, key))))
    lines += ["", "## Evaluation", ""]
    if os.path.isfile(run_config.results_txt):
        lines += ["From `results/unsup_results.txt`:", "", "| metric | value |", "|---|---|"]
        for key, value in read_eval_results(run_config.results_txt).items():
            lines.append("| %s | %s |" % (key, value))
    else:
        lines.append("No evaluation results (`results/unsup_results.txt` is absent: run the "
                     "trainer with do_eval).")
    example = ("from transformers import ElectraForPreTraining, ElectraTokenizerFast\n"
               "tokenizer = ElectraTokenizerFast.from_pretrained(PATH)\n"
               "model = ElectraForPreTraining.from_pretrained(PATH)\n"
               "ids = tokenizer.encode(\"Los pájaros están hablando\", return_tensors=\"pt\")\n"
               "print(model(ids)[0] > 0)  # 1 = the discriminator thinks the token was replaced")
    if network == "generator":
        example = ("from transformers import ElectraForMaskedLM, ElectraTokenizerFast\n"
                   "tokenizer = ElectraTokenizerFast.from_pretrained(PATH)\n"
                   "model = ElectraForMaskedLM.from_pretrained(PATH)\n"
                   "ids = tokenizer.encode(\"Los pájaros están [MASK]\", return_tensors=\"pt\")\n"
                   "print(tokenizer.convert_ids_to_tokens(model(ids)[0].argmax(-1)[0]))")
    lines += ["", "## Use", "",
              "The tokenizer files carry the pretraining's settings (do_lower_case %s, "
              "strip_accents %s), so `from_pretrained(PATH)` reproduces the pretraining "
              "token ids with transformers 2.8.0 (ElectraTokenizer and ElectraTokenizerFast) "
              "and current transformers (AutoTokenizer)." % (
                  str(bool(do_lower_case)).lower(), str(bool(do_lower_case)).lower()), "",
              "```python", example, "```", ""]
    return "\n".join(lines)


# ---- the stage -------------------------------------------------------------------------

def export(data_dir: str, model_name: str, log: Callable[[str], Any] = print) -> List[str]:
    prefix = checkpoint_layout.latest_checkpoint(data_dir, model_name)
    run = checkpoint_layout.load_run_config(data_dir, model_name)
    run_config = run.config
    vocab_path = paths.vocab_file(data_dir)
    if not os.path.isfile(vocab_path):
        raise UserError("%s is missing; the converted model needs the pretraining vocab"
                        % vocab_path)
    vocab = hf_tokenizer.read_vocab(vocab_path)
    shapes = tf_checkpoint.read_shapes(prefix)
    hf_configs = checkpoint_layout.derive_hf_configs(run_config, shapes, vocab["[PAD]"],
                                                    run.hparams_file)
    vocab_lines = max(vocab.values()) + 1
    embedding_rows = next(iter(hf_configs.values()))["vocab_size"]
    if vocab_lines != embedding_rows:
        raise UserError("%s has %d lines but the checkpoint's embedding table has %d rows; "
                        "is it the vocab the model was trained with?"
                        % (vocab_path, vocab_lines, embedding_rows))
    for network in hf_configs:   # refuse before the slow part, and before writing anything
        fsutil.refuse_foreign(paths.hf_dir(data_dir, model_name, network),
                              lambda rel: rel in OUTPUT_FILES, "Hugging Face directory")
    step = tf_checkpoint.global_step(prefix)
    do_lower_case = run_config.do_lower_case
    written = []
    for network, hf_config in hf_configs.items():
        out = paths.hf_dir(data_dir, model_name, network)
        model, arrays = convert.convert(prefix, hf_config, network,
                                        what="the hparams and checkpoint shapes")
        try:
            with fsutil.atomic_output_dir(out, owned=lambda rel: rel in OUTPUT_FILES,
                                          what="Hugging Face directory") as partial:
                convert.write_model(partial, model, arrays, hf_config, network,
                                    safetensors=True)
                hf_tokenizer.write_tokenizer_files(
                    partial, vocab_path, do_lower_case, strip_accents=True,
                    max_length=hf_config["max_position_embeddings"])
                with open(os.path.join(partial, "README.md"), "w", encoding="utf-8") as f:
                    f.write(model_card(network, model_name, hf_config, run, step,
                                       vocab_lines, do_lower_case, data_dir))
        except Exception as e:   # pylint: disable=broad-except
            full = fsutil.disk_full_error(fsutil.os_error_behind(e), os.path.dirname(out),
                                          what="the %s's Hugging Face model" % network)
            if full is None:
                raise
            raise UserError("%s (%s was left as it was)" % (full, out))
        written.append(out)
        log("%s: %s, %d tensors, hidden %d x %d layers -> %s"
            % (network, os.path.basename(prefix), len(arrays), hf_config["hidden_size"],
               hf_config["num_hidden_layers"], out))
    if "generator" not in hf_configs:
        log("no generator in %s (trained without one): only the discriminator was written"
            % prefix)
        stale = paths.hf_dir(data_dir, model_name, "generator")
        if os.path.isdir(stale) and not fsutil.foreign_files(stale,
                                                             lambda rel: rel in OUTPUT_FILES):
            # An earlier export's generator would not match this checkpoint's discriminator.
            shutil.rmtree(stale)
            log("removed %s (an earlier export's generator)" % stale)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    args = model_parser(
        "python -m wrapper.hf_export",
        "Convert the latest checkpoint of DATA_DIR/models/NAME into Hugging Face "
        "discriminator and generator directories under DATA_DIR/models/NAME/hf.").parse_args(argv)
    export(args.data_dir, args.model_name)
    return 0


if __name__ == "__main__":
    run_main(main)
