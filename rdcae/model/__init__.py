"""The method of section 4: the network and its spec (network.py), the anomaly score of a residual
(score.py), the ℓ2,1 prox (prox.py), the robust LightningModule (robust.py) and the alternation of
Algorithm 2 (alternation.py). Import from the file: this package imports nothing, so that the
network and the score load without Lightning (rdcae.inference)."""
