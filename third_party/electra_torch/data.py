"""Batches from the builder's TFRecords, read ahead on a thread into pinned memory.

The TF1 trainer's input, in the same shape: the shard files in a random order, repeated;
records taken in turn from up to 4 files at a time; a shuffle buffer of 100 examples;
batches of train_batch_size, the remainder dropped. Every process of a torchrun job reads
the same global batches (same seed) and keeps its own rows, so that a batch split over
processes is the one-process batch.
"""
import queue
import random
import threading
from typing import Dict, Iterator, List

import numpy as np
import torch

import tfrecord_io   # third_party/electra

FEATURES = ("input_ids", "input_mask", "segment_ids")
CYCLE_LENGTH = 4
SHUFFLE_BUFFER = 100
READ_AHEAD = 4


def examples(files: List[str], seq_length: int, rng: random.Random) -> Iterator[np.ndarray]:
    """Examples as [3, T] int32 arrays, in the TF1 input's order of files and records."""
    while True:
        order = list(files)
        rng.shuffle(order)
        for start in range(0, len(order), CYCLE_LENGTH):
            opened = [tfrecord_io.read_examples(path, FEATURES, seq_length)
                      for path in order[start:start + CYCLE_LENGTH]]
            stacked = [np.stack([f[name] for name in FEATURES], 1) for f in opened]  # [n, 3, T]
            longest = max((len(s) for s in stacked), default=0)
            for i in range(longest):
                for s in stacked:
                    if i < len(s):
                        yield s[i]


def shuffled(stream: Iterator[np.ndarray], rng: random.Random) -> Iterator[np.ndarray]:
    buffer = []
    for item in stream:
        if len(buffer) < SHUFFLE_BUFFER:
            buffer.append(item)
            continue
        i = rng.randrange(len(buffer))
        yield buffer[i]
        buffer[i] = item


def global_batches(files: List[str], seq_length: int, batch_size: int,
                   seed: int) -> Iterator[np.ndarray]:
    """[batch_size, 3, T] int32 arrays, for ever."""
    rng = random.Random(seed)
    items = shuffled(examples(files, seq_length, rng), rng)
    while True:
        yield np.stack([next(items) for _ in range(batch_size)])


def local_rows(batch_size: int, rank: int, world: int) -> slice:
    share = batch_size // world
    return slice(rank * share, (rank + 1) * share)


class Reader:
    """Global batches made on a thread; this process's rows in pinned memory, ready to copy."""

    def __init__(self, files: List[str], seq_length: int, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1, pin: bool = False):
        self._rows = local_rows(batch_size, rank, world)
        self._pin = pin
        self._queue: "queue.Queue" = queue.Queue(READ_AHEAD)
        self._error = None
        self._source = global_batches(files, seq_length, batch_size, seed)
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        try:
            for whole in self._source:
                mine = torch.from_numpy(whole[self._rows])                     # [b, 3, T]
                weights = whole[:, 1, :]                                        # all input_mask
                item = (mine.pin_memory() if self._pin else mine, torch.from_numpy(weights))
                self._queue.put(item)
        except BaseException as e:   # reported to the training thread, not lost on this one
            self._error = e
            self._queue.put(None)

    def next(self) -> Dict[str, torch.Tensor]:
        """{"features": [b, 3, T], "global_mask": [B, T]} (the latter gives the whole batch's
        loss denominators to every process)."""
        item = self._queue.get()
        if item is None:
            raise self._error
        return {"features": item[0], "global_mask": item[1]}

    def rows(self, device) -> torch.Tensor:
        return torch.arange(self._rows.start, self._rows.stop, device=device)
