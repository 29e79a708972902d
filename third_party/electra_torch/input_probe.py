"""How much of the corpus this trainer's input shows in its first batches, per seed.

  python -m electra_torch.input_probe --files 'DIR/*' --seq-length T --batch-size B \
      --batches N --seeds 1,2,3

The counterpart of third_party/electra/input_probe.py (same arguments, same JSON output:
{"seeds": [...], "distinct": [...]}, the number of distinct examples among the first N
global batches of data.Reader's source for each seed).
"""
import argparse
import glob
import json
import sys
from typing import List

import electra_torch  # noqa: F401  (third_party/electra on sys.path)
from electra_torch import data


def distinct_examples(files: List[str], seq_length: int, batch_size: int, batches: int,
                      seed: int) -> int:
    source = data.global_batches(files, seq_length, batch_size, seed)
    seen = set()
    for _ in range(batches):
        seen.update(row.tobytes() for row in next(source))                     # [3, T] rows
    return len(seen)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", required=True, help="glob of the TFRecord shards")
    parser.add_argument("--seq-length", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--seeds", required=True, help="comma-separated seeds")
    args = parser.parse_args(argv)
    files = sorted(glob.glob(args.files))
    seeds = [int(s) for s in args.seeds.split(",")]
    counts = [distinct_examples(files, args.seq_length, args.batch_size, args.batches, seed)
              for seed in seeds]
    print(json.dumps({"seeds": seeds, "distinct": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
