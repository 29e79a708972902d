"""Proves a conversion: our TF graph and the converted PyTorch models agree on real Spanish.

    python -m wrapper.verify --data-dir D --model-name N

With .venv's Python (TF 1.15, transformers 2.8.0) it
1. tokenizes fixed Spanish sentences (plus the first lines of D/corpus) with the builder's
   FullTokenizer and checks that the converted directory's ElectraTokenizer and
   ElectraTokenizerFast give the same ids;
2. runs third_party/electra's inference graph (pretraining_model.build_inference_logits),
   restored from the latest checkpoint, and the converted models on that batch:
   discriminator max |logit difference| < 1e-4; generator argmax equal (transformers 2.8.0
   builds the generator head's LayerNorm with eps 1e-5, not 1e-12, which moves logits by
   about 1e-3), and < 1e-4 once that eps is set to the reference's;
3. saves the TF logits and runs itself with .venv-modern's Python (current transformers), which
   checks AutoTokenizer's ids and both networks < 1e-4, loading model.safetensors and,
   separately, pytorch_model.bin.
Run with .venv-modern's Python it does the same from the other side: it asks .venv's Python
for the TF logits first. Exit status 0 only when every check holds.
"""
import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from wrapper import convert, hf_tokenizer, paths, tf_checkpoint
from wrapper.cli import UserError, run_main

PY_LEGACY = os.path.join(paths.REPO_ROOT, ".venv", "bin", "python")
PY_MODERN = os.path.join(paths.REPO_ROOT, ".venv-modern", "bin", "python")
TOLERANCE = 1e-4
MAX_TOKENS = 128
CORPUS_LINES = 4

# Real sentences with the accents and punctuation a cased Spanish vocab must keep apart.
SENTENCES = [
    "Los pájaros están cantando",
    "Los pájaros están hablando",
    "¿Dónde está el niño? Salió corriendo hacia la estación.",
    "Más vale pájaro en mano que ciento volando.",
    "El camión llegó tarde porque llovía muchísimo en Cádiz.",
    ("Instale el paquete con «apt-get install» y reinicie el ordenador.",
     "Después compruebe que el sistema arrancó sin errores."),
]


# ---- inputs ----------------------------------------------------------------------------

def _load_module(name, filename):
    path = os.path.join(paths.ELECTRA_DIR, filename)
    if not os.path.isfile(path):
        raise UserError("%s is missing; verify needs third_party/electra's %s" % (path, filename))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus_lines(data_dir, count=CORPUS_LINES):
    """The first non-empty lines of the run's corpus (real text the model has seen)."""
    found = []
    for path in sorted(glob.glob(os.path.join(paths.corpus_dir(data_dir), "*"))):
        if not os.path.isfile(path) or path.endswith(".gz"):
            continue
        with open(path, encoding="utf-8", errors="ignore") as f:
            for line in f:
                line = line.strip()
                if line:
                    found.append(line)
                if len(found) >= count:
                    return found
    return found


def builder_rows(tokenizer, texts, max_tokens=MAX_TOKENS):
    """(texts, rows of (ids, segment ids)) as the builder encodes them: [CLS] A [SEP]
    (B [SEP]); texts longer than max_tokens are left out rather than truncated."""
    vocab = tokenizer.vocab
    kept, rows = [], []
    for text in texts:
        first, second = (text, None) if isinstance(text, str) else text
        a = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(first))
        b = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(second)) if second else []
        ids = [vocab["[CLS]"]] + a + [vocab["[SEP]"]]
        segments = [0] * len(ids)
        if b:
            ids += b + [vocab["[SEP]"]]
            segments += [1] * (len(b) + 1)
        if len(ids) <= max_tokens:
            kept.append(text)
            rows.append((ids, segments))
    return kept, rows


