"""Pretrains ELECTRA (generator + discriminator) on the builder's TFRecords.

Drop-in replacement for google-research/electra's run_pretraining.py: same command line,
hparams, objective and checkpoint variables. Run from this folder:

  python run_pretraining.py --data-dir DIR --model-name NAME --hparams '{"...": ...}'

DIR/pretrain_tfrecords/pretrain_data.tfrecord* are read, DIR/vocab.txt gives the special
token ids, checkpoints and TensorBoard events go to DIR/models/NAME, evaluation results
to DIR/models/NAME/results/unsup_results.{txt,pkl}.

The first line says where it computes (the GPUs, or why there is none); with the
environment variable REQUIRE_GPU=1, "no GPU" is an error instead. Ctrl-C stops it with one
line saying at which step and from which checkpoint the same command resumes (status 130).
"""
import argparse
import datetime
import errno
import logging
import os
import pickle
import re
import signal
import sys
import threading
import time
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
  sys.path.insert(0, _HERE)

import tensorflow.compat.v1 as tf  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402
from tensorflow.python.training import training_util  # noqa: E402
from tensorflow.python.util import deprecation  # noqa: E402

import configure_pretraining  # noqa: E402
import devices  # noqa: E402
import distribute  # noqa: E402
import optimization  # noqa: E402
import pretraining_model  # noqa: E402
import tensor_bundle  # noqa: E402

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
    if text.startswith("Error recorded from "):
      return False  # TPUEstimator's copy of an error that main() reports (or re-raises)
    return not any(message in text for message in self.messages)


_REPORTED = _DropReportedErrors()


def user_error(message):
  _REPORTED.messages.append(message)
  return UserError(message)


def log(*parts):
  print(*parts)
  sys.stdout.flush()


# What main() needs to say where an interrupted or failed training stopped: the last step
# done (ETAHook) and the bytes one checkpoint takes (model_fn).
RUN_STATE = {"step": None, "checkpoint_bytes": None}


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
  except configure_pretraining.HparamError as e:   # types and ranges: validate()
    raise UserError(str(e))
  try:
    pretraining_model.check_supported(config)
  except ValueError as e:
    raise UserError(str(e))
  if config.precision != "fp32":
    raise UserError("hparam precision = %s is the PyTorch trainer's (BACKEND=torch); this "
                    "trainer computes in fp32, or mixed precision with \"use_amp\": true"
                    % config.precision)
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
  missing = [t for t in pretraining_model.tokenization.SPECIAL_TOKENS if t not in vocab]
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
  try:
    shapes = {name: shape for name, shape, _ in tensor_bundle.list_variables(checkpoint)}
  except tensor_bundle.CheckpointError as e:
    raise user_error("%s (restore the file from a copy, or move %s.* away)" % (e, checkpoint))
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
  def input_fn(params, input_context=None):
    # params["batch_size"]: the global batch on one device, the per-replica batch under
    # tf.distribute (see make_estimator); input_context: the host's place in a cluster.
    batch_size = params["batch_size"]
    features = {name: tf.io.FixedLenFeature([config.max_seq_length], tf.int64)
                for name in ("input_ids", "input_mask", "segment_ids")}
    d = tf.data.Dataset.from_tensor_slices(tf.constant(files))
    if input_context is not None and 1 < input_context.num_input_pipelines <= len(files):
      # Hosts of a cluster read disjoint shards (with fewer shards than hosts each host
      # reads all of them, in its own random order).
      d = d.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    d = d.repeat()
    d = d.shuffle(buffer_size=len(files))
    d = d.apply(tf.data.experimental.parallel_interleave(
        tf.data.TFRecordDataset, sloppy=is_training,
        cycle_length=min(num_cpu_threads, len(files))))
    d = d.shuffle(buffer_size=100)
    d = d.batch(batch_size, drop_remainder=True)

    # Parsing whole batches at once is cheaper than example by example. Plain graph code:
    # autograph's conversion of this function took a second (it imported tf.contrib).
    @tf.autograph.experimental.do_not_convert
    def decode(records):
      parsed = tf.io.parse_example(records, features)
      return {k: tf.cast(v, tf.int32) for k, v in parsed.items()}

    d = d.map(decode, num_parallel_calls=2)
    return d.prefetch(2)
  return input_fn


