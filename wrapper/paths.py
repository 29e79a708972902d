"""The data directory's layout: the one place that names paths under DATA_DIR.

The reference's scripts fix vocab.txt, pretrain_tfrecords/ and models/NAME under the data
dir; the rest is ours.
"""
import os
import re
import stat
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ELECTRA_DIR = os.path.join(REPO_ROOT, "third_party", "electra")   # our implementation
# BACKEND=torch: `python -m electra_torch.run_pretraining` runs from here (the package's parent).
TORCH_TRAINER_DIR = os.path.join(REPO_ROOT, "third_party")
HPARAMS_PRESETS_DIR = os.path.join(REPO_ROOT, "hparams")
VENV_PYTHON = os.path.join(REPO_ROOT, ".venv", "bin", "python")            # TF 1.15 stack
MODERN_PYTHON = os.path.join(REPO_ROOT, ".venv-modern", "bin", "python")   # current transformers

# MODEL_NAME is one plain directory name under DATA_DIR/models: nothing that climbs out of it
# ("../x"), hides (".x"), reads as an option ("-x") or needs quoting.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
# Its lock file and stage records add a few characters to it (model-NAME.lock,
# convert-NAME.done); a file name holds at most 255 bytes.
MODEL_NAME_MAX = 200


def check_model_name(model_name: str) -> str:
    """Raises UserError unless MODEL_NAME is one plain path component."""
    if not MODEL_NAME_PATTERN.match(model_name or ""):
        from wrapper.cli import UserError
        raise UserError("MODEL_NAME=%r is not a plain directory name; use letters, digits, "
                        "'-', '_' and '.' (not first), e.g. MODEL_NAME=electra-spanish"
                        % (model_name or ""))
    if len(model_name) > MODEL_NAME_MAX:
        from wrapper.cli import UserError
        raise UserError("MODEL_NAME is %d characters long (%s...); at most %d" % (
            len(model_name), model_name[:40], MODEL_NAME_MAX))
    return model_name


def kind_of(path: str) -> Optional[str]:
    """'directory', 'regular file', 'FIFO (named pipe)', ... or None when absent."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else None
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISREG, "regular file"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def check_directory(path: str, what: str, must_exist: bool = False) -> None:
    """Raises UserError when `path` is something other than a directory (or absent, when
    must_exist), saying what it is."""
    from wrapper.cli import UserError
    kind = kind_of(path)
    if kind is None and must_exist:
        raise UserError("%s=%s does not exist; give a directory" % (what, path))
    if kind not in (None, "directory"):
        raise UserError("%s=%s is a %s, not a directory; give a directory" % (what, path, kind))
    return path


def check_path_value(path: str, what: str) -> None:
    """Raises UserError for a path no command should be given: one starting with '-' (a
    command would read it as an option), or one longer than the file system allows."""
    from wrapper.cli import UserError
    if path.startswith("-"):
        raise UserError("%s=%s starts with '-', which a command would read as an option; "
                        "write ./%s for a path of that name" % (what, path[:60], path[:60]))
    existing = os.path.abspath(path)
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(os.pathconf(existing, name))
        except (OSError, ValueError):
            limits.append(default)
    name_max, path_max = limits
    longest = max(path.split(os.sep), key=len)
    if len(longest.encode("utf-8", "surrogateescape")) > name_max:
        raise UserError("%s holds a name of %d bytes (%s...); this file system allows at most %d "
                        "per name" % (what, len(longest.encode("utf-8", "surrogateescape")),
                                      longest[:40], name_max))
    if len(os.path.abspath(path).encode("utf-8", "surrogateescape")) >= path_max:
        raise UserError("%s is a path of %d bytes; this file system allows at most %d"
                        % (what, len(os.path.abspath(path).encode("utf-8", "surrogateescape")),
                           path_max - 1))
    return path


def read_only(path: str) -> bool:
    """True when nothing can be written in `path` (or, if absent, its nearest existing
    parent): a read-only mount, or permissions this user lacks."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return not os.access(path, os.W_OK)


def corpus_dir(data_dir: str) -> str:          # normalized text, one file per builder process
    return os.path.join(data_dir, "corpus")


# beside corpus/: the builder reads every file inside it
def corpus_stats_file(data_dir: str) -> str:
    return os.path.join(data_dir, "corpus-stats.json")


def corpus_heldout_file(data_dir: str) -> str:  # CORPUS=debian-es: sentences kept out of the corpus
    return os.path.join(data_dir, "corpus-heldout.txt")


# CORPUS=debian-es: the text extracted from the packages
def debian_cache_dir(data_dir: str) -> str:
    return os.path.join(data_dir, ".cache", "debian-es")


def downloads_dir(data_dir: str) -> str:       # raw downloads (OpenSubtitles), resumable
    return os.path.join(data_dir, "downloads")


def vocab_file(data_dir: str) -> str:          # fixed by the reference's run_pretraining.py
    return os.path.join(data_dir, "vocab.txt")


def hparams_file(data_dir: str) -> str:
    return os.path.join(data_dir, "hparams.json")


def tfrecords_dir(data_dir: str) -> str:       # fixed by the reference's run_pretraining.py
    return os.path.join(data_dir, "pretrain_tfrecords")


def model_dir(data_dir: str, model_name: str) -> str:  # fixed by the reference's run_pretraining.py
    check_model_name(model_name)
    return os.path.join(data_dir, "models", model_name)


# network: discriminator | generator
def hf_dir(data_dir: str, model_name: str, network: str) -> str:
    return os.path.join(model_dir(data_dir, model_name), "hf", network)


def cache_dir(data_dir: str) -> str:           # scratch files of ours, never in a model directory
    return os.path.join(data_dir, ".cache")


def tf_logits_file(data_dir: str, model_name: str) -> str:  # verify's TF logits (wrapper.tf_logits)
    return os.path.join(cache_dir(data_dir), "verify", check_model_name(model_name),
                        "tf-logits.npz")


def evaluation_dir(data_dir: str, model_name: str) -> str:  # make evaluate's TASK.json and TASK.png
    return os.path.join(model_dir(data_dir, model_name), "evaluation")


def external_evaluation_dir(data_dir: str, model: str) -> str:
    """make evaluate MODEL=path-or-hub-id: results outside models/ (a directory there, made
    before pretraining, would be taken for a model directory this pipeline did not start).
    A hub id keeps its name (owner--name); a path its last parts and a digest of the whole."""
    import hashlib
    if not os.path.exists(model) and re.match(r"^[\w.-]+/[\w.-]+$", model):
        name = model.replace("/", "--")
    else:
        full = os.path.realpath(model)
        tail = "_".join(full.strip(os.sep).split(os.sep)[-3:])
        name = "%s-%s" % (re.sub(r"[^\w.-]+", "_", tail).lstrip("._-")[:80] or "model",
                          hashlib.sha256(full.encode("utf-8")).hexdigest()[:8])
    return os.path.join(data_dir, "evaluation", name)


def stages_dir(data_dir: str) -> str:          # completion records of the Make stages
    return os.path.join(data_dir, ".stages")

