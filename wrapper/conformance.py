"""Conformance with the reference, google-research/electra @ 8a46635f, on data it produced.

    python -m wrapper.conformance [--electra-dir DIR] [--reference DIR] [CHECK ...]
    python -m wrapper.conformance --backend torch [CHECK ...]   (wrapper/conformance_torch.py)

The reference data lives in tests/conformance/ (its README says what produced each file).
Every check runs the pipeline on the reference's inputs and compares with the reference's
outputs, and prints one line: PASS or FAIL, the check's name, what was measured. The last
line is the verdict; the exit status is 0 only when every check passed.

CHECK is a group (builder, configs, variables, converter, tokenizer) or one check of it
(builder-p1, converter-generator, ...); default: all of them. With --electra-dir, the
trainer-side checks (builder, configs, variables) run that implementation instead of ours,
e.g. an upstream checkout (whose builder has no --seed flag, so it cannot reproduce the
seeded reference shards; its configs and variables must pass).

Run it with the project's Python 3.7 environment (TensorFlow 1.15, transformers 2.8.0, torch):
`make conformance` or `.venv/bin/python -m wrapper.conformance`.
"""
import argparse
import collections
import gzip
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from wrapper import paths, tf_checkpoint
from wrapper.cli import ArgumentParser, UserError, run_main
from wrapper.settings import BACKENDS, default

REFERENCE_DIR = os.path.join(paths.REPO_ROOT, "tests", "conformance")

# What the reference data was made with (tests/conformance/README.md).
CORPUS_CHECKSUMS = "builder/fortunes-es-1.36.sha256"
CORPUS_DIR = "corpus/fortunes"
VOCAB = "vocab-es-8k.txt"
BUILDER_FLAGS = ["--max-seq-length", "128", "--no-lower-case", "--seed", "1234"]
BUILDER_DIGESTS = "builder/fortunes-seq128-cased-seed1234-p%d.json"   # % processes
SHARD_NAME = re.compile(r"pretrain_data\.tfrecord-(\d+)-of-(\d+)$")
CONFIGS = "pretraining/configs.json"
CONFIGS_MODEL_NAME, CONFIGS_DATA_DIR = "electra-spanish", "DATA_DIR"
VARIABLES = "pretraining/variables-small-vocab8000.json"
# One training step of ELECTRA-small with vocab 8000: enough for a checkpoint with every
# variable, Adam slots and global_step included.
VARIABLES_HPARAMS = {"do_train": True, "do_eval": False, "model_size": "small",
                     "do_lower_case": False, "vocab_size": 8000, "num_train_steps": 1,
                     "save_checkpoints_steps": 1, "train_batch_size": 2,
                     "iterations_per_loop": 1}
TINY_CHECKPOINT = "converter/tiny-ckpt/model.ckpt-40"
TINY_EXPECTED = "converter/expected-tiny.json"
TOKENIZER_IDS = "tokenizer/fortunes-cased.jsonl.gz"

# The tiny reference model (converter/tiny-hparams.json: hidden 64, 2 layers, vocab 8000,
# embedding 128) in Hugging Face terms, by the rules of SPEC.md section 2: heads =
# max(1, hidden // 64), intermediate = 4 * hidden, generator hidden = hidden / 4.
TINY_HF_BASE = {"vocab_size": 8000, "embedding_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
                "type_vocab_size": 2, "initializer_range": 0.02}
TINY_HF_CONFIGS = {
    "discriminator": dict(TINY_HF_BASE, hidden_size=64, intermediate_size=256),
    "generator": dict(TINY_HF_BASE, hidden_size=16, intermediate_size=64),
}
# Discriminator logits must agree to logit_agreement.TOLERANCE. transformers 2.8.0 builds the
# generator head's LayerNorm with eps 1e-5 where the reference has 1e-12, which alone moves the
# generator's logits by about 2e-3: 5e-3 bounds them, and every position's argmax must still
# agree.
GENERATOR_TOLERANCE = 5e-3

Result = collections.namedtuple("Result", "ok detail")


def log(message: str) -> None:
    """A progress line (slow parts), indented under the check lines."""
    print("  .. " + message, flush=True)


# ---- the reference's inputs --------------------------------------------------------------