def pad_rows(rows):
    """Right-padded int32 (input_ids, input_mask, segment_ids)."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = np.zeros((len(rows), width), np.int32)
    input_mask = np.zeros((len(rows), width), np.int32)
    segment_ids = np.zeros((len(rows), width), np.int32)
    for i, (ids, segments) in enumerate(rows):
        input_ids[i, :len(ids)] = ids
        input_mask[i, :len(ids)] = 1
        segment_ids[i, :len(ids)] = segments
    return input_ids, input_mask, segment_ids


def hf_tokenizer_mismatches(tokenizer, texts, input_ids, input_mask):
    """Sentences where a Hugging Face tokenizer's encode() differs from the builder's ids."""
    bad = []
    for i, text in enumerate(texts):
        want = input_ids[i][input_mask[i] == 1].tolist()
        got = tokenizer.encode(text) if isinstance(text, str) else tokenizer.encode(*text)
        if list(got) != want:
            bad.append((text, list(got), want))
    return bad


# ---- the TF side -----------------------------------------------------------------------

def tf_logits(run_config, prefix, input_ids, input_mask, segment_ids):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow.compat.v1 as tf
    tf.logging.set_verbosity(tf.logging.ERROR)
    model = _load_module("electra_pretraining_model", "pretraining_model.py")
    graph = tf.Graph()
    with graph.as_default():
        outputs = model.build_inference_logits(
            run_config, tf.constant(input_ids), tf.constant(input_mask),
            tf.constant(segment_ids))
        saver = tf.train.Saver()
        with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as session:
            saver.restore(session, prefix)
            values = session.run(outputs)
    return {k: np.asarray(v, np.float32) for k, v in values.items()}


def reference(data_dir, model_name):
    """Inputs and TF logits of a run's latest checkpoint (needs .venv: TF 1.15)."""
    from wrapper.export import derive_hf_configs, load_run_config
    model_dir = paths.model_dir(data_dir, model_name)
    if not os.path.isdir(model_dir):
        raise UserError("model directory %s does not exist; train first (make pretrain)"
                        % model_dir)
    prefix = tf_checkpoint.resolve_checkpoint(model_dir)
    names = list(tf_checkpoint.read_shapes(prefix))
    networks = [n for n in ("discriminator", "generator") if convert.has_network(names, n)]
    hf_dirs(data_dir, model_name, networks)   # before the slow part: is there anything to check?
    run_config, _, source = load_run_config(data_dir, model_name)
    configs = derive_hf_configs(run_config, tf_checkpoint.read_shapes(prefix),
                                hf_tokenizer.read_vocab(paths.vocab_file(data_dir))["[PAD]"],
                                source)
    tokenization = _load_module("electra_tokenization", "tokenization.py")
    tokenizer = tokenization.FullTokenizer(paths.vocab_file(data_dir),
                                           do_lower_case=run_config.do_lower_case,
                                           strip_accents=True)
    texts, rows = builder_rows(tokenizer, list(SENTENCES) + corpus_lines(data_dir))
    input_ids, input_mask, segment_ids = pad_rows(rows)
    logits = tf_logits(run_config, prefix, input_ids, input_mask, segment_ids)
    logits = {"%s_logits" % n: logits["%s_logits" % n] for n in networks}
    return dict(prefix=prefix, texts=texts, configs=configs, input_ids=input_ids,
                input_mask=input_mask, segment_ids=segment_ids, **logits)


def save_reference(ref, path):
    arrays = {k: v for k, v in ref.items() if isinstance(v, np.ndarray)}
    arrays["meta"] = np.array(json.dumps({k: ref[k] for k in ("prefix", "texts", "configs")}))
    np.savez(path, **arrays)


def load_reference(path):
    with np.load(path, allow_pickle=False) as data:
        ref = {k: data[k] for k in data.files}
    meta = json.loads(str(ref.pop("meta")))
    ref.update(prefix=meta["prefix"], configs=meta["configs"],
               texts=[t if isinstance(t, str) else tuple(t) for t in meta["texts"]])
    return ref


# ---- the PyTorch side ------------------------------------------------------------------

class Report(object):
    def __init__(self):
        self.failures = []

    def check(self, ok, line):
        print("  %-4s %s" % ("ok" if ok else "FAIL", line))
        if not ok:
            self.failures.append(line)


def torch_logits(model, ref):
    import torch
    with torch.no_grad():
        out = model(torch.tensor(ref["input_ids"], dtype=torch.long),
                    attention_mask=torch.tensor(ref["input_mask"], dtype=torch.long),
                    token_type_ids=torch.tensor(ref["segment_ids"], dtype=torch.long))
    logits = out[0] if isinstance(out, (tuple, list)) else out.logits
    return logits.numpy().reshape(ref["input_ids"].shape + logits.shape[2:])


def compare(report, label, network, logits, ref, argmax_only=False):
    real = ref["input_mask"] == 1
    want = ref["%s_logits" % network]
    diff = float(np.abs(logits[real] - want[real]).max())
    if argmax_only:
        same = logits[real].argmax(-1) == want[real].argmax(-1)
        report.check(bool(same.all()), "%s %s: argmax equal at %d/%d tokens (max |logit "
                     "difference| %.1e; LayerNorm eps 1e-5 in transformers 2.8.0's head)"
                     % (label, network, int(same.sum()), same.size, diff))
    else:
        report.check(diff < TOLERANCE, "%s %s: max |logit difference| %.1e (< %.0e)"
                     % (label, network, diff, TOLERANCE))


def hf_dirs(data_dir, model_name, networks):
    dirs = {}
    for network in networks:
        path = paths.hf_dir(data_dir, model_name, network)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UserError("%s is missing or incomplete; convert first (make convert)" % path)
        dirs[network] = path
    return dirs


