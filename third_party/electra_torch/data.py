"""Batches from the builder's TFRecords, read ahead on a thread into pinned memory.

The TF1 trainer's input, in distribution: the list of shard files repeated for ever and
passed through a shuffle buffer as long as the list (so a file can come round again before
every other file has been read once, as it does in TF1); records taken in turn from up to 4
open files, a finished file's place going to the next one; a shuffle buffer of 100 examples;
batches of train_batch_size, the remainder dropped. Every process of a torchrun job reads
the same global batches (same seed) and keeps its own rows, so that a batch split over
processes is the one-process batch.
"""
import itertools
import queue
import random
import threading
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

import tfrecord_io   # third_party/electra

FEATURES = ("input_ids", "input_mask", "segment_ids")
CYCLE_LENGTH = 4
SHUFFLE_BUFFER = 100
READ_AHEAD = 4


def shuffled(stream: Iterator, buffer_size: int, rng: random.Random) -> Iterator:
    """A shuffle buffer: filled with buffer_size items, then each output is a random one of
    them, its place taken by the next item of the stream."""
    buffer = []
    for item in stream:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = rng.randrange(len(buffer))
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


def file_examples(path: str, seq_length: int) -> Iterator[np.ndarray]:
    opened = tfrecord_io.read_examples(path, FEATURES, seq_length)
    yield from np.stack([opened[name] for name in FEATURES], 1)        # [n, 3, T] row by row


def interleaved(paths: Iterator[str], seq_length: int, cycle_length: int) -> Iterator[np.ndarray]:
    """Examples from cycle_length open files in turn; an exhausted file's place goes to the
    next path when its turn comes round."""
    slots: List[Optional[Iterator[np.ndarray]]] = [None] * cycle_length
    position = 0
    while True:
        if slots[position] is None:
            slots[position] = file_examples(next(paths), seq_length)
        example = next(slots[position], None)
        if example is None:
            slots[position] = None
        else:
            yield example
        position = (position + 1) % cycle_length


def examples(files: List[str], seq_length: int, rng: random.Random) -> Iterator[np.ndarray]:
    """Examples as [3, T] int32 arrays, for ever, in the TF1 input's order of files and
    records (up to the draws)."""
    paths = shuffled(itertools.cycle(files), len(files), rng)
    return interleaved(paths, seq_length, min(CYCLE_LENGTH, len(files)))


def global_batches(files: List[str], seq_length: int, batch_size: int,
                   seed: int) -> Iterator[np.ndarray]:
    """[batch_size, 3, T] int32 arrays, for ever."""
    rng = random.Random(seed)
    items = shuffled(examples(files, seq_length, rng), SHUFFLE_BUFFER, rng)
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
