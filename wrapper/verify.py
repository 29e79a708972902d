"""Proves a conversion: the converted PyTorch models agree with our TF graph on real Spanish.

    python -m wrapper.tf_logits --data-dir D --model-name N   # .venv: the TF logits
    python -m wrapper.verify --data-dir D --model-name N      # .venv, then .venv-modern

A plain comparer, run once in each environment against the npz that wrapper.tf_logits
wrote from the latest checkpoint (D/.cache/verify/N/tf-logits.npz):
- config.json of each network against the sizes the TF graph was actually built with
  (variable shapes and attention heads) and the rest of the run's hparams;
- the tokenizers' ids against the builder's FullTokenizer on the same sentences;
- the logits: with transformers 2.x (.venv: 2.8.0) ElectraTokenizer(+Fast), the
  discriminator's max |logit difference| < 1e-4 and the generator's argmax equal
  (2.8.0 builds the generator head's LayerNorm with eps 1e-5, not 1e-12, which moves logits
  by about 1e-3), and < 1e-4 once that eps is set to the reference's; with current
  transformers (.venv-modern) AutoTokenizer's ids and both networks < 1e-4, loading
  model.safetensors and, separately, pytorch_model.bin.
Exit status 0 only when every check holds.
"""
import json
import os
import tempfile
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from wrapper import checkpoint_layout, convert, hf_tokenizer, paths, tf_checkpoint
from wrapper.cli import UserError, model_parser, run_main
from wrapper.logit_agreement import TOLERANCE, logit_agreement

def load_tf_logits(path: str, data_dir: str, model_name: str) -> Dict[str, Any]:
    """The TF side written by wrapper.tf_logits, checked to be of the latest checkpoint."""
    if not os.path.isfile(path):
        raise UserError("%s is missing; compute the TF logits first: .venv/bin/python -m "
                        "wrapper.tf_logits --data-dir %s --model-name %s"
                        % (path, data_dir, model_name))
    with np.load(path, allow_pickle=False) as data:
        ref = {k: data[k] for k in data.files}
    meta = json.loads(str(ref.pop("meta")))
    ref.update(prefix=meta["prefix"], hf_configs=meta["hf_configs"],
               built_sizes=meta["built_sizes"],
               texts=[t if isinstance(t, str) else tuple(t) for t in meta["texts"]])
    latest = tf_checkpoint.resolve_checkpoint(paths.model_dir(data_dir, model_name))
    if os.path.basename(latest) != os.path.basename(ref["prefix"]):
        raise UserError("%s holds the logits of %s, not of the latest checkpoint %s; run "
                        "python -m wrapper.tf_logits again"
                        % (path, os.path.basename(ref["prefix"]), os.path.basename(latest)))
    return ref


def hf_tokenizer_mismatches(tokenizer, texts: Sequence[Union[str, Tuple[str, ...]]],
                            input_ids: np.ndarray, input_mask: np.ndarray
                            ) -> List[Tuple[Union[str, Tuple[str, ...]], List[int], List[int]]]:
    """Sentences where a Hugging Face tokenizer's encode() differs from the builder's ids."""
    bad = []
    for i, text in enumerate(texts):
        want = input_ids[i][input_mask[i] == 1].tolist()
        got = tokenizer.encode(text) if isinstance(text, str) else tokenizer.encode(*text)
        if list(got) != want:
            bad.append((text, list(got), want))
    return bad



# ---- the PyTorch side ------------------------------------------------------------------

class Report(object):
    def __init__(self):
        self.failures = []

    def check(self, ok, line):
        print("  %-4s %s" % ("ok" if ok else "FAIL", line))
        if not ok:
            self.failures.append(line)


