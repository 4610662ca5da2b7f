"""The network, the ℓ2,1 prox, the robust LightningModule and its alternation."""

from rdcae.model.network import ConvAutoencoder
from rdcae.model.prox import prox_l21
from rdcae.model.robust import RobustAutoencoder

__all__ = ["ConvAutoencoder", "RobustAutoencoder", "prox_l21"]
