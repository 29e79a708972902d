"""The pipeline's stages in one table, and the one runner every Make target calls.

    python -m wrapper.pipeline STAGE...        run stages (all = the whole recipe, in order)
    python -m wrapper.pipeline --dry-run STAGE print what would run (make -n does this too)
    python -m wrapper.pipeline --docker-run    run `make TARGET` in the image (make docker-run)

Every setting comes from the ENVIRONMENT, under the Make variable's own name (PIPELINE_VARS):
Make exports them, so free text (a sentence, a JSON object, a path with quotes in it) never
passes through a shell line; each command runs from an argument list.

For each stage the table (STAGES) says: which lock it takes (the data directory's outputs,
one model directory, or none: wrapper/locking.py), its record under DATA_DIR/.stages (None:
it always runs), the inputs and settings its result depends on, the outputs that must exist,
the directory it continues rather than replaces (`keeps`, with the JSON keys that may change
meanwhile), and the command(s) it runs, each with the interpreter it needs. The record logic
(skip when up to date, resume, refuse to mix two trainings in one model directory) is
wrapper/stages.py's; every path is wrapper/paths.py's.

Before any lock or directory is made, every setting is checked once (check_values: integers
in range, paths that cannot read as options); each command gets its values as `--opt=value`
(free text after `--`), so no value becomes an option. Before a stage runs, the earlier
stages it reads from (UPSTREAM) must still be what the current settings make and whole:
hparams is made again on the way, another stage is named (bring_upstream_up_to_date).
"""
import argparse
import atexit
import collections
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from wrapper import debian_corpus, locking, paths, stages, supervise
from wrapper.text_packages import debian_text_paths
from wrapper.cli import UserError, fail, positive_int

# Every variable a stage (or docker-run) reads; Make exports each one (Makefile PIPELINE_VARS,
# kept equal to this list by a test) and docker-run forwards each one into the container.
PIPELINE_VARS = (
    "DATA_DIR", "MODEL_NAME", "PRESET", "HPARAMS_OVERRIDES", "CORPUS", "CORPUS_ENCODING",
    "DOWNLOAD_BYTES", "TRAIN_SIZE", "VOCAB", "VOCAB_SIZE", "NUM_PROCESSES", "ELECTRA_DIR", "SENTENCE",
    "TASK", "MODEL", "BASELINE", "SEEDS", "TASK_DATA", "NUM_GPUS", "BACKEND", "NNODES",
    "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
# The trainers of make pretrain: the reference's TF 1.15 one (third_party/electra) and the
# PyTorch one (third_party/electra_torch: same hparams, TFRecords and checkpoints).
BACKENDS = ("tf1", "torch")
# Several hosts for BACKEND=torch (torchrun's rendezvous): passed to the trainer in its
# environment, under these same names.
DISTRIBUTED_VARS = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
# A host name (RFC 1123 labels) or an IPv4/IPv6 address: never an option, never a URL.
HOST_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                          r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z|[0-9A-Fa-f:.]+\Z")

# The integer settings and their upper bounds: a value beyond them is a typo, and would
# otherwise reach a file name or a loop (NUM_PROCESSES=99999999999999999999 named the corpus
# files part-00000-of-99999999999999999999.txt).
INTEGER_SETTINGS = collections.OrderedDict([
    ("TRAIN_SIZE", 10 ** 10),       # corpus lines; OpenSubtitles' Spanish has about 2 x 10^8
    # One corpus file and one builder process each. A fixed bound rather than the CPU count:
    # a data directory made on one host is used on another (docker-run's container, a GPU
    # host), and NUM_PROCESSES is part of its stage records.
    ("NUM_PROCESSES", 1024),
    ("VOCAB_SIZE", 10 ** 6),        # tokens of a trained vocab; mBERT's has 119,547
    ("DOWNLOAD_BYTES", 10 ** 12),   # a slice of the OpenSubtitles file (a few GB in all)
    ("SEEDS", 100),                 # fine-tuning runs of make evaluate
    ("NUM_GPUS", 64),               # GPUs of one host
    ("NNODES", 1024),               # hosts of one BACKEND=torch training
    ("MASTER_PORT", 65535),         # a TCP port
])
# Settings that name a file or directory (CORPUS: several, joined with ':'), or a name a
# command takes as a value: none may start with '-' or exceed the file system's limits.
PATH_SETTINGS = ("DATA_DIR", "CORPUS", "VOCAB", "ELECTRA_DIR", "PRESET", "TASK", "TASK_DATA",
                 "MODEL", "BASELINE")

# The recipe `make all` runs, in order.
ALL = ("corpus", "vocab", "hparams", "pretrain-data", "pretrain", "convert", "verify")

# env: {name: value} over the runner's environment, '' unsetting the name (supervise.py).
Command = collections.namedtuple("Command", "argv cwd env")
Command.__new__.__defaults__ = (None, None)

Stage = collections.namedtuple("Stage", [
    "record",      # name of DATA_DIR/.stages/RECORD.done; None: no record, always runs
    "inputs",      # paths whose content the result depends on (each must exist)
    "input_list",  # more such paths the command checks itself (CORPUS=a:b)
    "variables",   # {name: value} the result depends on
    "outputs",     # paths that must exist for the stage to be up to date
    "keeps",       # a directory continued rather than replaced (the model directory)
    "may_change",  # JSON keys of the inputs that may change for `keeps`
    "commands",    # [Command], run in order; the first failure stops the stage
    "writes",      # False: runs on a read-only DATA_DIR, unrecorded (verify: its scratch
                   # logits then go to a temporary file, see verify_stage)
])


def stage(record=None, inputs=(), input_list=(), variables=None, outputs=(),
          keeps=None, may_change=(), commands=(), writes=True):
    return Stage(record, list(inputs), list(input_list), dict(variables or {}),
                 list(outputs), keeps, tuple(may_change), list(commands), writes)


def settings(environ=None):
    """{name: value} of every pipeline variable, from the environment ('' when unset)."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name, "") for name in PIPELINE_VARS}


def backend(v):
    """BACKEND, its default (tf1) when empty."""
    return v["BACKEND"] or BACKENDS[0]


def electra_dir(v):
    """ELECTRA_DIR as an absolute path (empty: ours)."""
    return os.path.abspath(v["ELECTRA_DIR"]) if v["ELECTRA_DIR"] else paths.ELECTRA_DIR


def our_electra_dir(v):
    return electra_dir(v) == paths.ELECTRA_DIR


# ---- the table ------------------------------------------------------------------------------

def corpus_sources(corpus):
    """The files the corpus stage reads (wrapper/corpus.py's own list: never a FIFO or a
    device, nothing in a subdirectory); the named paths when that list cannot be made (the
    stage's command then says why, after the checks that come first)."""
    from wrapper.corpus import list_sources
    try:
        return list_sources(corpus) if corpus else []
    except UserError:
        return [p for p in corpus.split(os.pathsep) if p]


def corpus_stage(v):
    d = v["DATA_DIR"]
    parts = [p for p in v["CORPUS"].split(os.pathsep) if p]
    variables = {k: v[k] for k in ("CORPUS", "CORPUS_ENCODING", "TRAIN_SIZE", "NUM_PROCESSES",
                                   "DOWNLOAD_BYTES")}
    debian = [p for p in parts if debian_corpus.is_debian_es(p)]
    if debian:   # its text follows from the packages' versions, not thousands of pages hashed
        variables["debian-es packages"] = debian_corpus.cache_key(
            debian_corpus.selection(debian[0]))
    return stage(
        record="corpus",
        input_list=corpus_sources(os.pathsep.join(p for p in parts if p not in debian)),
        variables=variables,
        outputs=[paths.corpus_dir(d), paths.corpus_stats_file(d)] + (
            [paths.corpus_heldout_file(d)] if debian else []),
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.corpus", "--data-dir=" + d,
                           "--corpus=" + v["CORPUS"],
                           "--corpus-encoding=" + v["CORPUS_ENCODING"],
                           "--train-size=" + v["TRAIN_SIZE"],
                           "--num-files=" + v["NUM_PROCESSES"],
                           "--download-bytes=" + v["DOWNLOAD_BYTES"]])])


