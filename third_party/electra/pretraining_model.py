"""The ELECTRA objective: dynamic masking, generator, sampled fake tokens, discriminator.

build_pretraining_model() is the training/eval graph used by run_pretraining.py;
build_inference_logits() builds the same generator and discriminator (same functions,
same variable names, no dropout) on raw inputs, for comparing a checkpoint with PyTorch.
"""
import collections

import numpy as np
import tensorflow.compat.v1 as tf

import configure_pretraining
import devices
import modeling
import tokenization


def load_vocab(vocab_file):
  """token -> id, the id being the 0-based line number (the builder's vocab reader)."""
  return tokenization.load_vocab(vocab_file)


def count_vocab_lines(vocab_file):
  """The number of tokens (ids) of a vocab file, counted as the builder counts them."""
  return len(tokenization.read_vocab_tokens(vocab_file))


def _bert_config(config, sizes):
  args = dict(modeling.BertConfig(vocab_size=None).to_dict())
  args.update(config.model_hparam_overrides)
  args.update(sizes)
  return modeling.BertConfig.from_dict(args)


def get_bert_config(config):
  """The discriminator's transformer (configure_pretraining.network_sizes has the rule)."""
  return _bert_config(config, configure_pretraining.network_sizes(config)["discriminator"])


def get_generator_config(config):
  """The generator's own transformer (when electra_objective and untied_generator)."""
  return _bert_config(config, configure_pretraining.network_sizes(config)["generator"])


def get_embedding_size(config):
  return configure_pretraining.network_sizes(config)["embedding_size"]


# ---- position helpers ---------------------------------------------------------------------

def gather_positions(sequence, positions):
  """sequence [B, T] or [B, T, D], positions [B, N] -> [B, N] or [B, N, D]."""
  return tf.gather(sequence, positions, batch_dims=1)


def scatter_update(sequence, updates, positions):
  """Writes updates [B, N] into sequence [B, T] at positions [B, N].

  Position 0 ([CLS], also where unused prediction slots point) is never written. A
  position drawn several times receives the integer mean of its updates, as the
  reference does. Returns (updated sequence, int32 mask of written positions).
  """
  batch_size, seq_length = modeling.shape_list(sequence)
  num = modeling.shape_list(positions)[1]
  shift = tf.expand_dims(seq_length * tf.range(batch_size), -1)
  flat_positions = tf.reshape(positions + shift, [-1, 1])
  total = tf.scatter_nd(flat_positions, tf.reshape(updates, [-1]), [batch_size * seq_length])
  counts = tf.scatter_nd(flat_positions, tf.ones([batch_size * num], tf.int32),
                         [batch_size * seq_length])
  total = tf.reshape(total, [batch_size, seq_length])
  counts = tf.reshape(counts, [batch_size, seq_length])
  not_first = tf.concat([tf.zeros([batch_size, 1], tf.int32),
                         tf.ones([batch_size, seq_length - 1], tf.int32)], -1)
  counts *= not_first
  values = tf.math.floordiv(total, tf.maximum(1, counts))
  written = tf.minimum(counts, 1)
  return (1 - written) * sequence + written * values, written


# ---- masking ------------------------------------------------------------------------------

MaskedInputs = collections.namedtuple("MaskedInputs", [
    "input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
    "masked_lm_weights"])


def mask_inputs(config, vocab, input_ids, input_mask, segment_ids):
  """Dynamic masking of a batch (new positions at every step)."""
  num_slots = config.max_predictions_per_seq
  batch_size, seq_length = modeling.shape_list(input_ids)
  candidates = tf.cast(input_mask, tf.bool)
  for token in ("[SEP]", "[CLS]", "[MASK]"):
    candidates &= tf.not_equal(input_ids, vocab[token])
  num_tokens = tf.cast(tf.reduce_sum(input_mask, -1), tf.float32)
  num_to_predict = tf.maximum(1, tf.minimum(
      num_slots, tf.cast(tf.round(num_tokens * config.mask_prob), tf.int32)))
  weights = tf.cast(tf.sequence_mask(num_to_predict, num_slots), tf.float32)
  # Uniform over the candidates, with replacement.
  probs = tf.cast(candidates, tf.float32)
  probs /= tf.reduce_sum(probs, -1, keepdims=True)
  positions = tf.random.categorical(tf.log(probs), num_slots, dtype=tf.int32)
  positions *= tf.cast(weights, tf.int32)
  masked_ids = gather_positions(input_ids, positions) * tf.cast(weights, tf.int32)
  # 85% of the chosen positions become [MASK]; the others keep their token.
  to_mask = positions * tf.cast(tf.less(tf.random.uniform([batch_size, num_slots]), 0.85),
                                tf.int32)
  masked_input_ids, _ = scatter_update(
      input_ids, tf.fill([batch_size, num_slots], vocab["[MASK]"]), to_mask)
  return MaskedInputs(tf.stop_gradient(masked_input_ids), input_mask, segment_ids,
                      positions, masked_ids, weights)


