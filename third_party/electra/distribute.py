"""Where training runs: one device (the reference), N GPUs or N CPU devices of this host,
or several hosts (TF_CONFIG), through TensorFlow's own tf.distribute strategies.

The model code knows nothing of this: run_pretraining.py hands the strategy to the
Estimator (`train_distribute`), gives the input_fn the per-replica batch, and
optimization.py moves the update to the cross-replica side when a strategy is active.
`train_batch_size` stays the GLOBAL batch, split evenly over every replica of every host,
so step N of an N-replica run is step N of the single-device run (same schedule).

  num_gpus 1, num_cpu_replicas 0, no TF_CONFIG   -> no strategy: today's graph exactly
  num_gpus N > 1                                 -> MirroredStrategy on /gpu:0..N-1
  num_cpu_replicas N > 0                         -> MirroredStrategy on /cpu:0..N-1
                                                    (the session gets device_count CPU: N)
  TF_CONFIG with 2+ tasks                        -> MultiWorkerMirroredStrategy (collective
                                                    all-reduce), each host on all its visible
                                                    GPUs, or one CPU replica per host
"""
import json
import os

import tensorflow.compat.v1 as tf


class DistributeError(ValueError):
  """A setting that cannot run here; the message is one line saying what to change."""


def visible_gpus():
  """The GPUs TensorFlow can use in this process (none when CUDA's libraries are missing)."""
  return tf.config.experimental.list_physical_devices("GPU")


