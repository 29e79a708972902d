"""The pipeline's stages in one table, and the one runner every Make target calls.

    python -m wrapper.pipeline STAGE...        run stages (all = the whole recipe, in order)
    python -m wrapper.pipeline --dry-run STAGE print what would run (make -n does this too)
    python -m wrapper.pipeline --docker-run    run `make TARGET` in the image (make docker-run)

Every setting comes from the ENVIRONMENT, under the Make variable's own name: Make exports
them (their defaults, checks and the stages that read each: wrapper/settings.py), so free text
(a sentence, a JSON object, a path with quotes in it) never passes through a shell line; each
command runs from an argument list.

The table (TABLE: one Row per stage, in the recipe's order) says for each stage: which lock it
takes (the data directory's outputs, one model directory, or none: wrapper/locking.py), the
earlier stages it reads from, whether `make all` runs it, and its plan: its record under
DATA_DIR/.stages (None: it always runs), the inputs and settings its result depends on, the
outputs that must exist, the directory it continues rather than replaces (`keeps`, with the
JSON keys that may change meanwhile), and the command(s) it runs, each with the interpreter it
needs. Making the table reads nothing; a plan is made from the settings alone, and the run
step adds what it finds on disk (a row's `look`). The record logic (skip when up to date,
resume, refuse to mix two trainings in one model directory) is wrapper/stages.py's; every path
is wrapper/paths.py's.

Before any lock or directory is made, every setting is checked once per run (check_values:
each setting's own check), then what each stage needs of DATA_DIR, MODEL_NAME and ELECTRA_DIR
(check_settings); each command gets its values as `--opt=value` (free text after `--`), so no
value becomes an option. Before a stage runs, the earlier stages it reads from must still be
what the current settings make and whole: hparams is made again on the way, another stage is
named (bring_upstream_up_to_date).
"""
import argparse
import collections
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from wrapper import debian_corpus, locking, paths, settings, stages, supervise
from wrapper.text_packages import debian_text_paths
from wrapper.cli import UserError, fail

PIPELINE_VARS = settings.PIPELINE_VARS
BACKENDS = settings.BACKENDS
# Several hosts for BACKEND=torch (torchrun's rendezvous): passed to the trainer in its
# environment, under these same names.
DISTRIBUTED_VARS = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")

# env: {name: value} over the runner's environment, '' unsetting the name (supervise.py).
Command = collections.namedtuple("Command", "argv cwd env")
Command.__new__.__defaults__ = (None, None)

# What one stage does with the current settings: made from the settings alone (a row's plan),
# then completed by what the run step finds on disk (a row's `look`).
Plan = collections.namedtuple("Plan", [
    "record",      # name of DATA_DIR/.stages/RECORD.done; None: no record, always runs
    "inputs",      # paths whose content the result depends on (each must exist)
    "input_list",  # more such paths the command checks itself (CORPUS=a:b)
    "variables",   # {name: value} the result depends on
    "outputs",     # paths that must exist for the stage to be up to date
    "keeps",       # a directory continued rather than replaced (the model directory)
    "may_change",  # JSON keys of the inputs that may change for `keeps`
    "commands",    # [Command], run in order; the first failure stops the stage
    "writes",      # False: runs on a read-only DATA_DIR, unrecorded (verify: its scratch
                   # logits then go to a temporary directory, see verify_look)
])


def plan(record: Optional[str] = None, inputs: Iterable[str] = (),
         input_list: Iterable[str] = (), variables: Optional[Mapping[str, Any]] = None,
         outputs: Iterable[str] = (), keeps: Optional[str] = None,
         may_change: Iterable[str] = (), commands: Iterable[Command] = (),
         writes: bool = True) -> Plan:
    return Plan(record, list(inputs), list(input_list), dict(variables or {}),
                list(outputs), keeps, tuple(may_change), list(commands), writes)


