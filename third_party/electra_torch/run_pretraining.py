"""Pretrains ELECTRA in PyTorch: the TF1 trainer's command line, step and checkpoints.

    python -m electra_torch.run_pretraining --data-dir DIR --model-name NAME --hparams H
    (from third_party/, or with third_party on PYTHONPATH)

Reads DIR/pretrain_tfrecords/pretrain_data.tfrecord* and DIR/vocab.txt, writes checkpoints
(model.ckpt-N, the `checkpoint` file) and TensorBoard events to DIR/models/NAME, as
third_party/electra/run_pretraining.py does, so that either trainer continues the other's
model directory. num_gpus > 1 (or num_cpu_replicas > 1) starts that many processes with
torchrun (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT from the environment for several
hosts); train_batch_size stays the global batch.

The first line says where it computes; REQUIRE_GPU=1 makes "no GPU" an error. Ctrl-C stops
it with one line saying from which checkpoint the same command resumes (status 130).
"""
import argparse
import errno
import glob
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from typing import List, Optional

import electra_torch  # noqa: F401  (puts third_party/electra on sys.path)
import configure_pretraining
import tokenization

PROG = "run_pretraining.py"
SUMMARY_EVERY = 100
LOG_EVERY_SECS = 60.0
# Hparams of the TF1 trainer that name TF machinery; here they are refused, saying what to use.
TF_ONLY = {
    "use_tpu": "TPUs are the TF1 trainer's (BACKEND=tf1)",
    "use_amp": "mixed precision is the precision hparam here: \"precision\": \"fp16\" or \"bf16\"",
    "use_xla": "the PyTorch trainer compiles with torch.compile on a GPU; drop use_xla",
    "electric_objective": "ELECTRIC is not supported; set it to false (ELECTRA objective)",
    "two_tower_generator": "two_tower_generator (ELECTRIC only) is not supported; set it to false",
    "debug": "debug mode (which wipes the model dir) is the TF1 trainer's; use a small "
             "model_size and num_train_steps instead",
}


class UserError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def log(*parts) -> None:
    print(*parts, flush=True)


def secs_to_str(secs: float) -> str:
    """1:02:03, with leading zero hours and minutes dropped (12:34, 5), as the reference prints."""
    secs = int(round(secs))
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return "%d:%02d:%02d" % (hours, minutes, seconds)
    if minutes:
        return "%d:%02d" % (minutes, seconds)
    return "%d" % seconds


# ---- configuration and inputs -----------------------------------------------------------

def load_config(data_dir: str, model_name: str, hparams_arg: str):
    try:
        hparams = configure_pretraining.load_hparams(hparams_arg)
        config = configure_pretraining.PretrainingConfig(model_name, data_dir, **hparams)
    except configure_pretraining.HparamError as e:
        raise UserError(str(e))
    for key, why in TF_ONLY.items():
        if getattr(config, key):
            raise UserError("hparam %s = true: %s" % (key, why))
    return config