def tf_config():
  """The parsed TF_CONFIG environment variable, or None when it is unset or empty."""
  text = os.environ.get("TF_CONFIG", "").strip()
  if not text:
    return None
  try:
    value = json.loads(text)
  except ValueError as e:
    raise DistributeError("TF_CONFIG is not valid JSON (%s); write it as "
                          '{"cluster": {"worker": ["host:port", ...]}, '
                          '"task": {"type": "worker", "index": I}}' % e)
  cluster = value.get("cluster") if isinstance(value, dict) else None
  task = value.get("task") if isinstance(value, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise DistributeError("TF_CONFIG needs a \"cluster\" and a \"task\" object (got %s)"
                          % text[:200])
  unsupported = sorted(set(cluster) - {"chief", "worker"})
  if unsupported:
    raise DistributeError("TF_CONFIG cluster has %s job(s); multi-worker training takes "
                          "only \"chief\" and \"worker\" (no parameter servers, no evaluator)"
                          % ", ".join(unsupported))
  kind, index = task.get("type"), task.get("index", 0)
  hosts = cluster.get(kind) if kind in cluster else None
  if not isinstance(hosts, list) or not isinstance(index, int) or not 0 <= index < len(hosts):
    raise DistributeError("TF_CONFIG task %s is not in its cluster %s"
                          % (json.dumps(task), json.dumps(cluster)))
  return value


def num_workers(config_json):
  """Hosts (tasks) in a TF_CONFIG cluster; 1 without one."""
  if not config_json:
    return 1
  return sum(len(config_json["cluster"].get(job, [])) for job in ("chief", "worker"))


def is_chief():
  """Whether this process writes checkpoints, summaries and results: the single process,
  or in a cluster the "chief" task, or worker 0 when the cluster has no chief."""
  config_json = tf_config()
  if num_workers(config_json) <= 1:
    return True
  task = config_json["task"]
  if "chief" in config_json["cluster"]:
    return task["type"] == "chief"
  return task["type"] == "worker" and task.get("index", 0) == 0


class Plan(object):
  """What build_plan decided: the strategy (None: single device), replicas, batches."""

  def __init__(self, strategy, replicas_per_host, hosts, global_batch, cpu_devices, what):
    self.strategy = strategy
    self.replicas_per_host = replicas_per_host
    self.hosts = hosts
    self.replicas = replicas_per_host * hosts
    self.global_batch = global_batch
    self.per_replica_batch = global_batch // self.replicas
    self.cpu_devices = cpu_devices    # session device_count {"CPU": n}; 0: TF's default
    self.what = what                  # one line for the log

  @property
  def multi_worker(self):
    return self.hosts > 1


def build_plan(config, gpus=None):
  """The strategy for config's num_gpus / num_cpu_replicas and TF_CONFIG.

  gpus: the visible GPUs (default: asked from TensorFlow). Raises DistributeError (one
  line) for more GPUs than visible or a global batch that does not split evenly.
  """
  config_json = tf_config()
  hosts = num_workers(config_json)
  if config.use_tpu and (hosts > 1 or config.num_gpus > 1 or config.num_cpu_replicas):
    raise DistributeError("use_tpu runs on TPU cores (num_tpu_cores); unset num_gpus, "
                          "num_cpu_replicas and TF_CONFIG")
  if config.num_gpus > 1 and config.num_cpu_replicas:
    raise DistributeError("num_gpus = %d and num_cpu_replicas = %d: choose one (GPU or CPU "
                          "replicas)" % (config.num_gpus, config.num_cpu_replicas))
  if hosts == 1 and config.num_gpus == 1 and not config.num_cpu_replicas:
    return Plan(None, 1, 1, config.train_batch_size, 0, "one device (no tf.distribute)")
  if config.num_cpu_replicas:
    if hosts > 1 and config.num_cpu_replicas > 1:
      raise DistributeError("num_cpu_replicas = %d with a TF_CONFIG cluster: a host of a "
                            "cluster runs one CPU replica; set num_cpu_replicas 1 or 0"
                            % config.num_cpu_replicas)
    per_host, devices = config.num_cpu_replicas, config.num_cpu_replicas
  else:
    if gpus is None:
      gpus = visible_gpus()
    devices = 0
    if config.num_gpus > max(1, len(gpus)):   # 1 (the default) may mean the CPU
      raise DistributeError(
          "num_gpus = %d but %d GPU(s) are visible%s; lower num_gpus or make the GPUs "
          "visible (CUDA_VISIBLE_DEVICES, the container's --gpus)"
          % (config.num_gpus, len(gpus),
             "" if gpus else " (no GPU: CUDA/cuDNN libraries not found, or "
             "CUDA_VISIBLE_DEVICES empty)"))
    if hosts > 1 and gpus and config.num_gpus != len(gpus):
      raise DistributeError("num_gpus = %d but this host sees %d GPUs, and a cluster host "
                            "trains on all it sees; set num_gpus %d or CUDA_VISIBLE_DEVICES"
                            % (config.num_gpus, len(gpus), len(gpus)))
    per_host = max(1, config.num_gpus if gpus else 1)
  replicas = per_host * hosts
  if config.train_batch_size % replicas:
    raise DistributeError(
        "train_batch_size %d (the global batch) does not split evenly over %d replicas; "
        "use a multiple of %d" % (config.train_batch_size, replicas, replicas))
  if hosts > 1:
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
    what = ("%d hosts x %d replica(s) (MultiWorkerMirroredStrategy, TF_CONFIG task %s %d)"
            % (hosts, per_host, config_json["task"]["type"],
               config_json["task"].get("index", 0)))
  else:
    kind = "cpu" if config.num_cpu_replicas else "gpu"
    names = ["/%s:%d" % (kind, i) for i in range(per_host)]
    strategy = tf.distribute.MirroredStrategy(names)
    what = "%d replicas on %s (MirroredStrategy)" % (per_host, ", ".join(names))
  return Plan(strategy, per_host, hosts, config.train_batch_size, devices,
              what + "; global batch %d = %d per replica"
              % (config.train_batch_size, config.train_batch_size // replicas))


def replica_mean(values):
  """In a replica context under a strategy: {name: the mean over all replicas}, the same
  tensors in every replica (for what the trainer logs). Without a strategy: values."""
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
    return values

  def mean(strategy, per_replica):
    # An all-reduce onto the replicas themselves (strategy.reduce would only reduce this
    # host's replicas under MultiWorkerMirroredStrategy).
    keys = sorted(per_replica)
    reduced = strategy.extended.batch_reduce_to(
        tf.distribute.ReduceOp.MEAN, [(per_replica[k], per_replica[k]) for k in keys])
    return dict(zip(keys, reduced))

  return tf.distribute.get_replica_context().merge_call(mean, args=(values,))