def read_settings(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """{name: value} of every pipeline variable: the environment's (Make exports each one),
    else its default (wrapper/settings.py)."""
    return settings.values(os.environ if environ is None else environ)


def backend(values: Dict[str, str]) -> str:
    """BACKEND, its default (tf1) when empty."""
    return values["BACKEND"] or settings.default("BACKEND")


def electra_dir(values: Dict[str, str]) -> str:
    """ELECTRA_DIR as an absolute path; empty or the default (relative to the repository,
    where make runs): ours."""
    value = values["ELECTRA_DIR"]
    if not value or value == settings.default("ELECTRA_DIR"):
        return paths.ELECTRA_DIR
    return os.path.abspath(value)


def our_electra_dir(values: Dict[str, str]) -> bool:
    return electra_dir(values) == paths.ELECTRA_DIR


# ---- the table ------------------------------------------------------------------------------
# Each stage: a plan made from the settings alone (paths, records, commands), and, where the
# stage depends on what is on disk, a `look` the run step adds it with (the corpus's files,
# the builder's flags from hparams.json, a scratch directory for a read-only model).

def corpus_sources(corpus: str) -> List[str]:
    """The files the corpus stage reads (wrapper/corpus.py's own list: never a FIFO or a
    device, nothing in a subdirectory); the named paths when that list cannot be made (the
    stage's command then says why, after the checks that come first)."""
    from wrapper.corpus import list_sources
    try:
        return list_sources(corpus) if corpus else []
    except UserError:
        return [part for part in corpus.split(os.pathsep) if part]


def corpus_parts(values: Dict[str, str]) -> Tuple[List[str], List[str]]:
    """CORPUS's parts: (paths, debian-es parts)."""
    parts = [part for part in values["CORPUS"].split(os.pathsep) if part]
    return ([part for part in parts if not debian_corpus.is_debian_es(part)],
            [part for part in parts if debian_corpus.is_debian_es(part)])


def corpus_plan(values: Dict[str, str]) -> Plan:
    data_dir = values["DATA_DIR"]
    files, debian = corpus_parts(values)
    return plan(
        record="corpus", input_list=files,
        variables={name: values[name] for name in (
            "CORPUS", "CORPUS_ENCODING", "TRAIN_SIZE", "NUM_PROCESSES", "DOWNLOAD_BYTES")},
        outputs=[paths.corpus_dir(data_dir), paths.corpus_stats_file(data_dir)] + (
            [paths.corpus_heldout_file(data_dir)] if debian else []),
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.corpus", "--data-dir=" + data_dir,
                           "--corpus=" + values["CORPUS"],
                           "--corpus-encoding=" + values["CORPUS_ENCODING"],
                           "--train-size=" + values["TRAIN_SIZE"],
                           "--num-files=" + values["NUM_PROCESSES"],
                           "--download-bytes=" + values["DOWNLOAD_BYTES"]])])


def corpus_look(values: Dict[str, str], stage_plan: Plan, scratch: Callable[[], str]) -> Plan:
    files, debian = corpus_parts(values)
    variables = dict(stage_plan.variables)
    if debian:   # its text follows from the packages' versions, not thousands of pages hashed
        variables["debian-es packages"] = debian_corpus.cache_key(
            debian_corpus.selection(debian[0]))
    return stage_plan._replace(input_list=corpus_sources(os.pathsep.join(files)),
                               variables=variables)


def vocab_plan(values: Dict[str, str]) -> Plan:
    data_dir, vocab = values["DATA_DIR"], values["VOCAB"]
    return plan(
        record="vocab",
        inputs=[paths.corpus_dir(data_dir)] if vocab == "train" else
        [] if vocab in ("mbert", "") else [vocab],
        variables={"VOCAB": vocab, "VOCAB_SIZE": values["VOCAB_SIZE"] if vocab == "train" else ""},
        outputs=[paths.vocab_file(data_dir)],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.vocab", "--data-dir=" + data_dir,
                           "--vocab=" + vocab, "--vocab-size=" + values["VOCAB_SIZE"]])])


def vocab_look(values: Dict[str, str], stage_plan: Plan, scratch: Callable[[], str]) -> Plan:
    settings.check_vocab(values["VOCAB"])
    return stage_plan


def hparams_plan(values: Dict[str, str]) -> Plan:
    data_dir, preset = values["DATA_DIR"], values["PRESET"]
    return plan(
        record="hparams", inputs=[paths.vocab_file(data_dir)],
        variables={"PRESET": preset, "HPARAMS_OVERRIDES": values["HPARAMS_OVERRIDES"],
                   "MODEL_NAME": values["MODEL_NAME"], "NUM_GPUS": values["NUM_GPUS"]},
        outputs=[paths.hparams_file(data_dir)],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.hparams", "--data-dir=" + data_dir,
                           "--preset=" + preset, "--overrides=" + values["HPARAMS_OVERRIDES"],
                           "--model-name=" + values["MODEL_NAME"],
                           "--num-gpus=" + values["NUM_GPUS"]])])


def hparams_look(values: Dict[str, str], stage_plan: Plan, scratch: Callable[[], str]) -> Plan:
    """The preset's file is an input; an unknown PRESET is the command's to name (its one
    check: settings.preset_path)."""
    preset_file = settings.preset_file(values["PRESET"])
    if preset_file is None:
        return stage_plan._replace(input_list=[values["PRESET"]] if values["PRESET"] else [])
    return stage_plan._replace(inputs=stage_plan.inputs + [preset_file])


def pretrain_data_plan(values: Dict[str, str]) -> Plan:
    data_dir, electra = values["DATA_DIR"], electra_dir(values)
    # Our builder takes --seed (reproducible shards); an upstream checkout has no such flag.
    seed = ["--seed=1234"] if our_electra_dir(values) else []
    return plan(
        record="pretrain-data", inputs=[paths.corpus_dir(data_dir), paths.vocab_file(data_dir)],
        variables={"NUM_PROCESSES": values["NUM_PROCESSES"], "ELECTRA_DIR": electra},
        outputs=[paths.tfrecords_dir(data_dir)],
        commands=[Command([paths.VENV_PYTHON, os.path.join(electra, "build_pretraining_dataset.py"),
                           "--corpus-dir=" + paths.corpus_dir(data_dir),
                           "--vocab-file=" + paths.vocab_file(data_dir),
                           "--output-dir=" + paths.tfrecords_dir(data_dir),
                           "--num-processes=" + values["NUM_PROCESSES"]] + seed)])