def vocab_stage(v):
    d, vocab = v["DATA_DIR"], v["VOCAB"]
    if vocab not in ("mbert", "train", "") and not os.path.isfile(vocab):
        kind = paths.kind_of(vocab)
        raise UserError("VOCAB=%s is %s; give mbert, train or a path to a WordPiece vocab "
                        "(one token per line)" % (vocab, "a %s, not a file" % kind if kind else
                                                  "neither mbert, train nor an existing file"))
    inputs = ([paths.corpus_dir(d)] if vocab == "train" else
              [] if vocab in ("mbert", "") else [vocab])
    return stage(
        record="vocab", inputs=inputs,
        variables={"VOCAB": vocab, "VOCAB_SIZE": v["VOCAB_SIZE"] if vocab == "train" else ""},
        outputs=[paths.vocab_file(d)],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.vocab", "--data-dir=" + d,
                           "--vocab=" + vocab, "--vocab-size=" + v["VOCAB_SIZE"]])])


def hparams_stage(v):
    d, preset = v["DATA_DIR"], v["PRESET"]
    preset_file = os.path.join(paths.HPARAMS_PRESETS_DIR, preset + ".json")
    return stage(
        record="hparams", inputs=[paths.vocab_file(d)] + (
            [preset_file] if preset and os.path.isfile(preset_file) else []),
        input_list=[] if os.path.isfile(preset_file) else [p for p in [preset] if p],
        variables={"PRESET": preset, "HPARAMS_OVERRIDES": v["HPARAMS_OVERRIDES"],
                   "MODEL_NAME": v["MODEL_NAME"], "NUM_GPUS": v["NUM_GPUS"]},
        outputs=[paths.hparams_file(d)],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.hparams", "--data-dir=" + d,
                           "--preset=" + preset, "--overrides=" + v["HPARAMS_OVERRIDES"],
                           "--model-name=" + v["MODEL_NAME"], "--num-gpus=" + v["NUM_GPUS"]])])


