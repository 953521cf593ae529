"""jaxssl: self-supervised and unsupervised learning in JAX/Flax.

Shape legend of every docstring and inline comment:
  B batch (global unless said per-device or per-process); L sequence length (tokens);
  P predictions per sequence (masked positions gathered for the MLM head); V vocabulary;
  D model width; H attention heads; Dh head width (D // H); F MLP hidden width;
  N examples (rows) in a dataset split; K clusters (k-means) or importance samples (IWAE);
  H, W, C image height, width, channels (H is heads in attention code); Z latent width;
  S latent samples per image; M query rows (e.g. test rows against N training rows);
  Q queries per chunk (kNN); k neighbours voting (kNN).

Units: LM losses in nats per predicted token unless a name says otherwise
(``bits_per_byte``); VAE likelihoods and bounds in nats per image (summed over pixels;
``losses.vae.bits_per_dim`` converts); throughput in tokens/s counts every position of every row.
"""

__version__ = "0.1.0"