def pretrain_data_look(values: Dict[str, str], stage_plan: Plan,
                       scratch: Callable[[], str]) -> Plan:
    """The builder's flags follow from DATA_DIR/hparams.json (before --num-processes)."""
    from wrapper import hparams
    flags = hparams.builder_flags(values["DATA_DIR"]).split()
    argv = stage_plan.commands[0].argv
    at = argv.index("--num-processes=" + values["NUM_PROCESSES"])
    return stage_plan._replace(variables=dict(stage_plan.variables, builder_flags=" ".join(flags)),
                               commands=[stage_plan.commands[0]._replace(
                                   argv=argv[:at] + flags + argv[at:])])


def pretrain_command(values: Dict[str, str]) -> Command:
    """The trainer BACKEND names, with the same command line either way."""
    data_dir, model_name = values["DATA_DIR"], values["MODEL_NAME"]
    args = ["--data-dir=" + os.path.abspath(data_dir), "--model-name=" + model_name,
            "--hparams=" + os.path.abspath(paths.hparams_file(data_dir))]
    if backend(values) == "torch":
        # torchrun (started by the trainer itself) reads the hosts from the environment.
        return Command([paths.MODERN_PYTHON, "-m", "electra_torch.run_pretraining"] + args,
                       cwd=paths.TORCH_TRAINER_DIR,
                       env={name: values[name] for name in DISTRIBUTED_VARS})
    # The reference's trainer is run from its own directory (it imports its modules by name).
    return Command([paths.VENV_PYTHON, "run_pretraining.py"] + args, cwd=electra_dir(values))


def pretrain_plan(values: Dict[str, str]) -> Plan:
    data_dir, model_name, electra = values["DATA_DIR"], values["MODEL_NAME"], electra_dir(values)
    model_dir = paths.model_dir(data_dir, model_name)
    # BACKEND is not among the variables: both trainers write the same checkpoints, so
    # either one continues (or has finished) the other's model.
    return plan(
        record="pretrain-" + model_name,
        inputs=[paths.tfrecords_dir(data_dir), paths.vocab_file(data_dir),
                paths.hparams_file(data_dir)],
        variables={"MODEL_NAME": model_name, "ELECTRA_DIR": electra},
        # The files beside `checkpoint` are recorded too (a truncated .data file is seen).
        outputs=[os.path.join(model_dir, "checkpoint"), model_dir],
        keeps=model_dir,
        # Training longer, or on other devices, precision or trainer, continues the same
        # model (a checkpoint written on N replicas resumes on M, one written in fp32
        # continues in bf16); a new seed draws the rest of the run afresh.
        may_change=("num_train_steps", "save_checkpoints_steps", "keep_checkpoint_max",
                    "iterations_per_loop", "num_gpus", "num_cpu_replicas", "use_amp",
                    "use_xla", "precision", "seed"),
        commands=[pretrain_command(values)])


def check_pretrain(values: Dict[str, str]) -> None:
    if backend(values) == "torch" and not our_electra_dir(values):
        raise UserError("ELECTRA_DIR=%s names a TF1 trainer, and BACKEND=torch runs "
                        "third_party/electra_torch; drop one of them" % values["ELECTRA_DIR"])


def convert_plan(values: Dict[str, str]) -> Plan:
    data_dir, model_name = values["DATA_DIR"], values["MODEL_NAME"]
    return plan(
        record="convert-" + model_name,
        inputs=[os.path.join(paths.model_dir(data_dir, model_name), "checkpoint"),
                paths.vocab_file(data_dir), paths.hparams_file(data_dir)],
        outputs=[paths.hf_dir(data_dir, model_name, "discriminator"),
                 paths.hf_dir(data_dir, model_name, "generator")],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.hf_export", "--data-dir=" + data_dir,
                           "--model-name=" + model_name])])


def verify_plan(values: Dict[str, str]) -> Plan:
    data_dir, model_name = values["DATA_DIR"], values["MODEL_NAME"]
    args = ["--data-dir=" + data_dir, "--model-name=" + model_name]
    # TF logits in .venv, then the comparison in each environment.
    return plan(
        record="verify-" + model_name,
        inputs=[os.path.join(paths.model_dir(data_dir, model_name), "checkpoint"),
                os.path.dirname(paths.hf_dir(data_dir, model_name, "discriminator"))],
        commands=[Command([paths.VENV_PYTHON, "-m", "wrapper.tf_logits"] + args),
                  Command([paths.VENV_PYTHON, "-m", "wrapper.verify"] + args),
                  Command([paths.MODERN_PYTHON, "-m", "wrapper.verify"] + args)],
        writes=False)


