"""ELECTRA pretraining in PyTorch: the TF1 trainer's step and checkpoints, on current GPUs.

A second implementation of third_party/electra/run_pretraining.py (same command line, hparams,
TFRecords and checkpoint variables). The formats and the configuration are shared with the TF1
trainer, not copied: configure_pretraining (hparam names, defaults, ranges, network sizes),
tfrecord_io (the builder's TFRecords) and tensor_bundle (TF's checkpoint format) are pure-Python
modules of third_party/electra, imported from there by their flat names as the TF1 scripts do.
"""
import os
import sys

ELECTRA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "electra")
if ELECTRA_DIR not in sys.path:
    sys.path.insert(0, ELECTRA_DIR)