# ---- progress ----------------------------------------------------------------------------

class ETAHook(tf.estimator.SessionRunHook):
  """Prints `STEP/TOTAL = P%, SPS: x, ELAP: t, ETA: t - loss: x` (the reference's line).

  The reference prints it after every step: a million lines for the 1M-step recipe. This
  hook prints it after the first step of a run, every `log_every` steps
  (iterations_per_loop), after the last step, and otherwise at least every
  `LOG_EVERY_SECS` seconds when steps are slow.

  In training it also writes the TensorBoard scalars (the `scalars` it fetches) at the
  first step, every `summary_every` steps and at the last step. Fetching the same
  tensors at every step matters for speed: each new set of fetches makes TF build
  (and optimize) another executor for the whole graph, which the estimator's own
  summary and logging hooks would cause at their first and second steps.
  """

  LOG_EVERY_SECS = 60.0

  def __init__(self, n_steps, loss=None, scalars=None, model_dir=None, summary_every=100,
               is_training=True, log_every=1):
    self._n_steps = n_steps
    self._fetches = dict(scalars or {})
    if loss is not None:
      self._fetches["loss"] = loss
    self._model_dir = model_dir
    self._summary_every = summary_every
    self._is_training = is_training
    self._log_every = max(1, log_every)
    self._writer = None
    self._start_time = None
    self._last_line_time = None
    self._start_step = 0
    self._steps_run = 0

  def begin(self):
    if self._is_training and self._model_dir and self._fetches:
      self._writer = summary_writer(self._model_dir)

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
    if self._is_training:
      RUN_STATE["step"] = step
    now = time.time()
    elapsed = now - self._start_time
    steps_per_second = self._steps_run / elapsed if elapsed > 0 else 0.0
    if (self._steps_run == 1 or step % self._log_every == 0 or step >= self._n_steps
        or now - self._last_line_time >= self.LOG_EVERY_SECS):
      self._last_line_time = now
      msg = "%d/%d = %.1f%%" % (step, self._n_steps, 100.0 * step / max(1, self._n_steps))
      if steps_per_second > 0:
        msg += ", SPS: %.1f, ELAP: %s, ETA: %s" % (
            steps_per_second, secs_to_str(elapsed),
            secs_to_str((self._n_steps - step) / steps_per_second))
      if "loss" in run_values.results:
        msg += " - loss: %.4f" % run_values.results["loss"]
      log(msg)
    if self._writer is not None and self._steps_run == 1:
      # As the estimator's summary hook: TensorBoard drops the points a killed run logged
      # after the checkpoint this run resumed from (steps >= this one).
      self._writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), step)
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


_SUMMARY_WRITERS = {}


def summary_writer(model_dir):
  """One events-file writer per model dir, shared by the hooks.

  tf.summary.FileWriterCache would do, but it creates its writer with the default graph,
  serializing the whole graph (seconds for ELECTRA-small) into the events file before the
  first step; CheckpointSaverHook writes that graph once, from the serialization it makes
  anyway.
  """
  if model_dir not in _SUMMARY_WRITERS:
    _SUMMARY_WRITERS[model_dir] = tf.summary.FileWriter(model_dir)
  return _SUMMARY_WRITERS[model_dir]


def flush_summary_writers():
  """What the hooks logged up to an interruption reaches the events files."""
  for writer in _SUMMARY_WRITERS.values():
    try:
      writer.flush()
    except Exception:  # pylint: disable=broad-except
      pass  # a full disk: the error already being reported says so


class WriteError(Exception):
  """A file of the model dir could not be written; main() reports it in one line."""

  def __init__(self, path, error):
    # TF's messages start with the (temporary) file's name; the path says it better.
    reason = re.sub(r"^\S+; ", "", error_text(error))
    super(WriteError, self).__init__("cannot write %s: %s" % (path, reason))
    self.path = path
    self.error = error