def pretrain_data_stage(v):
    d, electra = v["DATA_DIR"], electra_dir(v)
    from wrapper import hparams   # the builder's flags follow from DATA_DIR/hparams.json
    flags = hparams.builder_flags(d).split()
    # Our builder takes --seed (reproducible shards); an upstream checkout has no such flag.
    seed = ["--seed=1234"] if our_electra_dir(v) else []
    return stage(
        record="pretrain-data", inputs=[paths.corpus_dir(d), paths.vocab_file(d)],
        variables={"builder_flags": " ".join(flags), "NUM_PROCESSES": v["NUM_PROCESSES"],
                   "ELECTRA_DIR": electra},
        outputs=[paths.tfrecords_dir(d)],
        commands=[Command([paths.VENV_PYTHON, os.path.join(electra, "build_pretraining_dataset.py"),
                           "--corpus-dir=" + paths.corpus_dir(d),
                           "--vocab-file=" + paths.vocab_file(d),
                           "--output-dir=" + paths.tfrecords_dir(d)] + flags +
                          ["--num-processes=" + v["NUM_PROCESSES"]] + seed)])


def pretrain_command(v):
    """The trainer BACKEND names, with the same command line either way."""
    d, m = v["DATA_DIR"], v["MODEL_NAME"]
    args = ["--data-dir=" + os.path.abspath(d), "--model-name=" + m,
            "--hparams=" + os.path.abspath(paths.hparams_file(d))]
    if backend(v) == "torch":
        # torchrun (started by the trainer itself) reads the hosts from the environment.
        return Command([paths.MODERN_PYTHON, "-m", "electra_torch.run_pretraining"] + args,
                       cwd=paths.TORCH_TRAINER_DIR, env={n: v[n] for n in DISTRIBUTED_VARS})
    # The reference's trainer is run from its own directory (it imports its modules by name).
    return Command([paths.VENV_PYTHON, "run_pretraining.py"] + args, cwd=electra_dir(v))


def pretrain_stage(v):
    d, m, electra = v["DATA_DIR"], v["MODEL_NAME"], electra_dir(v)
    model_dir = paths.model_dir(d, m)
    # BACKEND is not among the variables: both trainers write the same checkpoints, so
    # either one continues (or has finished) the other's model.
    return stage(
        record="pretrain-" + m,
        inputs=[paths.tfrecords_dir(d), paths.vocab_file(d), paths.hparams_file(d)],
        variables={"MODEL_NAME": m, "ELECTRA_DIR": electra},
        # The files beside `checkpoint` are recorded too (a truncated .data file is seen).
        outputs=[os.path.join(model_dir, "checkpoint"), model_dir],
        keeps=model_dir,
        # Training longer, or on other devices, precision or trainer, continues the same
        # model (a checkpoint written on N replicas resumes on M, one written in fp32
        # continues in bf16); a new seed draws the rest of the run afresh.
        may_change=("num_train_steps", "save_checkpoints_steps", "keep_checkpoint_max",
                    "iterations_per_loop", "num_gpus", "num_cpu_replicas", "use_amp",
                    "use_xla", "precision", "seed"),
        commands=[pretrain_command(v)])


def convert_stage(v):
    d, m = v["DATA_DIR"], v["MODEL_NAME"]
    return stage(
        record="convert-" + m,
        inputs=[os.path.join(paths.model_dir(d, m), "checkpoint"), paths.vocab_file(d),
                paths.hparams_file(d)],
        outputs=[paths.hf_dir(d, m, "discriminator"), paths.hf_dir(d, m, "generator")],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.hf_export", "--data-dir=" + d,
                           "--model-name=" + m])])


def verify_stage(v):
    d, m = v["DATA_DIR"], v["MODEL_NAME"]
    args = ["--data-dir=" + d, "--model-name=" + m]
    # TF logits in .venv, then the comparison in each environment. A read-only model
    # directory is verified all the same: the logits go to a temporary file instead.
    produce, compare = [], []
    if paths.read_only(paths.model_dir(d, m)):
        scratch = tempfile.mkdtemp(prefix="electra-verify-")
        atexit.register(shutil.rmtree, scratch, True)
        logits = os.path.join(scratch, "tf-logits.npz")
        produce, compare = ["--output=" + logits], ["--tf-logits=" + logits]
    commands = [Command([paths.VENV_PYTHON, "-m", "wrapper.tf_logits"] + args + produce),
                Command([paths.VENV_PYTHON, "-m", "wrapper.verify"] + args + compare),
                Command([paths.MODERN_PYTHON, "-m", "wrapper.verify"] + args + compare)]
    return stage(
        record="verify-" + m,
        inputs=[os.path.join(paths.model_dir(d, m), "checkpoint"),
                os.path.dirname(paths.hf_dir(d, m, "discriminator"))],
        commands=commands, writes=False)


def predict_stage(v):
    return stage(commands=[Command([
        paths.VENV_PYTHON, "-m", "wrapper.predict",
        "--model-dir=" + paths.hf_dir(v["DATA_DIR"], v["MODEL_NAME"], "discriminator"),
        "--", v["SENTENCE"]])])


def evaluate_stage(v):
    argv = [paths.MODERN_PYTHON, "-m", "wrapper.evaluate", "--data-dir=" + v["DATA_DIR"],
            "--model-name=" + v["MODEL_NAME"], "--task=" + v["TASK"]]
    for name, flag in (("MODEL", "--model"), ("BASELINE", "--baseline"),
                       ("SEEDS", "--seeds"), ("TASK_DATA", "--task-data")):
        if v[name]:
            argv.append("%s=%s" % (flag, v[name]))
    return stage(commands=[Command(argv)])


