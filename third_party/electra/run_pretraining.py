"""Pretrains ELECTRA (generator + discriminator) on the builder's TFRecords.

Drop-in replacement for google-research/electra's run_pretraining.py: same command line,
hparams, objective and checkpoint variables. Run from this folder:

  python run_pretraining.py --data-dir DIR --model-name NAME --hparams '{"...": ...}'

DIR/pretrain_tfrecords/pretrain_data.tfrecord* are read, DIR/vocab.txt gives the special
token ids, checkpoints and TensorBoard events go to DIR/models/NAME, evaluation results
to DIR/models/NAME/results/unsup_results.{txt,pkl}.
"""
import argparse
import datetime
import logging
import os
import pickle
import re
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
  sys.path.insert(0, _HERE)

import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.python.framework import meta_graph  # noqa: E402
from tensorflow.python.util import deprecation  # noqa: E402

import configure_pretraining  # noqa: E402
import optimization  # noqa: E402
import pretraining_model  # noqa: E402

PROG = "run_pretraining.py"


class UserError(Exception):
  """Bad input: reported as one line on stderr, exit status 2."""


class _DropReportedErrors(logging.Filter):
  """TPUEstimator logs an exception from model_fn before re-raising it; ours are
  reported by main() in one line, so TF's copy of them is dropped."""

  def __init__(self):
    super(_DropReportedErrors, self).__init__()
    self.messages = []

  def filter(self, record):
    text = record.getMessage()
    return not any(message in text for message in self.messages)


_REPORTED = _DropReportedErrors()


def user_error(message):
  _REPORTED.messages.append(message)
  return UserError(message)


def log(*parts):
  print(*parts)
  sys.stdout.flush()


def secs_to_str(secs):
  """1:02:03 style, leading zero hours/minutes dropped (12:34, 5)."""
  text = str(datetime.timedelta(seconds=int(round(secs))))
  text = re.sub("^0:", "", text)
  text = re.sub("^0", "", text)
  text = re.sub("^0:", "", text)
  return re.sub("^0", "", text)


# ---- configuration and input checks ------------------------------------------------------

def load_config(data_dir, model_name, hparams_arg):
  try:
    hparams = configure_pretraining.load_hparams(hparams_arg)
    config = configure_pretraining.PretrainingConfig(model_name, data_dir, **hparams)
  except configure_pretraining.HparamError as e:
    raise UserError(str(e))
  if config.do_train == config.do_eval:
    raise UserError("exactly one of do_train and do_eval must be true (got do_train=%s, "
                    "do_eval=%s)" % (str(config.do_train).lower(), str(config.do_eval).lower()))
  try:
    pretraining_model.check_supported(config)
  except ValueError as e:
    raise UserError(str(e))
  return config


def check_vocab(config):
  if not tf.io.gfile.exists(config.vocab_file):
    raise UserError("vocab file %s not found; put the WordPiece vocab used to build the "
                    "TFRecords there" % config.vocab_file)
  lines = pretraining_model.count_vocab_lines(config.vocab_file)
  if lines != config.vocab_size:
    raise UserError("hparam vocab_size = %d but %s has %d lines; set \"vocab_size\": %d"
                    % (config.vocab_size, config.vocab_file, lines, lines))
  vocab = pretraining_model.load_vocab(config.vocab_file)
  missing = [t for t in ("[CLS]", "[SEP]", "[MASK]") if t not in vocab]
  if missing:
    raise UserError("%s lacks the special token(s) %s" % (config.vocab_file, " ".join(missing)))


def input_files(config):
  files = []
  for pattern in config.pretrain_tfrecords.split(","):
    try:
      files.extend(tf.io.gfile.glob(pattern))
    except tf.errors.NotFoundError:
      pass  # the folder itself is missing: no match
  if not files:
    raise UserError("no file matches pretrain_tfrecords %s; build them with "
                    "build_pretraining_dataset.py --output-dir %s"
                    % (config.pretrain_tfrecords,
                       os.path.dirname(config.pretrain_tfrecords.split(",")[0])))
  return sorted(files)