def write_atomically(path, data):
  """tf.io.write_graph's write (temporary file, then rename) of text or bytes, without
  leaving the temporary file behind when the write itself fails (a full disk)."""
  temporary = "%s.tmp%s" % (path, uuid.uuid4().hex)
  try:
    with tf.io.gfile.GFile(temporary, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
    tf.io.gfile.rename(temporary, path, overwrite=True)
  except BaseException:
    try:
      if tf.io.gfile.exists(temporary):
        tf.io.gfile.remove(temporary)
    except tf.errors.OpError:
      pass
    raise


class CheckpointSaverHook(tf.train.CheckpointSaverHook):
  """The estimator's checkpoint hook (same files), with the graph serialized only once.

  The stock hook serializes the whole graph (seconds of pure Python for ELECTRA-small)
  for graph.pbtxt, again for the events file and again for every checkpoint's .meta
  file, the first time before step 1 can run. The graph is finalized when the session
  starts, so one serialization serves them all, and none of it is needed to take the
  first step: only the variables of the starting step's checkpoint are saved before it.
  A thread that starts once the first step is done serializes the graph, then writes
  that checkpoint's .meta, the events file's graph and graph.pbtxt (its text takes
  seconds of Python), so that they do not compete with the step for the CPU. Any later
  checkpoint waits for that .meta first. A failed write stops training at the end of
  the step it failed in. The files are those of the stock hook (TF 1.15).
  """

  _writer_thread = None
  _writer_error = None
  _meta_bytes = None        # every checkpoint's .meta (the graph is final): made once
  _pending_meta = None      # the starting step's checkpoint, until the thread writes its .meta

  def begin(self):
    # The stock begin, with the writer of summary_writer (the stock one is FileWriterCache's).
    self._summary_writer = summary_writer(self._checkpoint_dir)
    self._global_step_tensor = training_util._get_or_create_global_step_read()  # pylint: disable=protected-access
    if self._global_step_tensor is None:
      raise RuntimeError("Global step should be created to use CheckpointSaverHook.")
    self._meta_written = threading.Event()
    for listener in self._listeners:
      listener.begin()

  def after_create_session(self, session, coord):
    global_step = session.run(self._global_step_tensor)
    self._graph = session.graph
    self._save(session, global_step)  # the checkpoint of the starting step, as the stock hook
    self._timer.update_last_triggered_step(global_step)

  def _write_graph(self):
    try:
      graph_def = self._graph.as_graph_def(add_shapes=True)
      # In the graph's context: this thread's default graph is not the training graph.
      with self._graph.as_default():
        meta_graph_def = tf.train.export_meta_graph(graph_def=graph_def,
                                                    saver_def=self._get_saver().saver_def)
      self._meta_bytes = meta_graph_def.SerializeToString(deterministic=True)
      if self._pending_meta is not None:
        try:
          self._write_meta(self._pending_meta)
        except (tf.errors.OpError, OSError) as e:
          self._writer_error = WriteError(self._pending_meta + ".meta", e)
          return
        self._pending_meta = None
    finally:
      self._meta_written.set()
    # add_graph(graph) would serialize the graph again; this is the event it writes.
    self._summary_writer.add_event(tf.Event(graph_def=graph_def.SerializeToString()))
    self._summary_writer.add_meta_graph(meta_graph_def)
    path = os.path.join(self._checkpoint_dir, "graph.pbtxt")
    try:
      write_atomically(path, text_format.MessageToString(graph_def, float_format=""))
    except (tf.errors.OpError, OSError) as e:
      self._writer_error = WriteError(path, e)

  def _write_meta(self, checkpoint_path):
    """checkpoint_path.meta, as the stock hook's Saver writes it."""
    write_atomically(checkpoint_path + ".meta", self._meta_bytes)

  def _check_graph_written(self, wait=False):
    if self._writer_thread is None:
      self._writer_thread = threading.Thread(target=self._write_graph)
      self._writer_thread.start()
    if wait:
      self._writer_thread.join()
    if self._writer_error is not None:
      raise self._writer_error

  def after_run(self, run_context, run_values):
    self._check_graph_written()  # the first call starts the writing
    super(CheckpointSaverHook, self).after_run(run_context, run_values)

  def _save(self, session, step):
    """The stock _save, writing the .meta file from the graph serialized once."""
    for listener in self._listeners:
      listener.before_save(session, step)
    saver = self._get_saver()
    if self._writer_thread is not None:
      self._meta_written.wait()  # the starting checkpoint's .meta first (it may be deleted)
      self._check_graph_written()
    path = saver.save(session, self._save_path, global_step=step, write_meta_graph=False)
    if self._meta_bytes is None:
      self._pending_meta = path  # before the first step: the thread writes it
    else:
      self._write_meta(path)
    self._summary_writer.add_session_log(
        tf.SessionLog(status=tf.SessionLog.CHECKPOINT, checkpoint_path=self._save_path), step)
    should_stop = False
    for listener in self._listeners:
      if listener.after_save(session, step):
        should_stop = True
    return should_stop

  def end(self, session):
    self._check_graph_written(wait=True)
    super(CheckpointSaverHook, self).end(session)


# ---- model function ----------------------------------------------------------------------

def quick_ready_scaffold():
  """The estimator's Scaffold, but checking only global_step for "ready".

  By default the session manager asks every variable whether it is initialized (about
  2,400 ops for ELECTRA-small, run twice: seconds before the first step). A process
  training alone has just restored them all from a checkpoint (Saver.restore fails on a
  missing one) or run the initializer of them all, so the answer is known; workers of a
  cluster, which wait for another process to initialize, keep the full check.
  """
  ready = tf.report_uninitialized_variables([tf.train.get_global_step()])
  return tf.train.Scaffold(ready_op=ready, ready_for_local_init_op=ready)


def model_fn_builder(config):
  def model_fn(features, labels, mode, params):
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    model = pretraining_model.build_pretraining_model(config, features, is_training)
    if is_training:
      train_op, learning_rate = optimization.create_train_op(
          model.total_loss, config.learning_rate, config.num_train_steps,
          config.num_warmup_steps, weight_decay_rate=config.weight_decay_rate,
          lr_decay_power=config.lr_decay_power,
          num_tpu_shards=config.num_tpu_cores if config.use_tpu else 0,
          use_amp=config.use_amp)
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
      distributed = tf.distribute.has_strategy()
      if distributed:
        # Hooks see the first replica's tensors: log the mean over all replicas instead.
        scalars = distribute.replica_mean(scalars)
      chief = distribute.is_chief()   # only the chief writes checkpoints and summaries
      hooks = [ETAHook(config.num_train_steps, loss=scalars["total_loss"] if on_host else None,
                       scalars=scalars if on_host else None,
                       model_dir=config.model_dir if chief else None,
                       log_every=config.iterations_per_loop)]
      RUN_STATE["checkpoint_bytes"] = sum(v.shape.num_elements() * v.dtype.base_dtype.size
                                          for v in tf.global_variables())
      if chief:
        hooks.append(CheckpointSaverHook(config.model_dir,
                                         save_steps=config.save_checkpoints_steps))
      spec = tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=model.total_loss, train_op=train_op, training_hooks=hooks,
          scaffold_fn=None if distributed or distribute.tf_config() else quick_ready_scaffold)
      return spec.as_estimator_spec() if distributed else spec
    if mode == tf.estimator.ModeKeys.EVAL:
      hooks = [ETAHook(config.num_eval_steps, loss=model.total_loss if on_host else None,
                       is_training=False, log_every=config.iterations_per_loop)]
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


