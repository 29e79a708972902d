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

A cluster's host first waits for the others (wait_for_peers), saying for whom, at most
PEER_TIMEOUT_S seconds (default 300): TensorFlow's own wait for a missing host has no end.
"""
import errno
import json
import os
import re
import socket
import threading
import time

import tensorflow.compat.v1 as tf


class DistributeError(ValueError):
  """A setting that cannot run here; the message is one line saying what to change."""


def visible_gpus():
  """The GPUs TensorFlow can use in this process (none when CUDA's libraries are missing)."""
  return tf.config.experimental.list_physical_devices("GPU")


JOBS = ("chief", "worker")   # the jobs of a multi-worker cluster (no ps, no evaluator)
TF_CONFIG_FORM = ('{"cluster": {"worker": ["host:port", ...]}, '
                  '"task": {"type": "worker", "index": I}}')
ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):([0-9]{1,5})$")


def parse_address(address, where):
  """(host, port) of a TF_CONFIG address "host:port" ("[v6]:port"), or DistributeError."""
  match = ADDRESS.match(address) if isinstance(address, str) else None
  if not match or not 1 <= int(match.group(2)) <= 65535:
    raise DistributeError('TF_CONFIG %s is %s; each address is a string "host:port" with a '
                          'port from 1 to 65535, e.g. "10.0.0.2:2222"'
                          % (where, json.dumps(address)[:80]))
  return match.group(1).strip("[]"), int(match.group(2))


def check_cluster(cluster):
  """Every job a list of distinct "host:port" strings; a chief at most one."""
  unsupported = sorted(set(cluster) - set(JOBS))
  if unsupported:
    raise DistributeError("TF_CONFIG cluster has %s job(s); multi-worker training takes "
                          "only \"chief\" and \"worker\" (no parameter servers, no evaluator)"
                          % ", ".join(unsupported))
  seen = {}
  for job in JOBS:
    hosts = cluster.get(job, [])
    if not isinstance(hosts, list) or (job in cluster and not hosts):
      raise DistributeError('TF_CONFIG cluster "%s" is %s; give a list of one or more '
                            '"host:port" strings' % (job, json.dumps(hosts)[:80]))
    if job == "chief" and len(hosts) > 1:
      raise DistributeError('TF_CONFIG cluster has %d chiefs; a cluster has one "chief" '
                            '(or none: then worker 0 leads)' % len(hosts))
    for index, address in enumerate(hosts):
      parse_address(address, "cluster %s %d" % (job, index))
      if address in seen:
        raise DistributeError("TF_CONFIG names %s for both %s and %s %d; give each task its "
                              "own host:port" % (address, seen[address], job, index))
      seen[address] = "%s %d" % (job, index)


def check_task(task, cluster):
  """task.type a job of the cluster, task.index an integer (not true/false) within it."""
  kind, index = task.get("type"), task.get("index", 0)
  if not isinstance(kind, str) or kind not in cluster:
    raise DistributeError("TF_CONFIG task type %s is not a job of its cluster (%s); write "
                          "\"type\": %s" % (json.dumps(kind)[:40], ", ".join(sorted(cluster)),
                                            " or ".join('"%s"' % j for j in sorted(cluster))))
  hosts = cluster[kind]
  if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(hosts):
    raise DistributeError("TF_CONFIG task index %s is not a task of the cluster's %d %s(s); "
                          "write \"index\": a whole number from 0 to %d"
                          % (json.dumps(index)[:40], len(hosts), kind, len(hosts) - 1))