def check_records(config, files):
  """The first example found must have max_seq_length tokens (shards may be empty)."""
  for path in files:
    for record in tf.io.tf_record_iterator(path):
      example = tf.train.Example.FromString(record)
      feature = example.features.feature
      if "input_ids" not in feature:
        raise UserError("%s holds examples without input_ids; not pretraining data" % path)
      length = len(feature["input_ids"].int64_list.value)
      if length != config.max_seq_length:
        raise UserError("%s holds examples of %d tokens but max_seq_length = %d; rebuild "
                        "the TFRecords with --max-seq-length %d or set \"max_seq_length\": %d"
                        % (path, length, config.max_seq_length, config.max_seq_length, length))
      return
  raise UserError("the %d file(s) matching %s hold no examples"
                  % (len(files), config.pretrain_tfrecords))


def checkpoint_mismatch(checkpoint, variables):
  """A line naming the first graph variable the checkpoint lacks or shapes differently."""
  reader = tf.train.NewCheckpointReader(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  for var in variables:
    name = optimization.variable_name(var)
    want = var.shape.as_list()
    if name not in shapes:
      return "variable %s %s is not in checkpoint %s" % (name, want, checkpoint)
    if list(shapes[name]) != want:
      return ("variable %s has shape %s in checkpoint %s but %s in this model"
              % (name, list(shapes[name]), checkpoint, want))
  return None


# ---- input -------------------------------------------------------------------------------

def input_fn_builder(config, files, is_training, num_cpu_threads=4):
  def input_fn(params):
    batch_size = params["batch_size"]
    features = {name: tf.io.FixedLenFeature([config.max_seq_length], tf.int64)
                for name in ("input_ids", "input_mask", "segment_ids")}
    d = tf.data.Dataset.from_tensor_slices(tf.constant(files))
    d = d.repeat()
    d = d.shuffle(buffer_size=len(files))
    d = d.apply(tf.data.experimental.parallel_interleave(
        tf.data.TFRecordDataset, sloppy=is_training,
        cycle_length=min(num_cpu_threads, len(files))))
    d = d.shuffle(buffer_size=100)
    d = d.batch(batch_size, drop_remainder=True)

    # Parsing whole batches at once is cheaper than example by example.
    def decode(records):
      parsed = tf.io.parse_example(records, features)
      return {k: tf.cast(v, tf.int32) for k, v in parsed.items()}

    d = d.map(decode, num_parallel_calls=2)
    return d.prefetch(2)
  return input_fn


# ---- progress ----------------------------------------------------------------------------

class ETAHook(tf.estimator.SessionRunHook):
  """Prints `STEP/TOTAL = P%, SPS: x, ELAP: t, ETA: t - loss: x` after every step.

  In training it also writes the TensorBoard scalars (the `scalars` it fetches) at the
  first step, every `summary_every` steps and at the last step. Fetching the same
  tensors at every step matters for speed: each new set of fetches makes TF build
  (and optimize) another executor for the whole graph, which the estimator's own
  summary and logging hooks would cause at their first and second steps.
  """

  def __init__(self, n_steps, loss=None, scalars=None, model_dir=None, summary_every=100,
               is_training=True):
    self._n_steps = n_steps
    self._fetches = dict(scalars or {})
    if loss is not None:
      self._fetches["loss"] = loss
    self._model_dir = model_dir
    self._summary_every = summary_every
    self._is_training = is_training
    self._writer = None
    self._start_time = None
    self._start_step = 0
    self._steps_run = 0

  def begin(self):
    if self._is_training and self._model_dir and self._fetches:
      self._writer = tf.summary.FileWriterCache.get(self._model_dir)

  def after_create_session(self, session, coord):
    if self._is_training:
      self._start_step = int(session.run(tf.train.get_global_step()))

  def before_run(self, run_context):
    if self._start_time is None:
      self._start_time = time.time()
    return tf.estimator.SessionRunArgs(self._fetches)

  def after_run(self, run_context, run_values):
    self._steps_run += 1
    step = self._start_step + self._steps_run if self._is_training else self._steps_run
    elapsed = time.time() - self._start_time
    msg = "%d/%d = %.1f%%" % (step, self._n_steps, 100.0 * step / max(1, self._n_steps))
    steps_per_second = self._steps_run / elapsed if elapsed > 0 else 0.0
    if steps_per_second > 0:
      msg += ", SPS: %.1f, ELAP: %s, ETA: %s" % (
          steps_per_second, secs_to_str(elapsed),
          secs_to_str((self._n_steps - step) / steps_per_second))
    if "loss" in run_values.results:
      msg += " - loss: %.4f" % run_values.results["loss"]
    log(msg)
    if self._writer is not None and (self._steps_run == 1 or step % self._summary_every == 0
                                     or step >= self._n_steps):
      values = [tf.Summary.Value(tag=tag, simple_value=float(value))
                for tag, value in sorted(run_values.results.items())]
      if steps_per_second > 0:
        values.append(tf.Summary.Value(tag="global_step/sec", simple_value=steps_per_second))
      self._writer.add_summary(tf.Summary(value=values), step)

  def end(self, session):
    if self._writer is not None:
      self._writer.flush()


class CheckpointSaverHook(tf.train.CheckpointSaverHook):
  """The estimator's checkpoint hook (same files), with the graph serialized only once.

  The stock hook serializes the whole graph (seconds of pure Python for ELECTRA-small)
  for graph.pbtxt, again for the events file and again for every checkpoint's .meta
  file, the first time before step 1 can run. The graph is finalized when the session
  starts, so one serialization serves them all; graph.pbtxt is written by a thread
  while the first step runs. The files are those of the stock hook (TF 1.15).
  """

  _writer_thread = None
  _graph_def = None

  def after_create_session(self, session, coord):
    global_step = session.run(self._global_step_tensor)
    self._graph_def = tf.get_default_graph().as_graph_def(add_shapes=True)
    self._writer_thread = threading.Thread(
        target=tf.io.write_graph, args=(self._graph_def, self._checkpoint_dir, "graph.pbtxt"))
    self._writer_thread.start()
    saver = self._get_saver()
    meta_graph_def = meta_graph.create_meta_graph_def(
        graph_def=self._graph_def, saver_def=saver.saver_def if saver else None)
    # add_graph(graph) would serialize the graph again; this is the event it writes.
    self._summary_writer.add_event(tf.Event(graph_def=self._graph_def.SerializeToString()))
    self._summary_writer.add_meta_graph(meta_graph_def)
    self._save(session, global_step)  # the checkpoint of the starting step, as the stock hook
    self._timer.update_last_triggered_step(global_step)

  def _save(self, session, step):
    """The stock _save, writing the .meta file from the graph serialized at start."""
    for listener in self._listeners:
      listener.before_save(session, step)
    saver = self._get_saver()
    path = saver.save(session, self._save_path, global_step=step, write_meta_graph=False)
    with session.graph.as_default():
      tf.train.export_meta_graph(path + ".meta", graph_def=self._graph_def,
                                 saver_def=saver.saver_def)
    self._summary_writer.add_session_log(
        tf.SessionLog(status=tf.SessionLog.CHECKPOINT, checkpoint_path=self._save_path), step)
    should_stop = False
    for listener in self._listeners:
      if listener.after_save(session, step):
        should_stop = True
    return should_stop

  def end(self, session):
    super(CheckpointSaverHook, self).end(session)
    if self._writer_thread is not None:
      self._writer_thread.join()


# ---- model function ----------------------------------------------------------------------

def model_fn_builder(config):
  def model_fn(features, labels, mode, params):
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    model = pretraining_model.build_pretraining_model(config, features, is_training)
    if is_training:
      train_op, learning_rate = optimization.create_train_op(
          model.total_loss, config.learning_rate, config.num_train_steps,
          config.num_warmup_steps, weight_decay_rate=config.weight_decay_rate,
          lr_decay_power=config.lr_decay_power,
          num_tpu_shards=config.num_tpu_cores if config.use_tpu else 0)
    checkpoint = tf.train.latest_checkpoint(config.model_dir)
    if checkpoint is not None:
      variables = [v for v in tf.global_variables()
                   if is_training or not optimization.variable_name(v).endswith(
                       ("/adam_m", "/adam_v"))]
      problem = checkpoint_mismatch(checkpoint, variables)
      if problem:
        raise user_error("model dir %s holds a checkpoint of another model: %s; use another "
                        "--model-name or matching hparams" % (config.model_dir, problem))
    on_host = not config.use_tpu  # TPU tensors cannot be fetched by host hooks
    if is_training:
      scalars = {"total_loss": model.total_loss, "generator_loss": model.mlm_loss,
                 "learning_rate": learning_rate}
      if model.disc_loss is not None:
        scalars["discriminator_loss"] = model.disc_loss
      hooks = [ETAHook(config.num_train_steps, loss=model.total_loss if on_host else None,
                       scalars=scalars if on_host else None, model_dir=config.model_dir),
               CheckpointSaverHook(config.model_dir,
                                   save_steps=config.save_checkpoints_steps)]
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=model.total_loss, train_op=train_op, training_hooks=hooks)
    if mode == tf.estimator.ModeKeys.EVAL:
      hooks = [ETAHook(config.num_eval_steps, loss=model.total_loss if on_host else None,
                       is_training=False)]
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=model.total_loss,
          eval_metrics=(model.metric_fn, model.metric_tensors), evaluation_hooks=hooks)
    raise ValueError("only training and evaluation are supported")
  return model_fn