def conformance_stage(v):
    argv = [paths.VENV_PYTHON, "-m", "wrapper.conformance"]
    if not our_electra_dir(v):
        argv.append("--electra-dir=" + electra_dir(v))
    if backend(v) == "torch":
        argv.append("--backend=torch")
    return stage(commands=[Command(argv)])


def tensorboard_stage(v):
    return stage(commands=[Command([
        os.path.join(os.path.dirname(paths.VENV_PYTHON), "tensorboard"),
        "--logdir=" + paths.model_dir(v["DATA_DIR"], v["MODEL_NAME"])])])


# name: (lock, builder). lock: "data" (the data directory's stage outputs, exclusive),
# "model" (MODEL_NAME's directory exclusive, the data directory's outputs shared), None.
STAGES = collections.OrderedDict([
    ("corpus", ("data", corpus_stage)),
    ("vocab", ("data", vocab_stage)),
    ("hparams", ("data", hparams_stage)),
    ("pretrain-data", ("data", pretrain_data_stage)),
    ("pretrain", ("model", pretrain_stage)),
    ("convert", ("model", convert_stage)),
    ("verify", (None, verify_stage)),
    ("predict", (None, predict_stage)),
    ("evaluate", (None, evaluate_stage)),
    ("conformance", (None, conformance_stage)),
    ("tensorboard", (None, tensorboard_stage)),
])
NEEDS_DATA_DIR = set(STAGES) - {"conformance"}
NEEDS_MODEL_NAME = {"hparams", "pretrain", "convert", "verify", "predict", "evaluate",
                    "tensorboard"}


# ---- the runner -----------------------------------------------------------------------------

def check_values(v):
    """Every integer in its range and every path usable, in one line naming the variable."""
    for name, most in INTEGER_SETTINGS.items():
        if v[name].strip():
            positive_int(v[name], name, most)
    for name in PATH_SETTINGS:
        for value in v[name].split(os.pathsep) if name == "CORPUS" else [v[name]]:
            if value:
                paths.check_path_value(value, name)
    check_backend_values(v)


def check_backend_values(v):
    """BACKEND one of BACKENDS; the hosts of a BACKEND=torch training consistent."""
    if v["BACKEND"] and v["BACKEND"] not in BACKENDS:
        raise UserError("BACKEND=%s is unknown; use BACKEND=tf1 (the reference's TensorFlow "
                        "1.15 trainer) or BACKEND=torch (the PyTorch trainer, current GPUs)"
                        % v["BACKEND"][:40])
    nodes = int(v["NNODES"]) if v["NNODES"].strip() else 1
    rank = v["NODE_RANK"].strip()
    if rank and (not rank.isdigit() or len(rank) > 5 or int(rank) >= nodes):
        raise UserError("NODE_RANK=%s is not a host number from 0 to NNODES-1 (%d); give each "
                        "host its own, 0 on the one MASTER_ADDR names" % (rank[:40], nodes - 1))
    address = v["MASTER_ADDR"]
    if address and (len(address) > 253 or not HOST_ADDRESS.match(address)):
        raise UserError("MASTER_ADDR=%s is not a host name or IP address; give the address "
                        "of the host with NODE_RANK=0, e.g. MASTER_ADDR=10.0.0.1"
                        % address[:60])
    if nodes > 1 and not address:
        raise UserError("NNODES=%d needs MASTER_ADDR, the address of the host with "
                        "NODE_RANK=0 (and NODE_RANK on each host)" % nodes)
    if nodes > 1 and backend(v) != "torch":
        raise UserError("NNODES=%d is the PyTorch trainer's; add BACKEND=torch (the TF1 "
                        "trainer joins hosts with TF_CONFIG)" % nodes)


def check_settings(name, v):
    """Refuses settings no stage could use, in one line, before any lock or work."""
    check_values(v)
    if name in NEEDS_DATA_DIR:
        if not v["DATA_DIR"]:
            raise UserError("DATA_DIR is empty; give a directory, e.g. DATA_DIR=./data")
        paths.check_directory(v["DATA_DIR"], "DATA_DIR")
    if name in NEEDS_MODEL_NAME or STAGES[name][0] == "model":
        paths.check_model_name(v["MODEL_NAME"])
    if name in ("pretrain-data", "pretrain", "conformance") and v["ELECTRA_DIR"]:
        paths.check_directory(v["ELECTRA_DIR"], "ELECTRA_DIR", must_exist=True)
    if name == "pretrain" and backend(v) == "torch" and not our_electra_dir(v):
        raise UserError("ELECTRA_DIR=%s names a TF1 trainer, and BACKEND=torch runs "
                        "third_party/electra_torch; drop one of them" % v["ELECTRA_DIR"])


def show(command):
    text = " ".join(shlex.quote(a) for a in command.argv)
    given = ["%s=%s" % (k, shlex.quote(val)) for k, val in sorted((command.env or {}).items())
             if val]
    text = " ".join(given + [text])
    return "cd %s && %s" % (shlex.quote(command.cwd), text) if command.cwd else text


def take_locks(name, v, stack):
    """Takes stage `name`'s locks until `stack` closes; its commands inherit them."""
    kind = STAGES[name][0]
    if kind is None:
        return
    for path, what, shared in locking.stage_locks(
            v["DATA_DIR"], v["MODEL_NAME"] if kind == "model" else None):
        lock = stack.enter_context(locking.held(
            path, what, shared=shared, label="make %s" % name,
            command="python -m wrapper.pipeline %s" % name))
        if lock.fd is not None:
            # The commands inherit the lock: it lasts as long as they do, even if this
            # runner is killed first (supervise.py stops them then, but a training may take a
            # moment to stop).
            os.set_inheritable(lock.fd, True)


