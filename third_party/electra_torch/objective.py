"""The ELECTRA objective: dynamic masking, generator loss, sampled fake tokens, discriminator loss.

The same computation as third_party/electra/pretraining_model.py (tests/conformance/SPEC.md,
section 2), written for PyTorch. The random draws (which positions, which become [MASK], the
generator's sample) come from draws.py; `Draws` lets a caller give them instead, which is how
the conformance check hands both implementations the same masks and samples.

Shapes: B batch, T sequence, N prediction slots (max_predictions_per_seq), V vocab.
"""
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from electra_torch import draws
from electra_torch.model import Dropout, Electra

KEEP_AS_MASK = 0.85   # a chosen position becomes [MASK] with this probability, else keeps its token
GENERATOR, DISCRIMINATOR = 1001, 1002   # Dropout.at places of the two networks' dropout keys


@dataclass
class SpecialIds:
    cls: int
    sep: int
    mask: int


@dataclass
class Masked:
    input_ids: torch.Tensor   # [B, T] with [MASK] written in
    positions: torch.Tensor   # [B, N] chosen positions (0 in unused slots)
    ids: torch.Tensor         # [B, N] original tokens there (0 in unused slots)
    weights: torch.Tensor     # [B, N] float, 1 for the slots in use


@dataclass
class Given:
    """Draws a caller supplies instead of the step's own (conformance checks)."""
    masked: Optional[Masked] = None
    sampled_ids: Optional[torch.Tensor] = None   # [B, N]


@dataclass
class Losses:
    total: torch.Tensor       # gen_weight * mlm + disc_weight * disc (mean over this batch)
    mlm_sum: torch.Tensor     # numerators and denominators, so that a batch split over
    mlm_count: torch.Tensor   # processes sums to the one-process loss
    disc_sum: torch.Tensor
    disc_count: torch.Tensor
    metrics: Dict[str, torch.Tensor]


def scatter_update(sequence: torch.Tensor, updates: torch.Tensor, positions: torch.Tensor):
    """Writes updates [B, N] into sequence [B, T] at positions [B, N], as the TF graph does:
    position 0 ([CLS], where unused slots point) is never written, and a position drawn several
    times gets the integer mean of its updates. Returns (sequence, written [B, T] int)."""
    total = torch.zeros_like(sequence).scatter_add_(1, positions, updates.to(sequence.dtype))
    counts = torch.zeros_like(sequence).scatter_add_(1, positions, torch.ones_like(positions))
    counts[:, 0] = 0
    written = counts.clamp(max=1)
    values = torch.div(total, counts.clamp(min=1), rounding_mode="floor")
    return (1 - written) * sequence + written * values, written


def num_to_predict(input_mask: torch.Tensor, mask_prob: float, slots: int) -> torch.Tensor:
    """[B]: max(1, min(slots, round(mask_prob * real tokens))), round half to even as tf.round."""
    tokens = input_mask.sum(-1).float()
    return torch.round(tokens * mask_prob).long().clamp(max=slots).clamp(min=1)


def mask_weights(input_mask: torch.Tensor, mask_prob: float, slots: int) -> torch.Tensor:
    """[B, N] float: 1 for the prediction slots in use (no randomness: known before masking)."""
    num = num_to_predict(input_mask, mask_prob, slots)
    return (torch.arange(slots, device=input_mask.device)[None, :] < num[:, None]).float()


def mask_inputs(input_ids, input_mask, special: SpecialIds, mask_prob: float, slots: int,
                key: torch.Tensor, rows: torch.Tensor) -> Masked:
    """Dynamic masking: up to `slots` positions drawn uniformly, with replacement, among the
    real tokens that are not [CLS], [SEP] or [MASK]; 85% of them become [MASK]."""
    candidates = input_mask.bool() & (input_ids != special.sep) & (input_ids != special.cls) \
        & (input_ids != special.mask)                                             # [B, T]
    weights = mask_weights(input_mask, mask_prob, slots)                          # [B, N]
    count = candidates.sum(-1, keepdim=True)                                      # [B, 1]
    # The k-th candidate, k uniform in [0, count): the first position whose running count of
    # candidates exceeds k.
    u = draws.uniform(key, draws.MASK_POSITIONS, rows, (slots,))
    k = (u * count).long().clamp(max=(count - 1).clamp(min=0))
    running = candidates.long().cumsum(-1)
    positions = torch.searchsorted(running, k + 1).clamp(max=input_ids.shape[1] - 1)
    positions = positions * (count > 0) * weights.long()
    ids = torch.gather(input_ids, 1, positions) * weights.long()
    to_mask = positions * (draws.uniform(key, draws.MASK_KEEP, rows, (slots,)) < KEEP_AS_MASK)
    masked_ids, _ = scatter_update(input_ids, torch.full_like(to_mask, special.mask), to_mask)
    return Masked(masked_ids, positions, ids, weights)