def make_estimator(config, plan=None):
  """TPUEstimator on one device (the reference's); a plain Estimator given the strategy of
  a distribute.Plan as train_distribute, whose input_fn makes per-replica batches."""
  if plan is not None and plan.strategy is not None:
    run_config = tf.estimator.RunConfig(
        model_dir=config.model_dir, save_checkpoints_steps=config.save_checkpoints_steps,
        keep_checkpoint_max=config.keep_checkpoint_max, train_distribute=plan.strategy,
        session_config=session_config(plan.cpu_devices, config.use_amp, config.use_xla),
        save_summary_steps=None, log_step_count_steps=None, tf_random_seed=config.seed)
    return tf.estimator.Estimator(model_fn=model_fn_builder(config), config=run_config,
                                  params={"batch_size": plan.per_replica_batch})
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
      tf_random_seed=config.seed,
      session_config=session_config(use_amp=config.use_amp, use_xla=config.use_xla),
      # Off the TPU, ETAHook writes the scalars and logs every step itself (see there).
      save_summary_steps=100 if config.use_tpu else None,
      log_step_count_steps=100 if config.use_tpu else None)
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=config.use_tpu, model_fn=model_fn_builder(config), config=run_config,
      train_batch_size=config.train_batch_size, eval_batch_size=config.eval_batch_size)