# The earlier stages each stage checks first (those of them whose output it reads). A model's
# later stages check the training only: it vouches for the vocab and hparams it was made from,
# and hparams made again with other settings would not describe that model.
UPSTREAM = {
    "vocab": ("corpus",),
    "hparams": ("vocab",),
    "pretrain-data": ("corpus", "vocab"),
    "pretrain": ("vocab", "hparams", "pretrain-data"),
    "convert": ("pretrain",),
    "verify": ("pretrain", "convert"),
}
# Stages cheap enough to redo on the way to a later one rather than refuse it.
REDONE_ON_THE_WAY = ("hparams",)


def bring_upstream_up_to_date(name, v):
    """Before stage `name`: each recorded earlier stage whose output it reads (UPSTREAM) must
    still be what the current settings make (hparams with this PRESET, HPARAMS_OVERRIDES,
    NUM_GPUS) and whole (a truncated shard). A cheap one is redone first; for another, one
    line names the make command to run. Returns a failed redo's exit status, else 0."""
    if name not in UPSTREAM:
        return 0
    reads = STAGES[name][1](v).inputs
    for earlier in UPSTREAM[name]:
        built = STAGES[earlier][1]
        upstream = built(v) if os.path.exists(stages.record_path(
            v["DATA_DIR"], record_name(earlier, v))) else None
        if upstream is None or not any(
                out == path or out.startswith(path + os.sep) or path.startswith(out + os.sep)
                for out in upstream.outputs for path in reads):
            continue
        why = stages.out_of_date(upstream.record, v["DATA_DIR"], upstream.variables,
                                 upstream.outputs)
        if why is None:
            continue
        if earlier in REDONE_ON_THE_WAY:
            print("%s: first %s (its output was %s)" % (name, earlier, why))
            sys.stdout.flush()
            status = run_one(earlier, v)
            if status:
                return status
            continue
        raise UserError("%s's output is out of date (%s); run make %s first (make all runs "
                        "every stage in order)" % (earlier, why, earlier))
    return 0


def record_name(name, v):
    """The record's name of stage `name` (a model's stages: one per MODEL_NAME)."""
    return "%s-%s" % (name, v["MODEL_NAME"]) if STAGES[name][0] == "model" else name


def run_one(name, v, dry_run=False):
    """Runs stage `name` under its lock; returns the exit status of its command(s)."""
    check_settings(name, v)
    if dry_run:
        try:
            s = STAGES[name][1](v)
        except UserError as e:     # pretrain-data before hparams: flags not known yet
            print("%s: (not known yet: %s)" % (name, e))
            return 0
        print("%s: lock %s; record %s" % (name, STAGES[name][0] or "none",
                                          s.record or "none"))
        for command in s.commands:
            print("  " + show(command))
        return 0
    status = bring_upstream_up_to_date(name, v)
    if status:
        return status
    with contextlib.ExitStack() as stack:
        take_locks(name, v, stack)
        s = STAGES[name][1](v)
        stages.check_inputs(s.record or name, s.inputs)
        if s.record is None:
            return supervise.run_commands(s.commands)
        return stages.run_stage(s.record, v["DATA_DIR"], s.inputs + s.input_list, s.variables,
                                s.outputs, s.keeps, s.commands, s.may_change, s.writes)


def run_stages(names, v, dry_run=False, headers=False):
    """Runs stages in order; stops at the first that fails (its one error line printed)."""
    for name in names:
        if headers:
            print("== make %s" % name)
            sys.stdout.flush()
        try:
            status = run_one(name, v, dry_run)
        except UserError as e:
            sys.stdout.flush()
            sys.stderr.write("%s: error: %s\n" % (name, e))
            return 2
        if status:
            return status
    return 0


def text_packages(dry_run):
    """Installs Debian's Spanish text when it can (wrapper/text_packages.py), else says how."""
    command = Command([paths.VENV_PYTHON, "-m", "wrapper.text_packages"])
    if dry_run:
        print("  " + show(command))
        return 0
    return supervise.run_commands([command])


def demo_settings(v, environ):
    """make demo's settings (DEMO_* from the Makefile). Its text: CORPUS= when given, else
    Debian's Spanish text (what of it is installed), else an OpenSubtitles slice."""
    corpus = v["CORPUS"] or os.pathsep.join(debian_text_paths())
    demo = dict(v)
    demo.update({
        "DATA_DIR": environ.get("DEMO_DATA_DIR") or os.path.join(v["DATA_DIR"], "demo"),
        "CORPUS": corpus, "DOWNLOAD_BYTES": "" if corpus else "4000000",
        "TRAIN_SIZE": environ.get("DEMO_TRAIN_SIZE", v["TRAIN_SIZE"]),
        "VOCAB": "train", "VOCAB_SIZE": environ.get("DEMO_VOCAB_SIZE", "4000"),
        "PRESET": "demo-cpu",
        # Its evaluation: 2 seeds rather than make evaluate's 3 keep make demo in minutes.
        "TASK": v["TASK"] or "fortunes-es", "BASELINE": v["BASELINE"] or "random",
        "SEEDS": v["SEEDS"] or environ.get("DEMO_SEEDS", "2")})
    return demo


