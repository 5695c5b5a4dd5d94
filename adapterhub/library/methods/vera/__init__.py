"""VeRA (Kopiczko et al., 2024): one pair of frozen random matrices ``A`` ``[r, in]`` and ``B`` ``[out, r]``
shared by every targeted linear layer, and per layer two trained scaling vectors:
``W x + b + λ_b ⊙ B (λ_d ⊙ A dropout(x))`` (``A`` and ``B`` sliced to the layer's sizes).

``A`` and ``B`` are regenerated from the config's ``projection_prng_key`` (drawn as PEFT draws them), so an
adapter's files hold only the vectors (``...query.veras.NAME.lambda_b`` / ``lambda_d``): tens of thousands of
parameters on BERT-base.
"""

from .config import VeRAConfig
from .method import VeRAMethod

__all__ = ["VeRAConfig", "VeRAMethod"]