def sample_from_softmax(logits, disallow=None):
  """One sample per row of softmax(logits) by the Gumbel-max trick; returns ids."""
  if disallow is not None:
    logits -= 1000.0 * disallow
  uniform = tf.random.uniform(modeling.shape_list(logits), minval=0, maxval=1)
  gumbel = -tf.log(-tf.log(uniform + 1e-9) + 1e-9)
  return tf.argmax(logits + gumbel, -1, output_type=tf.int32)


# ---- heads --------------------------------------------------------------------------------

def generator_head(hidden, embedding_table, bert_config):
  """generator_predictions: dense (gelu) to embedding width, LayerNorm, tied output."""
  with tf.variable_scope("generator_predictions"):
    hidden = modeling.dense(hidden, embedding_table.shape[-1].value, "dense",
                            activation=modeling.get_activation(bert_config.hidden_act),
                            kernel_initializer=modeling.create_initializer(
                                bert_config.initializer_range))
    hidden = modeling.layer_norm(hidden)
    output_bias = tf.get_variable("output_bias", [bert_config.vocab_size],
                                  initializer=tf.zeros_initializer())
    logits = tf.tensordot(hidden, embedding_table, [[hidden.shape.ndims - 1], [1]])
    return tf.nn.bias_add(logits, output_bias)


def discriminator_head(sequence_output, bert_config):
  """discriminator_predictions: dense (gelu) then dense_1 to one logit per token."""
  with tf.variable_scope("discriminator_predictions"):
    hidden = modeling.dense(sequence_output, bert_config.hidden_size, "dense",
                            activation=modeling.get_activation(bert_config.hidden_act),
                            kernel_initializer=modeling.create_initializer(
                                bert_config.initializer_range))
    return tf.squeeze(modeling.dense(hidden, 1, "dense_1"), -1)


# ---- the networks -------------------------------------------------------------------------

def check_supported(config):
  if config.electric_objective:
    raise ValueError("electric_objective is not supported by this implementation; "
                     "set it to false (ELECTRA objective) or use the reference's code")
  if config.two_tower_generator:
    raise ValueError("two_tower_generator (ELECTRIC only) is not supported; set it to false")


def build_generator(config, bert_config, embedding_size, inputs, is_training):
  """The generator's transformer, or None for the uniform generator."""
  if config.uniform_generator:
    return None
  if config.electra_objective and config.untied_generator:
    return modeling.BertModel(
        get_generator_config(config), is_training, inputs.input_ids,
        inputs.input_mask, inputs.segment_ids, scope="generator",
        embedding_size=None if config.untied_generator_embeddings else embedding_size,
        untied_embeddings=config.untied_generator_embeddings)
  # Plain masked LM, or generator and discriminator sharing every weight.
  return modeling.BertModel(bert_config, is_training, inputs.input_ids, inputs.input_mask,
                            inputs.segment_ids, scope="electra", embedding_size=embedding_size)


def generator_logits_at(config, bert_config, generator, hidden_positions, batch_shape):
  """Generator logits [B, N, V]: at the gathered positions, or everywhere (positions None)."""
  if generator is None:
    return tf.zeros(batch_shape + [bert_config.vocab_size])
  hidden = generator.get_sequence_output()
  if hidden_positions is not None:
    hidden = gather_positions(hidden, hidden_positions)
  head_config = bert_config
  if config.electra_objective and config.untied_generator:
    head_config = get_generator_config(config)
  return generator_head(hidden, generator.get_embedding_table(), head_config)