def verify_look(values: Dict[str, str], stage_plan: Plan, scratch: Callable[[], str]) -> Plan:
    """A read-only model directory is verified all the same: the logits go to a scratch
    directory, removed when the stage ends."""
    if not paths.read_only(paths.model_dir(values["DATA_DIR"], values["MODEL_NAME"])):
        return stage_plan
    logits = os.path.join(scratch(), "tf-logits.npz")
    produce, compare = stage_plan.commands[0], stage_plan.commands[1:]
    return stage_plan._replace(
        commands=[produce._replace(argv=produce.argv + ["--output=" + logits])] +
        [command._replace(argv=command.argv + ["--tf-logits=" + logits]) for command in compare])


def predict_plan(values: Dict[str, str]) -> Plan:
    return plan(commands=[Command([
        paths.VENV_PYTHON, "-m", "wrapper.predict",
        "--model-dir=" + paths.hf_dir(values["DATA_DIR"], values["MODEL_NAME"], "discriminator"),
        "--", values["SENTENCE"]])])


def evaluate_plan(values: Dict[str, str]) -> Plan:
    argv = [paths.MODERN_PYTHON, "-m", "wrapper.evaluate", "--data-dir=" + values["DATA_DIR"],
            "--model-name=" + values["MODEL_NAME"], "--task=" + values["TASK"]]
    for name, flag in (("MODEL", "--model"), ("BASELINE", "--baseline"),
                       ("SEEDS", "--seeds"), ("TASK_DATA", "--task-data")):
        if values[name]:
            argv.append("%s=%s" % (flag, values[name]))
    return plan(commands=[Command(argv)])


def conformance_plan(values: Dict[str, str]) -> Plan:
    argv = [paths.VENV_PYTHON, "-m", "wrapper.conformance"]
    if not our_electra_dir(values):
        argv.append("--electra-dir=" + electra_dir(values))
    if backend(values) == "torch":
        argv.append("--backend=torch")
    return plan(commands=[Command(argv)])


def tensorboard_plan(values: Dict[str, str]) -> Plan:
    return plan(commands=[Command([
        os.path.join(os.path.dirname(paths.VENV_PYTHON), "tensorboard"),
        "--logdir=" + paths.model_dir(values["DATA_DIR"], values["MODEL_NAME"])])])


@dataclass(frozen=True)
class Row:
    name: str
    # "data": the data directory's stage outputs, exclusive; "model": MODEL_NAME's directory
    # exclusive, the data directory's outputs shared; None: no lock.
    lock: Optional[str]
    plan: Callable[[Dict[str, str]], Plan]
    # The run step's part: what the plan needs from disk; `scratch()` makes a temporary
    # directory that lasts as long as the stage.
    look: Optional[Callable[[Dict[str, str], Plan, Callable[[], str]], Plan]] = None
    # The earlier stages whose output it reads, checked first. A model's later stages check
    # the training only: it vouches for the vocab and hparams it was made from, and hparams
    # made again with other settings would not describe that model.
    upstream: Tuple[str, ...] = ()
    in_all: bool = False          # part of the recipe `make all` runs, in table order
    redone_on_the_way: bool = False   # cheap enough to redo on the way to a later stage
    # Settings that, given on their own to this stage, make another stage run first
    # (NUM_GPUS=N goes into hparams.json, which pretrain reads).
    first_if_given: Tuple[Tuple[str, str], ...] = ()
    check: Optional[Callable[[Dict[str, str]], None]] = None   # its own rule, before any lock

    @property
    def reads(self) -> Tuple[str, ...]:
        """The settings it reads (wrapper/settings.py is their home)."""
        return settings.read_by(self.name)

    def record_name(self, values) -> str:
        """Its record's name (a model's stages: one per MODEL_NAME)."""
        return "%s-%s" % (self.name, values["MODEL_NAME"]) if self.lock == "model" else self.name


TABLE = (
    Row("corpus", "data", corpus_plan, corpus_look, in_all=True),
    Row("vocab", "data", vocab_plan, vocab_look, upstream=("corpus",), in_all=True),
    Row("hparams", "data", hparams_plan, hparams_look, upstream=("vocab",), in_all=True,
        redone_on_the_way=True),
    Row("pretrain-data", "data", pretrain_data_plan, pretrain_data_look,
        upstream=("corpus", "vocab"), in_all=True),
    Row("pretrain", "model", pretrain_plan, upstream=("vocab", "hparams", "pretrain-data"),
        in_all=True, first_if_given=(("NUM_GPUS", "hparams"),), check=check_pretrain),
    Row("convert", "model", convert_plan, upstream=("pretrain",), in_all=True),
    Row("verify", None, verify_plan, verify_look, upstream=("pretrain", "convert"),
        in_all=True),
    Row("predict", None, predict_plan),
    Row("evaluate", None, evaluate_plan),
    Row("conformance", None, conformance_plan),
    Row("tensorboard", None, tensorboard_plan),
)
STAGES = collections.OrderedDict((row.name, row) for row in TABLE)
# The recipe `make all` runs, in order.
ALL = tuple(row.name for row in TABLE if row.in_all)


def current_plan(row: Row, values: Dict[str, str], scratch: Callable[[], str]) -> Plan:
    """Stage `row`'s plan with what the run step finds on disk."""
    stage_plan = row.plan(values)
    return row.look(values, stage_plan, scratch) if row.look else stage_plan


