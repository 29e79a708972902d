"""This trainer's step with every random draw written out, to check another implementation.

  python step_probe.py --hparams JSON --checkpoint PREFIX --batch IN.npz --output OUT.npz
  python step_probe.py --hparams JSON --checkpoint PREFIX --gradients IN.npz \
      --step N --output OUT.npz

First form: restores the checkpoint, runs build_pretraining_model on the batch (IN.npz:
input_ids, input_mask, segment_ids [B, T]) with dropout off, and one training step of
create_train_op, all in one session.run so that the masks and samples of the losses are the
ones the update used. The draws come from the hparams' seed (0 when it is unset), so one
machine gives the same step run after run. OUT.npz holds the draws (masked_lm_positions, masked_input_ids,
masked_lm_ids, masked_lm_weights, sampled_tokids), the losses, the global norm of the
gradients, and every variable after the step (TF names).

Second form: the optimizer alone. IN.npz holds a gradient per variable (TF names); the
update (clip to global norm 1, Adam with weight decay at the learning rate of step N) is
applied to the checkpoint's variables and slots, which OUT.npz then holds.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
  sys.path.insert(0, _HERE)

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

import configure_pretraining  # noqa: E402
import optimization  # noqa: E402
import pretraining_model  # noqa: E402

DRAWS = ("masked_lm_positions", "masked_input_ids", "masked_lm_ids", "masked_lm_weights",
         "sampled_tokids")


def variables_by_name():
  return {optimization.variable_name(v): v for v in tf.global_variables()}


def restore(session, prefix):
  """Restores what the checkpoint holds of this graph's variables (slots included)."""
  reader = tf.train.NewCheckpointReader(prefix)
  stored = reader.get_variable_to_shape_map()
  present = [v for v in tf.global_variables() if optimization.variable_name(v) in stored]
  session.run(tf.variables_initializer(tf.global_variables()))
  tf.train.Saver(present).restore(session, prefix)


def training_step(config, prefix, batch):
  tf.set_random_seed(0 if config.seed is None else config.seed)
  features = {name: tf.constant(batch[name].astype(np.int32))
              for name in ("input_ids", "input_mask", "segment_ids")}
  model = pretraining_model.build_pretraining_model(config, features, is_training=False)
  train_op, rate = optimization.create_train_op(
      model.total_loss, config.learning_rate, config.num_train_steps, config.num_warmup_steps,
      weight_decay_rate=config.weight_decay_rate, lr_decay_power=config.lr_decay_power)
  tvars = tf.trainable_variables()
  norm = tf.linalg.global_norm(tf.gradients(model.total_loss, tvars))
  fetches = {"total_loss": model.total_loss, "mlm_loss": model.mlm_loss,
             "learning_rate": rate, "global_norm": norm, "train_op": train_op}
  if model.disc_loss is not None:
    fetches["disc_loss"] = model.disc_loss
  fetches.update({name: model.tensors[name] for name in DRAWS if name in model.tensors})
  with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0}, inter_op_parallelism_threads=1,
                                        intra_op_parallelism_threads=1)) as session:
    restore(session, prefix)
    values = session.run(fetches)
    values.pop("train_op")
    values.update(session.run(variables_by_name()))
  return values


def optimizer_step(config, prefix, gradients, step):
  graph_vars = {}
  for name, value in gradients.items():
    graph_vars[name] = tf.get_variable(name, value.shape, tf.float32)
  global_step = tf.constant(step, tf.int64)
  rate = optimization.learning_rate_schedule(config.learning_rate, global_step,
                                             config.num_train_steps, config.num_warmup_steps,
                                             config.lr_decay_power)
  names = sorted(gradients)
  grads = optimization.clip_by_global_norm([tf.constant(gradients[n]) for n in names], 1.0)
  update = optimization.adam_weight_decay_update(
      zip(grads, [graph_vars[n] for n in names]), rate, config.weight_decay_rate)
  with tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})) as session:
    restore(session, prefix)
    session.run(update)
    return session.run(variables_by_name())


def main(argv=None):
  parser = argparse.ArgumentParser(prog="step_probe.py", description=__doc__.split("\n")[0])
  parser.add_argument("--hparams", required=True, help="JSON object of hparams")
  parser.add_argument("--checkpoint", required=True, help="checkpoint prefix to start from")
  parser.add_argument("--batch", help="npz of input_ids, input_mask, segment_ids [B, T]")
  parser.add_argument("--gradients", help="npz of one gradient per variable (TF names)")
  parser.add_argument("--step", type=int, default=0, help="global step of the update")
  parser.add_argument("--vocab-file", required=True)
  parser.add_argument("--output", required=True)
  args = parser.parse_args(argv)
  hparams = json.loads(args.hparams)
  config = configure_pretraining.PretrainingConfig("step", "unused", **hparams)
  config.vocab_file = args.vocab_file
  tf.logging.set_verbosity(tf.logging.ERROR)
  if args.gradients:
    with np.load(args.gradients) as f:
      values = optimizer_step(config, args.checkpoint, {k: f[k] for k in f.files}, args.step)
  else:
    with np.load(args.batch) as f:
      values = training_step(config, args.checkpoint, {k: f[k] for k in f.files})
  np.savez(args.output, **{k: np.asarray(v) for k, v in values.items()})
  return 0


if __name__ == "__main__":
  sys.exit(main())
