"""How much of the corpus this trainer's input shows in its first batches, per seed.

  python input_probe.py --files 'DIR/*' --seq-length T --batch-size B --batches N \
      --seeds 1,2,3

Prints a JSON object {"seeds": [...], "distinct": [...]}: for each seed (the graph's
tf_random_seed, as the trainer sets it from the `seed` hparam), the number of distinct
examples among the first N batches of input_fn_builder's training input. The input repeats
the shard list through a shuffle buffer, so a file can come round again before all have
been read once; this count is what that order does to the data a run sees, and another
implementation's input must give the same counts up to the seed noise.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
  sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import run_pretraining  # noqa: E402


class InputConfig(object):
  def __init__(self, seq_length):
    self.max_seq_length = seq_length


def distinct_examples(files, seq_length, batch_size, batches, seed):
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(seed)
    dataset = run_pretraining.input_fn_builder(InputConfig(seq_length), files, True)(
        {"batch_size": batch_size})
    batch = tf.data.make_one_shot_iterator(dataset).get_next()
    seen = set()
    with tf.Session(graph=graph) as session:
      for _ in range(batches):
        values = session.run(batch)
        rows = np.stack([values[name] for name in ("input_ids", "input_mask", "segment_ids")],
                        1)                                                        # [B, 3, T]
        seen.update(row.tobytes() for row in rows)
  return len(seen)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--files", required=True, help="glob of the TFRecord shards")
  parser.add_argument("--seq-length", type=int, required=True)
  parser.add_argument("--batch-size", type=int, required=True)
  parser.add_argument("--batches", type=int, required=True)
  parser.add_argument("--seeds", required=True, help="comma-separated seeds")
  args = parser.parse_args(argv)
  files = sorted(tf.io.gfile.glob(args.files))
  seeds = [int(s) for s in args.seeds.split(",")]
  counts = [distinct_examples(files, args.seq_length, args.batch_size, args.batches, seed)
            for seed in seeds]
  print(json.dumps({"seeds": seeds, "distinct": counts}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