def check_corpus(ctx: "Context") -> Result:
    """The 24 fortunes-es 1.36 files, byte for byte (every other check reads them)."""
    want = {}
    with open(ctx.ref(CORPUS_CHECKSUMS)) as f:
        for line in f:
            if line.strip():
                digest, name = line.split(None, 1)
                want[name.strip().lstrip("*")] = digest
    corpus = ctx.ref(CORPUS_DIR)
    present = sorted(os.listdir(corpus))
    bad = []
    for name in sorted(want):
        path = os.path.join(corpus, name)
        if not os.path.isfile(path) or file_sha256(path) != want[name]:
            bad.append(name)
    extra = sorted(set(present) - set(want))
    detail = "%d/%d files equal Debian fortunes-es 1.36 (sha256)" % (len(want) - len(bad), len(want))
    if bad:
        detail += "; differ or missing: %s" % ", ".join(bad[:3])
    if extra:
        detail += "; unexpected: %s" % ", ".join(extra[:3])
    return Result(not bad and not extra, detail)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- builder -----------------------------------------------------------------------------

def shard_digests(directory: str) -> Dict[str, Any]:
    """{"examples", "total_sha256", "shards": {name: [examples, sha256]}} of a TFRecord dir.

    Each example is decoded and its int64 features written as canonical JSON (sorted keys),
    so the digest does not depend on how protobuf ordered the bytes; a shard's digest covers
    its examples in file order, the total every shard in shard-index order. This is the
    format of the reference's builder/*.json."""
    tf = tf_checkpoint.quiet_tensorflow()
    names = sorted((n for n in os.listdir(directory) if SHARD_NAME.match(n)),
                   key=lambda n: int(SHARD_NAME.match(n).group(1)))
    total, shards, examples = hashlib.sha256(), {}, 0
    for name in names:
        shard, count = hashlib.sha256(), 0
        for record in tf.io.tf_record_iterator(os.path.join(directory, name)):
            features = tf.train.Example.FromString(record).features.feature
            canonical = json.dumps({key: list(features[key].int64_list.value)
                                    for key in sorted(features)}, sort_keys=True).encode()
            shard.update(canonical)
            total.update(canonical)
            count += 1
        shards[name] = [count, shard.hexdigest()]
        examples += count
    return {"examples": examples, "total_sha256": total.hexdigest(), "shards": shards}


def compare_shards(want: Mapping[str, Any], got: Mapping[str, Any]) -> Result:
    """Result of comparing two shard_digests() (the reference's first)."""
    wanted, written = want["shards"], got["shards"]
    differ = [name for name in sorted(wanted, key=shard_index) if written.get(name) != wanted[name]]
    extra = sorted(set(written) - set(wanted), key=shard_index)
    detail = "%d/%d shards equal, %d examples (reference %d)" % (
        len(wanted) - len(differ), len(wanted), got["examples"], want["examples"])
    if differ:
        name = differ[0]
        detail += "; first differing shard %s: %s, reference %s" % (
            name, written.get(name, "missing"), wanted[name])
    if extra:
        detail += "; unexpected shards: %s" % ", ".join(extra[:3])
    return Result(not differ and not extra, detail)


def shard_index(name: str) -> int:
    match = SHARD_NAME.match(name)
    return int(match.group(1)) if match else -1


def build_shards(ctx: "Context", out_dir: str, processes: int, flags: List[str],
                 electra_dir: Optional[str] = None) -> Optional[Result]:
    """Runs a build_pretraining_dataset.py on the reference corpus; None or a failure Result."""
    script = os.path.join(electra_dir or ctx.electra_dir, "build_pretraining_dataset.py")
    command = [sys.executable, script, "--corpus-dir", ctx.ref(CORPUS_DIR),
               "--vocab-file", ctx.ref(VOCAB), "--output-dir", out_dir,
               "--num-processes", str(processes)] + flags
    return run_logged(command, out_dir + ".log")


def check_builder(ctx: "Context", processes: int) -> Result:
    out_dir = ctx.work("tfrecords-p%d" % processes)
    log("builder-p%d: building fortunes-es shards with %d process(es) (seconds)" % (processes, processes))
    failure = build_shards(ctx, out_dir, processes, BUILDER_FLAGS)
    if failure and "--seed" not in builder_help(ctx):
        # The reference's own builder draws from an unseeded random: its shards differ run to run.
        return Result(False, "%s/build_pretraining_dataset.py has no --seed flag, so its shards "
                             "cannot equal the reference's (made with job j seeded by "
                             "random.seed(1234 + j), SPEC.md)" % ctx.electra_dir)
    if failure:
        return failure
    log("builder-p%d: decoding %d shards" % (processes, len(os.listdir(out_dir))))
    with open(ctx.ref(BUILDER_DIGESTS % processes)) as f:
        want = json.load(f)
    return compare_shards(want, shard_digests(out_dir))


