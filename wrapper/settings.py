"""Every setting a user gives (make TARGET NAME=value) in one table: its default, its meaning,
its check, the targets that read it and whether docker-run forwards it.

    python -m wrapper.settings make     settings.mk, the Makefile's defaults (committed)
    python -m wrapper.settings readme   the README's table of the variables

Everything else takes its defaults from here: the Makefile (settings.mk, so that Make works
with no Python environment at all), `make help` (the `#:` lines of settings.mk), the runner
(wrapper/pipeline.py: PIPELINE_VARS, docker-run's forwarding, the checks) and every stage's
command line (their argparse defaults). A default may follow another setting: `{NAME}` in it
is that setting's value, and Choose picks one by another setting's value.
"""
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from wrapper import paths
from wrapper.cli import UserError, positive_int

# The published model's shape (PRESET=electra-small-1m) has a trained cased vocab of this many
# tokens; the tutorial's recipe uses mBERT's.
PUBLISHED_PRESET = "electra-small-1m"
PUBLISHED_VOCAB_SIZE = "50265"


@dataclass(frozen=True)
class Choose:
    """A default picked by another setting's value: `cases` ((value, default), ...), else
    `otherwise`."""
    on: str
    cases: Tuple[Tuple[str, str], ...]
    otherwise: str


@dataclass(frozen=True)
class Setting:
    name: str
    default: Union[str, Choose]   # a str may hold `{NAME}`: that setting's value
    help: str
    # Checks one non-empty value, on every run of a stage (UserError naming the setting).
    check: Optional[Callable[[str, str], None]] = None
    stages: Tuple[str, ...] = ()  # the stages (and other make targets) that read it
    forwarded: bool = False       # a stage reads it: make exports it, docker-run forwards it
    example: str = ""             # `make help` shows NAME=EXAMPLE while the value is empty


@dataclass(frozen=True)
class AtMost:
    """A positive integer no larger than `most`: beyond it a value is a typo, and would
    otherwise reach a file name or a loop."""
    most: int

    def __call__(self, value: str, name: str) -> None:
        positive_int(value, name, self.most)


at_most = AtMost


def path_value(value: str, name: str) -> None:
    """A path or a name a command takes as a value: never an option, within the file
    system's limits (CORPUS: several, joined with ':')."""
    for part in value.split(os.pathsep) if name == "CORPUS" else [value]:
        if part:
            paths.check_path_value(part, name)


# The trainers of make pretrain: the reference's TF 1.15 one (third_party/electra) and the
# PyTorch one (third_party/electra_torch: same hparams, TFRecords and checkpoints).
BACKENDS = ("tf1", "torch")


def backend_value(value: str, name: str) -> None:
    if value not in BACKENDS:
        raise UserError("BACKEND=%s is unknown; use BACKEND=tf1 (the reference's TensorFlow "
                        "1.15 trainer) or BACKEND=torch (the PyTorch trainer, current GPUs)"
                        % value[:40])


# A host name (RFC 1123 labels) or an IPv4/IPv6 address: never an option, never a URL.
HOST_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                          r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z|[0-9A-Fa-f:.]+\Z")


def host_address(value: str, name: str) -> None:
    if len(value) > 253 or not HOST_ADDRESS.match(value):
        raise UserError("MASTER_ADDR=%s is not a host name or IP address; give the address "
                        "of the host with NODE_RANK=0, e.g. MASTER_ADDR=10.0.0.1" % value[:60])


# The images of docker-build/docker-run, by IMAGE: docker/Dockerfile.IMAGE.
IMAGES = ("ngc", "torch")


def image_value(value: str, name: str) -> None:
    if value not in IMAGES:
        raise UserError("IMAGE=%s is unknown; use IMAGE=ngc (Ampere hosts), IMAGE=torch (the "
                        "PyTorch trainer, current GPUs) or no IMAGE (V100)" % value)


# An image reference: [host[:port]/]name[/name...][:tag][@sha256:digest], lower-case names.
IMAGE_REFERENCE = re.compile(
    r"(?:[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z")