# ---- training / evaluation ---------------------------------------------------------------

def write_results(config, results):
  """results/unsup_results.txt and .pkl, each written whole or not at all."""
  results_dir = os.path.dirname(config.results_txt)
  tf.io.gfile.makedirs(results_dir)
  text = "".join("%s = %s\n" % (k, results[k]) for k in sorted(results))
  for path, data, mode in ((config.results_txt, text, "w"),
                           (config.results_pkl, pickle.dumps(results), "wb")):
    partial = path + ".partial"
    with open(partial, mode) as f:
      f.write(data)
    os.replace(partial, path)


def make_estimator(config):
  tpu_cluster_resolver = None
  if config.use_tpu and config.tpu_name:
    tpu_cluster_resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        config.tpu_name, zone=config.tpu_zone, project=config.gcp_project)
  tpu_config = tf.estimator.tpu.TPUConfig(
      iterations_per_loop=config.iterations_per_loop, num_shards=config.num_tpu_cores,
      tpu_job_name=config.tpu_job_name,
      per_host_input_for_training=tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2)
  run_config = tf.estimator.tpu.RunConfig(
      cluster=tpu_cluster_resolver, model_dir=config.model_dir,
      save_checkpoints_steps=config.save_checkpoints_steps,
      keep_checkpoint_max=config.keep_checkpoint_max, tpu_config=tpu_config,
      session_config=session_config(),
      # Off the TPU, ETAHook writes the scalars and logs every step itself (see there).
      save_summary_steps=100 if config.use_tpu else None,
      log_step_count_steps=100 if config.use_tpu else None)
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=config.use_tpu, model_fn=model_fn_builder(config), config=run_config,
      train_batch_size=config.train_batch_size, eval_batch_size=config.eval_batch_size)


