"""The one way from wrapper/ into third_party/electra: plain imports, made once.

    from wrapper.electra import configure_pretraining, tensor_bundle, tokenization

The trainer's modules import each other by their flat names (as the reference's do), so
their folder goes on sys.path, once, and they are imported normally: every caller gets the
same module object from sys.modules (one HparamError class, one set of defaults).

This is always our implementation (paths.ELECTRA_DIR), whatever the Makefile's ELECTRA_DIR
names for the builder and trainer: an upstream checkout holds modules of the same names
without our checks, so a module of one of these names found elsewhere is refused rather than
used.
"""
import importlib
import os
import sys
from types import ModuleType

from wrapper import paths

if paths.ELECTRA_DIR not in sys.path:
    sys.path.insert(0, paths.ELECTRA_DIR)


def load(name: str) -> ModuleType:
    """third_party/electra's module `name` (imported once, then from sys.modules)."""
    module = importlib.import_module(name)
    where = os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or ""))
    if where != paths.ELECTRA_DIR:
        raise ImportError("module %s was imported from %s, not from %s (another ELECTRA "
                          "checkout on sys.path?)" % (name, where, paths.ELECTRA_DIR))
    return module


configure_pretraining = load("configure_pretraining")
tokenization = load("tokenization")
tensor_bundle = load("tensor_bundle")
tfrecord_io = load("tfrecord_io")