def session_config(cpu_devices=0, use_amp=False, use_xla=False):
  cores = os.cpu_count() or 1
  # Measured on 2 cores (tiny model): all cores inside an op and two ops at a time beat
  # TF's defaults (one pool thread per core for both) by about a quarter.
  config = tf.ConfigProto(intra_op_parallelism_threads=cores,
                          inter_op_parallelism_threads=min(2, cores),
                          allow_soft_placement=True)
  if cpu_devices:
    config.device_count["CPU"] = cpu_devices   # num_cpu_replicas: /cpu:0../cpu:N-1
  if use_amp:   # the rewrite acts on GPUs of compute capability >= 7.0 only
    config.graph_options.rewrite_options.auto_mixed_precision = \
        rewriter_config_pb2.RewriterConfig.ON
  if use_xla:   # auto-clustering; TF 1.15 clusters GPU ops only at this level
    config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
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


def checkpoint_step(prefix):
  found = re.search(r"-(\d+)$", prefix)
  return int(found.group(1)) if found else -1


def intact_resume_checkpoint(model_dir):
  """The checkpoint training resumes from: the latest, or, when a file of it is truncated or
  corrupt, the newest intact earlier one, which the `checkpoint` file then names (the
  damaged files stay where they are). None when there is no checkpoint."""
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None or "://" in model_dir:   # (tensor_bundle reads local files only)
    return latest
  try:
    tensor_bundle.verify_checkpoint(latest)
    return latest
  except tensor_bundle.CheckpointError as e:
    damage = str(e)
  state = tensor_bundle.read_checkpoint_state(model_dir) or {}
  recorded = [p for p in state.get("all_model_checkpoint_paths", [])]
  on_disk = {os.path.join(model_dir, p) if not os.path.isabs(p) else p: p for p in recorded}
  earlier = set(on_disk) | set(tensor_bundle.step_checkpoints(model_dir))
  earlier = sorted((p for p in earlier if checkpoint_step(p) < checkpoint_step(latest)),
                   key=checkpoint_step, reverse=True)
  for prefix in earlier:
    try:
      tensor_bundle.verify_checkpoint(prefix)
    except tensor_bundle.CheckpointError:
      continue
    older = [on_disk[p] for p in sorted(on_disk, key=checkpoint_step)
             if checkpoint_step(p) < checkpoint_step(prefix)]
    name = on_disk.get(prefix, os.path.basename(prefix))
    tensor_bundle.write_checkpoint_state(model_dir, name, older + [name])
    sys.stderr.write("%s: warning: %s; resuming from the intact checkpoint %s (step %d) "
                     "instead\n" % (PROG, damage, prefix, checkpoint_step(prefix)))
    sys.stderr.flush()
    return prefix
  raise user_error("%s; no earlier intact checkpoint in %s to resume from (restore the "
                   "file from a copy, or move the damaged model.ckpt-N.* files away to train "
                   "from step 0)" % (damage, model_dir))


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
  plan = None
  if config.do_train:
    try:
      plan = distribute.build_plan(config)
    except distribute.DistributeError as e:
      raise UserError(str(e))
  log("Config:")
  for key, value in config.to_dict().items():
    log("  %s: %s" % (key, value))
  if plan is not None and plan.strategy is not None:
    log("Replicas: %s" % plan.what)
  if (config.use_amp or config.use_xla) and not distribute.visible_gpus():
    log("use_amp/use_xla act on GPUs only: no GPU visible, so they are ignored here")
  estimator = make_estimator(config, plan)
  if config.do_train:
    checkpoint = intact_resume_checkpoint(config.model_dir)
    if checkpoint is not None:
      if "global_step" in [name for name, _, _ in tensor_bundle.list_variables(checkpoint)]:
        done = int(tensor_bundle.read_checkpoint(checkpoint, ["global_step"])["global_step"])
        if done >= config.num_train_steps:
          log("%s is at step %d >= num_train_steps %d: nothing to train"
              % (checkpoint, done, config.num_train_steps))
          return None
        log("Resuming from %s (step %d)" % (checkpoint, done))
    log("Running training")
    train_input_fn = input_fn_builder(config, files, True)
    if plan.multi_worker:
      try:   # bounded and said: TensorFlow's own wait for a missing host has no end
        timeout_s = distribute.peer_timeout_s()
        distribute.wait_for_peers(distribute.tf_config(), log, timeout_s)
      except distribute.DistributeError as e:
        raise UserError(str(e))
      distribute.stop_when_stalled(lambda: RUN_STATE["step"], timeout_s,
                                   lambda step: stop_stalled(config, timeout_s, step))
      # Estimator.train refuses a TF_CONFIG cluster; train_and_evaluate runs each host as
      # an independent worker (its own server, collective all-reduce); no evaluator job.
      try:
        tf.estimator.train_and_evaluate(
            estimator, tf.estimator.TrainSpec(train_input_fn, max_steps=config.num_train_steps),
            tf.estimator.EvalSpec(train_input_fn, steps=1))
      finally:
        distribute.release_server()
    else:
      estimator.train(input_fn=train_input_fn, max_steps=config.num_train_steps)
    return None
  log("Running evaluation")
  result = estimator.evaluate(input_fn=input_fn_builder(config, files, False),
                              steps=config.num_eval_steps)
  results = {k: v.item() if hasattr(v, "item") else v for k, v in result.items()}
  for key in sorted(results):
    log("  %s = %s" % (key, results[key]))
  write_results(config, results)
  return results