def check_vocab(config):
    """The vocab file agrees with vocab_size and has the special tokens; returns their ids."""
    if not os.path.isfile(config.vocab_file):
        raise UserError("vocab file %s not found; put the WordPiece vocab used to build the "
                        "TFRecords there" % config.vocab_file)
    tokens = tokenization.read_vocab_tokens(config.vocab_file)
    if len(tokens) != config.vocab_size:
        raise UserError("hparam vocab_size = %d but %s has %d lines; set \"vocab_size\": %d"
                        % (config.vocab_size, config.vocab_file, len(tokens), len(tokens)))
    vocab = {token: i for i, token in enumerate(tokens)}
    missing = [t for t in tokenization.SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise UserError("%s lacks the special token(s) %s" % (config.vocab_file, " ".join(missing)))
    from electra_torch.objective import SpecialIds
    return SpecialIds(cls=vocab["[CLS]"], sep=vocab["[SEP]"], mask=vocab["[MASK]"])


def input_files(config) -> List[str]:
    files = []
    for pattern in config.pretrain_tfrecords.split(","):
        files.extend(glob.glob(pattern))
    if not files:
        raise UserError("no file matches pretrain_tfrecords %s; build them with "
                        "build_pretraining_dataset.py --output-dir %s"
                        % (config.pretrain_tfrecords,
                           os.path.dirname(config.pretrain_tfrecords.split(",")[0])))
    return sorted(files)


def check_records(config, files: List[str]) -> None:
    """The first example found must have max_seq_length tokens (shards may be empty)."""
    import tfrecord_io
    for path in files:
        try:
            found = tfrecord_io.read_examples(path, ("input_ids",))["input_ids"]
        except ValueError as e:
            raise UserError(str(e))
        if len(found):
            if found.shape[1] != config.max_seq_length:
                raise UserError(
                    "%s holds examples of %d tokens but max_seq_length = %d; rebuild the "
                    "TFRecords with --max-seq-length %d or set \"max_seq_length\": %d"
                    % (path, found.shape[1], config.max_seq_length, config.max_seq_length,
                       found.shape[1]))
            return
    raise UserError("the %d file(s) matching %s hold no examples"
                    % (len(files), config.pretrain_tfrecords))


# ---- devices and processes --------------------------------------------------------------

def no_gpu_cause(torch) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES=%r hides every GPU" % visible
    if torch.version.cuda is None:
        return ("this PyTorch is a CPU build (torch %s); install the CUDA build of the same "
                "version for a GPU" % torch.__version__)
    if not os.path.exists("/proc/driver/nvidia/version"):
        return ("no NVIDIA driver (/proc/driver/nvidia/version does not exist; a container "
                "needs docker run --gpus)")
    return "the NVIDIA driver could not start CUDA (torch.cuda.is_available() is false)"


def processes_wanted(config, cuda: bool) -> int:
    if cuda:
        return config.num_gpus
    return config.num_cpu_replicas or 1


def report_devices(config, torch, precision: str) -> bool:
    """One line saying where this run computes; returns whether it is on GPUs."""
    what = "training" if config.do_train else "evaluating"
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if config.num_gpus > count:
            raise UserError("num_gpus = %d but this host has %d GPU(s); set NUM_GPUS=%d or fewer"
                            % (config.num_gpus, count, count))
        names = []
        for i in range(config.num_gpus):
            p = torch.cuda.get_device_properties(i)
            names.append("%s (compute capability %d.%d)" % (p.name, p.major, p.minor))
        distinct = sorted(set(names))
        text = ", ".join(distinct) if len(distinct) > 1 else distinct[0]
        log("Devices: %d GPU%s: %s, precision %s" % (config.num_gpus,
                                                    "s" if config.num_gpus > 1 else "",
                                                    text, precision))
        return True
    if os.environ.get("REQUIRE_GPU", "").strip() not in ("", "0"):
        raise UserError("REQUIRE_GPU=%s but no GPU visible: %s; fix that, or unset REQUIRE_GPU "
                        "to train on the CPU" % (os.environ["REQUIRE_GPU"], no_gpu_cause(torch)))
    log("no GPU visible: %s on the CPU: %s" % (what, no_gpu_cause(torch)))
    return False


def check_batch_split(config, world: int) -> None:
    if config.train_batch_size % world:
        raise UserError("train_batch_size %d (the global batch) does not split evenly over %d "
                        "processes; make it a multiple of %d" % (config.train_batch_size, world,
                                                                 world))


def check_precision(precision: str, cuda: bool, torch) -> None:
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise UserError("precision bf16 needs an Ampere or later GPU; use \"precision\": \"fp16\" "
                        "(Volta, Turing) or \"fp32\"")


def host_setting(name: str, default: str) -> str:
    """NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT; Make exports an unset one as empty."""
    return os.environ.get(name) or default


def launch_processes(count: int, argv: List[str]) -> int:
    """Runs this same command in `count` processes per host under torchrun; returns its status.

    torchrun's own rendezvous joins the hosts (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT);
    a process that dies makes torchrun stop the others, and this says so in one line.
    """
    nnodes = host_setting("NNODES", "1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=%d" % count,
               "--nnodes=%s" % nnodes]
    if nnodes == "1" and not host_setting("MASTER_ADDR", ""):
        command.append("--standalone")
    else:
        command += ["--node-rank=%s" % host_setting("NODE_RANK", "0"),
                    "--master-addr=%s" % host_setting("MASTER_ADDR", "127.0.0.1"),
                    "--master-port=%s" % host_setting("MASTER_PORT", "29500")]
    command += ["-m", "electra_torch.run_pretraining"] + argv
    env = dict(os.environ, ELECTRA_TORCH_LAUNCHED="1", OMP_NUM_THREADS=os.environ.get(
        "OMP_NUM_THREADS", "1"), LOGLEVEL=os.environ.get("LOGLEVEL", "ERROR"))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(os.path.abspath(electra_torch.__file__))),
                    os.environ.get("PYTHONPATH")) if p)
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    failed_rank = None
    try:
        for line in child.stderr:
            # Our processes' lines pass; torchrun's error report (a Python traceback of the
            # agent's) is boiled down to the rank that failed.
            if not _torchrun_noise(line):
                sys.stderr.write(line)
            found = re.search(r"rank\s*:\s*(\d+)", line)
            if found and failed_rank is None:
                failed_rank = found.group(1)
        status = child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        child.wait()
        raise
    if status != 0 and failed_rank is not None:
        sys.stderr.write("%s: error: process %s of %d stopped (exit status %d); the others were "
                         "stopped with it; run the same command again to resume from the latest "
                         "checkpoint\n" % (PROG, failed_rank, count, status))
    return status