def torch_logits(model, ref: Mapping[str, Any]) -> np.ndarray:
    import torch
    with torch.no_grad():
        out = model(torch.tensor(ref["input_ids"], dtype=torch.long),
                    attention_mask=torch.tensor(ref["input_mask"], dtype=torch.long),
                    token_type_ids=torch.tensor(ref["segment_ids"], dtype=torch.long))
    logits = out[0] if isinstance(out, (tuple, list)) else out.logits
    return logits.numpy().reshape(ref["input_ids"].shape + logits.shape[2:])


def compare(report: Report, label: str, network: str, logits: np.ndarray, ref: Mapping[str, Any],
            argmax_only: bool = False) -> None:
    real = ref["input_mask"] == 1
    found = logit_agreement(logits[real], ref["%s_logits" % network][real])
    if argmax_only:
        report.check(found.argmax_equal == found.positions,
                     "%s %s: argmax equal at %d/%d tokens (max |logit difference| %.1e; "
                     "LayerNorm eps 1e-5 in transformers 2.8.0's head)"
                     % (label, network, found.argmax_equal, found.positions,
                        found.max_difference))
    else:
        report.check(found.max_difference < TOLERANCE,
                     "%s %s: max |logit difference| %.1e (< %.0e)"
                     % (label, network, found.max_difference, TOLERANCE))


def hf_dirs(data_dir: str, model_name: str, networks: Iterable[str]) -> Dict[str, str]:
    """{network: its converted directory}, each holding the config and tokenizer files
    (a missing weights file is a failed check of its own)."""
    dirs = {}
    for network in networks:
        path = paths.hf_dir(data_dir, model_name, network)
        if not os.path.isfile(os.path.join(path, convert.CONFIG_NAME)):
            raise UserError("%s is missing or incomplete; convert first (make convert)" % path)
        missing = [name for name in hf_tokenizer.TOKENIZER_FILES
                   if not os.path.isfile(os.path.join(path, name))]
        if missing:
            raise UserError("%s lacks %s, so its tokenizer cannot load; convert again (make "
                            "convert) to write the whole directory" % (path, " and ".join(missing)))
        dirs[network] = path
    return dirs


def check_configs(report: Report, ref: Mapping[str, Any], dirs: Mapping[str, str]) -> None:
    """config.json against the graph as built (sizes: variable shapes; heads: the attention's
    shape, which no variable shows and a barely trained model hardly depends on) and against
    the run's hparams for what the graph does not show (activation, dropout, ...)."""
    for network, path in dirs.items():
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            written = json.load(f)
        want = dict(ref["hf_configs"][network], **ref["built_sizes"][network])
        wrong = [k for k in checkpoint_layout.HF_CONFIG_KEYS if written.get(k) != want[k]]
        report.check(not wrong, "%s config.json agrees with the TF graph as built and the "
                     "run's hparams%s" % (network, "" if not wrong else
                                          ": %s is %s, the graph says %s" % (
                                              wrong[0], json.dumps(written.get(wrong[0])),
                                              json.dumps(want[wrong[0]]))))


def check_legacy(report: Report, ref: Mapping[str, Any], dirs: Mapping[str, str]) -> None:
    """transformers 2.8.0: ElectraTokenizer(+Fast) ids, both networks."""
    import transformers
    for cls in (transformers.ElectraTokenizer, transformers.ElectraTokenizerFast):
        for network, path in dirs.items():
            bad = hf_tokenizer_mismatches(cls.from_pretrained(path), ref["texts"],
                                          ref["input_ids"], ref["input_mask"])
            report.check(not bad, "transformers %s %s(%s): same ids as the builder on %d "
                         "sentences%s" % (transformers.__version__, cls.__name__, network,
                                          len(ref["texts"]), _first_mismatch(bad)))
    label = "transformers %s" % transformers.__version__
    for network, path in dirs.items():
        cls = transformers.ElectraForPreTraining if network == "discriminator" \
            else transformers.ElectraForMaskedLM
        model = cls.from_pretrained(path).eval()
        if network == "discriminator":
            compare(report, label, network, torch_logits(model, ref), ref)
        else:
            compare(report, label, network, torch_logits(model, ref), ref, argmax_only=True)
            model.generator_predictions.LayerNorm.eps = 1e-12   # the reference's eps
            compare(report, label + " (head eps set to 1e-12)", network,
                    torch_logits(model, ref), ref)