# ---- the runner -----------------------------------------------------------------------------

def check_values(values: Dict[str, str]) -> None:
    """Every pipeline setting's own check, and the hosts' together, in one line naming the
    variable: once per run, before its first stage (run_stages)."""
    for name in PIPELINE_VARS:
        settings.check(name, values[name])
    settings.check_hosts(values)


def check_settings(name: str, values: Dict[str, str]) -> None:
    """Refuses settings stage `name` cannot use, in one line, before any lock or work (each
    setting's own check is check_values's)."""
    row = STAGES[name]
    if "DATA_DIR" in row.reads:
        if not values["DATA_DIR"]:
            raise UserError("DATA_DIR is empty; give a directory, e.g. DATA_DIR=./data")
        paths.check_directory(values["DATA_DIR"], "DATA_DIR")
    if "MODEL_NAME" in row.reads:
        paths.check_model_name(values["MODEL_NAME"])
    if "ELECTRA_DIR" in row.reads and values["ELECTRA_DIR"]:
        paths.check_directory(values["ELECTRA_DIR"], "ELECTRA_DIR", must_exist=True)
    if row.check:
        row.check(values)


def show(command: Command) -> str:
    text = " ".join(shlex.quote(arg) for arg in command.argv)
    given = ["%s=%s" % (name, shlex.quote(value))
             for name, value in sorted((command.env or {}).items()) if value]
    text = " ".join(given + [text])
    return "cd %s && %s" % (shlex.quote(command.cwd), text) if command.cwd else text


def take_locks(name: str, values: Dict[str, str], stack: contextlib.ExitStack) -> None:
    """Takes stage `name`'s locks until `stack` closes; its commands inherit them."""
    kind = STAGES[name].lock
    if kind is None:
        return
    for stage_lock in locking.stage_locks(
            values["DATA_DIR"], values["MODEL_NAME"] if kind == "model" else None):
        lock = stack.enter_context(locking.held(
            stage_lock.path, stage_lock.what, shared=stage_lock.shared, label="make %s" % name,
            command="python -m wrapper.pipeline %s" % name))
        if lock.fd is not None:
            # The commands inherit the lock: it lasts as long as they do, even if this
            # runner is killed first (supervise.py stops them then, but a training may take a
            # moment to stop).
            os.set_inheritable(lock.fd, True)


def scratch_maker(stack: contextlib.ExitStack) -> Callable[[], str]:
    """A function that makes a temporary directory removed when `stack` closes."""
    return lambda: stack.enter_context(tempfile.TemporaryDirectory(prefix="electra-verify-"))


def bring_upstream_up_to_date(name: str, values: Dict[str, str]) -> int:
    """Before stage `name`: each recorded earlier stage whose output it reads (its row's
    upstream) must still be what the current settings make (hparams with this PRESET,
    HPARAMS_OVERRIDES, NUM_GPUS) and whole (a truncated shard). A cheap one is redone first;
    for another, one line names the make command to run. Returns a failed redo's exit status,
    else 0."""
    row = STAGES[name]
    reads = row.plan(values).inputs if row.upstream else []
    for earlier in row.upstream:
        before = STAGES[earlier]
        if not os.path.exists(stages.record_path(values["DATA_DIR"], before.record_name(values))):
            continue
        with contextlib.ExitStack() as stack:
            upstream = current_plan(before, values, scratch_maker(stack))
        if not any(out == path or out.startswith(path + os.sep) or path.startswith(out + os.sep)
                   for out in upstream.outputs for path in reads):
            continue
        why = stages.out_of_date(upstream.record, values["DATA_DIR"], upstream.variables,
                                 upstream.outputs)
        if why is None:
            continue
        if before.redone_on_the_way:
            print("%s: first %s (its output was %s)" % (name, earlier, why))
            sys.stdout.flush()
            status = run_one(earlier, values)
            if status:
                return status
            continue
        raise UserError("%s's output is out of date (%s); run make %s first (make all runs "
                        "every stage in order)" % (earlier, why, earlier))
    return 0


def run_one(name: str, values: Dict[str, str], dry_run: bool = False) -> int:
    """Runs stage `name` under its lock; returns the exit status of its command(s)."""
    check_settings(name, values)
    row = STAGES[name]
    if dry_run:
        with contextlib.ExitStack() as stack:
            try:
                stage_plan = current_plan(row, values, scratch_maker(stack))
            except UserError as error:     # pretrain-data before hparams: flags not known yet
                print("%s: (not known yet: %s)" % (name, error))
                return 0
        print("%s: lock %s; record %s" % (name, row.lock or "none", stage_plan.record or "none"))
        for command in stage_plan.commands:
            print("  " + show(command))
        return 0
    status = bring_upstream_up_to_date(name, values)
    if status:
        return status
    with contextlib.ExitStack() as stack:
        take_locks(name, values, stack)
        stage_plan = current_plan(row, values, scratch_maker(stack))
        stages.check_inputs(stage_plan.record or name, stage_plan.inputs)
        if stage_plan.record is None:
            return supervise.run_commands(stage_plan.commands)
        return stages.run_stage(stage_plan.record, values["DATA_DIR"],
                                stage_plan.inputs + stage_plan.input_list,
                                stage_plan.variables, stage_plan.outputs, stage_plan.keeps,
                                stage_plan.commands, stage_plan.may_change, stage_plan.writes)