def session_config():
  cores = os.cpu_count() or 1
  # Measured on 2 cores (tiny model): all cores inside an op and two ops at a time beat
  # TF's defaults (one pool thread per core for both) by about a quarter.
  config = tf.ConfigProto(intra_op_parallelism_threads=cores,
                          inter_op_parallelism_threads=min(2, cores),
                          allow_soft_placement=True)
  # (The NVIDIA driver's file tells whether a GPU can be there without initializing CUDA.)
  if not os.path.exists("/proc/driver/nvidia/version"):
    # On CPU, Grappler's rewrites did not make the (matmul-bound) steps faster in our
    # measurements, while optimizing the ~17k-op training graph delays the first step
    # by seconds. GPU runs keep the default rewrites.
    config.graph_options.rewrite_options.disable_meta_optimizer = True
  return config


# Files the trainer writes into the model dir (relative paths): what debug mode may remove.
OWN_FILE_RE = re.compile(r"^(checkpoint|graph\.pbtxt|model\.ckpt-\d+.*|events\.out\.tfevents\..*|"
                         r"eval[^/]*/events\.out\.tfevents\..*|results/unsup_results\.(txt|pkl).*)$")
# What TF's Saver leaves when killed mid-save: a sharded save's temporary directory, or a
# non-sharded save's temporary file. Never a complete checkpoint; nothing else uses them.
PARTIAL_CHECKPOINT_RE = re.compile(r"^model\.ckpt-\d+(_temp_[0-9a-f]{32}|\..*\.tempstate\d+)/?$")