def stop_stalled(config, timeout_s, step):
  """Ends a cluster's run whose steps stopped: one line, status 1 (from the watch thread;
  the main thread is stuck in TensorFlow's all-reduce, so the process exits at once).
  After the last step nothing waits for another host (the chief's final save may be long)."""
  if step is not None and step >= config.num_train_steps:
    return
  sys.stdout.flush()
  sys.stderr.write("%s: error: no training step for %d s (%s): a host of the cluster stopped "
                   "or hangs, and TensorFlow's all-reduce waits for it without end; stop every "
                   "host and start them all again; training stopped %s\n"
                   % (PROG, timeout_s, distribute.PEER_TIMEOUT_ENV, where_it_stopped(config)))
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


# ---- devices -------------------------------------------------------------------------------

def skip_xla_clustering_search(config):
  """Without use_xla, tells TF not to look for XLA clusters at all.

  TF 1.15 runs XLA's auto-clustering pass whenever it builds an executor, even with
  auto-clustering off: it looks up an XLA kernel for every op and contracts the graph's
  edges, then compiles nothing. For the ~20k-op training graph that was a quarter of the
  first step and a share of every other first run (initializers, checkpoint save). The
  pass's "fuel" 0 ends the search before it starts; the executed graph is the same. Set
  only when TF_XLA_FLAGS is unset (it is read once, at the first executor), so a user's
  own XLA flags, and use_xla, keep working.
  """
  if not config.use_xla and not os.environ.get("TF_XLA_FLAGS"):
    os.environ["TF_XLA_FLAGS"] = "--tf_xla_clustering_fuel=0"


def report_devices(config):
  """One line saying where this run computes; REQUIRE_GPU=1 makes "no GPU" an error."""
  what = "training" if config.do_train else "evaluating"
  if config.use_tpu:
    log("Devices: TPU %s (%d cores)" % (config.tpu_name or "", config.num_tpu_cores))
    return
  gpus, cause = devices.local_gpus()
  if gpus:
    line = "Devices: %d GPU%s: %s" % (len(gpus), "s" if len(gpus) > 1 else "",
                                      ", ".join(devices.gpu_text(*gpu) for gpu in gpus))
    used = getattr(config, "num_gpus", 1)
    try:
      cluster = distribute.tf_config()
    except distribute.DistributeError:
      cluster = None  # train_or_eval reports it
    if len(gpus) > used and not cluster:
      line += "; this run uses %s (num_gpus = %d)" % (
          "GPU:0" if used == 1 else "GPU:0 to GPU:%d" % (used - 1), used)
    log(line)
    return
  if os.environ.get("REQUIRE_GPU", "").strip() not in ("", "0"):
    raise UserError("REQUIRE_GPU=%s but no GPU visible: %s; fix that, or unset REQUIRE_GPU "
                    "to train on the CPU" % (os.environ["REQUIRE_GPU"], cause))
  log("no GPU visible: %s on the CPU: %s" % (what, cause))


# ---- reporting a stopped run ---------------------------------------------------------------