def check_modern(report: Report, ref: Mapping[str, Any], dirs: Mapping[str, str]) -> None:
    """Current transformers: AutoTokenizer ids, both networks from safetensors and .bin."""
    import transformers
    transformers.utils.logging.disable_progress_bar()
    version = transformers.__version__
    for network, path in dirs.items():
        bad = hf_tokenizer_mismatches(transformers.AutoTokenizer.from_pretrained(path),
                                      ref["texts"], ref["input_ids"], ref["input_mask"])
        report.check(not bad, "transformers %s AutoTokenizer(%s): same ids as the builder on %d "
                     "sentences%s" % (version, network, len(ref["texts"]), _first_mismatch(bad)))
    for network, path in dirs.items():
        cls = transformers.ElectraForPreTraining if network == "discriminator" \
            else transformers.ElectraForMaskedLM
        for weights in ("model.safetensors", "pytorch_model.bin"):
            if not os.path.isfile(os.path.join(path, weights)):
                report.check(False, "%s is missing" % os.path.join(path, weights))
                continue
            # A directory holding only config.json and this one weights file, so that the
            # loader cannot fall back on the other format.
            with tempfile.TemporaryDirectory() as only:
                for name in ("config.json", weights):
                    os.symlink(os.path.abspath(os.path.join(path, name)),
                               os.path.join(only, name))
                model, info = cls.from_pretrained(only, output_loading_info=True)
            model.eval()
            problems = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
                        if info.get(k)]
            report.check(not problems, "transformers %s %s from %s: every parameter loaded%s"
                         % (version, network, weights, "" if not problems else
                            " (%s: %s)" % (problems[0], sorted(info[problems[0]])[:3])))
            compare(report, "transformers %s (%s)" % (version, weights), network,
                    torch_logits(model, ref), ref)


def _first_mismatch(bad):
    if not bad:
        return ""
    text, got, want = bad[0]
    return "; %d differ, first %r: %s != %s" % (len(bad), text, got[:12], want[:12])


def _is_legacy():
    import transformers
    return transformers.__version__.split(".")[0] in ("2", "3")


def verify(data_dir: str, model_name: str, tf_logits: Optional[str] = None) -> int:
    path = tf_logits or paths.tf_logits_file(data_dir, model_name)
    ref = load_tf_logits(path, data_dir, model_name)
    dirs = hf_dirs(data_dir, model_name,
                   [n for n in checkpoint_layout.NETWORKS if "%s_logits" % n in ref])
    report = Report()
    import transformers
    print("verify %s (transformers %s): %d sentences, %d tokens against the TF logits in %s"
          % (ref["prefix"], transformers.__version__, len(ref["texts"]),
             int(ref["input_mask"].sum()), path))
    check_configs(report, ref, dirs)
    if _is_legacy():
        check_legacy(report, ref, dirs)
    else:
        check_modern(report, ref, dirs)
    if report.failures:
        raise UserError("%d check(s) failed, first: %s" % (len(report.failures),
                                                          report.failures[0]))
    print("verify: PASS (transformers %s)" % transformers.__version__)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = model_parser(
        "python -m wrapper.verify",
        "Compare the converted Hugging Face models with our TF graph's logits (written by "
        "python -m wrapper.tf_logits) in this environment.")
    parser.add_argument("--tf-logits",
                        help="default: DATA_DIR/.cache/verify/NAME/tf-logits.npz")
    args = parser.parse_args(argv)
    return verify(args.data_dir, args.model_name, args.tf_logits)


if __name__ == "__main__":
    run_main(main)
