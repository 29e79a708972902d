"""The BERT-style transformer that ELECTRA's generator and discriminator are made of.

TF1 graph code. Variable names are a checkpoint format shared with the reference
(google-research/electra) and the published conversion tools, so every scope and
variable name below is fixed: `<scope>/embeddings/{word,token_type,position}_embeddings`,
`<scope>/embeddings/LayerNorm/{beta,gamma}`, `<scope>/embeddings_project/{kernel,bias}`,
`<scope>/encoder/layer_N/attention/self/{query,key,value}`,
`<scope>/encoder/layer_N/attention/output/{dense,LayerNorm}`,
`<scope>/encoder/layer_N/intermediate/dense`, `<scope>/encoder/layer_N/output/{dense,LayerNorm}`.
"""
import copy
import json
import math

import tensorflow.compat.v1 as tf


class BertConfig(object):
  """Sizes of one transformer (the discriminator's or the generator's)."""

  def __init__(self, vocab_size, hidden_size=768, num_hidden_layers=12,
               num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
               hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
               max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02):
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.num_hidden_layers = num_hidden_layers
    self.num_attention_heads = num_attention_heads
    self.intermediate_size = intermediate_size
    self.hidden_act = hidden_act
    self.hidden_dropout_prob = hidden_dropout_prob
    self.attention_probs_dropout_prob = attention_probs_dropout_prob
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.initializer_range = initializer_range

  @classmethod
  def from_dict(cls, values):
    config = cls(vocab_size=None)
    for key, value in values.items():
      setattr(config, key, value)
    return config

  def to_dict(self):
    return copy.deepcopy(self.__dict__)

  def to_json_string(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def gelu(x):
  """GELU, the exact form with erf (not BERT's tanh approximation)."""
  return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def get_activation(name):
  activations = {"gelu": gelu, "relu": tf.nn.relu, "tanh": tf.tanh, "linear": None}
  if name not in activations:
    raise ValueError("unsupported hidden_act %r (known: %s)" % (name, ", ".join(activations)))
  return activations[name]


def create_initializer(initializer_range=0.02):
  return tf.truncated_normal_initializer(stddev=initializer_range)


def shape_list(tensor):
  """Static dimensions where known, dynamic scalars elsewhere."""
  static = tensor.shape.as_list()
  dynamic = tf.shape(tensor)
  return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def dropout(x, rate):
  if rate is None or rate == 0.0:
    return x
  return tf.nn.dropout(x, rate=rate)


def layer_norm(x, name="LayerNorm"):
  """Layer normalization over the last axis, epsilon 1e-12 (variables beta, gamma)."""
  width = x.shape[-1].value
  with tf.variable_scope(name):
    beta = tf.get_variable("beta", [width], initializer=tf.zeros_initializer())
    gamma = tf.get_variable("gamma", [width], initializer=tf.ones_initializer())
    mean, variance = tf.nn.moments(x, [-1], keep_dims=True)
    return tf.nn.batch_normalization(x, mean, variance, offset=beta, scale=gamma,
                                     variance_epsilon=1e-12)


def dense(x, units, name, activation=None, kernel_initializer=None):
  """A fully connected layer over the last axis (variables kernel, bias).

  A kernel_initializer of None means Glorot uniform, the default of tf.layers.dense,
  which the reference uses for embeddings_project and the discriminator's last layer.
  """
  width = x.shape[-1].value
  with tf.variable_scope(name):
    kernel = tf.get_variable("kernel", [width, units], initializer=kernel_initializer)
    bias = tf.get_variable("bias", [units], initializer=tf.zeros_initializer())
    if x.shape.ndims == 2:
      y = tf.matmul(x, kernel)
    else:
      dims = shape_list(x)
      y = tf.matmul(tf.reshape(x, [-1, width]), kernel)
      y = tf.reshape(y, dims[:-1] + [units])
    y = tf.nn.bias_add(y, bias)
    return activation(y) if activation is not None else y


def embed(input_ids, token_type_ids, config, embedding_size):
  """Word + token-type + position embeddings, LayerNorm, dropout; returns (output, table).

  Runs in the caller's `.../embeddings` variable scope.
  """
  init = create_initializer(config.initializer_range)
  word_table = tf.get_variable("word_embeddings", [config.vocab_size, embedding_size],
                               initializer=init)
  type_table = tf.get_variable("token_type_embeddings",
                               [config.type_vocab_size, embedding_size], initializer=init)
  position_table = tf.get_variable("position_embeddings",
                                   [config.max_position_embeddings, embedding_size],
                                   initializer=init)
  seq_length = shape_list(input_ids)[1]
  # gather is exact and cheaper than the one-hot matmul a TPU needs.
  output = tf.gather(word_table, input_ids)
  output += tf.gather(type_table, token_type_ids)
  output += tf.expand_dims(position_table[:seq_length], 0)
  output = layer_norm(output)
  output = dropout(output, config.hidden_dropout_prob)
  return output, word_table


def attention(x2d, attention_bias, batch_size, seq_length, config):
  """Multi-head self-attention on [B*T, H]; returns [B*T, H]."""
  heads = config.num_attention_heads
  head_size = config.hidden_size // heads
  init = create_initializer(config.initializer_range)

  def split_heads(t):
    t = tf.reshape(t, [batch_size, seq_length, heads, head_size])
    return tf.transpose(t, [0, 2, 1, 3])

  query = split_heads(dense(x2d, heads * head_size, "query", kernel_initializer=init))
  key = split_heads(dense(x2d, heads * head_size, "key", kernel_initializer=init))
  value = split_heads(dense(x2d, heads * head_size, "value", kernel_initializer=init))
  scores = tf.matmul(query, key, transpose_b=True)
  scores = scores * (1.0 / math.sqrt(float(head_size)))
  scores += attention_bias
  probs = tf.nn.softmax(scores)
  probs = dropout(probs, config.attention_probs_dropout_prob)
  context = tf.matmul(probs, value)
  context = tf.transpose(context, [0, 2, 1, 3])
  return tf.reshape(context, [batch_size * seq_length, heads * head_size])


def transformer(x, input_mask, config):
  """The encoder stack (runs in the caller's `.../encoder` scope); x is [B, T, H]."""
  if config.hidden_size % config.num_attention_heads != 0:
    raise ValueError("hidden size %d is not a multiple of the number of attention heads %d"
                     % (config.hidden_size, config.num_attention_heads))
  batch_size, seq_length, width = shape_list(x)
  init = create_initializer(config.initializer_range)
  act = get_activation(config.hidden_act)
  # Padding positions get -10000 before the softmax, as in BERT.
  mask = tf.cast(tf.reshape(input_mask, [batch_size, 1, 1, seq_length]), tf.float32)
  attention_bias = (1.0 - mask) * -10000.0
  layer_input = tf.reshape(x, [-1, width])
  for index in range(config.num_hidden_layers):
    with tf.variable_scope("layer_%d" % index):
      with tf.variable_scope("attention"):
        with tf.variable_scope("self"):
          heads = attention(layer_input, attention_bias, batch_size, seq_length, config)
        with tf.variable_scope("output"):
          attention_output = dense(heads, config.hidden_size, "dense", kernel_initializer=init)
          attention_output = dropout(attention_output, config.hidden_dropout_prob)
          attention_output = layer_norm(attention_output + layer_input)
      with tf.variable_scope("intermediate"):
        intermediate = dense(attention_output, config.intermediate_size, "dense",
                             activation=act, kernel_initializer=init)
      with tf.variable_scope("output"):
        layer_output = dense(intermediate, config.hidden_size, "dense", kernel_initializer=init)
        layer_output = dropout(layer_output, config.hidden_dropout_prob)
        layer_input = layer_norm(layer_output + attention_output)
  return tf.reshape(layer_input, [batch_size, seq_length, config.hidden_size])


class BertModel(object):
  """One transformer: embeddings (possibly shared), optional projection, encoder.

  scope: "electra" for the discriminator, "generator" for the generator. The embeddings
  live under "electra/embeddings" and are shared unless untied_embeddings, in which case
  they live under "<scope>/embeddings". embedding_size None means the hidden size.
  """

  def __init__(self, bert_config, is_training, input_ids, input_mask, token_type_ids,
               scope="electra", embedding_size=None, untied_embeddings=False):
    config = copy.deepcopy(bert_config)
    if not is_training:
      config.hidden_dropout_prob = 0.0
      config.attention_probs_dropout_prob = 0.0
    if embedding_size is None:
      embedding_size = config.hidden_size
    embeddings_scope = (scope if untied_embeddings else "electra") + "/embeddings"
    with tf.variable_scope(embeddings_scope, reuse=tf.AUTO_REUSE):
      self.embedding_output, self.embedding_table = embed(
          input_ids, token_type_ids, config, embedding_size)
    with tf.variable_scope(scope):
      hidden = self.embedding_output
      if embedding_size != config.hidden_size:
        hidden = dense(hidden, config.hidden_size, "embeddings_project")
      with tf.variable_scope("encoder"):
        self.sequence_output = transformer(hidden, input_mask, config)

  def get_sequence_output(self):
    return self.sequence_output

  def get_embedding_table(self):
    return self.embedding_table