def run_demo(v, environ, dry_run=False):
    started = time.time()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    status = text_packages(dry_run)
    demo = demo_settings(v, environ)     # after text_packages: it may install Debian's text
    if dry_run:
        print("demo: " + " ".join("%s=%s" % (k, shlex.quote(demo[k])) for k in (
            "DATA_DIR", "CORPUS", "DOWNLOAD_BYTES", "TRAIN_SIZE", "VOCAB", "VOCAB_SIZE",
            "PRESET")))
    status = status or run_stages(ALL + ("predict",), demo, dry_run, headers=True)
    if status == 0 and not dry_run:
        print("Hugging Face model (ElectraForPreTraining): %s" % os.path.abspath(
            paths.hf_dir(demo["DATA_DIR"], demo["MODEL_NAME"], "discriminator")))
        sys.stdout.flush()
    if status == 0:
        # Is the pretrained model any good? Fine-tuned on the fortunes' categories against
        # the same network from random initialisation (make evaluate).
        if not dry_run:
            print("== make evaluate TASK=%s (the demo pretrained on this same text, without "
                  "its labels)" % demo["TASK"])
            sys.stdout.flush()
        status = run_stages(("evaluate",), demo, dry_run)
    if status == 0 and not dry_run:
        print("make demo: done in %d s" % (time.time() - started))
    return status