def sample(logits: torch.Tensor, temperature: float, disallow: Optional[torch.Tensor],
           key: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """One token per slot from softmax(logits / temperature) by the Gumbel-max trick, as the
    TF graph samples (noise -log(-log(u + 1e-9) + 1e-9)); disallow [B, N]: ids never drawn."""
    logits = logits.detach() / temperature
    if disallow is not None:
        logits = logits - 1000.0 * F.one_hot(disallow, logits.shape[-1]).to(logits.dtype)
    u = draws.uniform(key, draws.GUMBEL, rows, logits.shape[1:])
    gumbel = -torch.log(-torch.log(u + 1e-9) + 1e-9)
    return torch.argmax(logits + gumbel, -1)


def generator_outputs(logits, ids, temperature: float, disallow_correct: bool, key, rows):
    """Per-slot cross-entropy [B, N], argmax and a sample of the generator's logits [B, N, V]."""
    per_slot = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    sampled = sample(logits, temperature, ids if disallow_correct else None, key, rows)
    return per_slot, logits.argmax(-1), sampled


def generator_head_outputs(head, hidden, table, ids, temperature: float, disallow_correct: bool,
                           key, rows):
    """generator_outputs of the head's logits: the region torch.compile fuses, so that the
    [B, N, V] logits are read by one kernel for the loss and one for the sample, and the
    Gumbel noise is never written (Electra.compile_regions)."""
    return generator_outputs(head(hidden, table).float(), ids, temperature, disallow_correct,
                             key, rows)


def electra_losses(model: Electra, input_ids, input_mask, segment_ids, special: SpecialIds,
                   key: torch.Tensor, rows: torch.Tensor, training: bool,
                   mlm_count: Optional[torch.Tensor] = None,
                   disc_count: Optional[torch.Tensor] = None,
                   given: Optional[Given] = None,
                   probe: Optional[torch.Tensor] = None) -> Losses:
    """The step's losses on a batch. mlm_count / disc_count: the denominators of the whole
    global batch when this is a share of it (default: this batch's own). probe: see
    model.NormTap (its gradient is the embedding rows' share of the squared global norm)."""
    config = model.config
    given = given or Given()
    sizes = model.disc_sizes
    dropout = Dropout(sizes.hidden_dropout_prob, sizes.attention_probs_dropout_prob,
                      key if training else None, rows)
    # Each network drops with draws of its own, as TF draws every dropout op apart: the same
    # draws would drop the same embedding features in both (the embeddings are shared).
    generator_dropout, discriminator_dropout = dropout.at(GENERATOR), dropout.at(DISCRIMINATOR)
    masked = given.masked or mask_inputs(input_ids, input_mask, special, config.mask_prob,
                                         config.max_predictions_per_seq, key, rows)
    if config.uniform_generator:
        logits = model.generator_logits(masked.input_ids, input_mask, segment_ids,
                                        masked.positions, generator_dropout, probe)  # [B, N, V]
        per_slot, preds, sampled = generator_outputs(
            logits, masked.ids, config.temperature, config.disallow_correct, key, rows)
    else:
        hidden, table = model.generator_hidden(masked.input_ids, input_mask, segment_ids,
                                               masked.positions, generator_dropout,
                                               probe)                             # [B, N, H]
        head_fn = model.head_fn or generator_head_outputs
        per_slot, preds, sampled = head_fn(
            model.generator_predictions, hidden, table, masked.ids, config.temperature,
            config.disallow_correct, key, rows)
    mlm_sum = (masked.weights * per_slot).sum()
    if mlm_count is None:
        mlm_count = masked.weights.sum()
    mlm = mlm_sum / (mlm_count + 1e-6)
    total = config.gen_weight * mlm
    metrics = {"masked_lm_ids": masked.ids, "masked_lm_preds": preds,
               "masked_lm_weights": masked.weights, "mlm_loss": per_slot}
    disc_sum = torch.zeros((), device=input_ids.device)
    if disc_count is None:
        disc_count = input_mask.sum().float()
    if config.electra_objective:
        original, _ = scatter_update(masked.input_ids, masked.ids, masked.positions)
        if given.sampled_ids is not None:
            sampled = given.sampled_ids
        fake, written = scatter_update(original, sampled, masked.positions)
        labels = written * (fake != original)                                    # [B, T]
        disc_logits = model.discriminator_logits(fake, input_mask, segment_ids,
                                                 discriminator_dropout, probe)
        weights = input_mask.float()
        losses = F.binary_cross_entropy_with_logits(disc_logits, labels.float(),
                                                    reduction="none") * weights
        disc_sum = losses.sum()
        total = total + config.disc_weight * disc_sum / (1e-6 + disc_count)
        metrics.update({"sampled_tokids": sampled, "disc_labels": labels,
                        "disc_logits": disc_logits, "disc_example_loss":
                            losses.sum(-1) / (1e-6 + weights.sum(-1))})
    return Losses(total, mlm_sum, mlm_count, disc_sum, disc_count, metrics)
