"""The data directory's layout: the one place that names paths under DATA_DIR.

The reference's scripts fix vocab.txt, pretrain_tfrecords/ and models/NAME under the data
dir; the rest is ours.
"""
import os
import re
import stat

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ELECTRA_DIR = os.path.join(REPO_ROOT, "third_party", "electra")   # our implementation
HPARAMS_PRESETS_DIR = os.path.join(REPO_ROOT, "hparams")
VENV_PYTHON = os.path.join(REPO_ROOT, ".venv", "bin", "python")            # TF 1.15 stack
MODERN_PYTHON = os.path.join(REPO_ROOT, ".venv-modern", "bin", "python")   # current transformers

# MODEL_NAME is one plain directory name under DATA_DIR/models: nothing that climbs out of it
# ("../x"), hides (".x"), reads as an option ("-x") or needs quoting.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def check_model_name(model_name):
    """Raises UserError unless MODEL_NAME is one plain path component."""
    if not MODEL_NAME_PATTERN.match(model_name or ""):
        from wrapper.cli import UserError
        raise UserError("MODEL_NAME=%r is not a plain directory name; use letters, digits, "
                        "'-', '_' and '.' (not first), e.g. MODEL_NAME=electra-spanish"
                        % (model_name or ""))
    return model_name


def kind_of(path):
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


def check_directory(path, what, must_exist=False):
    """Raises UserError when `path` is something other than a directory (or absent, when
    must_exist), saying what it is."""
    from wrapper.cli import UserError
    kind = kind_of(path)
    if kind is None and must_exist:
        raise UserError("%s=%s does not exist; give a directory" % (what, path))
    if kind not in (None, "directory"):
        raise UserError("%s=%s is a %s, not a directory; give a directory" % (what, path, kind))
    return path


def read_only(path):
    """True when nothing can be written in `path` (or, if absent, its nearest existing
    parent): a read-only mount, or permissions this user lacks."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return not os.access(path, os.W_OK)


def corpus_dir(data_dir):          # normalized text, one file per builder process
    return os.path.join(data_dir, "corpus")


def corpus_stats_file(data_dir):   # beside corpus/: the builder reads every file inside it
    return os.path.join(data_dir, "corpus-stats.json")


def downloads_dir(data_dir):       # raw downloads (OpenSubtitles), resumable
    return os.path.join(data_dir, "downloads")


def vocab_file(data_dir):          # fixed by the reference's run_pretraining.py
    return os.path.join(data_dir, "vocab.txt")


def hparams_file(data_dir):
    return os.path.join(data_dir, "hparams.json")


def tfrecords_dir(data_dir):       # fixed by the reference's run_pretraining.py
    return os.path.join(data_dir, "pretrain_tfrecords")


def model_dir(data_dir, model_name):  # fixed by the reference's run_pretraining.py
    check_model_name(model_name)
    return os.path.join(data_dir, "models", model_name)


def hf_dir(data_dir, model_name, network):  # network: discriminator | generator
    return os.path.join(model_dir(data_dir, model_name), "hf", network)


def cache_dir(data_dir):           # scratch files of ours, never in a model directory
    return os.path.join(data_dir, ".cache")


def tf_reference_file(data_dir, model_name):  # verify's TF logits (wrapper.tf_reference)
    return os.path.join(cache_dir(data_dir), "verify", check_model_name(model_name),
                        "tf-reference.npz")


def evaluation_dir(data_dir, model_name):  # make evaluate's TASK.json and TASK.png
    return os.path.join(model_dir(data_dir, model_name), "evaluation")


def stages_dir(data_dir):          # completion records of the Make stages
    return os.path.join(data_dir, ".stages")

