"""The data directory's layout: the one place that names paths under DATA_DIR.

The reference's scripts fix vocab.txt, pretrain_tfrecords/ and models/NAME under the data
dir; the rest is ours.
"""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ELECTRA_DIR = os.path.join(REPO_ROOT, "third_party", "electra")   # our implementation
HPARAMS_PRESETS_DIR = os.path.join(REPO_ROOT, "hparams")


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
    return os.path.join(data_dir, "models", model_name)


def hf_dir(data_dir, model_name, network):  # network: discriminator | generator
    return os.path.join(model_dir(data_dir, model_name), "hf", network)


def stages_dir(data_dir):          # completion records of the Make stages
    return os.path.join(data_dir, ".stages")


def import_electra_config():
    """Our trainer's configure_pretraining module: the single source of hparam truth."""
    import importlib.util
    path = os.path.join(ELECTRA_DIR, "configure_pretraining.py")
    spec = importlib.util.spec_from_file_location("electra_configure_pretraining", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