def remove_own_files(model_dir):
  """Debug mode's fresh start without the reference's rmtree: only the trainer's own files
  go; a model dir holding anything else (a converted model, the user's notes) is refused."""
  own, foreign = [], []
  for root, _, files in tf.io.gfile.walk(model_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, model_dir).replace(os.sep, "/")
      (own if OWN_FILE_RE.match(rel) else foreign).append((rel, path))
  if foreign:
    raise UserError("debug mode starts %s afresh, but it holds files the trainer did not write "
                    "(%s%s); move them away or use another --model-name"
                    % (model_dir, foreign[0][0],
                       " and %d more" % (len(foreign) - 1) if len(foreign) > 1 else ""))
  for _, path in own:
    tf.io.gfile.remove(path)
  for root, _, _ in sorted(tf.io.gfile.walk(model_dir, topdown=False), reverse=True):
    if root != model_dir and not tf.io.gfile.listdir(root):
      tf.io.gfile.rmtree(root)


def remove_partial_checkpoints(model_dir):
  """Temporary files of a save that a kill interrupted (they would pile up, one per kill)."""
  for name in tf.io.gfile.listdir(model_dir):
    if PARTIAL_CHECKPOINT_RE.match(name):
      path = os.path.join(model_dir, name.rstrip("/"))
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)


def train_or_eval(config):
  check_vocab(config)
  files = input_files(config)
  check_records(config, files)
  if config.debug and config.do_train and tf.io.gfile.exists(config.model_dir):
    remove_own_files(config.model_dir)  # the reference's debug mode starts afresh
  if config.do_train and tf.io.gfile.exists(config.model_dir):
    remove_partial_checkpoints(config.model_dir)
  if config.do_eval and tf.train.latest_checkpoint(config.model_dir) is None:
    raise UserError("no checkpoint in %s to evaluate; train first (do_train true)"
                    % config.model_dir)
  log("Config:")
  for key, value in config.to_dict().items():
    log("  %s: %s" % (key, value))
  estimator = make_estimator(config)
  if config.do_train:
    checkpoint = tf.train.latest_checkpoint(config.model_dir)
    if checkpoint is not None:
      reader = tf.train.NewCheckpointReader(checkpoint)
      if reader.has_tensor("global_step"):
        done = int(reader.get_tensor("global_step"))
        if done >= config.num_train_steps:
          log("%s is at step %d >= num_train_steps %d: nothing to train"
              % (checkpoint, done, config.num_train_steps))
          return None
        log("Resuming from %s (step %d)" % (checkpoint, done))
    log("Running training")
    estimator.train(input_fn=input_fn_builder(config, files, True),
                    max_steps=config.num_train_steps)
    return None
  log("Running evaluation")
  result = estimator.evaluate(input_fn=input_fn_builder(config, files, False),
                              steps=config.num_eval_steps)
  results = {k: v.item() if hasattr(v, "item") else v for k, v in result.items()}
  for key in sorted(results):
    log("  %s = %s" % (key, results[key]))
  write_results(config, results)
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", required=True,
                      help="location of the pretraining data and model checkpoints")
  parser.add_argument("--model-name", required=True, help="name of the model being trained")
  parser.add_argument("--hparams", default="{}",
                      help="JSON dict of model hyperparameters, or a path to a .json file")
  args = parser.parse_args(argv)
  # TF 1.15's own deprecation notices say nothing to the user of this script.
  deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access
  tf.logging.set_verbosity(tf.logging.ERROR)
  tf.get_logger().addFilter(_REPORTED)
  try:
    config = load_config(args.data_dir, args.model_name, args.hparams)
    train_or_eval(config)
  except UserError as e:
    sys.stderr.write("%s: error: %s\n" % (PROG, e))
    return 2
  except tf.errors.OpError as e:
    # Runtime failures on the data (a corrupt shard, a token id >= vocab_size) or the disk.
    first_line = (e.message or str(e)).strip().splitlines()[0]
    sys.stderr.write("%s: error: TensorFlow stopped: %s: %s (check the TFRecords, vocab.txt "
                     "and the model dir)\n" % (PROG, type(e).__name__, first_line))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