def build_discriminator(config, bert_config, embedding_size, input_ids, input_mask,
                        segment_ids, is_training):
  reuse = tf.AUTO_REUSE if not config.untied_generator else None
  with tf.variable_scope(tf.get_variable_scope(), reuse=reuse):
    model = modeling.BertModel(bert_config, is_training, input_ids, input_mask, segment_ids,
                               scope="electra", embedding_size=embedding_size)
  return discriminator_head(model.get_sequence_output(), bert_config)


PretrainingOutputs = collections.namedtuple("PretrainingOutputs", [
    "total_loss", "mlm_loss", "disc_loss", "metric_fn", "metric_tensors", "tensors"])


def build_pretraining_model(config, features, is_training):
  """The ELECTRA training graph on a batch of features; returns PretrainingOutputs."""
  check_supported(config)
  bert_config = get_bert_config(config)
  embedding_size = get_embedding_size(config)
  vocab = load_vocab(config.vocab_file)
  inputs = mask_inputs(config, vocab, features["input_ids"], features["input_mask"],
                       features["segment_ids"])

  # Generator: masked-LM loss over the kept prediction slots.
  generator = build_generator(config, bert_config, embedding_size, inputs, is_training)
  logits = generator_logits_at(config, bert_config, generator, inputs.masked_lm_positions,
                               modeling.shape_list(inputs.masked_lm_ids))
  mlm_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=inputs.masked_lm_ids, logits=logits)
  mlm_loss = (tf.reduce_sum(inputs.masked_lm_weights * mlm_example_loss)
              / (tf.reduce_sum(inputs.masked_lm_weights) + 1e-6))
  mlm_preds = tf.argmax(logits, -1, output_type=tf.int32)
  total_loss = config.gen_weight * mlm_loss

  # Fake data: the original tokens with a generator sample at each masked position.
  original_ids, _ = scatter_update(inputs.input_ids, inputs.masked_lm_ids,
                                   inputs.masked_lm_positions)
  disallow = None
  if config.disallow_correct:
    disallow = tf.one_hot(inputs.masked_lm_ids, depth=bert_config.vocab_size, dtype=tf.float32)
  sampled_ids = tf.stop_gradient(
      sample_from_softmax(logits / config.temperature, disallow=disallow))
  fake_ids, written = scatter_update(original_ids, sampled_ids, inputs.masked_lm_positions)
  fake_labels = written * (1 - tf.cast(tf.equal(fake_ids, original_ids), tf.int32))

  metric_tensors = collections.OrderedDict([
      ("masked_lm_ids", inputs.masked_lm_ids), ("masked_lm_preds", mlm_preds),
      ("masked_lm_weights", inputs.masked_lm_weights), ("mlm_loss", mlm_example_loss),
      ("input_mask", inputs.input_mask),
      # The step's random draws, for checking another implementation against this graph.
      ("masked_lm_positions", inputs.masked_lm_positions),
      ("masked_input_ids", inputs.input_ids)])
  disc_loss = None
  if config.electra_objective:
    disc_logits = build_discriminator(config, bert_config, embedding_size, fake_ids,
                                      inputs.input_mask, inputs.segment_ids, is_training)
    token_weights = tf.cast(inputs.input_mask, tf.float32)
    losses = tf.nn.sigmoid_cross_entropy_with_logits(
        logits=disc_logits, labels=tf.cast(fake_labels, tf.float32)) * token_weights
    disc_example_loss = (tf.reduce_sum(losses, -1)
                         / (1e-6 + tf.reduce_sum(token_weights, -1)))
    disc_loss = tf.reduce_sum(losses) / (1e-6 + tf.reduce_sum(token_weights))
    total_loss += config.disc_weight * disc_loss
    metric_tensors.update([
        ("sampled_tokids", sampled_ids), ("disc_loss", disc_example_loss),
        ("disc_labels", fake_labels), ("disc_probs", tf.nn.sigmoid(disc_logits)),
        ("disc_preds", tf.cast(tf.round((tf.sign(disc_logits) + 1) / 2), tf.int32))])

  keys = list(metric_tensors)
  with_disc = config.electra_objective and config.disc_weight > 0

  def metric_fn(*values):
    d = dict(zip(keys, values))
    flat = lambda name: tf.reshape(d[name], [-1])
    metrics = {
        "masked_lm_accuracy": tf.metrics.accuracy(
            labels=flat("masked_lm_ids"), predictions=flat("masked_lm_preds"),
            weights=flat("masked_lm_weights")),
        "masked_lm_loss": tf.metrics.mean(values=flat("mlm_loss"),
                                          weights=flat("masked_lm_weights")),
    }
    if config.electra_objective:
      metrics["sampled_masked_lm_accuracy"] = tf.metrics.accuracy(
          labels=flat("masked_lm_ids"), predictions=flat("sampled_tokids"),
          weights=flat("masked_lm_weights"))
    if with_disc:
      labels, preds, mask = d["disc_labels"], d["disc_preds"], d["input_mask"]
      metrics["disc_loss"] = tf.metrics.mean(d["disc_loss"])
      metrics["disc_auc"] = tf.metrics.auc(labels * mask,
                                           d["disc_probs"] * tf.cast(mask, tf.float32))
      metrics["disc_accuracy"] = tf.metrics.accuracy(labels=labels, predictions=preds,
                                                     weights=mask)
      metrics["disc_precision"] = tf.metrics.accuracy(labels=labels, predictions=preds,
                                                      weights=preds * mask)
      metrics["disc_recall"] = tf.metrics.accuracy(labels=labels, predictions=preds,
                                                   weights=labels * mask)
    return metrics

  return PretrainingOutputs(total_loss, mlm_loss, disc_loss, metric_fn,
                            [metric_tensors[k] for k in keys], metric_tensors)


