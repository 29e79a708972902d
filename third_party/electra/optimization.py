"""Adam with decoupled weight decay (no bias correction), clipping and the LR schedule.

Slots are plain variables named `<variable>/adam_m` and `<variable>/adam_v`, as in the
reference's checkpoints; `global_step` is the estimator's int64 step.
"""
import re

import tensorflow.compat.v1 as tf
from tensorflow.python.ops import resource_variable_ops
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
  constants = (zero, beta_1_t, beta_2_t, epsilon_t)
  zeros = {}
  updates = []
  for grad, var in grads_and_vars:
    if grad is None:
      continue
    m, v = adam_slots(var, zeros)
    if isinstance(grad, tf.IndexedSlices):
      grad = tf.convert_to_tensor(grad)
    decays = bool(weight_decay_rate) and uses_weight_decay(variable_name(var))
    updates.append(adam_variable_update(var, m, v, grad, learning_rate,
                                        decay_rate if decays else None, constants))
  return tf.group(*updates)


def adam_slots(var, zeros):
  """The variable's Adam moments `<name>/adam_m`, `<name>/adam_v` (made at the root scope).

  Their initial value is a zeros tensor shared by every slot of the same shape (`zeros`:
  shape -> tensor, filled here): the same values as a zeros initializer per slot, with
  two ops fewer per slot: 1,400 of the ops that ELECTRA-small's graph would otherwise
  build in Python before the first step (about 0.7 ms each on a 2-core machine).
  """
  name = variable_name(var)
  shape = tuple(var.shape.as_list())
  if shape not in zeros:
    with tf.name_scope("adam_zeros"):
      zeros[shape] = tf.zeros(shape, tf.float32)
  m = tf.get_variable(name + "/adam_m", dtype=tf.float32, trainable=False,
                      initializer=zeros[shape])
  v = tf.get_variable(name + "/adam_v", dtype=tf.float32, trainable=False,
                      initializer=zeros[shape])
  return m, v


def adam_variable_update(var, m, v, grad, learning_rate, decay_rate, constants):
  """One variable's step (see adam_weight_decay_update); decay_rate None: no decay."""
  zero, beta_1_t, beta_2_t, epsilon_t = constants
  decay = None
  if decay_rate is not None:
    decay = decay_rate * var.value()  # the variable's read op (read_value() adds one more)
  with tf.control_dependencies([decay] if decay is not None else []):
    if resource_variable_ops.is_resource_variable(var):  # what tf.distribute creates
      step = training_ops.resource_apply_adam(
          var.handle, m.handle, v.handle, zero, zero, learning_rate, beta_1_t, beta_2_t,
          epsilon_t, grad, use_locking=False)
    else:
      step = training_ops.apply_adam(var, m, v, zero, zero, learning_rate, beta_1_t,
                                     beta_2_t, epsilon_t, grad, use_locking=False)
  if decay is not None:
    with tf.control_dependencies([step]):
      step = tf.assign_sub(var, decay)
  return step


