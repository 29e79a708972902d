"""One ELECTRA training step with its random parts given, for tests/test_distributed.py.

The trainer's masking and generator sampling draw random numbers inside the graph, per
replica, so two runs cannot see the same masked positions or fake tokens. Here they are
given: the tiny ELECTRA's generator and discriminator (the trainer's own functions and
variables, dropout off) see a fixed batch of real Spanish text, the generator is scored at
fixed positions against the original tokens and the discriminator against fixed labels.
Every example has the same number of scored positions and tokens, so the mean of the
replicas' losses is the loss of the whole batch. The step itself is the trainer's:
optimization.create_train_op under the strategy that distribute.build_plan returns.

  python distributed_step.py OUT_DIR   one step as a worker of the cluster in TF_CONFIG
                                       (through tf.estimator.train_and_evaluate, as the
                                       trainer); the chief saves OUT_DIR/model.ckpt-1
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ELECTRA_DIR = os.path.join(REPO, "third_party", "electra")
CONFORMANCE = os.path.join(REPO, "tests", "conformance")
VOCAB = os.path.join(CONFORMANCE, "vocab-es-8k.txt")
FORTUNES = os.path.join(CONFORMANCE, "corpus", "fortunes", "refranes.fortunes")
if ELECTRA_DIR not in sys.path:
  sys.path.insert(0, ELECTRA_DIR)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow.compat.v1 as tf  # noqa: E402

import configure_pretraining  # noqa: E402
import distribute  # noqa: E402
import optimization  # noqa: E402
import pretraining_model  # noqa: E402
import run_pretraining  # noqa: E402
import tokenization  # noqa: E402

GLOBAL_BATCH = 4
SEQ = 32
POSITIONS = [3, 7, 12, 18, 26]
HPARAMS = {"model_size": "small", "vocab_size": 8000, "do_lower_case": False,
           "max_seq_length": SEQ, "train_batch_size": GLOBAL_BATCH,
           "model_hparam_overrides": {"hidden_size": 64, "num_hidden_layers": 2,
                                      "hidden_dropout_prob": 0.0,
                                      "attention_probs_dropout_prob": 0.0}}
LEARNING_RATE = 1e-3


def make_config(**changes):
  config = configure_pretraining.PretrainingConfig("step", "/nonexistent",
                                                   **dict(HPARAMS, **changes))
  config.vocab_file = VOCAB
  return config


def fixed_batch():
  """GLOBAL_BATCH full-length sequences of refranes.fortunes, their scored positions
  masked, the original tokens as labels, and fixed discriminator labels (numpy)."""
  tokenizer = tokenization.FullTokenizer(VOCAB, do_lower_case=False)
  with open(FORTUNES, encoding="utf-8") as f:
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f.read()[:20000]))
  vocab = tokenizer.vocab
  rows = []
  for i in range(GLOBAL_BATCH):
    body = ids[i * (SEQ - 2):(i + 1) * (SEQ - 2)]
    rows.append([vocab["[CLS]"]] + body + [vocab["[SEP]"]])
  original = np.array(rows, np.int32)
  masked = original.copy()
  masked[:, POSITIONS] = vocab["[MASK]"]
  disc_labels = np.zeros([GLOBAL_BATCH, SEQ], np.float32)
  disc_labels[:, POSITIONS[::2]] = 1.0
  return {"input_ids": masked, "input_mask": np.ones_like(masked),
          "segment_ids": np.zeros_like(masked),
          "positions": np.tile(np.array(POSITIONS, np.int32), [GLOBAL_BATCH, 1]),
          "labels": original[:, POSITIONS], "disc_labels": disc_labels}


def fixed_loss(config, batch):
  """The ELECTRA loss (gen_weight 1, disc_weight 50) with masking and samples given."""
  logits = pretraining_model.build_inference_logits(
      config, batch["input_ids"], batch["input_mask"], batch["segment_ids"])
  gen = pretraining_model.gather_positions(logits["generator_logits"], batch["positions"])
  mlm = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=batch["labels"], logits=gen))
  disc = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=batch["disc_labels"], logits=logits["discriminator_logits"]))
  return mlm + config.disc_weight * disc


def train_op_for(config, batch):
  loss = fixed_loss(config, batch)
  train_op, _ = optimization.create_train_op(loss, LEARNING_RATE, 10, 0,
                                             weight_decay_rate=0.01)
  return train_op


def rows(batch, start, count):
  return {k: v[start:start + count] for k, v in batch.items()}


def write_initial_checkpoint(model_dir):
  """MODEL_DIR/model.ckpt-0: the weights every run starts from (random initializers draw
  by op id, which differs between graphs; a checkpoint does not)."""
  config = make_config()
  with tf.Graph().as_default():
    tf.set_random_seed(1234)
    train_op_for(config, {k: tf.constant(v) for k, v in fixed_batch().items()})
    saver = tf.train.Saver()
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      return saver.save(session, os.path.join(model_dir, "model.ckpt"), global_step=0)


def variables_after_one_step(initial_checkpoint, cpu_replicas=0):
  """{name: value} of every variable after one step from initial_checkpoint, on one
  device or on cpu_replicas CPU replicas (in this process); with replicas the value is
  the list of every copy [on /cpu:0, on /cpu:1, ...]."""
  batch = fixed_batch()
  config = make_config(num_cpu_replicas=cpu_replicas)
  plan = distribute.build_plan(config)
  session_config = tf.ConfigProto()
  with tf.Graph().as_default():
    if plan.strategy is None:
      train_op = train_op_for(config, {k: tf.constant(v) for k, v in batch.items()})
    else:
      session_config.device_count["CPU"] = plan.cpu_devices
      per_replica = plan.per_replica_batch
      with plan.strategy.scope():
        tf.train.get_or_create_global_step()

        def step():
          replica = tf.distribute.get_replica_context().replica_id_in_sync_group
          own = {k: tf.gather(tf.constant(v), tf.range(per_replica) + replica * per_replica)
                 for k, v in batch.items()}
          return train_op_for(config, own)

        train_op = plan.strategy.group(plan.strategy.extended.call_for_each_replica(step))
    variables = tf.global_variables()
    saver = tf.train.Saver()
    with tf.Session(config=session_config) as session:
      saver.restore(session, initial_checkpoint)
      session.run(train_op)
      fetches = {optimization.variable_name(var): var if plan.strategy is None else
                 list(plan.strategy.experimental_local_results(var)) for var in variables}
      return session.run(fetches)   # one run: each new set of fetches costs an executor


def worker_step(out_dir):
  """One step as a worker of the TF_CONFIG cluster, through the Estimator as the trainer,
  from the model.ckpt-0 the caller put in out_dir."""
  batch = fixed_batch()
  config = make_config()
  plan = distribute.build_plan(config)
  task = distribute.tf_config()["task"]
  mine = rows(batch, task["index"] * plan.per_replica_batch, plan.per_replica_batch)

  def input_fn(params, input_context=None):
    return tf.data.Dataset.from_tensors(mine).repeat()

  def model_fn(features, labels, mode, params):
    train_op = train_op_for(config, features)
    hooks = []
    if distribute.is_chief():   # as the trainer: only the chief saves, with its hook
      hooks.append(run_pretraining.CheckpointSaverHook(out_dir, save_steps=1))
    return tf.estimator.EstimatorSpec(mode=mode, loss=tf.constant(0.0), train_op=train_op,
                                      training_hooks=hooks)

  run_config = tf.estimator.RunConfig(model_dir=out_dir, train_distribute=plan.strategy,
                                      save_checkpoints_steps=1, save_summary_steps=None,
                                      log_step_count_steps=None)
  if os.environ.get("STEP_VERBOSE"):
    tf.logging.set_verbosity(tf.logging.INFO)
  estimator = tf.estimator.Estimator(model_fn=model_fn, config=run_config)
  tf.estimator.train_and_evaluate(estimator, tf.estimator.TrainSpec(input_fn, max_steps=1),
                                  tf.estimator.EvalSpec(input_fn, steps=1))
  print("worker %d done: %s" % (task["index"], plan.what))


if __name__ == "__main__":
  worker_step(sys.argv[1])
