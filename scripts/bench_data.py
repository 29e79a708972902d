"""Dataset builder benchmark: our fast path against the plain-Python path, same command.

Builds a single-file Spanish corpus (about 16.7 MB, the size of the reference's
measurement) from Debian's fortunes-es and debian-reference-es text, repeated, in a
temporary directory; splits it into as many files as processes (that is how one big corpus
gets parallel work: each process takes whole files); runs third_party/electra's builder
with the tutorial's flags through the fast path, and the plain-Python tokenizer on a
fraction of the same split corpus (its time is extrapolated, conservatively, and it is
said so), checks
that both paths write byte-identical shards for that fraction, and prints MB/s, wall
times, the ratios against the plain path and against the reference's recorded 77.7 s, and
the builder's peak RSS.

usage: python scripts/bench_data.py [--size-mb 16.7] [--processes 2] [--plain-fraction 0.08]
"""
import argparse
import glob
import gzip
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDER = os.path.join(REPO, "third_party", "electra", "build_pretraining_dataset.py")
VOCAB = os.path.join(REPO, "tests", "conformance", "vocab-es-8k.txt")
sys.path.insert(0, REPO)
from wrapper.settings import default  # noqa: E402
from wrapper.text_packages import DEBIAN_REFERENCE_TXT as DEBIAN_REFERENCE  # noqa: E402
from wrapper.text_packages import FORTUNES_DIR as FORTUNES  # noqa: E402
# google-research/electra's builder on this machine, 16.7 MB single file, tutorial's flags
# (--num-processes 5: one process works, the others have no file).
REFERENCE_SECONDS = 77.7
REFERENCE_MB_PER_S = 0.215
TUTORIAL_FLAGS = ["--max-seq-length", "128", "--blanks-separate-docs", "False",
                  "--no-lower-case", "--seed", "1234"]


def spanish_text():
    """Text of the installed Debian packages (fortunes-es, debian-reference-es), as bytes."""
    parts = []
    paths = sorted(glob.glob(os.path.join(FORTUNES, "*.fortunes")) +
                   glob.glob(os.path.join(FORTUNES, "off", "*.fortunes")))
    for path in paths:
        with open(path, "rb") as f:
            parts.append(f.read())
    if os.path.exists(DEBIAN_REFERENCE):
        with gzip.open(DEBIAN_REFERENCE, "rb") as f:
            parts.append(f.read())
    if not parts:
        sys.exit("bench_data: no Spanish text found; apt-get install fortunes-es "
                 "debian-reference-es")
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def write_corpus(path, size_bytes):
    text = spanish_text()
    with open(path, "wb") as f:
        written = 0
        while written < size_bytes:
            piece = text[:size_bytes - written]
            if len(piece) < len(text):                 # end on a whole line
                piece = piece[:piece.rfind(b"\n") + 1] or piece
            f.write(piece)
            written += len(piece)
            if len(piece) < len(text):
                break
    return os.path.getsize(path)


def split_lines(path, out_dir, parts, fraction=1.0):
    """Splits a text file into `parts` files of whole lines (optionally only the first
    `fraction` of each part)."""
    with open(path, "rb") as f:
        data = f.read()
    os.makedirs(out_dir)
    start = 0
    for i in range(parts):
        end = len(data) if i == parts - 1 else data.rfind(b"\n", 0, len(data) * (i + 1) // parts) + 1
        chunk = data[start:end]
        if fraction < 1.0:
            cut = chunk.rfind(b"\n", 0, int(len(chunk) * fraction)) + 1
            chunk = chunk[:cut]
        with open(os.path.join(out_dir, "part-%02d.txt" % i), "wb") as f:
            f.write(chunk)
        start = end
    return sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir))


