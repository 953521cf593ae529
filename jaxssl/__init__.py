"""jaxssl: self-supervised and unsupervised learning in JAX/Flax.

Shape legend used in every docstring and inline comment:

  B  batch (global unless a docstring says per-device or per-process)
  L  sequence length (tokens)
  P  predictions per sequence (masked positions gathered for the MLM head)
  V  vocabulary size
  D  model width
  H  attention heads
  Dh head width (D // H)
  F  MLP hidden width
  N  number of examples (rows) in a dataset split
  K  clusters (k-means) or importance samples (IWAE)
  H, W, C  image height, width, channels (in image code; H is heads in attention code)
  Z  latent width (autoencoders, VAEs)
  S  latent samples per image
  M  number of query rows (e.g. test examples scored against N training rows)
  Q  queries per chunk (kNN)
  k  neighbours voting (kNN)

Units: losses of language models are in nats per predicted token unless a name says
otherwise (``bits_per_byte``); VAE likelihoods and bounds are in nats per image (summed
over pixels; ``losses.vae.bits_per_dim`` converts); throughput in tokens/s counts every
position of every row.
"""

__version__ = "0.1.0"
