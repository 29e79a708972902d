"""The transformer that ELECTRA's generator and discriminator are made of, and their heads.

Every parameter is a TF1 variable: a module's attribute path with '.' read as '/' is the
variable's name in the TF1 checkpoint (`electra.encoder.layer_0.attention.self.query.kernel`
is `electra/encoder/layer_0/attention/self/query/kernel`), with the TF shape and meaning:
a dense layer keeps TF's kernel [in, out] (no transpose on the way in or out), a LayerNorm
its gamma and beta. The sizes come from configure_pretraining.network_sizes, the one rule
the TF1 graph is built with.

Shapes: B batch, T sequence, N prediction slots, E embedding width, H hidden width,
V vocab, h heads.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from electra_torch import draws

LAYER_NORM_EPSILON = 1e-12
ATTENTION_MASK_BIAS = -10000.0   # what BERT adds to the scores of padding positions


@dataclass
class NetworkSizes:
    """One transformer's sizes (configure_pretraining.network_sizes' dict, typed)."""
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02


def truncated_normal_(tensor: torch.Tensor, stddev: float) -> torch.Tensor:
    """tf.truncated_normal_initializer: normal, redrawn beyond two standard deviations."""
    return nn.init.trunc_normal_(tensor, std=stddev, a=-2 * stddev, b=2 * stddev)


def glorot_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    """TF's default kernel initializer (a tf.get_variable without one)."""
    return nn.init.xavier_uniform_(tensor)


def activation(name: str):
    return {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh, "linear": lambda x: x}[name]


class NormTap(torch.autograd.Function):
    """Identity forward; backward also returns |grad|^2 as the gradient of `probe`.

    TF clips by a global norm in which a table that is only looked up (tf.gather: its
    gradient is IndexedSlices) counts row by row as it was looked up: a token seen twice
    counts twice, not once summed. A table with any dense use (the word table under the
    generator head's logits) gets a dense gradient and counts as a whole. Tapping the rows
    looked up from only-gathered tables with one shared probe makes autograd deliver exactly
    their sum of squares as the probe's gradient, inside compiled graphs too (no hooks, no
    side effects).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, grad.float().pow(2).sum()


def tap(x: torch.Tensor, probe: Optional[torch.Tensor]) -> torch.Tensor:
    return x if probe is None else NormTap.apply(x, probe)


class Dense(nn.Module):
    """TF's dense layer: y = x @ kernel + bias, kernel [in, out]."""

    def __init__(self, n_in: int, n_out: int, stddev: Optional[float]):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        if stddev is None:
            glorot_uniform_(self.kernel)
        else:
            truncated_normal_(self.kernel, stddev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.kernel.t(), self.bias)


class LayerNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, LAYER_NORM_EPSILON)


class Embeddings(nn.Module):
    """`<scope>/embeddings`: word, token-type and position tables [*, E] and their LayerNorm."""

    def __init__(self, sizes: NetworkSizes, width: int):
        super().__init__()
        std = sizes.initializer_range
        self.word_embeddings = nn.Parameter(truncated_normal_(torch.empty(sizes.vocab_size, width), std))
        self.token_type_embeddings = nn.Parameter(
            truncated_normal_(torch.empty(sizes.type_vocab_size, width), std))
        self.position_embeddings = nn.Parameter(
            truncated_normal_(torch.empty(sizes.max_position_embeddings, width), std))
        self.LayerNorm = LayerNorm(width)


