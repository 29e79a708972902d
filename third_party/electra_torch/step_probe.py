"""This trainer's step on given draws, written out, to check it against the TF1 trainer's.

  python -m electra_torch.step_probe --hparams JSON --vocab-file V --checkpoint PREFIX \
      --batch IN.npz --draws TF.npz --output OUT.npz
  python -m electra_torch.step_probe --hparams JSON --vocab-file V --checkpoint PREFIX \
      --gradients IN.npz --step N --output OUT.npz

The counterpart of third_party/electra/step_probe.py (same arguments and outputs). First
form: the checkpoint's variables, slots and step; the batch; the TF graph's own draws
(TF.npz: masked_lm_positions, masked_input_ids, masked_lm_ids, masked_lm_weights,
sampled_tokids) instead of this trainer's; dropout off; one training step. Second form: the
optimizer alone on the given gradients at step N.
"""
import argparse
import json
import sys

import numpy as np
import torch

import electra_torch  # noqa: F401  (third_party/electra on sys.path)
import configure_pretraining
from electra_torch import checkpoint, objective, optimizer, step as step_module
from electra_torch.model import Electra
from electra_torch.run_pretraining import check_vocab


def new_trainer(config, prefix: str):
    torch.manual_seed(0)
    model = Electra(config)
    special = check_vocab(config)
    trainer = step_module.TrainStep(model, config, special, step_module.Device(torch.device("cpu")),
                                    seed=0)
    trainer.step.fill_(checkpoint.restore(prefix, trainer.names, trainer.state))
    return trainer


def state_arrays(trainer) -> dict:
    step = int(trainer.step)
    return dict(checkpoint.tensors_of(trainer.names, trainer.state, step))


def training_step(config, prefix, batch, draws) -> dict:
    trainer = new_trainer(config, prefix)
    trainer.dropout = False
    t = lambda name: torch.from_numpy(draws[name].astype(np.int64))
    masked = objective.Masked(t("masked_input_ids"), t("masked_lm_positions"), t("masked_lm_ids"),
                              torch.from_numpy(draws["masked_lm_weights"].astype(np.float32)))
    trainer.given = objective.Given(masked, t("sampled_tokids") if "sampled_tokids" in draws
                                    else None)
    features = torch.from_numpy(np.stack([batch["input_ids"], batch["input_mask"],
                                          batch["segment_ids"]], 1).astype(np.int64))
    out = trainer(features, features[:, 1], torch.arange(len(features)))
    values = {"total_loss": out["total_loss"], "mlm_loss": out["generator_loss"],
              "learning_rate": out["learning_rate"], "global_norm": out["global_norm"]}
    if "discriminator_loss" in out:
        values["disc_loss"] = out["discriminator_loss"]
    values = {k: v.detach().numpy() for k, v in values.items()}
    values.update(state_arrays(trainer))
    return values


def optimizer_step(config, prefix, gradients, step) -> dict:
    trainer = new_trainer(config, prefix)
    grads = [torch.from_numpy(gradients[name]) for name in trainer.names]
    norm = torch.sqrt(optimizer.squared_norm(grads))
    rate = optimizer.learning_rate(torch.tensor(step), config.learning_rate,
                                   config.num_train_steps, config.num_warmup_steps,
                                   config.lr_decay_power)
    optimizer.adam_update(trainer.state, grads, rate, config.weight_decay_rate,
                          optimizer.clip_scale(norm))
    return state_arrays(trainer)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="step_probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("--hparams", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--batch")
    parser.add_argument("--draws")
    parser.add_argument("--gradients")
    parser.add_argument("--step", type=int, default=0)
    parser.add_argument("--vocab-file", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    config = configure_pretraining.PretrainingConfig("step", "unused", **json.loads(args.hparams))
    config.vocab_file = args.vocab_file
    if args.gradients:
        with np.load(args.gradients) as f:
            values = optimizer_step(config, args.checkpoint, {k: f[k] for k in f.files}, args.step)
    else:
        with np.load(args.batch) as b, np.load(args.draws) as d:
            values = training_step(config, args.checkpoint, {k: b[k] for k in b.files},
                                   {k: d[k] for k in d.files})
    np.savez(args.output, **values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
