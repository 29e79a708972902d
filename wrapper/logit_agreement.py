"""How far a converted model's logits are from the TF graph's: the one comparison that verify
(our trained model) and conformance (the reference's tiny checkpoint) both make."""
import dataclasses
from typing import Optional

import numpy as np

# Logits of the same weights in TF and PyTorch agree to this (float32 rounding only).
TOLERANCE = 1e-4


@dataclasses.dataclass
class LogitAgreement:
    max_difference: float     # max |got - want| over the compared logits
    argmax_equal: int         # positions whose highest logit is the same class
    positions: int

    @property
    def argmax_share(self) -> float:
        return self.argmax_equal / self.positions if self.positions else 1.0


def logit_agreement(got: np.ndarray, want: np.ndarray,
                    want_argmax: Optional[np.ndarray] = None) -> LogitAgreement:
    """got: logits [positions..., classes]; want: the TF logits of the same positions, whole
    or their first classes only (then want_argmax gives the TF argmax of each position)."""
    got, want = np.asarray(got), np.asarray(want)
    difference = float(np.abs(got[..., :want.shape[-1]] - want).max())
    if want_argmax is None:
        want_argmax = want.argmax(-1)
    same = got.argmax(-1) == np.asarray(want_argmax)
    return LogitAgreement(difference, int(same.sum()), int(same.size))