def builder_help(ctx: "Context") -> str:
    script = os.path.join(ctx.electra_dir, "build_pretraining_dataset.py")
    proc = subprocess.run([sys.executable, script, "--help"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=quiet_env(), cwd=ctx.electra_dir)
    return proc.stdout


# ---- configs -----------------------------------------------------------------------------

def check_configs(ctx: "Context") -> Result:
    """Resolved configurations (defaults, hparams, derived values, debug) equal the reference's."""
    module = import_file(os.path.join(ctx.electra_dir, "configure_pretraining.py"),
                         "conformance_configure_pretraining")
    with open(ctx.ref(CONFIGS)) as f:
        reference = json.load(f)
    defaults = reference["defaults"]["config"]
    equal, problems, refused = [], [], []
    for name in sorted(reference):
        hparams, want = reference[name]["hparams"], reference[name]["config"]
        try:
            config = module.PretrainingConfig(CONFIGS_MODEL_NAME, CONFIGS_DATA_DIR, **hparams)
        except ValueError as e:
            # Ours refuses strings where booleans or numbers belong (the tutorial's trap);
            # the reference resolved them, truthy "false" included. Refusing is the fix.
            if any(isinstance(value, str) and not isinstance(defaults.get(key), str)
                   for key, value in hparams.items()):
                refused.append(name)
            else:
                problems.append("%s: refused (%s)" % (name, e))
            continue
        got = {key: getattr(config, key) for key in want if hasattr(config, key)}
        differ = sorted(key for key in want if got.get(key, KeyError) != want[key])
        if differ:
            key = differ[0]
            problems.append("%s: %d keys differ, first %s = %r (reference %r)" % (
                name, len(differ), key, got.get(key, "missing"), want[key]))
        else:
            equal.append(name)
    compared = len(reference) - len(refused)
    detail = "%d/%d resolved configs equal (%s)" % (len(equal), compared, ", ".join(equal))
    if refused:
        detail += "; refused by design (strings for booleans): %s" % ", ".join(refused)
    if problems:
        detail += "; " + "; ".join(problems)
    return Result(not problems, detail)


def import_file(path: str, name: str) -> types.SimpleNamespace:
    """The module of a file of an ELECTRA checkout that may not be ours (an upstream one has
    other code under the same names, so wrapper.electra's imports cannot serve)."""
    return types.SimpleNamespace(**runpy.run_path(path, run_name=name))


# ---- variables ---------------------------------------------------------------------------

def checkpoint_variables(prefix: str) -> Dict[str, Dict[str, Any]]:
    """{name: {"shape": [...], "dtype": "float32"}} of a TF checkpoint (the reference's format)."""
    tf = tf_checkpoint.quiet_tensorflow()
    reader = tf.train.NewCheckpointReader(prefix)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return {name: {"shape": list(shapes[name]), "dtype": dtypes[name].name} for name in shapes}


def compare_variables(want: Mapping[str, Any], got: Mapping[str, Any]) -> Result:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(name for name in set(want) & set(got) if want[name] != got[name])
    detail = "%d reference, %d written, %d missing, %d extra, %d differ" % (
        len(want), len(got), len(missing), len(extra), len(differ))
    for label, names, table in (("missing", missing, want), ("extra", extra, got),
                                ("differs", differ, got)):
        if names:
            detail += "; %s: %s %s" % (label, names[0], table[names[0]])
    return Result(not (missing or extra or differ), detail)


def check_variables(ctx: "Context") -> Result:
    """One training step of ELECTRA-small (vocab 8000): every checkpoint variable as the reference's."""
    data_dir = ctx.work("variables-data")
    os.makedirs(data_dir)
    shutil.copy(ctx.ref(VOCAB), os.path.join(data_dir, "vocab.txt"))
    # The input only has to exist; our builder makes it, whichever trainer is checked.
    log("variables: building the input TFRecords")
    failure = build_shards(ctx, os.path.join(data_dir, "pretrain_tfrecords"), 1,
                           ["--max-seq-length", "128", "--no-lower-case", "--seed", "1"],
                           electra_dir=paths.ELECTRA_DIR)
    if failure:
        return failure
    log("variables: one training step of ELECTRA-small with %s/run_pretraining.py "
        "(about a minute on 2 idle cores, longer when they are busy)" % shown_path(ctx.electra_dir))
    started = time.time()
    command = [sys.executable, "run_pretraining.py", "--data-dir", data_dir,
               "--model-name", "conformance", "--hparams", json.dumps(VARIABLES_HPARAMS)]
    failure = run_logged(command, ctx.work("variables.log"), cwd=ctx.electra_dir)
    if failure:
        return failure
    log("variables: trained in %.0f s" % (time.time() - started))
    tf = tf_checkpoint.quiet_tensorflow()
    prefix = tf.train.latest_checkpoint(paths.model_dir(data_dir, "conformance"))
    if prefix is None:
        return Result(False, "run_pretraining.py wrote no checkpoint under models/conformance")
    with open(ctx.ref(VARIABLES)) as f:
        want = json.load(f)
    return compare_variables(want, checkpoint_variables(prefix))


# ---- converter ---------------------------------------------------------------------------

def check_converter(ctx: "Context", network: str) -> Result:
    """The reference's tiny checkpoint through `python -m wrapper.convert` (the tutorial's
    command line), then transformers 2.8.0's logits against the reference's TF logits."""
    out_dir = ctx.work("hf-" + network)
    config_file = ctx.work("config-%s.json" % network)
    with open(config_file, "w") as f:
        json.dump(TINY_HF_CONFIGS[network], f)
    log("converter-%s: converting the tiny reference checkpoint" % network)
    command = [sys.executable, "-m", "wrapper.convert",
               "--tf_checkpoint_path", ctx.ref(TINY_CHECKPOINT),
               "--electra_config_file", config_file,
               "--pytorch_dump_path", os.path.join(out_dir, "pytorch_model.bin"),
               "--discriminator_or_generator", network]
    failure = run_logged(command, ctx.work("convert-%s.log" % network), cwd=paths.REPO_ROOT)
    if failure:
        return failure
    with open(ctx.ref(TINY_EXPECTED)) as f:
        expected = json.load(f)
    logits = hf_logits(out_dir, network, expected)
    return compare_logits(network, logits, expected)


def hf_logits(model_dir: str, network: str, inputs: Mapping[str, Any]):
    import torch
    import transformers
    model_class = (transformers.ElectraForPreTraining if network == "discriminator"
                   else transformers.ElectraForMaskedLM)
    model = model_class.from_pretrained(model_dir).eval()
    ids, mask, segments = (torch.tensor(inputs[key], dtype=torch.long)
                           for key in ("input_ids", "input_mask", "segment_ids"))
    with torch.no_grad():
        return model(ids, attention_mask=mask, token_type_ids=segments)[0].numpy()


def compare_logits(network: str, logits, expected: Mapping[str, Any]) -> Result:
    from wrapper.logit_agreement import TOLERANCE, logit_agreement
    if network == "discriminator":
        diff = logit_agreement(logits, expected["discriminator_logits"]).max_difference
        return Result(diff < TOLERANCE,
                      "max |logit - reference| = %.2e (bound %.0e)" % (diff, TOLERANCE))
    # The expected file keeps the generator's first 5 classes and every position's argmax.
    found = logit_agreement(logits, expected["generator_logits_first5"],
                            expected["generator_logits_argmax"])
    return Result(found.max_difference < GENERATOR_TOLERANCE and found.argmax_share == 1.0,
                  "max |logit - reference| = %.2e (bound %.0e: transformers 2.8.0's LayerNorm "
                  "eps 1e-5), argmax agreement %.3f" % (found.max_difference,
                                                        GENERATOR_TOLERANCE, found.argmax_share))


# ---- tokenizer ---------------------------------------------------------------------------

def check_tokenizer(ctx: "Context") -> Result:
    """Our WordPiece tokenizer (cased) gives the reference's ids on every fortunes line."""
    from wrapper.electra import tokenization
    tokenizer = tokenization.FullTokenizer(ctx.ref(VOCAB), do_lower_case=False)
    files, total, differ = {}, 0, []
    with gzip.open(ctx.ref(TOKENIZER_IDS), "rt", encoding="utf-8") as f:
        for record in map(json.loads, f):
            name = record["file"]
            if name not in files:
                with open(os.path.join(ctx.ref(CORPUS_DIR), name), "rb") as g:
                    files[name] = g.read().split(b"\n")
            line = files[name][record["line"]].decode("utf-8").strip()
            got = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line))
            total += 1
            if got != record["ids"]:
                differ.append((name, record["line"], got, record["ids"]))
    detail = "%d/%d lines give the reference's ids" % (total - len(differ), total)
    if differ:
        detail += "; first: %s line %d: %s, reference %s" % differ[0]
    return Result(total > 0 and not differ, detail)