# make demo-gpu: DEMO_GPU_SMOKE=1 runs its path on the CPU in a minute or two, with a tiny
# network for a few steps (its test; nothing measured).
DEMO_GPU_SMOKE_OVERRIDES = {
    "num_train_steps": 20, "num_warmup_steps": 2, "save_checkpoints_steps": 20,
    "iterations_per_loop": 10, "precision": "fp32", "train_batch_size": 16,
    "max_seq_length": 64,
    "model_hparam_overrides": {"hidden_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 2, "intermediate_size": 256}}


def demo_gpu_settings(v, environ):
    """make demo-gpu's settings and whether it is the CPU smoke run (DEMO_GPU_SMOKE=1)."""
    smoke = environ.get("DEMO_GPU_SMOKE", "").strip() not in ("", "0")
    demo = dict(v)
    demo.update({
        "DATA_DIR": os.path.join(v["DATA_DIR"], "demo-gpu"),
        # All of Debian's Spanish text; its held-out sentences (from the HTML and man pages)
        # serve the replaced-word check. The smoke run: two packages, some 20000 lines.
        "CORPUS": v["CORPUS"] or ("debian-es=fortunes-es,manpages-es" if smoke else
                                  "debian-es"),
        "TRAIN_SIZE": "20000" if smoke else v["TRAIN_SIZE"],
        "DOWNLOAD_BYTES": "", "VOCAB": "train",
        "VOCAB_SIZE": "2000" if smoke else environ.get("DEMO_GPU_VOCAB_SIZE", "32000"),
        "PRESET": "demo-gpu", "BACKEND": "torch",
        "TASK": v["TASK"] or "fortunes-es", "BASELINE": v["BASELINE"] or "random",
        "SEEDS": v["SEEDS"] or ("3" if smoke else "5")})
    if smoke:
        demo["HPARAMS_OVERRIDES"] = v["HPARAMS_OVERRIDES"] or json.dumps(
            DEMO_GPU_SMOKE_OVERRIDES, sort_keys=True)
    return demo, smoke


def check_cuda():
    """UserError unless .venv-modern's torch sees a CUDA GPU: before any stage runs."""
    probe = subprocess.run(
        [paths.MODERN_PYTHON, "-c", "import torch; print(torch.__version__, "
         "torch.version.cuda, torch.cuda.is_available())"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    words = probe.stdout.split()
    if probe.returncode == 0 and words[-1:] == ["True"]:
        return
    seen = ("torch %s, %s" % (words[0], "a CPU-only build" if words[1] == "None" else
                              "CUDA %s but no GPU visible" % words[1])
            if probe.returncode == 0 and len(words) == 3 else
            "cannot import torch in %s" % paths.MODERN_PYTHON)
    raise UserError("make demo-gpu needs a CUDA GPU visible to .venv-modern's PyTorch (%s); "
                    "install its CUDA build (README, GPUs), or DEMO_GPU_SMOKE=1 to run the "
                    "same path on the CPU with a tiny model" % seen)


def replaced_word_command(demo):
    return Command([
        paths.MODERN_PYTHON, "-m", "wrapper.replaced_word",
        "--model-dir=" + paths.hf_dir(demo["DATA_DIR"], demo["MODEL_NAME"], "discriminator"),
        "--sentences=" + paths.corpus_heldout_file(demo["DATA_DIR"]), "--count=20",
        "--seed=1234"])


def run_demo_gpu(v, environ, dry_run=False):
    """make demo-gpu: ELECTRA-small (PRESET=demo-gpu) with the PyTorch trainer on one GPU,
    then the replaced-word check on held-out sentences and make evaluate against random
    initialisation over 5 seeds."""
    started = time.time()
    demo, smoke = demo_gpu_settings(v, environ)
    check_settings("corpus", demo)
    if not smoke:
        if not dry_run:
            check_cuda()
        os.environ["REQUIRE_GPU"] = "1"    # the trainer, too, refuses to fall back to the CPU
    if dry_run:
        print("demo-gpu: " + " ".join("%s=%s" % (k, shlex.quote(demo[k])) for k in (
            "DATA_DIR", "CORPUS", "VOCAB", "VOCAB_SIZE", "PRESET", "BACKEND",
            "HPARAMS_OVERRIDES")))
    status = run_stages(ALL, demo, dry_run, headers=True)
    heldout = paths.corpus_heldout_file(demo["DATA_DIR"])
    if status == 0 and (dry_run or os.path.isfile(heldout)):
        print("== the discriminator on 20 held-out sentences, one word replaced in each")
        sys.stdout.flush()
        command = replaced_word_command(demo)
        if dry_run:
            print("  " + show(command))
        else:
            status = supervise.run_commands([command])
    elif status == 0:
        print("(no replaced-word check: CORPUS=%s keeps no held-out sentences; "
              "CORPUS=debian-es does)" % demo["CORPUS"])
    if status == 0:
        if not dry_run:
            print("== make evaluate TASK=%s BASELINE=%s SEEDS=%s" % (
                demo["TASK"], demo["BASELINE"], demo["SEEDS"]))
            sys.stdout.flush()
        status = run_stages(("evaluate",), demo, dry_run)
    if status == 0 and not dry_run:
        print("make demo-gpu: done in %d s" % (time.time() - started))
    return status


# ---- docker-run -----------------------------------------------------------------------------

CONTAINER_DATA_DIR = "/workspace/data"
CONTAINER_ELECTRA_DIR = "/workspace/electra"
CONTAINER_CORPUS_DIR = "/workspace/corpus"


# An image reference: [host[:port]/]name[/name...][:tag][@sha256:digest], lower-case names.
IMAGE_REFERENCE = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z")


# IMAGE=torch (docker/Dockerfile.torch) holds .venv-modern's stack only: the targets that
# run there. The others need TensorFlow 1.15 (.venv: convert, verify, the TF1 trainer).
TORCH_IMAGE_TARGETS = ("help", "corpus", "vocab", "hparams", "pretrain-data", "pretrain",
                       "evaluate")


def docker_image(environ):
    """DOCKER_IMAGE, checked: an image reference, never an option (`--privileged`)."""
    if environ.get("IMAGE", "") not in ("", "ngc", "torch"):
        raise UserError("IMAGE=%s is unknown; use IMAGE=ngc (Ampere hosts), IMAGE=torch (the "
                        "PyTorch trainer, current GPUs) or no IMAGE (V100)" % environ["IMAGE"])
    image = environ.get("DOCKER_IMAGE") or "electra-spanish:tf1.15.5-gpu"
    if not IMAGE_REFERENCE.match(image):
        raise UserError("DOCKER_IMAGE=%s is not an image reference such as "
                        "electra-spanish:tf1.15.5-gpu or registry.example.com/team/electra:1"
                        % image[:80])
    return image


def docker_command(v, environ, tty):
    """`docker run ... make TARGET` with every pipeline variable the user gave forwarded as
    `-e NAME=VALUE` (one argument each: no shell ever sees the values; the image's make has the
    same defaults, and a default forwarded would count as given there). Host paths the
    container needs are mounted and their variables renamed to where they are mounted."""
    if not v["DATA_DIR"]:
        raise UserError("DATA_DIR is empty; give the host directory to mount")
    check_values(v)
    paths.check_directory(v["DATA_DIR"], "DATA_DIR")
    image = docker_image(environ)
    target = environ.get("TARGET") or "help"
    if not re.match(r"[a-z0-9][a-z0-9-]*\Z", target):
        raise UserError("TARGET=%r is not a make target; e.g. TARGET=pretrain (make help lists "
                        "them)" % target)
    if environ.get("IMAGE") == "torch":
        if target not in TORCH_IMAGE_TARGETS:
            raise UserError("TARGET=%s needs TensorFlow 1.15, which IMAGE=torch does not hold; "
                            "it runs there: %s (run %s in the TF1 image or in .venv)"
                            % (target, " ".join(TORCH_IMAGE_TARGETS), target))
        if target == "pretrain" and backend(v) != "torch":
            raise UserError("IMAGE=torch trains with the PyTorch trainer only; add BACKEND=torch")
        if target == "vocab" and v["VOCAB"] == "train":
            # wrapper/vocab.py trains with .venv's tokenizers (0.5.2), whose API differs.
            raise UserError("VOCAB=train trains with .venv's tokenizers, which IMAGE=torch does "
                            "not hold; make the vocab in the TF1 image or in .venv (make vocab), "
                            "or give VOCAB=mbert or VOCAB=path/to/vocab.txt")
    argv = ["docker", "run", "--rm"] + (["-it"] if tty else [])
    gpu = environ.get("GPU", "1")
    if gpu not in ("0", "1"):
        raise UserError("GPU must be 1 (use the GPU: --gpus all) or 0 (a CPU-only host), "
                        "got %r" % gpu)
    if gpu == "1":
        # A GPU host that trains on the CPU (CUDA not found in the image) stops at once.
        argv += ["--gpus", "all", "-e", "REQUIRE_GPU=" + environ.get("REQUIRE_GPU", "1")]
    if environ.get("TF_CONFIG"):
        # Several hosts (tf.distribute's TF_CONFIG): the workers reach each other on the
        # host's own addresses and ports.
        argv += ["--network", "host", "-e", "TF_CONFIG=" + environ["TF_CONFIG"]]
    elif v["NNODES"].strip() and int(v["NNODES"]) > 1:
        # Several hosts (BACKEND=torch): torchrun's rendezvous on MASTER_ADDR:MASTER_PORT,
        # and the processes' own connections, on the hosts' addresses.
        argv += ["--network", "host"]
    for name in ("ELECTRA_DIR", "CORPUS"):
        for path in v[name].split(os.pathsep) if name == "CORPUS" else [v[name]]:
            if path and not os.path.exists(path) and not debian_corpus.is_debian_es(path):
                raise UserError("%s=%s: no such file or directory (it is mounted into the "
                                "container)" % (name, path))
    given = environ.get("PIPELINE_GIVEN")     # set by make; else: what the environment holds
    given = set(given.split() if given is not None else [n for n in PIPELINE_VARS
                                                          if n in environ])
    given.add("DATA_DIR")
    forwarded = dict(v, DATA_DIR=CONTAINER_DATA_DIR)
    mounts = [(os.path.abspath(v["DATA_DIR"]), CONTAINER_DATA_DIR, "")]
    given.discard("ELECTRA_DIR")              # the image's own copy, unless another is given
    if not our_electra_dir(v):
        mounts.append((electra_dir(v), CONTAINER_ELECTRA_DIR, ":ro"))
        forwarded["ELECTRA_DIR"] = CONTAINER_ELECTRA_DIR
        given.add("ELECTRA_DIR")
    corpus = []
    for i, path in enumerate(p for p in v["CORPUS"].split(os.pathsep) if p):
        if debian_corpus.is_debian_es(path):     # built inside, from the image's packages
            corpus.append(path)
            continue
        inside = "%s/%d/%s" % (CONTAINER_CORPUS_DIR, i, os.path.basename(path.rstrip("/")))
        mounts.append((os.path.abspath(path), inside, ":ro"))
        corpus.append(inside)
    forwarded["CORPUS"] = os.pathsep.join(corpus)
    for host, inside, mode in mounts:
        # --mount's CSV syntax would need quoting of commas; -v splits on ':' only.
        if ":" in host:
            raise UserError("docker cannot mount a path holding ':' (%s); rename it" % host)
        argv += ["-v", "%s:%s%s" % (host, inside, mode)]
    for name in PIPELINE_VARS:
        if name in given:
            argv += ["-e", "%s=%s" % (name, forwarded[name])]
    return argv + [image, "make", target]


def docker_run(v, environ, dry_run=False):
    argv = docker_command(v, environ, tty=sys.stdin.isatty() and sys.stdout.isatty())
    if dry_run:
        print(" ".join(shlex.quote(a) for a in argv))
        return 0
    os.makedirs(v["DATA_DIR"], exist_ok=True)   # else docker would make it, owned by root
    try:
        status = subprocess.call(argv)
    except OSError as e:
        raise UserError("cannot run docker: %s; install Docker (and nvidia-container-toolkit "
                        "for the GPU)" % (e.strerror or e))
    if status != 0:
        sys.stderr.write("docker-run: error: docker exited with status %d\n" % status)
    return 1 if status < 0 else status


# ---- command line ---------------------------------------------------------------------------

def make_dry_run(environ):
    """True under `make -n` (the recipe line is marked `+` so that this runner is asked)."""
    words = environ.get("MAKEFLAGS", "").split()
    flags = words[0] if words and not words[0].startswith("-") and "=" not in words[0] else ""
    return any(flag in flags for flag in "ntq")   # -t and -q must not run a stage either


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wrapper.pipeline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("stage", nargs="*", help="stages to run: %s, all, demo"
                        % ", ".join(STAGES))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--docker-run", action="store_true",
                        help="run `make $TARGET` in the Docker image (make docker-run)")
    args = parser.parse_args(argv)
    environ = os.environ
    v = settings(environ)
    dry_run = args.dry_run or make_dry_run(environ)
    program = "docker-run" if args.docker_run else (args.stage[0] if args.stage else "pipeline")
    try:
        if args.docker_run:
            return docker_run(v, environ, dry_run)
        if not args.stage:
            raise UserError("name a stage: %s, all or demo" % ", ".join(STAGES))
        for name in args.stage:
            if name not in STAGES and name not in ("all", "demo", "demo-gpu"):
                raise UserError("unknown stage %r; choose one of %s, all, demo"
                                % (name, ", ".join(STAGES)))
        if args.stage == ["demo"]:
            return run_demo(v, environ, dry_run)
        if args.stage == ["demo-gpu"]:
            return run_demo_gpu(v, environ, dry_run)
        if args.stage == ["pretrain"] and v["NUM_GPUS"]:
            # NUM_GPUS=N goes into hparams.json (num_gpus), which pretrain then reads.
            return run_stages(["hparams", "pretrain"], v, dry_run)
        if args.stage == ["all"]:
            return run_stages(ALL, v, dry_run, headers=True)
        return run_stages(args.stage, v, dry_run)
    except UserError as e:
        sys.stdout.flush()
        fail(program, str(e))
    except KeyboardInterrupt:
        fail(program, "interrupted", status=130)


if __name__ == "__main__":
    sys.exit(main() or 0)