def run_builder(corpus_dir, output_dir, processes, extra=()):
    args = [sys.executable, BUILDER, "--corpus-dir", corpus_dir, "--vocab-file", VOCAB,
            "--output-dir", output_dir, "--num-processes", str(processes)]
    args += TUTORIAL_FLAGS + list(extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    seconds = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit("bench_data: builder failed:\n%s%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, proc.stdout.strip().splitlines()[-1]


def shards_digest(directory):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        digest.update(name.encode())
        with open(os.path.join(directory, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=16.7)
    parser.add_argument("--processes", type=int, default=int(default("NUM_PROCESSES")))
    parser.add_argument("--plain-fraction", type=float, default=0.08,
                        help="share of the corpus the plain path runs on (extrapolated)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-data-")
    try:
        single = os.path.join(work, "corpus.txt")
        size = write_corpus(single, int(args.size_mb * 1e6))
        mb = size / 1e6
        full_dir = os.path.join(work, "split")
        split_lines(single, full_dir, args.processes)
        print("corpus: %.1f MB single file of fortunes-es + debian-reference-es text, split "
              "into %d files for --num-processes %d" % (mb, args.processes, args.processes))

        print("load average before the runs: %.1f (%d CPUs)" % (os.getloadavg()[0], os.cpu_count()))
        fast_seconds, fast_cpu, fast_summary = run_builder(
            full_dir, os.path.join(work, "out-fast"), args.processes)
        fast_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        print("fast path:  %6.2f s wall, %6.2f MB/s, %.2f s CPU (all processes), peak RSS %.0f MB"
              % (fast_seconds, mb / fast_seconds, fast_cpu, fast_rss_mb))
        print("            %s" % fast_summary)

        part_dir = os.path.join(work, "split-part")
        part_bytes = split_lines(single, part_dir, args.processes, args.plain_fraction)
        part_mb = part_bytes / 1e6
        plain_seconds, plain_cpu, _ = run_builder(part_dir, os.path.join(work, "out-plain"),
                                                  args.processes, ["--tokenizer", "plain"])
        fast_part_seconds, fast_part_cpu, _ = run_builder(
            part_dir, os.path.join(work, "out-fast-part"), args.processes)
        equal = (shards_digest(os.path.join(work, "out-plain")) ==
                 shards_digest(os.path.join(work, "out-fast-part")))
        # Conservative extrapolation: only what the plain path spent beyond the fast path's
        # whole run on the fraction (start-up, 1000 shard files, ...) grows with the text.
        scale = mb / part_mb
        plain_full_seconds = plain_seconds + (scale - 1) * max(plain_seconds - fast_part_seconds, 0)
        plain_full_cpu = plain_cpu + (scale - 1) * max(plain_cpu - fast_part_cpu, 0)
        print("plain path: %6.2f s wall, %.2f s CPU on %.2f MB (first %.0f%% of each file), "
              "%.3f MB/s -> extrapolated (conservatively) to %.1f MB: %.1f s wall, %.1f s CPU "
              "(linearly: %.1f s wall)"
              % (plain_seconds, plain_cpu, part_mb, 100 * args.plain_fraction,
                 part_mb / plain_seconds, mb, plain_full_seconds, plain_full_cpu,
                 plain_seconds * scale))
        print("fast path on the same %.2f MB: %.2f s; shards byte-identical to the plain "
              "path: %s" % (part_mb, fast_part_seconds, "yes" if equal else "NO"))
        print("speed-up vs plain path (extrapolated): %.1fx wall, %.1fx CPU"
              % (plain_full_seconds / fast_seconds, plain_full_cpu / fast_cpu))
        print("speed-up vs reference (%.1f s wall, %.3f MB/s on 16.7 MB): %.1fx wall"
              % (REFERENCE_SECONDS, REFERENCE_MB_PER_S,
                 REFERENCE_SECONDS * (mb / 16.7) / fast_seconds))
        if not equal:
            sys.exit("bench_data: fast and plain outputs differ")
        print("note: wall times on a shared machine are noisy (see the load average)")
    finally:
        if args.keep:
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