def image_reference(value: str, name: str) -> None:
    if not IMAGE_REFERENCE.match(value):
        raise UserError("DOCKER_IMAGE=%s is not an image reference such as "
                        "electra-spanish:tf1.15.5-gpu or registry.example.com/team/electra:1"
                        % value[:80])


def make_target(value: str, name: str) -> None:
    if not re.match(r"[a-z0-9][a-z0-9-]*\Z", value):
        raise UserError("TARGET=%r is not a make target; e.g. TARGET=pretrain (make help lists "
                        "them)" % value)


def gpu_value(value: str, name: str) -> None:
    if value not in ("0", "1"):
        raise UserError("GPU must be 1 (use the GPU: --gpus all) or 0 (a CPU-only host), "
                        "got %r" % value)


# The stages that read the data directory: every one but conformance (its own reference data).
DATA_STAGES = ("corpus", "vocab", "hparams", "pretrain-data", "pretrain", "convert", "verify",
               "predict", "evaluate", "tensorboard")
MODEL_STAGES = ("hparams", "pretrain", "convert", "verify", "predict", "evaluate",
                "tensorboard")

SETTINGS = (
    Setting("DATA_DIR", "./data", "data directory (reference layout)", path_value,
            DATA_STAGES + ("demo", "demo-gpu", "docker-run"), True),
    Setting("MODEL_NAME", "electra-spanish", "model directory name under DATA_DIR/models",
            None, MODEL_STAGES, True),
    Setting("PRESET", "tutorial",
            "hparams preset in hparams/ (tutorial, electra-small-1m, demo-cpu, demo-gpu) or a "
            ".json file", path_value, ("hparams",), True),
    Setting("HPARAMS_OVERRIDES", "", "JSON object merged over the preset", None,
            ("hparams",), True, "'{...}'"),
    Setting("CORPUS", "",
            ".txt/.gz file or directory (several: a:b), or debian-es (Debian's Spanish "
            "manuals, man pages and fortunes, offline); empty: OpenSubtitles", path_value,
            ("corpus", "docker-run"), True, "path"),
    Setting("CORPUS_ENCODING", "", "the corpus's encoding when it is not UTF-8 (latin1, cp1252)",
            None, ("corpus",), True, "latin1"),
    Setting("DOWNLOAD_BYTES", "", "download only the first N bytes of OpenSubtitles (a slice)",
            at_most(10 ** 12), ("corpus",), True, "N"),
    # OpenSubtitles' Spanish has about 2 x 10^8 lines.
    Setting("TRAIN_SIZE", "1000000", "corpus lines kept", at_most(10 ** 10), ("corpus",), True),
    Setting("VOCAB", Choose("PRESET", ((PUBLISHED_PRESET, "train"),), "mbert"),
            "mbert | train | path/to/vocab.txt", path_value, ("vocab",), True),
    # mBERT's vocab has 119,547 tokens.
    Setting("VOCAB_SIZE", Choose("PRESET", ((PUBLISHED_PRESET, PUBLISHED_VOCAB_SIZE),), "8000"),
            "size of a trained vocab (VOCAB=train)", at_most(10 ** 6), ("vocab",), True),
    # One corpus file and one builder process each. A fixed bound rather than the CPU count:
    # a data directory made on one host is used on another (docker-run's container, a GPU
    # host), and NUM_PROCESSES is part of its stage records.
    Setting("NUM_PROCESSES", "2", "dataset builder processes", at_most(1024),
            ("corpus", "pretrain-data", "bench-data"), True),
    Setting("ELECTRA_DIR", "third_party/electra",
            "builder/trainer implementation (an upstream checkout works)", path_value,
            ("pretrain-data", "pretrain", "conformance", "docker-run"), True),
    Setting("SENTENCE", "Los pájaros están hablando", "sentence for make predict", None,
            ("predict",), True),
    Setting("TASK", "", "make evaluate: the task", path_value, ("evaluate",), True,
            "fortunes-es"),
    Setting("MODEL", "", "make evaluate: the model to evaluate", path_value, ("evaluate",),
            True, "path"),
    Setting("BASELINE", "", "make evaluate: the baseline", path_value, ("evaluate",), True,
            "random"),
    Setting("SEEDS", "3", "make evaluate: fine-tuning runs (seeds)", at_most(100),
            ("evaluate",), True),
    Setting("TASK_DATA", "", "make evaluate: local task data", path_value, ("evaluate",), True,
            "path"),
    Setting("NUM_GPUS", "", "train on N GPUs of this host (num_gpus; several hosts: TF_CONFIG)",
            at_most(64), ("hparams", "pretrain"), True, "N"),
    Setting("BACKEND", BACKENDS[0],
            "make pretrain's trainer: tf1 (TF 1.15) | torch (PyTorch, current GPUs)",
            backend_value, ("pretrain", "conformance", "bench-train"), True),
    # Several hosts for BACKEND=torch (torchrun's rendezvous): passed to the trainer in its
    # environment, under these same names; empty means one host.
    Setting("NNODES", "", "BACKEND=torch on several hosts: host count", at_most(1024),
            ("pretrain", "docker-run"), True, "N"),
    Setting("NODE_RANK", "", "BACKEND=torch on several hosts: this host's number (0 to "
            "NNODES-1)", None, ("pretrain",), True, "N"),
    Setting("MASTER_ADDR", "", "BACKEND=torch on several hosts: NODE_RANK 0's address",
            host_address, ("pretrain",), True, "host"),
    Setting("MASTER_PORT", "", "BACKEND=torch on several hosts: NODE_RANK 0's port",
            at_most(65535), ("pretrain",), True, "port"),
    Setting("PYTHON37", "", "Python 3.7 interpreter for make setup", None, ("setup",), False,
            "path"),
    Setting("TARGET", "help", "make docker-run: the target to run", make_target,
            ("docker-run",)),
    Setting("GPU", "1", "make docker-run: GPU=0 on a CPU-only host (no --gpus)", gpu_value,
            ("docker-run",)),
    Setting("IMAGE", "",
            "make docker-build/docker-run: ngc (NVIDIA's TF 1.15, Ampere hosts) | torch (the "
            "PyTorch trainer, no TF1 stages); empty: the V100 image", image_value,
            ("docker-build", "docker-run"), False, "ngc"),
    Setting("DOCKER_IMAGE", Choose("IMAGE", (("ngc", "electra-spanish:tf1.15.5-ngc23.03"),
                                             ("torch", "electra-spanish:torch2.13.0-cuda12.8")),
                                   "electra-spanish:tf1.15.5-gpu"),
            "make docker-build/docker-run: the image's tag", image_reference,
            ("docker-build", "docker-run")),
    Setting("DEMO_DATA_DIR", "{DATA_DIR}/demo", "make demo's data directory", None, ("demo",)),
    Setting("DEMO_VOCAB_SIZE", "4000", "make demo's trained vocab size", None, ("demo",)),
    Setting("DEMO_SEEDS", "2", "make demo's evaluation seeds", None, ("demo",)),
    Setting("DEMO_GPU_VOCAB_SIZE", "32000", "make demo-gpu's trained vocab size", None,
            ("demo-gpu",)),
    Setting("DEMO_GPU_SMOKE", "",
            "1: make demo-gpu's path on the CPU, tiny model, a few steps (its test)", None,
            ("demo-gpu",), False, "1"),
)
BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
# Every variable a stage reads: make exports them, docker-run forwards the given ones.
PIPELINE_VARS = tuple(s.name for s in SETTINGS if s.forwarded)
USER_VARS = tuple(s.name for s in SETTINGS)
# The settings that are counts (AtMost).
INTEGER_SETTINGS = tuple(s.name for s in SETTINGS if isinstance(s.check, AtMost))