def first_stages(name: str, values: Dict[str, str]) -> List[str]:
    """The stages stage `name`, run on its own, runs first (its row's first_if_given)."""
    return [first for setting, first in STAGES[name].first_if_given if values[setting]]


def run_stages(names: Sequence[str], values: Dict[str, str], dry_run: bool = False,
               headers: bool = False, checked: bool = False) -> int:
    """Runs stages in order; stops at the first that fails (its one error line printed).
    Every setting is checked first, unless the caller has (`checked`)."""
    for position, name in enumerate(names):
        if headers:
            print("== make %s" % name)
            sys.stdout.flush()
        try:
            if position == 0 and not checked:
                check_values(values)
            status = run_one(name, values, dry_run)
        except UserError as error:
            sys.stdout.flush()
            sys.stderr.write("%s: error: %s\n" % (name, error))
            return 2
        if status:
            return status
    return 0


def text_packages(dry_run: bool) -> int:
    """Installs Debian's Spanish text when it can (wrapper/text_packages.py), else says how."""
    command = Command([paths.VENV_PYTHON, "-m", "wrapper.text_packages"])
    if dry_run:
        print("  " + show(command))
        return 0
    return supervise.run_commands([command])


def user_value(name: str, values: Dict[str, str], environ: Mapping[str, str]) -> str:
    """A setting outside the pipeline's (DEMO_*, docker-run's) as Make sets it: the
    environment's value, else its default (wrapper/settings.py)."""
    return environ[name] if name in environ else settings.default(name, dict(environ, **values))


def given_or(name: str, values: Dict[str, str], environ: Mapping[str, str], otherwise: str) -> str:
    """Pipeline setting `name` when the user gave it (not empty), else `otherwise`."""
    return values[name] if name in settings.given(environ) and values[name].strip() else otherwise


# make demo's corpus lines, unless TRAIN_SIZE is given.
DEMO_TRAIN_SIZE = "100000"


def demo_settings(values: Dict[str, str], environ: Mapping[str, str]) -> Dict[str, str]:
    """make demo's settings (DEMO_*). Its text: CORPUS= when given, else Debian's Spanish
    text (what of it is installed), else an OpenSubtitles slice."""
    corpus = values["CORPUS"] or os.pathsep.join(debian_text_paths())
    demo = dict(values)
    demo.update({
        "DATA_DIR": environ.get("DEMO_DATA_DIR") or settings.default("DEMO_DATA_DIR", values),
        "CORPUS": corpus, "DOWNLOAD_BYTES": "" if corpus else "4000000",
        "TRAIN_SIZE": given_or("TRAIN_SIZE", values, environ, DEMO_TRAIN_SIZE),
        "VOCAB": "train", "VOCAB_SIZE": user_value("DEMO_VOCAB_SIZE", values, environ),
        "PRESET": "demo-cpu",
        # Its evaluation: fewer seeds than make evaluate's keep make demo in minutes.
        "TASK": values["TASK"] or "fortunes-es", "BASELINE": values["BASELINE"] or "random",
        "SEEDS": given_or("SEEDS", values, environ, user_value("DEMO_SEEDS", values, environ))})
    return demo