def check_configs(report, ref, dirs):
    """config.json against the run's hparams and checkpoint shapes: the number of attention
    heads, for one, shows in no shape, and a barely trained model hardly depends on it."""
    for network, path in dirs.items():
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            written = json.load(f)
        want = ref["configs"][network]
        wrong = [k for k in convert.HF_CONFIG_KEYS if written.get(k) != want[k]]
        report.check(not wrong, "%s config.json agrees with the run's hparams and checkpoint%s"
                     % (network, "" if not wrong else ": %s is %s, the run says %s" % (
                         wrong[0], json.dumps(written.get(wrong[0])), json.dumps(want[wrong[0]]))))


def check_legacy(report, ref, dirs):
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


def check_modern(report, ref, dirs):
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


def _run_other(python, args, what):
    """Runs verify with the other environment's Python; its report goes to our stdout.
    Returns None on success, else its error line (so that we still print only one)."""
    if not os.path.isfile(python):
        raise UserError("%s is missing; %s (make setup setup-modern)" % (python, what))
    env = dict(os.environ, PYTHONPATH=paths.REPO_ROOT, PYTHONWARNINGS="ignore",
               TF_CPP_MIN_LOG_LEVEL="3")
    sys.stdout.flush()
    proc = subprocess.run([python, "-m", "wrapper.verify"] + args, cwd=paths.REPO_ROOT,
                          env=env, stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode == 0:
        return None
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    last = lines[-1] if lines else "exit status %d" % proc.returncode
    return last.split(": error: ", 1)[-1]


def verify(data_dir, model_name, skip_modern=False, tf_reference=None):
    if tf_reference is None and not _is_legacy():
        # Current transformers has no TF 1.15 beside it: .venv's Python computes the logits.
        workdir = tempfile.mkdtemp(prefix="verify-")
        try:
            path = os.path.join(workdir, "tf-reference.npz")
            error = _run_other(PY_LEGACY, ["--data-dir", data_dir, "--model-name", model_name,
                                           "--write-tf-reference", path],
                               "the TF logits come from .venv")
            if error:
                raise UserError("computing the TF logits with %s: %s" % (PY_LEGACY, error))
            return verify(data_dir, model_name, tf_reference=path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    ref = reference(data_dir, model_name) if tf_reference is None else load_reference(tf_reference)
    dirs = hf_dirs(data_dir, model_name, [n for n in ("discriminator", "generator")
                                          if "%s_logits" % n in ref])
    report = Report()
    tokens = int(ref["input_mask"].sum())
    import transformers
    print("verify %s (transformers %s): %d sentences, %d tokens against %s"
          % (ref["prefix"], transformers.__version__, len(ref["texts"]), tokens,
             "third_party/electra's TF graph" if tf_reference is None
             else "TF logits computed by .venv"))
    check_configs(report, ref, dirs)
    if _is_legacy():
        check_legacy(report, ref, dirs)
    else:
        check_modern(report, ref, dirs)
    if report.failures:
        raise UserError("%d check(s) failed, first: %s" % (len(report.failures),
                                                          report.failures[0]))
    if _is_legacy() and tf_reference is None and not skip_modern:
        workdir = tempfile.mkdtemp(prefix="verify-")
        try:
            path = os.path.join(workdir, "tf-reference.npz")
            save_reference(ref, path)
            error = _run_other(PY_MODERN, ["--data-dir", data_dir, "--model-name", model_name,
                                           "--tf-reference", path],
                               "the check with current transformers runs there "
                               "(or pass --skip-modern)")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if error:
            raise UserError("with current transformers (%s): %s" % (PY_MODERN, error))
    print("verify: PASS (%s)" % ("transformers 2.8.0 and current"
                                 if _is_legacy() and not skip_modern and tf_reference is None
                                 else "this environment"))
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m wrapper.verify",
        description="Compare our TF graph with the converted Hugging Face models on real "
                    "Spanish sentences (transformers 2.8.0 and current transformers).")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--skip-modern", action="store_true",
                        help="only check this environment (no .venv-modern run)")
    parser.add_argument("--tf-reference", help=argparse.SUPPRESS)        # internal
    parser.add_argument("--write-tf-reference", help=argparse.SUPPRESS)  # internal
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)   # the other environment runs elsewhere
    if args.write_tf_reference:
        save_reference(reference(args.data_dir, args.model_name), args.write_tf_reference)
        return 0
    return verify(args.data_dir, args.model_name, skip_modern=args.skip_modern,
                  tf_reference=args.tf_reference)


if __name__ == "__main__":
    run_main(main, program="wrapper.verify")