def default(name: str, values: Mapping[str, str] = None) -> str:
    """Setting `name`'s default, given the other settings' values (their defaults when
    absent from `values`)."""
    values = {} if values is None else values

    def value_of(other: str) -> str:
        return values[other] if other in values else default(other, values)
    d = BY_NAME[name].default
    if isinstance(d, Choose):
        return dict(d.cases).get(value_of(d.on), d.otherwise)
    return re.sub(r"\{([A-Z_0-9]+)\}", lambda m: value_of(m.group(1)), d)


def values(environ: Mapping[str, str], names: Sequence[str] = PIPELINE_VARS
           ) -> Dict[str, str]:
    """{name: value} of settings `names` as Make sets them: the environment's value when the
    name is there (empty included), else the default."""
    result: Dict[str, str] = {}
    for name in USER_VARS:
        result[name] = environ[name] if name in environ else default(name, result)
    return {name: result[name] for name in names}


def from_environment(name: str) -> str:
    """Setting `name` as Make would export it: the environment's value, else the default."""
    return values(os.environ, [name])[name]


def given(environ: Mapping[str, str]) -> Set[str]:
    """The pipeline settings the user gave: make's PIPELINE_GIVEN (command line or
    environment), else those the environment holds."""
    listed = environ.get("PIPELINE_GIVEN")
    return set(listed.split() if listed is not None else
               [n for n in PIPELINE_VARS if n in environ])