# ---- running -----------------------------------------------------------------------------

class Context(object):
    """Where the reference data, the implementation under test and the scratch space are."""

    def __init__(self, reference_dir, electra_dir, work_dir):
        self.reference_dir, self.electra_dir, self.work_dir = reference_dir, electra_dir, work_dir
        self.shared = {}   # what one check computed for the next (shards, probe outputs)

    def ref(self, relative):
        return os.path.join(self.reference_dir, relative)

    def work(self, relative):
        return os.path.join(self.work_dir, relative)


def quiet_env() -> Dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")


def run_logged(command: List[str], log_file: str, cwd: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None) -> Optional[Result]:
    """Runs a command with its output in log_file; None, or a failure Result with its last lines.
    env: variables to set besides quiet_env()'s."""
    return finish_logged(start_logged(command, log_file, cwd, env))


def start_logged(command: List[str], log_file: str, cwd: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None
                 ) -> Tuple[subprocess.Popen, List[str], str]:
    """run_logged's command started, not waited for (finish_logged waits)."""
    with open(log_file, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                 env=dict(quiet_env(), **(env or {})), cwd=cwd)
    return child, command, log_file


def finish_logged(started: Tuple[subprocess.Popen, List[str], str]) -> Optional[Result]:
    """Waits for a start_logged command; run_logged's answer."""
    child, command, log_file = started
    status = child.wait()
    if status == 0:
        return None
    with open(log_file, errors="replace") as f:
        tail = [line.strip() for line in f.read().strip().splitlines()[-3:]]
    return Result(False, "%s exited with status %d: %s" % (
        os.path.basename(command[1] if command[1] != "-m" else command[2]), status,
        " | ".join(tail)))