class Layer(nn.Module):
    """`encoder/layer_N`: self-attention and feed-forward, each with residual and LayerNorm."""

    def __init__(self, sizes: NetworkSizes):
        super().__init__()
        hidden, std = sizes.hidden_size, sizes.initializer_range
        self.heads = sizes.num_attention_heads
        self.act = activation(sizes.hidden_act)
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({name: Dense(hidden, hidden, std)
                                   for name in ("query", "key", "value")}),
            "output": nn.ModuleDict({"dense": Dense(hidden, hidden, std),
                                     "LayerNorm": LayerNorm(hidden)})})
        self.intermediate = nn.ModuleDict({"dense": Dense(hidden, sizes.intermediate_size, std)})
        self.output = nn.ModuleDict({"dense": Dense(sizes.intermediate_size, hidden, std),
                                     "LayerNorm": LayerNorm(hidden)})

    def forward(self, x: torch.Tensor, bias: torch.Tensor, dropout: "Dropout") -> torch.Tensor:
        B, T, H = x.shape
        qkv = self.attention["self"]
        # One matmul for query, key and value: [B, T, 3H] -> 3 x [B, h, T, H/h].
        kernel = torch.cat([qkv["query"].kernel, qkv["key"].kernel, qkv["value"].kernel], 1)
        bias_qkv = torch.cat([qkv["query"].bias, qkv["key"].bias, qkv["value"].bias])
        q, k, v = F.linear(x, kernel.t(), bias_qkv).view(B, T, 3, self.heads, H // self.heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                                 dropout_p=dropout.attention_rate)
        context = context.transpose(1, 2).reshape(B, T, H)            # [B, T, H]
        out = self.attention["output"]
        attended = out["LayerNorm"](dropout(out["dense"](context), 1) + x)
        inner = self.act(self.intermediate["dense"](attended))        # [B, T, 4H]
        return self.output["LayerNorm"](dropout(self.output["dense"](inner), 2) + attended)


def run_layer(layer: Layer, x: torch.Tensor, bias: torch.Tensor, dropout: "Dropout") -> torch.Tensor:
    """One encoder layer: the region torch.compile compiles once and every layer of the same
    width reuses (Electra.compile_regions), which keeps compiling to seconds."""
    return layer(x, bias, dropout)


class Dropout:
    """Hidden dropout from draws' counter-based noise, one stream per (key, call site, row), so
    a batch split over processes drops what one process drops; attention dropout is SDPA's.
    key None: no dropout."""

    def __init__(self, rate: float, attention_rate: float, key: Optional[torch.Tensor],
                 rows: Optional[torch.Tensor]):
        self.rate = rate if key is not None else 0.0
        self.attention_rate = attention_rate if key is not None else 0.0
        self.key, self.rows = key, rows

    def at(self, place: int) -> "Dropout":
        """The same dropout with a key of its own for one place (a layer, the embeddings)."""
        if self.key is None:
            return self
        return Dropout(self.rate, self.attention_rate, draws.substream(self.key, place), self.rows)

    def __call__(self, x: torch.Tensor, site: int) -> torch.Tensor:
        if not self.rate:
            return x
        keep = draws.uniform(self.key, draws.DROPOUT + site, self.rows, x.shape[1:]) >= self.rate
        return torch.where(keep, x / (1.0 - self.rate), torch.zeros_like(x))


class Transformer(nn.Module):
    """One network (`electra` or `generator`): its own embeddings (when untied),
    `embeddings_project` when its width differs from the embeddings', and `encoder`."""

    def __init__(self, sizes: NetworkSizes, embedding_size: int, own_embeddings: bool):
        super().__init__()
        self.sizes = sizes
        if own_embeddings:
            self.embeddings = Embeddings(sizes, embedding_size)
        if embedding_size != sizes.hidden_size:
            self.embeddings_project = Dense(embedding_size, sizes.hidden_size, None)
        self.encoder = nn.ModuleDict({"layer_%d" % i: Layer(sizes)
                                      for i in range(sizes.num_hidden_layers)})

    def forward(self, embeddings: Embeddings, input_ids: torch.Tensor, input_mask: torch.Tensor,
                segment_ids: torch.Tensor, dropout: Dropout, probe: Optional[torch.Tensor],
                word_rows_counted: bool, layer_fn=run_layer) -> torch.Tensor:
        """[B, T] ids -> [B, T, H]; the rows of only-gathered tables are tapped (NormTap)."""
        T = input_ids.shape[1]
        words = F.embedding(input_ids, embeddings.word_embeddings)                     # [B, T, E]
        if word_rows_counted:
            words = tap(words, probe)
        types = tap(F.embedding(segment_ids, embeddings.token_type_embeddings), probe) # [B, T, E]
        x = words + types + embeddings.position_embeddings[:T]
        x = dropout.at(0)(embeddings.LayerNorm(x), 0)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)                                   # [B, T, H]
        bias = (1.0 - input_mask[:, None, None, :].float()) * ATTENTION_MASK_BIAS   # [B,1,1,T]
        for i, layer in enumerate(self.encoder.values()):
            x = layer_fn(layer, x, bias, dropout.at(i + 1))
        return x


class GeneratorHead(nn.Module):
    """`generator_predictions`: dense (gelu) to E, LayerNorm, logits against the word table."""

    def __init__(self, hidden: int, embedding_size: int, vocab_size: int, std: float, act: str):
        super().__init__()
        self.dense = Dense(hidden, embedding_size, std)
        self.act = activation(act)
        self.LayerNorm = LayerNorm(embedding_size)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """[B, N, H], table [V, E] -> logits [B, N, V]."""
        return F.linear(self.LayerNorm(self.act(self.dense(hidden))), table, self.output_bias)


