"""Adam with decoupled weight decay (no bias correction), clipping and the LR schedule.

Slots are plain variables named `<variable>/adam_m` and `<variable>/adam_v`, as in the
reference's checkpoints; `global_step` is the estimator's int64 step.
"""
import re

import tensorflow.compat.v1 as tf
from tensorflow.python.training import training_ops

# Variables whose name contains one of these get no weight decay.
NO_DECAY_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")


def learning_rate_schedule(learning_rate, global_step, num_train_steps, num_warmup_steps,
                           lr_decay_power=1.0):
  """Polynomial decay to 0 over num_train_steps, times min(1, step / num_warmup_steps)."""
  rate = tf.train.polynomial_decay(learning_rate, global_step, num_train_steps,
                                   end_learning_rate=0.0, power=lr_decay_power, cycle=False)
  if num_warmup_steps > 0:
    warmup = tf.cast(global_step, tf.float32) / float(num_warmup_steps)
    rate *= tf.minimum(1.0, warmup)
  return rate


def variable_name(variable):
  return re.sub(r":\d+$", "", variable.name)


def uses_weight_decay(name):
  return not any(part in name for part in NO_DECAY_NAME_PARTS)


def adam_weight_decay_update(grads_and_vars, learning_rate, weight_decay_rate,
                             beta_1=0.9, beta_2=0.999, epsilon=1e-6):
  """The update ops; call at the root variable scope (slot names are absolute).

  Per variable p with gradient g (the reference's update, with no bias correction):
    m <- beta_1 m + (1 - beta_1) g;  v <- beta_2 v + (1 - beta_2) g^2
    p <- p - lr (m / (sqrt(v) + epsilon) + weight_decay_rate p)
  computed with TF's fused Adam kernel (whose bias correction vanishes when it is given
  beta powers of 0) and a separate decay term taken from p before the Adam step: a
  handful of ops per variable instead of some twenty, which builds and runs faster.
  """
  zero = tf.constant(0.0, name="adam_no_bias_correction")
  beta_1_t = tf.constant(beta_1, name="adam_beta_1")
  beta_2_t = tf.constant(beta_2, name="adam_beta_2")
  epsilon_t = tf.constant(epsilon, name="adam_epsilon")
  learning_rate = tf.convert_to_tensor(learning_rate)
  decay_rate = learning_rate * weight_decay_rate
  updates = []
  for grad, var in grads_and_vars:
    if grad is None:
      continue
    name = variable_name(var)
    shape = var.shape.as_list()
    m = tf.get_variable(name + "/adam_m", shape, tf.float32, trainable=False,
                        initializer=tf.zeros_initializer())
    v = tf.get_variable(name + "/adam_v", shape, tf.float32, trainable=False,
                        initializer=tf.zeros_initializer())
    if isinstance(grad, tf.IndexedSlices):
      grad = tf.convert_to_tensor(grad)
    decay = None
    if weight_decay_rate and uses_weight_decay(name):
      decay = decay_rate * var.read_value()
    with tf.control_dependencies([decay] if decay is not None else []):
      step = training_ops.apply_adam(var, m, v, zero, zero, learning_rate, beta_1_t,
                                     beta_2_t, epsilon_t, grad, use_locking=False)
    if decay is not None:
      with tf.control_dependencies([step]):
        step = tf.assign_sub(var, decay)
    updates.append(step)
  return tf.group(*updates)


def create_train_op(loss, learning_rate, num_train_steps, num_warmup_steps,
                    weight_decay_rate=0.0, lr_decay_power=1.0, num_tpu_shards=0):
  """Returns (train_op, learning-rate tensor); the train op also advances global_step."""
  global_step = tf.train.get_or_create_global_step()
  rate = learning_rate_schedule(learning_rate, global_step, num_train_steps,
                                num_warmup_steps, lr_decay_power)
  tvars = tf.trainable_variables()
  grads = tf.gradients(loss, tvars)
  if num_tpu_shards:
    # The mean over TPU cores, as a cross-shard optimizer would take.
    grads = [None if g is None else tf.tpu.cross_replica_sum(tf.convert_to_tensor(g))
             / float(num_tpu_shards) for g in grads]
  grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)
  apply_op = adam_weight_decay_update(zip(grads, tvars), rate, weight_decay_rate)
  with tf.control_dependencies([apply_op]):
    train_op = global_step.assign_add(1)
  return tf.group(train_op), rate