# name -> (group, function); in the order they run.
CHECKS = collections.OrderedDict([
    ("corpus", ("corpus", check_corpus)),
    ("builder-p1", ("builder", lambda ctx: check_builder(ctx, 1))),
    ("builder-p2", ("builder", lambda ctx: check_builder(ctx, 2))),
    ("configs", ("configs", check_configs)),
    ("variables", ("variables", check_variables)),
    ("converter-discriminator", ("converter", lambda ctx: check_converter(ctx, "discriminator"))),
    ("converter-generator", ("converter", lambda ctx: check_converter(ctx, "generator"))),
    ("tokenizer", ("tokenizer", check_tokenizer)),
])
TRAINER_SIDE = ("builder", "configs", "variables")   # what --electra-dir replaces
# --backend torch's checks (wrapper/conformance_torch.py), named here for --help without torch.
TORCH_CHECK_NAMES = ("torch-forward", "torch-step", "torch-optimizer", "torch-variables",
                     "torch-interchange", "torch-input", "torch-dynamics")
NEEDS_CORPUS = ("builder", "variables", "tokenizer", "torch")


def backend_checks(backend: str) -> Mapping[str, Tuple[str, Callable[[Context], Result]]]:
    """The checks of a backend: tf1 (this module's) or torch (wrapper.conformance_torch's)."""
    if backend == "torch":
        from wrapper import conformance_torch
        return conformance_torch.CHECKS
    return CHECKS


def select_checks(asked: List[str], other_implementation: bool,
                  checks: Mapping[str, Tuple[str, Callable[[Context], Result]]] = CHECKS
                  ) -> List[str]:
    """The check names to run, in order, for the names/groups asked on the command line."""
    groups = [group for group, _ in checks.values()]
    if not asked or asked == ["all"]:
        asked = list(TRAINER_SIDE) if other_implementation else sorted(set(groups) - {"corpus"})
    unknown = [a for a in asked if a not in checks and a not in groups]
    if unknown:
        raise UserError("unknown check %s; choose from all, %s, or one of %s" % (
            ", ".join(unknown), ", ".join(sorted(set(groups))), ", ".join(checks)))
    chosen = [name for name, (group, _) in checks.items() if name in asked or group in asked]
    if any(checks[name][0] in NEEDS_CORPUS for name in chosen) and "corpus" not in chosen:
        chosen.insert(0, "corpus")
    return chosen


