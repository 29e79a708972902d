"""GPU speed of the PyTorch trainer at the published shape, and whether bf16 changes the curve.

    python scripts/bench_gpu.py [--data-dir DIR] [--smoke]    (scripts/bench_gpu.sh runs it)

1. Steps/s of the whole ELECTRA step (generator on the masked positions, sampling,
   discriminator, loss, backward, clip, Adam) at ELECTRA-small's published shape (vocab 50265,
   embedding 128, hidden 256, 12 layers, generator 1/4 wide), batch 128, seq 128, for fp32,
   tf32 and bf16, each eager and compiled into one CUDA graph per step; then the batch-1024
   ceiling. Each row: steps/s, sequences/s, hours for 1M steps at batch 128.
2. With --data-dir (a data directory with pretrain_tfrecords/ and vocab.txt): the losses of
   --curve-steps steps in bf16 beside two fp32 runs of different seeds from the same start,
   so that bf16's distance from fp32 can be read against fp32's own run-to-run spread.

--smoke: a tiny model for a few steps, on the CPU if there is no GPU (the tests run it).
Timed with CUDA synchronization around the timed steps only; compile and capture are
reported apart ("first step s").
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "third_party"))

import electra_torch  # noqa: E402,F401
import configure_pretraining  # noqa: E402
import torch  # noqa: E402

from electra_torch import data, objective, step as step_module  # noqa: E402
from electra_torch.model import Electra  # noqa: E402
from electra_torch.run_pretraining import check_vocab  # noqa: E402

PUBLISHED = {"model_size": "small", "vocab_size": 50265, "max_seq_length": 128,
             "train_batch_size": 128, "num_train_steps": 1000000, "num_warmup_steps": 10000,
             "learning_rate": 5e-4}
SMOKE = {"model_size": "small", "vocab_size": 1000, "max_seq_length": 32, "train_batch_size": 8,
         "num_train_steps": 1000, "num_warmup_steps": 10,
         "model_hparam_overrides": {"hidden_size": 32, "num_hidden_layers": 2}}
SPECIAL = objective.SpecialIds(cls=2, sep=3, mask=4)   # ids of a BERT vocab's first lines


def config_of(hparams: dict, **more):
    return configure_pretraining.PretrainingConfig("bench", "unused", **dict(hparams, **more))


def random_batches(config, device, count: int = 8):
    """Batches of random real tokens: speed does not depend on which tokens."""
    g = torch.Generator().manual_seed(0)
    B, T = config.train_batch_size, config.max_seq_length
    out = []
    for _ in range(count):
        ids = torch.randint(5, config.vocab_size, (B, T), generator=g)
        ids[:, 0], ids[:, -1] = SPECIAL.cls, SPECIAL.sep
        feats = torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], 1)
        out.append(feats.to(device))
    return out


def new_step(config, device, precision: str, graphs: bool, seed: int = 0):
    step_module.set_matmul_precision(precision)
    torch.manual_seed(seed)
    model = Electra(config).to(device)
    return step_module.TrainStep(model, config, SPECIAL, step_module.Device(device), seed,
                                 precision, use_graphs=graphs, use_compile=graphs)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_variant(config, device, precision: str, graphs: bool, seconds: float) -> dict:
    trainer = new_step(config, device, precision, graphs)
    batches = random_batches(config, device)
    rows = torch.arange(config.train_batch_size, device=device)
    started = time.time()
    for i in range(step_module.WARMUP_STEPS_BEFORE_GRAPH + 2):   # compile, capture, replay
        out = trainer(batches[i % len(batches)], batches[i % len(batches)][:, 1], rows)
    float(out["total_loss"])
    first = time.time() - started
    n, began = 0, time.time()
    while time.time() - began < seconds or n < 5:
        b = batches[n % len(batches)]
        out = trainer(b, b[:, 1], rows)
        n += 1
    loss = float(out["total_loss"])
    elapsed = time.time() - began
    sps = n / elapsed
    return {"precision": precision, "graphs": graphs, "batch": config.train_batch_size,
            "steps_per_s": sps, "seq_per_s": sps * config.train_batch_size,
            "hours_1m_at_128": 1e6 * 128 / (sps * config.train_batch_size) / 3600,
            "first_steps_s": first, "loss": loss}


def curve(config, device, precision: str, seed: int, files, steps: int) -> list:
    """Mean loss of every 100 steps from the same initial weights (seed 0), draws of `seed`."""
    trainer = new_step(config, device, precision, device.type == "cuda", seed=0)
    trainer.seed = seed
    trainer.special = check_vocab(config)
    reader = data.Reader(files, config.max_seq_length, config.train_batch_size, seed,
                         pin=device.type == "cuda")
    rows = reader.rows(device)
    losses, window = [], []
    for _ in range(steps):
        batch = reader.next()
        out = trainer(batch["features"], batch["global_mask"], rows)
        window.append(out["total_loss"])
        if len(window) == 100:
            losses.append(float(torch.stack(window).mean()))
            window = []
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="data directory for the bf16-vs-fp32 curves")
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per row")
    parser.add_argument("--curve-steps", type=int, default=2000)
    parser.add_argument("--variants", default="fp32,tf32,bf16",
                        help="precisions to time, each eager and with graphs (comma-separated)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hparams = SMOKE if args.smoke else PUBLISHED
    seconds = 1.0 if args.smoke else args.seconds
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    print("bench_gpu: %s, torch %s, %s" % (gpu, torch.__version__, time.strftime("%Y-%m-%d")),
          flush=True)
    print("%-9s %-7s %6s %9s %9s %10s %8s %8s" % ("precision", "graphs", "batch", "steps/s",
                                                 "seq/s", "h/1M@128", "first s", "loss"))
    rows = []
    variants = [(p, g) for p in args.variants.split(",") for g in (False, True)]
    if device.type != "cuda":
        variants = [("fp32", False), ("bf16", False)]
    for precision, graphs in variants:
        rows.append(time_variant(config_of(hparams), device, precision, graphs, seconds))
        r = rows[-1]
        print("%-9s %-7s %6d %9.1f %9.0f %10.2f %8.1f %8.3f" % (
            r["precision"], "yes" if r["graphs"] else "no", r["batch"], r["steps_per_s"],
            r["seq_per_s"], r["hours_1m_at_128"], r["first_steps_s"], r["loss"]), flush=True)
    ceiling = dict(hparams, train_batch_size=hparams["train_batch_size"] * 8)
    r = time_variant(config_of(ceiling), device, "bf16" if device.type == "cuda" else "fp32",
                     device.type == "cuda", seconds)
    rows.append(r)
    print("ceiling: batch %d, %s: %.0f seq/s (%.2f h for 1M steps of 128)" % (
        r["batch"], r["precision"], r["seq_per_s"], r["hours_1m_at_128"]), flush=True)
    curves = {}
    if args.data_dir:
        files = sorted(data_files(args.data_dir))
        steps = 200 if args.smoke else args.curve_steps
        import tfrecord_io
        length = tfrecord_io.read_examples(files[0], ("input_ids",))["input_ids"].shape[1]
        config = config_of(dict(hparams, vocab_size=vocab_size(args.data_dir),
                                max_seq_length=length))
        config.vocab_file = os.path.join(args.data_dir, "vocab.txt")
        for name, precision, seed in (("fp32 seed 1", "fp32", 1), ("fp32 seed 2", "fp32", 2),
                                      ("bf16 seed 1", "bf16", 1)):
            curves[name] = curve(config, device, precision, seed, files, steps)
            print("curve %-12s %s" % (name, " ".join("%.3f" % x for x in curves[name])),
                  flush=True)
        fp32_gap = max(abs(a - b) for a, b in zip(curves["fp32 seed 1"], curves["fp32 seed 2"]))
        bf16_gap = max(abs(a - b) for a, b in zip(curves["fp32 seed 1"], curves["bf16 seed 1"]))
        print("bf16 vs fp32 (same seed): largest gap of a 100-step mean %.4f; fp32 seed 1 vs "
              "seed 2: %.4f" % (bf16_gap, fp32_gap), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": gpu, "torch": torch.__version__, "rows": rows,
                       "curves": curves}, f, indent=1)
    return 0


def data_files(data_dir: str):
    import glob
    return glob.glob(os.path.join(data_dir, "pretrain_tfrecords", "pretrain_data.tfrecord*"))


def vocab_size(data_dir: str) -> int:
    with open(os.path.join(data_dir, "vocab.txt"), "rb") as f:
        return f.read().count(b"\n")


if __name__ == "__main__":
    sys.exit(main())