def error_text(error):
  """The first line of an OpError's or OSError's message."""
  if isinstance(error, tf.errors.OpError):
    text = error.message or str(error)
  elif isinstance(error, OSError) and error.strerror:
    text = "%s: %s" % (error.filename, error.strerror) if error.filename else error.strerror
  else:
    text = str(error)
  return (text.strip().splitlines() or [""])[0]


def megabytes(n):
  return "%.1f MB" % (n / 1e6) if n < 1e8 else "%d MB" % round(n / 1e6)


def where_it_stopped(config):
  """`at step N; the latest checkpoint is ... (step M): run the same command again ...`"""
  step = RUN_STATE["step"]
  text = "at step %d of %d" % (step, config.num_train_steps) if step else \
      "before the first training step"
  checkpoint = tf.train.latest_checkpoint(config.model_dir)
  if checkpoint:
    done = re.search(r"-(\d+)$", checkpoint)
    return ("%s; the latest checkpoint is %s%s: run the same command again (make pretrain) "
            "to resume from it" % (text, checkpoint,
                                   " (step %s)" % done.group(1) if done else ""))
  return "%s; no checkpoint yet: the next run starts from step 0" % text


# errno -> what the line says: a full file system, or the user's quota on it spent.
DISK_FULL = {errno.ENOSPC: "no space left on the device",
             errno.EDQUOT: "the disk quota is exceeded"}


def disk_full_text(config, error):
  """`no space left on the device in DIR (X free of Y; a checkpoint ... needs about Z)`, or
  `the disk quota is exceeded in DIR (...)`."""
  directory = config.model_dir
  for path in (getattr(error, "path", None), getattr(error, "filename", None)):
    if path:
      directory = os.path.dirname(path)
  while directory and not os.path.isdir(directory):
    directory = os.path.dirname(directory)
  text = "%s in %s" % (DISK_FULL[disk_full_errno(error)], directory)
  try:
    stat = os.statvfs(directory)
    text += " (%s free of %s" % (megabytes(stat.f_bavail * stat.f_frsize),
                                 megabytes(stat.f_blocks * stat.f_frsize))
    if RUN_STATE["checkpoint_bytes"]:
      text += "; a checkpoint of this model needs about %s" % megabytes(
          RUN_STATE["checkpoint_bytes"])
    text += ")"
  except OSError:
    pass
  return text


def disk_full_errno(error):
  """ENOSPC or EDQUOT when `error` is a write that found no room, else None."""
  if isinstance(error, WriteError):
    error = error.error
  if isinstance(error, OSError):
    return error.errno if error.errno in DISK_FULL else None
  text = error_text(error)
  for number in DISK_FULL:   # TensorFlow's message carries strerror's text
    if os.strerror(number) in text:
      return number
  return None


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
  config = None
  try:
    config = load_config(args.data_dir, args.model_name, args.hparams)
    skip_xla_clustering_search(config)
    report_devices(config)
    train_or_eval(config)
  except UserError as e:
    sys.stderr.write("%s: error: %s\n" % (PROG, e))
    return 2
  except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    flush_summary_writers()
    where = where_it_stopped(config) if config is not None and config.do_train else ""
    sys.stderr.write("%s: interrupted (Ctrl-C)%s\n" % (PROG, " " + where if where else ""))
    return 130
  except (tf.errors.OpError, OSError, WriteError) as e:
    flush_summary_writers()
    if config is None:
      raise
    if disk_full_errno(e):
      if config.do_train and tf.io.gfile.exists(config.model_dir):
        remove_partial_checkpoints(config.model_dir)  # the failed save's part: space back
      sys.stderr.write("%s: error: %s; free some space there%s%s\n" % (
          PROG, disk_full_text(config, e),
          " (or have your quota raised)" if disk_full_errno(e) == errno.EDQUOT else "",
          "; training stopped " + where_it_stopped(config) if config.do_train else ""))
      return 1
    if isinstance(e, (WriteError, OSError)):
      sys.stderr.write("%s: error: %s%s\n" % (
          PROG, e if isinstance(e, WriteError) else error_text(e),
          "; training stopped " + where_it_stopped(config) if config.do_train else ""))
      return 1
    # Runtime failures on the data (a corrupt shard, a token id >= vocab_size) or the disk.
    sys.stderr.write("%s: error: TensorFlow stopped: %s: %s (check the TFRecords, vocab.txt "
                     "and the model dir)\n" % (PROG, type(e).__name__, error_text(e)))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