def check_inputs(reference_dir: str, electra_dir: str) -> None:
    """Fails fast, before any work, on a missing data folder or implementation."""
    if not os.path.isfile(os.path.join(reference_dir, VARIABLES)):
        raise UserError("reference data folder %s is missing or incomplete (no %s); use the "
                        "repository's tests/conformance or --reference DIR" % (reference_dir, VARIABLES))
    for script in ("build_pretraining_dataset.py", "run_pretraining.py", "configure_pretraining.py"):
        if not os.path.isfile(os.path.join(electra_dir, script)):
            raise UserError("--electra-dir %s has no %s; point it at a google-research/electra "
                            "checkout or this repository's third_party/electra" % (electra_dir, script))


def run_checks(names: List[str], ctx: Context,
               checks: Mapping[str, Tuple[str, Callable[[Context], Result]]] = CHECKS
               ) -> List[str]:
    """Runs the checks, one line each; returns the names of those that failed."""
    failed = []
    for number, name in enumerate(names, 1):
        started = time.time()
        try:
            result = checks[name][1](ctx)
        except Exception as e:   # a crash of the code under test is that check's FAIL
            result = Result(False, "crashed: %s: %s" % (type(e).__name__, e))
        print("%s %-24s %s  [%d/%d, %.0f s]" % ("PASS" if result.ok else "FAIL", name,
                                                 result.detail, number, len(names),
                                                 time.time() - started), flush=True)
        if not result.ok:
            failed.append(name)
            if name == "corpus":   # every other check reads the corpus
                for rest in names[number:]:
                    print("FAIL %-24s not run: the reference corpus is not intact" % rest)
                return failed + names[number:]
    return failed


def shown_path(path: str) -> str:
    """Paths inside the repository relative to it, others as given."""
    inside = os.path.relpath(path, paths.REPO_ROOT)
    return path if inside.startswith(os.pardir) else inside


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m wrapper.conformance",
        description="Compare the pipeline with data produced by google-research/electra @ 8a46635f "
                    "(tests/conformance/). One line per check; exit 0 only when all pass.")
    parser.add_argument("checks", nargs="*", metavar="CHECK",
                        help="all (default), a group (%s) or one check (%s)" % (
                            ", ".join(sorted(set(g for g, _ in CHECKS.values()))), ", ".join(CHECKS)))
    parser.add_argument("--backend", choices=BACKENDS, default=default("BACKEND"),
                        help="tf1 (default): the checks above, of the TF1 trainer; torch: the "
                             "PyTorch trainer against the TF1 trainer (%s; see "
                             "wrapper/conformance_torch.py)" % ", ".join(TORCH_CHECK_NAMES))
    parser.add_argument("--electra-dir", default=None,
                        help="run the trainer-side checks (builder, configs, variables) against "
                             "this implementation, e.g. an upstream checkout (default: ours, "
                             "third_party/electra; then every check runs)")
    parser.add_argument("--reference", default=REFERENCE_DIR,
                        help="the reference data folder (default: tests/conformance)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    electra_dir = os.path.abspath(args.electra_dir or paths.ELECTRA_DIR)
    reference_dir = os.path.abspath(args.reference)
    check_inputs(reference_dir, electra_dir)
    if args.backend == "torch" and args.electra_dir:
        raise UserError("--electra-dir names a TF1 implementation; --backend torch compares the "
                        "PyTorch trainer with ours (third_party/electra): drop one of them")
    checks = backend_checks(args.backend)
    names = select_checks(args.checks, args.electra_dir is not None, checks)
    subject = ("%s with google-research/electra @ 8a46635f" % shown_path(electra_dir)
               if args.backend == "tf1" else "third_party/electra_torch with third_party/electra")
    print("conformance of %s (data: %s): %s" % (subject, shown_path(reference_dir),
                                                " ".join(names)), flush=True)
    started = time.time()
    work_dir = tempfile.mkdtemp(prefix="conformance-")
    try:
        failed = run_checks(names, Context(reference_dir, electra_dir, work_dir), checks)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    verdict = "FAIL (%d of %d: %s)" % (len(failed), len(names), ", ".join(failed)) if failed \
        else "PASS (%d check%s)" % (len(names), "" if len(names) == 1 else "s")
    print("conformance: %s in %.0f s" % (verdict, time.time() - started), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