def _torchrun_noise(line: str) -> bool:
    return bool(re.match(r"\s*(\[|W\d{4}|E\d{4}|I\d{4}|\*+|Root Cause|Failures|  |=+|"
                         r"torch\.distributed|Traceback|File |raise |[A-Za-z_.]*Error:|"
                         r"warnings\.warn|Setting OMP_NUM_THREADS|error_file|traceback|"
                         r"time\s*:|host\s*:|rank\s*:|exitcode|<N/A>|local_rank|"
                         r"-+$|\S+ FAILED)", line))


# ---- the run ------------------------------------------------------------------------------

class Run:
    """What main() needs to say where a stopped run stands."""

    def __init__(self, config):
        self.config = config
        self.step: Optional[int] = None
        self.checkpoint_bytes = 0


def where_it_stopped(run: Run) -> str:
    from electra_torch import checkpoint
    config = run.config
    text = ("at step %d of %d" % (run.step, config.num_train_steps) if run.step
            else "before the first training step")
    latest = checkpoint.latest(config.model_dir)
    if latest:
        return ("%s; the latest checkpoint is %s (step %d): run the same command again (make "
                "pretrain) to resume from it" % (text, latest, checkpoint.step_of(latest)))
    return "%s; no checkpoint yet: the next run starts from step 0" % text