def check(name: str, value: str) -> None:
    """Setting `name`'s own check of a non-empty value (UserError)."""
    s = BY_NAME[name]
    if s.check is not None and value.strip():
        s.check(value, name)


def count(name: str, value: str) -> Optional[int]:
    """Count setting `name` (an AtMost) as an int, by its own check; None when empty."""
    if not value.strip():
        return None
    return positive_int(value, name, BY_NAME[name].check.most)


def read_by(stage: str) -> Tuple[str, ...]:
    """The settings stage `stage` reads."""
    return tuple(s.name for s in SETTINGS if stage in s.stages)


# ---- the checks of one setting's use, shared by the runner and the stage's command ----------

def check_hosts(v: Mapping[str, str]) -> None:
    """The hosts of a BACKEND=torch training consistent with each other."""
    nodes = int(v["NNODES"]) if v["NNODES"].strip() else 1
    rank = v["NODE_RANK"].strip()
    if rank and (not rank.isdigit() or len(rank) > 5 or int(rank) >= nodes):
        raise UserError("NODE_RANK=%s is not a host number from 0 to NNODES-1 (%d); give each "
                        "host its own, 0 on the one MASTER_ADDR names" % (rank[:40], nodes - 1))
    if nodes > 1 and not v["MASTER_ADDR"]:
        raise UserError("NNODES=%d needs MASTER_ADDR, the address of the host with "
                        "NODE_RANK=0 (and NODE_RANK on each host)" % nodes)
    if nodes > 1 and (v["BACKEND"] or BACKENDS[0]) != "torch":
        raise UserError("NNODES=%d is the PyTorch trainer's; add BACKEND=torch (the TF1 "
                        "trainer joins hosts with TF_CONFIG)" % nodes)


def check_vocab(vocab: str) -> None:
    """VOCAB is mbert, train or an existing file; anything else is a typo (VOCAB=Train), not
    the output of a stage that has yet to run."""
    if not vocab:
        raise UserError("VOCAB is empty; use mbert, train or path/to/vocab.txt")
    if vocab in ("mbert", "train") or os.path.isfile(vocab):
        return
    kind = paths.kind_of(vocab)
    raise UserError("VOCAB=%s is %s; give mbert, train or a path to a WordPiece vocab "
                    "(one token per line)" % (vocab, "a %s, not a file" % kind if kind else
                                              "neither mbert, train nor an existing file"))


def preset_names() -> List[str]:
    return sorted(n[:-len(".json")] for n in os.listdir(paths.HPARAMS_PRESETS_DIR)
                  if n.endswith(".json"))


