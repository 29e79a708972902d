"""Training speed of third_party/electra/run_pretraining.py against the reference's figures.

Two runs on the fortunes-es TFRecords (built here with the project's builder):
  (a) ELECTRA-small, vocab 8000, batch 32, seq 128
  (b) tiny: hidden 64, 2 layers, batch 16
For each: time to the first step (process start to the first progress line) and steps/s
(between the first and the last progress line, so start-up and the final checkpoint are
not counted). Ratios are against the reference implementation measured on this machine
(google-research/electra, TF 1.15, same data and sizes): (a) 0.2 steps/s and 23 s to the
first step, (b) 3.4 steps/s. A ratio >= 1.0 means ours is at least as fast.

With --reference-dir DIR (a google-research/electra checkout; its run_pretraining.py takes
the same command line), the reference runs (a) and (b) in this session too, right after
ours, and the ratios are against those runs instead of the recorded figures: a machine's
speed drifts from day to day (and on a shared machine, from minute to minute).

Then (b) again on 2 CPU replicas (num_cpu_replicas 2, MirroredStrategy) on the same global
batch: examples/s of both and their ratio, the overhead of the distributed path.

--backend torch (or both; make bench-train BACKEND=torch) measures the PyTorch trainer
(python -m electra_torch.run_pretraining in .venv-modern, the same command line, data and
hparams, its progress lines in the same format) the same way; with both, its rows follow
TF1's and its ratios are against TF1's rows of this session.

  .venv/bin/python scripts/bench_train.py [--steps-small 12] [--steps-tiny 80] [--steps-replicas 40]
                                          [--reference-dir ../electra] [--backend tf1|torch|both]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ELECTRA_DIR = os.path.join(REPO, "third_party", "electra")
TORCH_TRAINER = ([os.path.join(REPO, ".venv-modern", "bin", "python"), "-m",
                  "electra_torch.run_pretraining"], os.path.join(REPO, "third_party"))
CONFORMANCE = os.path.join(REPO, "tests", "conformance")
VOCAB = os.path.join(CONFORMANCE, "vocab-es-8k.txt")
CORPUS = os.path.join(CONFORMANCE, "corpus", "fortunes")
PROGRESS = re.compile(r"^(\d+)/(\d+) = [\d.]+%, SPS")

REFERENCE = {"small": {"steps_per_s": 0.2, "first_step_s": 23.0},
             "tiny": {"steps_per_s": 3.4, "first_step_s": None}}
BASE = {"do_train": True, "do_eval": False, "model_size": "small", "do_lower_case": False,
        "vocab_size": 8000, "max_seq_length": 128, "save_checkpoints_steps": 1000000,
        "num_warmup_steps": 10}


def build_tfrecords(data_dir):
    os.makedirs(data_dir)
    shutil.copy(VOCAB, os.path.join(data_dir, "vocab.txt"))
    subprocess.run([sys.executable, os.path.join(ELECTRA_DIR, "build_pretraining_dataset.py"),
                    "--corpus-dir", CORPUS, "--vocab-file", VOCAB,
                    "--output-dir", os.path.join(data_dir, "pretrain_tfrecords"),
                    "--max-seq-length", "128", "--no-lower-case", "--num-processes", "1",
                    "--seed", "1234"], check=True, stdout=subprocess.DEVNULL)


def timed_run(data_dir, name, hparams, electra_dir=ELECTRA_DIR, backend="tf1"):
    """(seconds to the first step, steps/s after it, steps seen)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    trainer, cwd = TORCH_TRAINER if backend == "torch" else (
        [sys.executable, "run_pretraining.py"], electra_dir)
    start = time.time()
    proc = subprocess.Popen(
        trainer + ["--data-dir", data_dir, "--model-name", name, "--hparams",
                   json.dumps(hparams)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, env=env)
    stamps, tail = [], []   # (time, step) of each progress line: the trainer prints one
    for line in proc.stdout:  # after the first step, every iterations_per_loop, the last
        tail = (tail + [line])[-20:]
        match = PROGRESS.match(line)
        if match:
            stamps.append((time.time(), int(match.group(1))))
    if proc.wait() != 0 or len(stamps) < 2:
        sys.exit("bench-train: run %s failed:\n%s" % (name, "".join(tail)))
    (first_time, first_step), (last_time, last_step) = stamps[0], stamps[-1]
    steps_per_s = (last_step - first_step) / (last_time - first_time)
    return first_time - start, steps_per_s, last_step


def ratio(ours, reference, higher_is_better=True):
    if reference is None:
        return "-"
    return "%.2fx" % (ours / reference if higher_is_better else reference / ours)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps-small", type=int, default=12)
    parser.add_argument("--steps-tiny", type=int, default=80)
    parser.add_argument("--steps-replicas", type=int, default=40)
    parser.add_argument("--reference-dir", help="a google-research/electra checkout to run "
                        "as the baseline in this session")
    parser.add_argument("--backend", choices=("tf1", "torch", "both"), default="tf1",
                        help="the trainer(s) measured (torch: third_party/electra_torch)")
    args = parser.parse_args()
    if args.reference_dir and not os.path.isfile(os.path.join(args.reference_dir,
                                                              "run_pretraining.py")):
        sys.exit("bench-train: no run_pretraining.py in --reference-dir %s" % args.reference_dir)
    work = tempfile.mkdtemp(prefix="bench-train-")
    try:
        data_dir = os.path.join(work, "data")
        build_tfrecords(data_dir)
        runs = [
            ("small", dict(BASE, train_batch_size=32, num_train_steps=args.steps_small)),
            ("tiny", dict(BASE, train_batch_size=16, num_train_steps=args.steps_tiny,
                          model_hparam_overrides={"hidden_size": 64,
                                                  "num_hidden_layers": 2})),
        ]
        backends = ["tf1", "torch"] if args.backend == "both" else [args.backend]
        print("%-7s %-6s %6s %10s %8s %14s %8s" % ("trainer", "model", "steps", "steps/s",
                                                   "ratio", "first step s", "ratio"))
        measured = {}   # (backend, model): {"steps_per_s", "first_step_s"}
        for backend in backends:
            for name, hparams in runs:
                first, sps, steps = timed_run(data_dir, "%s-%s" % (backend, name), hparams,
                                              backend=backend)
                measured[backend, name] = {"steps_per_s": sps, "first_step_s": first}
                # TF1's rows against the reference; the PyTorch trainer's against TF1's.
                ref = measured.get(("tf1", name)) if backend == "torch" else REFERENCE[name]
                if args.reference_dir and backend == "tf1":
                    ref_first, ref_sps, _ = timed_run(data_dir, "reference-" + name, hparams,
                                                      args.reference_dir)
                    ref = {"steps_per_s": ref_sps, "first_step_s": ref_first}
                    print("%-7s %-6s reference in this session: %.2f steps/s, %.1f s to the "
                          "first step" % ("", name, ref_sps, ref_first))
                ref = ref or {"steps_per_s": None, "first_step_s": None}
                print("%-7s %-6s %6d %10.2f %8s %14.1f %8s" % (
                    backend, name, steps, sps, ratio(sps, ref["steps_per_s"]), first,
                    ratio(first, ref["first_step_s"], higher_is_better=False)))
                sys.stdout.flush()
        if not args.reference_dir and "tf1" in backends:
            print("reference (google-research/electra on this machine, an earlier session): "
                  "small 0.2 steps/s, 23 s to the first step; tiny 3.4 steps/s")
        print("ratio >= 1.00x: as fast or faster (tf1 rows: than the reference; torch rows: "
              "than tf1's rows of this run, '-' without them)")
        # Wall-clock figures: on a busy machine they say more about the load than the code.
        print("load average now: %.1f (%d cores); the reference figures are from an idle "
              "machine (load about 1)" % (os.getloadavg()[0], os.cpu_count() or 1))
        # The distributed path's overhead: the tiny run again on 2 CPU replicas
        # (tf1: MirroredStrategy; torch: 2 processes under torchrun), the same global batch
        # of 16 split 8 + 8.
        tiny = dict(runs[1][1], num_cpu_replicas=2, num_train_steps=args.steps_replicas)
        batch = tiny["train_batch_size"]
        for backend in backends:
            _, sps, steps = timed_run(data_dir, backend + "-tiny-2cpu", tiny, backend=backend)
            one = measured[backend, "tiny"]["steps_per_s"]
            print("%s: 2 CPU replicas vs 1 on the same global batch (tiny, %d): %.1f vs %.1f "
                  "examples/s = %.2fx (%d steps; both replicas share this machine's cores)"
                  % (backend, batch, sps * batch, one * batch, sps / one, steps))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