def run_demo(values: Dict[str, str], environ: Mapping[str, str], dry_run: bool = False) -> int:
    started = time.time()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    status = text_packages(dry_run)
    demo = demo_settings(values, environ)     # after text_packages: it may install Debian's text
    if dry_run:
        print("demo: " + " ".join("%s=%s" % (name, shlex.quote(demo[name])) for name in (
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
        status = run_stages(("evaluate",), demo, dry_run, checked=True)
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


def demo_gpu_settings(values: Dict[str, str], environ: Mapping[str, str]
                      ) -> Tuple[Dict[str, str], bool]:
    """make demo-gpu's settings and whether it is the CPU smoke run (DEMO_GPU_SMOKE=1)."""
    smoke = user_value("DEMO_GPU_SMOKE", values, environ).strip() not in ("", "0")
    demo = dict(values)
    demo.update({
        "DATA_DIR": os.path.join(values["DATA_DIR"], "demo-gpu"),
        # All of Debian's Spanish text; its held-out sentences (from the HTML and man pages)
        # serve the replaced-word check. The smoke run: two packages, some 20000 lines.
        "CORPUS": values["CORPUS"] or ("debian-es=fortunes-es,manpages-es" if smoke else
                                  "debian-es"),
        "TRAIN_SIZE": "20000" if smoke else values["TRAIN_SIZE"],
        "DOWNLOAD_BYTES": "", "VOCAB": "train",
        "VOCAB_SIZE": "2000" if smoke else user_value("DEMO_GPU_VOCAB_SIZE", values, environ),
        "PRESET": "demo-gpu", "BACKEND": "torch",
        "TASK": values["TASK"] or "fortunes-es", "BASELINE": values["BASELINE"] or "random",
        "SEEDS": given_or("SEEDS", values, environ, "3" if smoke else "5")})
    if smoke:
        demo["HPARAMS_OVERRIDES"] = values["HPARAMS_OVERRIDES"] or json.dumps(
            DEMO_GPU_SMOKE_OVERRIDES, sort_keys=True)
    return demo, smoke


def check_cuda() -> None:
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


def replaced_word_command(demo: Dict[str, str]) -> Command:
    return Command([
        paths.MODERN_PYTHON, "-m", "wrapper.replaced_word",
        "--model-dir=" + paths.hf_dir(demo["DATA_DIR"], demo["MODEL_NAME"], "discriminator"),
        "--sentences=" + paths.corpus_heldout_file(demo["DATA_DIR"]), "--count=20",
        "--seed=1234"])


def run_demo_gpu(values: Dict[str, str], environ: Mapping[str, str], dry_run: bool = False) -> int:
    """make demo-gpu: ELECTRA-small (PRESET=demo-gpu) with the PyTorch trainer on one GPU,
    then the replaced-word check on held-out sentences and make evaluate against random
    initialisation over 5 seeds."""
    started = time.time()
    demo, smoke = demo_gpu_settings(values, environ)
    check_values(demo)        # before the GPU is looked for
    check_settings("corpus", demo)
    if not smoke:
        if not dry_run:
            check_cuda()
        os.environ["REQUIRE_GPU"] = "1"    # the trainer, too, refuses to fall back to the CPU
    if dry_run:
        print("demo-gpu: " + " ".join("%s=%s" % (name, shlex.quote(demo[name])) for name in (
            "DATA_DIR", "CORPUS", "VOCAB", "VOCAB_SIZE", "PRESET", "BACKEND",
            "HPARAMS_OVERRIDES")))
    status = run_stages(ALL, demo, dry_run, headers=True, checked=True)
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
        status = run_stages(("evaluate",), demo, dry_run, checked=True)
    if status == 0 and not dry_run:
        print("make demo-gpu: done in %d s" % (time.time() - started))
    return status


# ---- docker-run -----------------------------------------------------------------------------

CONTAINER_DATA_DIR = "/workspace/data"
CONTAINER_ELECTRA_DIR = "/workspace/electra"
CONTAINER_CORPUS_DIR = "/workspace/corpus"


# IMAGE=torch (docker/Dockerfile.torch) holds .venv-modern's stack only: the targets that
# run there. The others need TensorFlow 1.15 (.venv: convert, verify, the TF1 trainer).
TORCH_IMAGE_TARGETS = ("help", "corpus", "vocab", "hparams", "pretrain-data", "pretrain",
                       "evaluate")


def docker_image(values: Dict[str, str], environ: Mapping[str, str]) -> str:
    """DOCKER_IMAGE, checked: an image reference, never an option (`--privileged`)."""
    settings.check("IMAGE", user_value("IMAGE", values, environ))
    image = environ.get("DOCKER_IMAGE") or settings.default("DOCKER_IMAGE", environ)
    settings.check("DOCKER_IMAGE", image)
    return image


def docker_command(values: Dict[str, str], environ: Mapping[str, str], tty: bool) -> List[str]:
    """`docker run ... make TARGET` with every pipeline variable the user gave forwarded as
    `-e NAME=VALUE` (one argument each: no shell ever sees the values; the image's make has the
    same defaults, and a default forwarded would count as given there). Host paths the
    container needs are mounted and their variables renamed to where they are mounted."""
    if not values["DATA_DIR"]:
        raise UserError("DATA_DIR is empty; give the host directory to mount")
    check_values(values)
    paths.check_directory(values["DATA_DIR"], "DATA_DIR")
    image = docker_image(values, environ)
    target = environ.get("TARGET") or settings.default("TARGET")
    settings.check("TARGET", target)
    if environ.get("IMAGE") == "torch":
        if target not in TORCH_IMAGE_TARGETS:
            raise UserError("TARGET=%s needs TensorFlow 1.15, which IMAGE=torch does not hold; "
                            "it runs there: %s (run %s in the TF1 image or in .venv)"
                            % (target, " ".join(TORCH_IMAGE_TARGETS), target))
        if target == "pretrain" and backend(values) != "torch":
            raise UserError("IMAGE=torch trains with the PyTorch trainer only; add BACKEND=torch")
        if target == "vocab" and values["VOCAB"] == "train":
            # wrapper/vocab.py trains with .venv's tokenizers (0.5.2), whose API differs.
            raise UserError("VOCAB=train trains with .venv's tokenizers, which IMAGE=torch does "
                            "not hold; make the vocab in the TF1 image or in .venv (make vocab), "
                            "or give VOCAB=mbert or VOCAB=path/to/vocab.txt")
    argv = ["docker", "run", "--rm"] + (["-it"] if tty else [])
    gpu = user_value("GPU", values, environ)
    settings.BY_NAME["GPU"].check(gpu, "GPU")     # an empty GPU= too: it is 0 or 1
    if gpu == "1":
        # A GPU host that trains on the CPU (CUDA not found in the image) stops at once.
        argv += ["--gpus", "all", "-e", "REQUIRE_GPU=" + environ.get("REQUIRE_GPU", "1")]
    if environ.get("TF_CONFIG"):
        # Several hosts (tf.distribute's TF_CONFIG): the workers reach each other on the
        # host's own addresses and ports.
        argv += ["--network", "host", "-e", "TF_CONFIG=" + environ["TF_CONFIG"]]
    elif values["NNODES"].strip() and int(values["NNODES"]) > 1:
        # Several hosts (BACKEND=torch): torchrun's rendezvous on MASTER_ADDR:MASTER_PORT,
        # and the processes' own connections, on the hosts' addresses.
        argv += ["--network", "host"]
    for name in ("ELECTRA_DIR", "CORPUS"):
        for path in values[name].split(os.pathsep) if name == "CORPUS" else [values[name]]:
            if path and not os.path.exists(path) and not debian_corpus.is_debian_es(path):
                raise UserError("%s=%s: no such file or directory (it is mounted into the "
                                "container)" % (name, path))
    given = settings.given(environ)
    given.add("DATA_DIR")
    forwarded = dict(values, DATA_DIR=CONTAINER_DATA_DIR)
    mounts = [(os.path.abspath(values["DATA_DIR"]), CONTAINER_DATA_DIR, "")]
    given.discard("ELECTRA_DIR")              # the image's own copy, unless another is given
    if not our_electra_dir(values):
        mounts.append((electra_dir(values), CONTAINER_ELECTRA_DIR, ":ro"))
        forwarded["ELECTRA_DIR"] = CONTAINER_ELECTRA_DIR
        given.add("ELECTRA_DIR")
    corpus = []
    for index, path in enumerate(part for part in values["CORPUS"].split(os.pathsep) if part):
        if debian_corpus.is_debian_es(path):     # built inside, from the image's packages
            corpus.append(path)
            continue
        inside = "%s/%d/%s" % (CONTAINER_CORPUS_DIR, index, os.path.basename(path.rstrip("/")))
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


def docker_run(values: Dict[str, str], environ: Mapping[str, str], dry_run: bool = False) -> int:
    argv = docker_command(values, environ, tty=sys.stdin.isatty() and sys.stdout.isatty())
    if dry_run:
        print(" ".join(shlex.quote(arg) for arg in argv))
        return 0
    os.makedirs(values["DATA_DIR"], exist_ok=True)   # else docker would make it, owned by root
    try:
        status = subprocess.call(argv)
    except OSError as error:
        raise UserError("cannot run docker: %s; install Docker (and nvidia-container-toolkit "
                        "for the GPU)" % (error.strerror or error))
    if status != 0:
        sys.stderr.write("docker-run: error: docker exited with status %d\n" % status)
    return 1 if status < 0 else status


# ---- command line ---------------------------------------------------------------------------

def make_dry_run(environ: Mapping[str, str]) -> bool:
    """True under `make -n` (the recipe line is marked `+` so that this runner is asked)."""
    words = environ.get("MAKEFLAGS", "").split()
    flags = words[0] if words and not words[0].startswith("-") and "=" not in words[0] else ""
    return any(flag in flags for flag in "ntq")   # -t and -q must not run a stage either


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wrapper.pipeline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("stage", nargs="*", help="stages to run: %s, all, demo"
                        % ", ".join(STAGES))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--docker-run", action="store_true",
                        help="run `make $TARGET` in the Docker image (make docker-run)")
    args = parser.parse_args(argv)
    environ = os.environ
    values = read_settings(environ)
    dry_run = args.dry_run or make_dry_run(environ)
    program = "docker-run" if args.docker_run else (args.stage[0] if args.stage else "pipeline")
    try:
        if args.docker_run:
            return docker_run(values, environ, dry_run)
        if not args.stage:
            raise UserError("name a stage: %s, all or demo" % ", ".join(STAGES))
        for name in args.stage:
            if name not in STAGES and name not in ("all", "demo", "demo-gpu"):
                raise UserError("unknown stage %r; choose one of %s, all, demo"
                                % (name, ", ".join(STAGES)))
        if args.stage == ["demo"]:
            return run_demo(values, environ, dry_run)
        if args.stage == ["demo-gpu"]:
            return run_demo_gpu(values, environ, dry_run)
        if len(args.stage) == 1 and args.stage[0] in STAGES:
            return run_stages(first_stages(args.stage[0], values) + args.stage, values, dry_run)
        if args.stage == ["all"]:
            return run_stages(ALL, values, dry_run, headers=True)
        return run_stages(args.stage, values, dry_run)
    except UserError as error:
        sys.stdout.flush()
        fail(program, str(error))
    except KeyboardInterrupt:
        fail(program, "interrupted", status=130)


if __name__ == "__main__":
    sys.exit(main() or 0)
