"""do_eval: the TF1 trainer's evaluation metrics over num_eval_steps batches, no dropout.

The metrics and their weighting are the TF graph's (pretraining_model.metric_fn, computed
there by tf.metrics): masked-LM accuracy and loss over the prediction slots in use, the
sampled tokens' accuracy, the discriminator's mean per-example loss, its accuracy, precision
and recall over real tokens, and tf.metrics.auc's ROC AUC (200 thresholds, trapezoids) of
`labels * input_mask` against `sigmoid(logits) * input_mask` over every position, padding
included as TF counts it. Plus `loss` (the mean total loss) and `global_step`.
"""
from typing import Dict

import numpy as np
import torch

from electra_torch import draws, objective

AUC_THRESHOLDS = 200
AUC_EPSILON = 1e-7


def auc_thresholds() -> np.ndarray:
    inner = [(i + 1) * 1.0 / (AUC_THRESHOLDS - 1) for i in range(AUC_THRESHOLDS - 2)]
    return np.array([0.0 - AUC_EPSILON] + inner + [1.0 + AUC_EPSILON], dtype=np.float32)


class Metrics:
    """Sums over batches, as tf.metrics' local variables accumulate them."""

    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.thresholds = auc_thresholds()
        self.above = {True: np.zeros(AUC_THRESHOLDS), False: np.zeros(AUC_THRESHOLDS)}

    def add(self, name: str, numerator, denominator) -> None:
        self.sums[name + "/n"] = self.sums.get(name + "/n", 0.0) + float(numerator)
        self.sums[name + "/d"] = self.sums.get(name + "/d", 0.0) + float(denominator)

    def add_auc(self, labels: np.ndarray, probs: np.ndarray) -> None:
        # below[i]: how many thresholds lie below probs[i], i.e. which thresholds it exceeds.
        below = np.searchsorted(self.thresholds, probs, side="left")
        for positive in (True, False):
            counts = np.bincount(below[labels == positive], minlength=AUC_THRESHOLDS + 1)
            # above[t]: predictions > threshold t = those with more than t thresholds below.
            self.above[positive] += counts[::-1].cumsum()[::-1][1:]

    def value(self, name: str) -> float:
        d = self.sums[name + "/d"]
        return self.sums[name + "/n"] / d if d else 0.0

    def auc(self) -> float:
        # The lowest threshold is below every probability: its counts are all the positives
        # and all the negatives.
        tp, fp = self.above[True], self.above[False]
        fn, tn = tp[0] - tp, fp[0] - fp
        recall = (tp + AUC_EPSILON) / (tp + fn + AUC_EPSILON)
        fp_rate = fp / (fp + tn + AUC_EPSILON)
        return float(np.sum((fp_rate[:-1] - fp_rate[1:]) * (recall[:-1] + recall[1:]) / 2.0))


def evaluate(model, config, special: objective.SpecialIds, reader, rows: torch.Tensor,
             device: torch.device, seed: int, global_step: int) -> Dict[str, float]:
    metrics = Metrics()
    losses_total = []
    model.eval()
    with torch.no_grad():
        for step in range(config.num_eval_steps):
            batch = reader.next()
            features = batch["features"].to(device).long()
            ids, mask, segments = features[:, 0], features[:, 1], features[:, 2]
            key = draws.step_key(seed, torch.tensor(step, device=device))
            out = objective.electra_losses(model, ids, mask, segments, special, key, rows,
                                           training=False)
            losses_total.append(float(out.total))
            m = out.metrics
            weights = m["masked_lm_weights"]
            correct = (m["masked_lm_preds"] == m["masked_lm_ids"]).float()
            metrics.add("masked_lm_accuracy", (weights * correct).sum(), weights.sum())
            metrics.add("masked_lm_loss", (weights * m["mlm_loss"]).sum(), weights.sum())
            if config.electra_objective:
                sampled = (m["sampled_tokids"] == m["masked_lm_ids"]).float()
                metrics.add("sampled_masked_lm_accuracy", (weights * sampled).sum(), weights.sum())
            if config.electra_objective and config.disc_weight > 0:
                labels, logits, real = m["disc_labels"], m["disc_logits"], mask.float()
                preds = (logits > 0).long()
                right = (preds == labels).float()
                metrics.add("disc_loss", m["disc_example_loss"].sum(), len(ids))
                metrics.add("disc_accuracy", (right * real).sum(), real.sum())
                metrics.add("disc_precision", (right * preds * real).sum(), (preds * real).sum())
                metrics.add("disc_recall", (right * labels * real).sum(), (labels * real).sum())
                probs = (torch.sigmoid(logits) * real).reshape(-1).cpu().numpy()
                metrics.add_auc((labels * mask).reshape(-1).cpu().numpy() > 0, probs)
    results = {name[:-2]: metrics.value(name[:-2]) for name in metrics.sums if name.endswith("/n")}
    if config.electra_objective and config.disc_weight > 0:
        results["disc_auc"] = metrics.auc()
    results["loss"] = float(np.mean(losses_total))
    results["global_step"] = global_step
    return results