def build_inference_logits(config, input_ids, input_mask, segment_ids):
  """Discriminator logits [B, T] and generator logits [B, T, V] on unmasked inputs.

  Same variables as the training graph (restore a training checkpoint with
  tf.train.Saver()), eval mode (no dropout). config is a PretrainingConfig.
  """
  check_supported(config)
  bert_config = get_bert_config(config)
  embedding_size = get_embedding_size(config)
  inputs = MaskedInputs(input_ids, input_mask, segment_ids, None, None, None)
  generator = build_generator(config, bert_config, embedding_size, inputs, False)
  generator_logits = generator_logits_at(config, bert_config, generator, None,
                                         modeling.shape_list(input_ids))
  result = {"generator_logits": generator_logits}
  if config.electra_objective:
    result["discriminator_logits"] = build_discriminator(
        config, bert_config, embedding_size, input_ids, input_mask, segment_ids, False)
  return result


def run_inference_logits(config, checkpoint_prefix, input_ids, input_mask, segment_ids):
  """Restores a checkpoint into build_inference_logits' graph and runs it on CPU.

  Returns (logits, built): logits {"generator_logits", ["discriminator_logits"]} as float32
  numpy arrays; built describes the graph as it was actually built, for checking a
  conversion against it rather than against the rule that sized it: the shape of every
  variable, and {scope: number of attention heads}, read from the first layer's attention
  probabilities [batch, heads, seq, seq] ("electra" for the discriminator's network,
  "generator" for the generator's own).
  """
  graph = tf.Graph()
  with graph.as_default():
    outputs = build_inference_logits(config, tf.constant(input_ids), tf.constant(input_mask),
                                     tf.constant(segment_ids))
    shapes = collections.OrderedDict(
        (v.op.name, v.shape.as_list()) for v in tf.global_variables())
    heads = {}
    for op in graph.get_operations():
      if op.type == "Softmax" and "/encoder/layer_0/attention/" in op.name:
        name = op.name.split("/", 1)[0]
        scope = name if name in ("electra", "generator") else name.rsplit("_", 1)[0]
        heads.setdefault(scope, op.outputs[0].shape.as_list()[1])
    saver = tf.train.Saver()
    # On the CPU (the reference's numbers), without TensorFlow's CUDA start-up lines.
    session, _ = devices.run_capturing_stderr(
        lambda: tf.Session(config=tf.ConfigProto(device_count={"GPU": 0})))
    with session:
      saver.restore(session, checkpoint_prefix)
      values = session.run(outputs)
  logits = {k: np.asarray(v, np.float32) for k, v in values.items()}
  return logits, {"variable_shapes": shapes, "attention_heads": heads}