class AdamWeightDecayOptimizer(tf.train.Optimizer):
  """The same update as a tf.train.Optimizer: for tf.distribute and TF's AMP wrapper.

  Under a strategy the reference's shape (every replica updating every variable itself)
  fails on mirrored variables, so the update moves to the cross-replica side:
  apply_gradients does one merge_call into _apply_across_replicas, which takes the MEAN of
  the replicas' gradients (all-reduce), clips the global norm of that mean (as one device
  clips the gradient of the whole batch), applies Adam to every copy of every variable in
  the strategy's update context, then adds 1 to global_step once. Slots are the
  plain `<name>/adam_m`, `<name>/adam_v` variables, made by create_slots() before any
  of this (TF1 refuses variables made inside the AMP wrapper's conditional).
  """

  def __init__(self, learning_rate, weight_decay_rate, clip_norm=1.0):
    super(AdamWeightDecayOptimizer, self).__init__(use_locking=False,
                                                   name="AdamWeightDecay")
    self._rate = learning_rate
    self._weight_decay_rate = weight_decay_rate
    self._clip_norm = clip_norm
    self._moments = {}
    self._zeros = {}       # the slots' shared initial values (see adam_slots)
    self._sliced = set()   # names of variables whose gradient is IndexedSlices

  def create_slots(self, variables):
    for var in variables:
      self._moments[variable_name(var)] = adam_slots(var, self._zeros)

  def compute_gradients(self, loss, var_list=None, **unused_kwargs):
    # Plain tf.gradients: no 1/replicas loss scaling (the all-reduce takes the mean).
    var_list = list(var_list if var_list is not None else tf.trainable_variables())
    return list(zip(tf.gradients(loss, var_list), var_list))

  def apply_gradients(self, grads_and_vars, global_step=None, name=None):
    # The reference clips by tf.clip_by_global_norm of tf.gradients' output, where a
    # gathered variable's gradient (IndexedSlices) counts the squares of its slices'
    # rows, not of their sum. That norm is kept: the rows' square sum is taken per
    # replica here, the gradients go dense for the all-reduce.
    dense, square_sums = [], []
    for grad, var in grads_and_vars:
      if grad is None:
        continue
      if isinstance(grad, tf.IndexedSlices):
        square_sums.append(tf.reduce_sum(tf.square(grad.values)))
        self._sliced.add(variable_name(var))
        grad = tf.convert_to_tensor(grad)
      dense.append((grad, var))
    sliced_square_sum = tf.add_n(square_sums) if square_sums else tf.constant(0.0)
    replica_context = tf.distribute.get_replica_context()   # None: cross-replica already
    if replica_context is not None:
      return replica_context.merge_call(
          self._apply_across_replicas, args=(dense, sliced_square_sum, global_step, name))
    return self._apply_across_replicas(tf.distribute.get_strategy(), dense,
                                       sliced_square_sum, global_step, name)

  def _apply_across_replicas(self, distribution, grads_and_vars, sliced_square_sum,
                             global_step=None, name=None):
    grads_and_vars = list(grads_and_vars)
    reduced = distribution.extended.batch_reduce_to(tf.distribute.ReduceOp.MEAN,
                                                    grads_and_vars)
    # The global norm of the whole batch's gradient, as one device computes it: every
    # copy of the mean is the same (the first serves all devices); a sliced gradient's
    # rows on one device are its replicas' rows over the number of replicas.
    replicas = float(distribution.num_replicas_in_sync)
    squares = [tf.reduce_sum(tf.square(distribution.experimental_local_results(g)[0]))
               for g, (_, var) in zip(reduced, grads_and_vars)
               if variable_name(var) not in self._sliced]
    squares.append(distribution.reduce(tf.distribute.ReduceOp.SUM, sliced_square_sum,
                                       axis=None) / (replicas * replicas))
    norm = tf.sqrt(tf.add_n(squares))
    scale = self._clip_norm * tf.minimum(1.0 / norm, 1.0 / self._clip_norm)  # clip_by_global_norm
    rate, weight_decay_rate = self._rate, self._weight_decay_rate

    def update(var, grad, m, v):
      # Runs once per copy of var, on its device, with the copies of grad, m and v there.
      constants = (tf.constant(0.0, name="adam_no_bias_correction"),
                   tf.constant(0.9, name="adam_beta_1"), tf.constant(0.999, name="adam_beta_2"),
                   tf.constant(1e-6, name="adam_epsilon"))
      learning_rate = tf.identity(rate)
      decay_rate = None
      if weight_decay_rate and uses_weight_decay(variable_name(var)):
        decay_rate = learning_rate * weight_decay_rate
      return adam_variable_update(var, m, v, grad * scale, learning_rate, decay_rate,
                                  constants)

    updates = []
    for grad, (_, var) in zip(reduced, grads_and_vars):
      name_of_var = variable_name(var)
      if name_of_var not in self._moments:
        self._moments[name_of_var] = adam_slots(var, self._zeros)
      m, v = self._moments[name_of_var]
      updates.extend(tf.nest.flatten(distribution.experimental_local_results(
          distribution.extended.update(var, update, args=(grad, m, v), group=False))))
    with tf.control_dependencies(updates):
      if global_step is None:
        return tf.group(*updates, name=name)
      return tf.group(global_step.assign_add(1), name=name)


