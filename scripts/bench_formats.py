"""Benchmark of the TensorFlow file formats read and written without TensorFlow.

- CRC-32C: the vectorized large-buffer path against the byte-at-a-time definition (on a
  slice of the same buffer, extrapolated, and said so), MB/s and ratio;
- a checkpoint of ELECTRA-small's size with Adam slots (about 160 MB over 400 tensors):
  tensor_bundle's write and its read (every CRC checked), MB/s;
- a pretraining shard of 100k examples of 128 tokens (the builder's writer):
  tfrecord_io.read_examples, examples/s.
Everything runs in a temporary directory of this process; no TensorFlow.

usage: python scripts/bench_formats.py [--checkpoint-mb 160] [--examples 100000]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "third_party", "electra"))
import crc32c  # noqa: E402
import tensor_bundle  # noqa: E402
import tfrecord_io  # noqa: E402


def timed(function, *args):
    start = time.time()
    result = function(*args)
    return result, time.time() - start


def bench_crc(size_mb):
    data = np.random.RandomState(0).bytes(int(size_mb * 2 ** 20))
    _, fast = timed(crc32c.crc32c, data)
    sample = data[:2 ** 20]
    _, slow = timed(crc32c.crc32c_bytewise, sample)
    slow *= len(data) / len(sample)
    print("crc32c: %.0f MB/s vectorized, %.1f MB/s byte at a time (extrapolated from 1 MB): "
          "%.0fx" % (size_mb / fast, size_mb / slow, slow / fast))


def bench_checkpoint(directory, size_mb):
    rng = np.random.RandomState(1)
    per_tensor = int(size_mb * 2 ** 20 / 4 / 400)
    tensors = {"layer_%03d/kernel%s" % (i // 3, ["", "/adam_m", "/adam_v"][i % 3]):
               rng.randn(per_tensor).astype(np.float32) for i in range(400)}
    tensors["global_step"] = np.int64(1000)
    prefix = os.path.join(directory, "model.ckpt-1000")
    _, write = timed(tensor_bundle.write_checkpoint, prefix, tensors)
    read_back, read = timed(tensor_bundle.read_checkpoint, prefix)
    assert all(np.array_equal(read_back[n], v) for n, v in tensors.items())
    print("checkpoint of %.0f MB, %d tensors: write %.2f s (%.0f MB/s), read with CRCs %.2f s "
          "(%.0f MB/s)" % (size_mb, len(tensors), write, size_mb / write, read, size_mb / read))


def bench_examples(directory, examples):
    serializer = tfrecord_io.ExampleSerializer(vocab_size=50265, max_length=128)
    rng = np.random.RandomState(2)
    payloads = []
    for _ in range(examples):
        length = rng.randint(10, 129)
        payloads.append(serializer.serialize(rng.randint(0, 50265, length).tolist(), length // 2))
    path = os.path.join(directory, "pretrain_data.tfrecord-0-of-1")
    with open(path, "wb") as f:
        f.write(tfrecord_io.frame_records(payloads))
    arrays, seconds = timed(tfrecord_io.read_examples, path)
    assert arrays["input_ids"].shape == (examples, 128)
    print("read_examples: %d examples of 128 tokens (%.0f MB) in %.2f s: %.0f examples/s"
          % (examples, os.path.getsize(path) / 2 ** 20, seconds, examples / seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint-mb", type=float, default=160)
    parser.add_argument("--examples", type=int, default=100000)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-formats-")
    try:
        bench_crc(args.checkpoint_mb)
        bench_checkpoint(directory, args.checkpoint_mb)
        bench_examples(directory, args.examples)
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