def tf_config():
  """The parsed TF_CONFIG environment variable, or None when it is unset or empty.
  Its whole shape is checked: a cluster of "chief"/"worker" lists of "host:port" strings,
  a task naming one of them."""
  text = os.environ.get("TF_CONFIG", "").strip()
  if not text:
    return None
  try:
    value = json.loads(text)
  except (ValueError, RecursionError) as e:
    raise DistributeError("TF_CONFIG is not valid JSON (%s); write it as %s"
                          % (str(e)[:80], TF_CONFIG_FORM))
  cluster = value.get("cluster") if isinstance(value, dict) else None
  task = value.get("task") if isinstance(value, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise DistributeError("TF_CONFIG needs a \"cluster\" and a \"task\" object (got %s); "
                          "write it as %s" % (text[:200], TF_CONFIG_FORM))
  check_cluster(cluster)
  check_task(task, cluster)
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


# ---- waiting for the other hosts -------------------------------------------------------------

PEER_TIMEOUT_ENV = "PEER_TIMEOUT_S"
DEFAULT_PEER_TIMEOUT_S = 300   # hosts of a cluster started by hand, minutes apart at most
PEER_REPORT_EVERY_S = 30


def peer_timeout_s():
  """PEER_TIMEOUT_S from the environment (seconds), or the default."""
  text = os.environ.get(PEER_TIMEOUT_ENV, "").strip()
  if not text:
    return DEFAULT_PEER_TIMEOUT_S
  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not 0 < value < float("inf"):
    raise DistributeError("%s=%s is not a number of seconds; give a positive number, e.g. "
                          "%s=600" % (PEER_TIMEOUT_ENV, text, PEER_TIMEOUT_ENV))
  return value


def cluster_tasks(config_json):
  """[(name such as "worker 1", "host:port")] of every task of the cluster, in order."""
  return [("%s %d" % (job, index), address) for job in JOBS
          for index, address in enumerate(config_json["cluster"].get(job, []))]


def own_task(config_json):
  task = config_json["task"]
  return "%s %d" % (task["type"], task.get("index", 0))


def _listen_on_own_address(name, address):
  """A socket listening on this task's host:port while it waits: the others' probes find it,
  and an address that is not this host's, or a port in use, is said before TensorFlow's
  server would fail on it or hang."""
  host, port = parse_address(address, name)
  try:
    family, kind, proto, _, where = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
  except socket.gaierror as e:
    raise DistributeError("TF_CONFIG names this task (%s) %s, but its host %s cannot be "
                          "resolved (%s); give this host's address" % (name, address, host, e))
  listener = socket.socket(family, kind, proto)
  listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    listener.bind(where)
    listener.listen(16)
  except OSError as e:
    listener.close()
    if e.errno == errno.EADDRINUSE:
      raise DistributeError("port %d of this host, where TF_CONFIG puts this task (%s %s), is "
                            "in use by another program (or by this trainer started twice); "
                            "stop it or give the task another port" % (port, name, address))
    raise DistributeError("TF_CONFIG names this task (%s) %s, but %s is not an address of this "
                          "host (%s); give this host's own address there, or check the task's "
                          "index" % (name, address, host, e.strerror))
  listener.setblocking(False)
  return listener


def _is_up(address):
  host, port = parse_address(address, "address")
  try:
    socket.create_connection((host, port), timeout=1).close()
    return True
  except OSError:   # refused, unreachable, unresolvable (yet): not up
    return False


def wait_for_peers(config_json, log, timeout_s=None):
  """Waits until every other task of the cluster accepts connections on its host:port, at
  most timeout_s seconds (PEER_TIMEOUT_S, default 300), saying what it waits for; then
  DistributeError naming the tasks that never came.

  TF 1.15's collective all-reduce waits for a missing worker without end and says nothing,
  so this wait comes before TensorFlow's server starts: each host listens on its own
  address meanwhile (the others' probes see it), then hands that port to TensorFlow."""
  timeout_s = peer_timeout_s() if timeout_s is None else timeout_s
  name = own_task(config_json)
  tasks = cluster_tasks(config_json)
  listener = _listen_on_own_address(name, dict(tasks)[name])
  host, port = parse_address(dict(tasks)[name], name)
  waiting = [(task, address) for task, address in tasks if task != name]
  start = time.time()
  log("Waiting for the other host(s) of the cluster: %s (at most %d s, %s=N changes it; "
      "Ctrl-C stops)" % (", ".join("%s at %s" % t for t in waiting), timeout_s,
                         PEER_TIMEOUT_ENV))
  log("note: TensorFlow 1.15's server listens on port %d of every interface of this host, "
      "not on %s alone (it cannot bind one address), and runs what any host reaching it "
      "sends: keep the cluster's ports behind a firewall" % (port, host))
  next_report = start + PEER_REPORT_EVERY_S
  try:
    while True:
      waiting = [(task, address) for task, address in waiting if not _is_up(address)]
      try:
        while True:   # the others' probes of this host
          listener.accept()[0].close()
      except (BlockingIOError, socket.timeout):
        pass
      now = time.time()
      if not waiting:
        log("All %d hosts are up (after %d s); from here, no training step for %d s (a host "
            "stopped or hangs) stops the run" % (len(tasks), now - start, timeout_s))
        return
      if now - start >= timeout_s:
        raise DistributeError(
            "%s did not come within %d s (%s); start %s with the same TF_CONFIG and its own "
            "\"task\", or check the address and the firewall; a longer wait: %s=SECONDS"
            % (", ".join("%s at %s" % t for t in waiting), timeout_s, PEER_TIMEOUT_ENV,
               "them" if len(waiting) > 1 else "it", PEER_TIMEOUT_ENV))
      if now >= next_report:
        log("Still waiting for %s (%d of %d s)" % (
            ", ".join("%s at %s" % t for t in waiting), now - start, timeout_s))
        next_report = now + PEER_REPORT_EVERY_S
      time.sleep(0.2)
  finally:
    listener.close()


def release_server():
  """Drops the TensorFlow server that train_and_evaluate started for this host, while
  TensorFlow is whole: left to the interpreter's exit, its __del__ runs after TF's modules
  are torn down and prints a traceback ("Exception ignored in Server.__del__")."""
  # pylint: disable=g-import-not-at-top
  from tensorflow.python.distribute import distribute_coordinator
  holder = distribute_coordinator._thread_local  # pylint: disable=protected-access
  if getattr(holder, "server", None) is not None:
    holder.server = None


def stop_when_stalled(current_step, timeout_s, stop):
  """After the wait for the hosts: a daemon thread that calls stop(step) when current_step()
  has not moved for timeout_s seconds (a host that died or hangs mid-run: TF 1.15's
  all-reduce waits for it without end). stop ends the process."""
  def watch():
    last, since = current_step(), time.time()
    while True:
      time.sleep(1)
      step = current_step()
      if step != last:
        last, since = step, time.time()
      elif time.time() - since > timeout_s:
        stop(step)
        return
  watcher = threading.Thread(target=watch, name="stalled-cluster-watch", daemon=True)
  watcher.start()
  return watcher