def clip_by_global_norm(grads, clip_norm):
  """tf.clip_by_global_norm's clipped values, without its Identity op per gradient.

  The same ops otherwise, so the same numbers: the global norm from each gradient's
  l2_loss (a sliced gradient counts its rows), the scale clip_norm * min(1 / norm,
  1 / clip_norm) (NaN when the norm is not finite), each gradient times the scale.
  """
  with tf.name_scope("clip_by_global_norm"):
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads]
    half_squared = tf.reduce_sum(tf.stack([tf.nn.l2_loss(v) for v in values
                                           if v is not None]))
    norm = tf.sqrt(half_squared * tf.constant(2.0), name="global_norm")
    scale = clip_norm * tf.minimum(1.0 / norm, tf.constant(1.0) / clip_norm)
    scale = tf.where(tf.is_finite(norm), scale, tf.constant(float("nan")))
    clipped = []
    for grad, value in zip(grads, values):
      if value is not None:
        value = value * scale
        if isinstance(grad, tf.IndexedSlices):
          value = tf.IndexedSlices(value, grad.indices, grad.dense_shape)
      clipped.append(value)
    return clipped


# Ops that pass no gradient back to their inputs (registered as not differentiable).
_GRADIENT_STOPS = ("StopGradient", "PreventGradient")


def skip_inputs_without_gradient(variables):
  """Marks, on every op the gradient flows through, which inputs need no gradient.

  TF 1.15's gradient functions of Add, Sub, Mul, SquaredDifference, MatMul and a few
  more read `op.skip_input_indices` (set by eager's tape) and then build no ops for those
  inputs; in graph mode the attribute is missing, so tf.gradients builds the gradient
  of every input, including constants (`x * 0.5`), dropout masks and the attention bias,
  only for it to go unused: 1,300 of ELECTRA-small's 6,200 gradient ops, built in
  Python before the first step. An input needs no gradient when no path from the variables
  reaches it (through floating-point tensors, not through StopGradient). The gradients
  of the other inputs are the same ops either way. The marks stay on the graph's ops, so
  they hold for gradients with respect to these variables only: the one kind the
  trainer takes.
  """
  # A mirrored variable (tf.distribute) is one variable per device: start from all of them.
  frontier = [copy.op for v in variables for copy in getattr(v, "values", (v,))]
  reached = set(frontier)
  while frontier:
    op = frontier.pop()
    for output in op.outputs:
      if not (output.dtype.base_dtype.is_floating or output.dtype.base_dtype == tf.resource):
        continue
      for consumer in output.consumers():
        if consumer not in reached and consumer.type not in _GRADIENT_STOPS:
          reached.add(consumer)
          frontier.append(consumer)
  for op in reached:
    skip = tuple(i for i, t in enumerate(op.inputs) if t.op not in reached)
    if skip:
      op.skip_input_indices = skip


def create_train_op(loss, learning_rate, num_train_steps, num_warmup_steps,
                    weight_decay_rate=0.0, lr_decay_power=1.0, num_tpu_shards=0,
                    use_amp=False):
  """Returns (train_op, learning-rate tensor); the train op also advances global_step.

  With one device and use_amp false (the reference's case) the graph is the plain one
  below; under a tf.distribute strategy, or with use_amp, the AdamWeightDecayOptimizer
  path (same update, same slot names). use_amp wraps it in TF 1.15's automatic mixed
  precision rewrite with dynamic loss scaling: a step whose gradients are not finite is
  skipped, global_step included, and the loss scale lowered.
  """
  global_step = tf.train.get_or_create_global_step()
  rate = learning_rate_schedule(learning_rate, global_step, num_train_steps,
                                num_warmup_steps, lr_decay_power)
  tvars = tf.trainable_variables()
  skip_inputs_without_gradient(tvars)
  if use_amp or tf.distribute.has_strategy():
    optimizer = AdamWeightDecayOptimizer(rate, weight_decay_rate)
    optimizer.create_slots(tvars)
    if use_amp:
      optimizer = tf.train.experimental.enable_mixed_precision_graph_rewrite(
          optimizer, loss_scale="dynamic")
    grads_and_vars = optimizer.compute_gradients(loss, tvars)
    return optimizer.apply_gradients(grads_and_vars, global_step=global_step), rate
  grads = tf.gradients(loss, tvars)
  if num_tpu_shards:
    # The mean over TPU cores, as a cross-shard optimizer would take.
    grads = [None if g is None else tf.tpu.cross_replica_sum(tf.convert_to_tensor(g))
             / float(num_tpu_shards) for g in grads]
  grads = clip_by_global_norm(grads, clip_norm=1.0)
  apply_op = adam_weight_decay_update(zip(grads, tvars), rate, weight_decay_rate)
  with tf.control_dependencies([apply_op]):
    train_op = global_step.assign_add(1)
  return tf.group(train_op), rate