def preset_candidate(preset: str) -> str:
    """The file PRESET names: a path when it looks like one, else hparams/PRESET.json."""
    preset = preset.strip()
    if preset.endswith(".json") or os.sep in preset:
        return preset
    return os.path.join(paths.HPARAMS_PRESETS_DIR, preset + ".json")


def preset_file(preset: str) -> Optional[str]:
    """PRESET's file when there is one, else None (preset_path says why)."""
    path = preset_candidate(preset)
    return path if preset.strip() and os.path.isfile(path) else None


def preset_path(preset: str) -> str:
    """PRESET's file, or UserError: the one check of PRESET's value (a name in hparams/ or the
    path of a .json file)."""
    path = preset_file(preset)
    if path is not None:
        return path
    preset = preset.strip()
    if not preset:
        raise UserError("PRESET is empty; choose one of %s" % ", ".join(preset_names()))
    if preset_candidate(preset) == preset:
        raise UserError("PRESET=%s: no such file" % preset)
    raise UserError("unknown PRESET %r; choose one of %s, or give a path to a .json file"
                    % (preset, ", ".join(preset_names())))


def preset_vocab_size(preset: str) -> Optional[int]:
    """The vocab size a preset's shape is meant for (VOCAB_SIZE's default for it), or None."""
    d = BY_NAME["VOCAB_SIZE"].default
    chosen = dict(d.cases).get(preset) if isinstance(d, Choose) else None
    return int(chosen) if chosen else None


# ---- what is made of the table ------------------------------------------------------------

def make_default(s: Setting) -> str:
    """The default in Make's syntax."""
    d = s.default
    if isinstance(d, Choose):
        text = d.otherwise
        for value, chosen in reversed(d.cases):
            text = "$(if $(filter %s,$(%s)),%s,%s)" % (value, d.on, chosen, text)
        return text
    return re.sub(r"\{([A-Z_0-9]+)\}", r"$(\1)", d.replace("$", "$$"))


def words(names: Sequence[str], indent: int, first: str) -> str:
    """Make's `NAME := a b c` over several lines of at most 96 characters."""
    lines, line = [], first
    for name in names:
        if len(line) + len(name) + 3 > 96:
            lines.append(line + " \\")
            line = " " * indent
        line += ("" if line.endswith(" ") or line == first else " ") + name
    return "\n".join(lines + [line])


def settings_mk() -> str:
    """settings.mk: the Makefile's defaults, `make help`'s lines and the variable lists."""
    out = ["# The settings' defaults: generated from wrapper/settings.py, their one home, by",
           "# `python -m wrapper.settings make > settings.mk` (a test keeps the two equal).",
           "# `#: NAME<tab>EXAMPLE<tab>MEANING` lines are `make help`'s.", ""]
    for s in SETTINGS:
        out.append("#: %s\t%s\t%s" % (s.name, s.example, s.help))
        out.append(("%s ?= %s" % (s.name, make_default(s))).rstrip())
    out += ["", "# Every variable a stage reads (make exports them; docker-run forwards the given "
            "ones).", words(PIPELINE_VARS, 17, "PIPELINE_VARS := "),
            words(USER_VARS, 17, "USER_VARS     := "), ""]
    return "\n".join(out)


def readme_default(s: Setting) -> str:
    d = s.default
    if isinstance(d, Choose):
        return "; ".join(["`%s` with %s=%s" % (chosen, d.on, value) for value, chosen in d.cases]
                         + ["else `%s`" % d.otherwise])
    return "`%s`" % re.sub(r"\{([A-Z_0-9]+)\}", r"\1", d) if d else "(empty)"


def readme_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        rows.append("| `%s` | %s | %s |" % (s.name, readme_default(s),
                                            s.help.replace("|", "\\|")))
    return "\n".join(rows) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["make"]:
        sys.stdout.write(settings_mk())
    elif argv == ["readme"]:
        sys.stdout.write(readme_table())
    else:
        sys.stderr.write("usage: python -m wrapper.settings make|readme\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