class DiscriminatorHead(nn.Module):
    """`discriminator_predictions`: dense (gelu), then dense_1 to one logit per token."""

    def __init__(self, hidden: int, std: float, act: str):
        super().__init__()
        self.dense = Dense(hidden, hidden, std)
        self.act = activation(act)
        self.dense_1 = Dense(hidden, 1, None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dense_1(self.act(self.dense(hidden))).squeeze(-1)      # [B, T]


def sizes_from_config(config) -> Tuple[int, NetworkSizes, NetworkSizes]:
    """(embedding size, discriminator sizes, generator sizes) of a PretrainingConfig."""
    import configure_pretraining  # third_party/electra, on sys.path (electra_torch/__init__)
    found = configure_pretraining.network_sizes(config)
    extra = {k: v for k, v in config.model_hparam_overrides.items()
             if k not in found["discriminator"]}
    disc = NetworkSizes(**dict(found["discriminator"], **extra))
    gen = NetworkSizes(**dict(found["generator"], **extra))
    return found["embedding_size"], disc, gen


class Electra(nn.Module):
    """Generator and discriminator with the TF1 graph's variables for a PretrainingConfig.

    electra_objective and untied_generator (the default): the generator is a network of
    its own under `generator/`, sharing `electra/embeddings` unless
    untied_generator_embeddings. untied_generator false: one network serves both.
    uniform_generator: no generator network (its logits are zeros). electra_objective false:
    a plain masked LM, no discriminator.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        embedding_size, disc, gen = sizes_from_config(config)
        self.embedding_size = embedding_size
        self.disc_sizes, self.gen_sizes = disc, gen
        self.electra = Transformer(disc, embedding_size, own_embeddings=True)
        self.own_generator = (not config.uniform_generator and config.electra_objective
                              and config.untied_generator)
        if self.own_generator:
            untied = config.untied_generator_embeddings
            self.generator = Transformer(gen, gen.hidden_size if untied else embedding_size,
                                         own_embeddings=untied)
        if not config.uniform_generator:
            head = gen if self.own_generator else disc
            width = (gen.hidden_size if self.own_generator and config.untied_generator_embeddings
                     else embedding_size)
            self.generator_predictions = GeneratorHead(
                head.hidden_size, width, disc.vocab_size, head.initializer_range, head.hidden_act)
        if config.electra_objective:
            self.discriminator_predictions = DiscriminatorHead(
                disc.hidden_size, disc.initializer_range, disc.hidden_act)
        self.layer_fn = run_layer
        self.head_fn = None   # objective.generator_head_outputs, set by the objective

    def compile_regions(self, head_fn) -> None:
        """torch.compile the encoder layer (compiled once per width, reused by every layer) and
        the generator's head with its loss and sample."""
        self.layer_fn = torch.compile(run_layer, dynamic=False)
        self.head_fn = torch.compile(head_fn, dynamic=False)

    def generator_network(self) -> Tuple[Transformer, Embeddings]:
        if self.own_generator:
            net = self.generator
            return net, getattr(net, "embeddings", self.electra.embeddings)
        return self.electra, self.electra.embeddings

    def generator_hidden(self, input_ids, input_mask, segment_ids, positions, dropout, probe):
        """The generator's hidden states [B, N, H] at positions [B, N] (all when None), and the
        word table its head reads."""
        net, embeddings = self.generator_network()
        hidden = net(embeddings, input_ids, input_mask, segment_ids, dropout, probe, False,
                     self.layer_fn)
        if positions is not None:
            hidden = torch.gather(hidden, 1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
        return hidden, embeddings.word_embeddings

    def generator_logits(self, input_ids, input_mask, segment_ids, positions, dropout, probe):
        """Logits [B, N, V] at positions [B, N] (every position when None)."""
        if self.config.uniform_generator:
            B = input_ids.shape[0]
            N = positions.shape[1] if positions is not None else input_ids.shape[1]
            return torch.zeros(B, N, self.disc_sizes.vocab_size, device=input_ids.device)
        hidden, table = self.generator_hidden(input_ids, input_mask, segment_ids, positions,
                                              dropout, probe)
        return self.generator_predictions(hidden, table).float()

    def discriminator_logits(self, input_ids, input_mask, segment_ids, dropout, probe):
        hidden = self.electra(self.electra.embeddings, input_ids, input_mask, segment_ids,
                              dropout, probe, self.config.uniform_generator or self.own_generator
                              and self.config.untied_generator_embeddings, self.layer_fn)
        return self.discriminator_predictions(hidden).float()                  # [B, T]

    def row_counted_tables(self) -> List[nn.Parameter]:
        """The tables whose gradient counts row by row (NormTap): every token-type table, and
        the discriminator's word table when no generator head reads it."""
        tables = [self.electra.embeddings.token_type_embeddings]
        if self.config.uniform_generator or (self.own_generator
                                             and self.config.untied_generator_embeddings):
            tables.append(self.electra.embeddings.word_embeddings)
        if self.own_generator and hasattr(self.generator, "embeddings"):
            tables.append(self.generator.embeddings.token_type_embeddings)
        return tables


def tf_name(parameter_name: str) -> str:
    """The TF1 variable of a parameter: `electra.encoder.layer_0...` -> `electra/encoder/layer_0...`."""
    return parameter_name.replace(".", "/")


def tf_variables(model: nn.Module) -> Dict[str, nn.Parameter]:
    """TF variable name -> parameter, in the module's order."""
    return {tf_name(name): p for name, p in model.named_parameters()}


def inference_logits(model: Electra, input_ids, input_mask, segment_ids) -> Dict[str, torch.Tensor]:
    """Generator logits [B, T, V] and discriminator logits [B, T] on raw inputs, no dropout."""
    off = Dropout(0.0, 0.0, None, None)
    with torch.no_grad():
        result = {"generator_logits": model.generator_logits(
            input_ids, input_mask, segment_ids, None, off, None)}
        if model.config.electra_objective:
            result["discriminator_logits"] = model.discriminator_logits(
                input_ids, input_mask, segment_ids, off, None)
    return result