def train(config, run: Run, torch) -> None:
    from electra_torch import checkpoint, data, step as step_module
    from electra_torch.events import EventWriter
    from electra_torch.model import Electra
    special = check_vocab(config)
    files = input_files(config)
    check_records(config, files)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    check_batch_split(config, world)
    if world > 1:
        import torch.distributed as dist
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    precision = config.precision
    step_module.set_matmul_precision(precision)
    seed = config.seed if config.seed is not None else step_module.default_seed()
    if world > 1:   # one seed for all processes: the same initial weights and draws
        seed_tensor = torch.tensor([seed], dtype=torch.long, device=device)
        torch.distributed.broadcast(seed_tensor, 0)
        seed = int(seed_tensor.item())
    torch.manual_seed(seed)
    model = Electra(config).to(device)
    graphs = cuda and os.environ.get("ELECTRA_TORCH_GRAPHS", "1") != "0"
    trainer = step_module.TrainStep(model, config, special, step_module.Device(device, rank, world),
                                    seed, precision, use_graphs=graphs, use_compile=graphs)
    shapes = {n: list(p.shape) for n, p in zip(trainer.names, trainer.state.params)}
    run.checkpoint_bytes = 12 * sum(p.numel() for p in trainer.state.params)
    chief = rank == 0
    os.makedirs(config.model_dir, exist_ok=True)
    latest = checkpoint.latest(config.model_dir)
    start = 0
    if latest is not None:
        problem = checkpoint.mismatch(latest, trainer.names, shapes)
        if problem:
            raise UserError("model dir %s holds a checkpoint of another model: %s; use another "
                            "--model-name or matching hparams" % (config.model_dir, problem))
        start = checkpoint.restore(latest, trainer.names, trainer.state)
        if start >= config.num_train_steps:
            log("%s is at step %d >= num_train_steps %d: nothing to train"
                % (latest, start, config.num_train_steps))
            return
        log("Resuming from %s (step %d)" % (latest, start))
    trainer.step.fill_(start)
    log("Config:")
    for key, value in config.to_dict().items():
        log("  %s: %s" % (key, value))
    if world > 1:
        log("Processes: %d (%s), %d examples each per step"
            % (world, "NCCL" if cuda else "gloo", config.train_batch_size // world))
    log("Running training")
    if chief and latest is None:
        checkpoint.save(config.model_dir, trainer.names, trainer.state, 0,
                        config.keep_checkpoint_max)
    writer = EventWriter(config.model_dir) if chief else None
    reader = data.Reader(files, config.max_seq_length, config.train_batch_size,
                         seed + start, rank, world, pin=cuda)
    rows = reader.rows(device)
    began = time.time()
    last_line = began
    done = start
    steps_run = 0
    saved = start
    try:
        while done < config.num_train_steps:
            batch = reader.next()
            out = trainer(batch["features"], batch["global_mask"], rows)
            steps_run += 1
            done = start + steps_run   # fp16 skips are counted by the device's step
            run.step = done
            now = time.time()
            summary_due = chief and (steps_run == 1 or done % SUMMARY_EVERY == 0
                                     or done >= config.num_train_steps)
            log_due = (steps_run == 1 or done % config.iterations_per_loop == 0
                       or done >= config.num_train_steps or now - last_line >= LOG_EVERY_SECS)
            save_due = chief and (done % config.save_checkpoints_steps == 0
                                  or done >= config.num_train_steps)
            if log_due or summary_due or save_due:
                device_step = int(trainer.step.item())   # the one host sync, when logging
                values = {k: float(v) for k, v in out.items()}
                elapsed = time.time() - began
                sps = steps_run / elapsed if elapsed > 0 else 0.0
                if log_due:
                    last_line = now
                    msg = "%d/%d = %.1f%%" % (done, config.num_train_steps,
                                              100.0 * done / config.num_train_steps)
                    if sps > 0:
                        msg += ", SPS: %.1f, ELAP: %s, ETA: %s" % (
                            sps, secs_to_str(elapsed),
                            secs_to_str((config.num_train_steps - done) / sps))
                    msg += " - loss: %.4f" % values["total_loss"]
                    log(msg)
                if writer is not None and summary_due:
                    if steps_run == 1:
                        writer.session_start(done)
                    scalars = {k: v for k, v in values.items() if k != "global_norm"}
                    if sps > 0:
                        scalars["global_step/sec"] = sps
                    writer.scalars(done, scalars)
                    writer.flush()
                if device_step != done:
                    # Mixed-precision steps skipped for non-finite gradients do not count.
                    start -= done - device_step
                    done = device_step
            if save_due and done > saved:
                checkpoint.save(config.model_dir, trainer.names, trainer.state, done,
                                config.keep_checkpoint_max)
                saved = done
    finally:
        if writer is not None:
            writer.flush()


def evaluate(config, torch) -> None:
    """num_eval_steps batches of eval_batch_size through the latest checkpoint, no dropout;
    the metrics printed one per line and written to results/unsup_results.{txt,pkl}."""
    from electra_torch import checkpoint, data, evaluation, optimizer, step as step_module
    from electra_torch.model import Electra, tf_variables
    special = check_vocab(config)
    files = input_files(config)
    check_records(config, files)
    latest = checkpoint.latest(config.model_dir)
    if latest is None:
        raise UserError("no checkpoint in %s to evaluate; train first (do_train true)"
                        % config.model_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    step_module.set_matmul_precision("fp32")
    model = Electra(config).to(device)
    variables = tf_variables(model)
    names = list(variables)
    state = optimizer.new_adam_state(list(variables.values()), names)
    shapes = {n: list(p.shape) for n, p in zip(names, state.params)}
    problem = checkpoint.mismatch(latest, names, shapes, with_slots=False)
    if problem:
        raise UserError("model dir %s holds a checkpoint of another model: %s; use another "
                        "--model-name or matching hparams" % (config.model_dir, problem))
    step = checkpoint.restore(latest, names, state, with_slots=False)
    seed = config.seed if config.seed is not None else step_module.default_seed()
    log("Running evaluation of %s (step %d): %d batches of %d"
        % (latest, step, config.num_eval_steps, config.eval_batch_size))
    reader = data.Reader(files, config.max_seq_length, config.eval_batch_size, seed)
    results = evaluation.evaluate(model, config, special, reader, reader.rows(device), device,
                                  seed, step)
    for key in sorted(results):
        log("  %s = %s" % (key, results[key]))
    write_results(config, results)


def write_results(config, results) -> None:
    """results/unsup_results.txt and .pkl, each written whole or not at all."""
    results_dir = os.path.dirname(config.results_txt)
    os.makedirs(results_dir, exist_ok=True)
    text = "".join("%s = %s\n" % (k, results[k]) for k in sorted(results))
    for path, payload, mode in ((config.results_txt, text, "w"),
                                (config.results_pkl, pickle.dumps(results), "wb")):
        partial = path + ".partial"
        with open(partial, mode) as f:
            f.write(payload)
        os.replace(partial, path)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True,
                        help="location of the pretraining data and model checkpoints")
    parser.add_argument("--model-name", required=True, help="name of the model being trained")
    parser.add_argument("--hparams", default="{}",
                        help="JSON dict of model hyperparameters, or a path to a .json file")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    run = None
    try:
        config = load_config(args.data_dir, args.model_name, args.hparams)
        run = Run(config)
        import torch
        torch.set_num_threads(max(1, torch.get_num_threads()))
        launched = os.environ.get("ELECTRA_TORCH_LAUNCHED") == "1"
        cuda = torch.cuda.is_available()
        if not launched:
            check_precision(config.precision, report_devices(config, torch, config.precision),
                            torch)
            count = processes_wanted(config, cuda)
            nodes = host_setting("NNODES", "1")
            # Before starting them: each process would refuse it, one line each.
            check_batch_split(config, count * (int(nodes) if nodes.isdigit() else 1))
            if count > 1 or nodes != "1":
                return launch_processes(count, argv)
        if config.do_eval:
            evaluate(config, torch)
        else:
            train(config, run, torch)
    except UserError as e:
        sys.stderr.write("%s: error: %s\n" % (PROG, e))
        return 2
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        where = where_it_stopped(run) if run is not None else ""
        sys.stderr.write("%s: interrupted (Ctrl-C)%s\n" % (PROG, " " + where if where else ""))
        return 130
    except OSError as e:
        if run is None:
            raise
        if is_disk_full(e):
            sys.stderr.write("%s: error: no space left on the device in %s; free some space "
                             "there; training stopped %s\n"
                             % (PROG, os.path.dirname(e.filename or run.config.model_dir),
                                where_it_stopped(run)))
            return 1
        sys.stderr.write("%s: error: %s%s; training stopped %s\n" % (
            PROG, e.filename + ": " if e.filename else "", e.strerror or e, where_it_stopped(run)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
