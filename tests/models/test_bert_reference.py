"""Our MaskedLM against transformers' PyTorch BertForMaskedLM with the same weights.

Optional: skips unless torch and transformers are installed (``pip install -e '.[bench]'``
in a separate virtualenv); never part of CI. transformers 5 has no Flax models, so the PyTorch model is the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import transformer
from jaxssl.train import state as state_lib

torch = pytest.importorskip('torch')
hf = pytest.importorskip('transformers')


def _copy_weights(params, cfg):
  """Our parameter dict -> a BertForMaskedLM state dict (PyTorch Linear is [out, in])."""
  t = lambda x: torch.tensor(np.asarray(x))
  enc, d = params['encoder'], cfg.width
  sd = {
      'bert.embeddings.word_embeddings.weight': t(enc['token_embed']['embedding']),
      'bert.embeddings.position_embeddings.weight': t(enc['position_embed']['embedding']),
      'bert.embeddings.token_type_embeddings.weight': torch.zeros(1, d),
      'bert.embeddings.LayerNorm.weight': t(enc['embed_norm']['scale']),
      'bert.embeddings.LayerNorm.bias': t(enc['embed_norm']['bias']),
      'cls.predictions.transform.dense.weight': t(params['transform']['kernel']).T,
      'cls.predictions.transform.dense.bias': t(params['transform']['bias']),
      'cls.predictions.transform.LayerNorm.weight': t(params['transform_norm']['scale']),
      'cls.predictions.transform.LayerNorm.bias': t(params['transform_norm']['bias']),
      'cls.predictions.bias': t(params['output_bias']),
      'cls.predictions.decoder.weight': t(enc['token_embed']['embedding']),
      'cls.predictions.decoder.bias': t(params['output_bias']),
  }
  for i, block in enc['blocks'].items():
    p = f'bert.encoder.layer.{i}.'
    kernel, bias = np.asarray(block['attention']['qkv']['kernel']), block['attention']['qkv']['bias']
    for j, name in enumerate(('query', 'key', 'value')):
      sd[p + f'attention.self.{name}.weight'] = t(kernel[:, j * d:(j + 1) * d]).T
      sd[p + f'attention.self.{name}.bias'] = t(np.asarray(bias)[j * d:(j + 1) * d])
    pairs = {'attention.output.dense': block['attention']['out'],
             'intermediate.dense': block['mlp']['fc1'], 'output.dense': block['mlp']['fc2']}
    for name, layer in pairs.items():
      sd[p + name + '.weight'] = t(layer['kernel']).T
      sd[p + name + '.bias'] = t(layer['bias'])
    for name, norm in (('attention.output.LayerNorm', block['attention_norm']),
                       ('output.LayerNorm', block['mlp_norm'])):
      sd[p + name + '.weight'] = t(norm['scale'])
      sd[p + name + '.bias'] = t(norm['bias'])
  return sd


def test_logits_match_bert_for_masked_lm():
  cfg = transformer.TransformerConfig.from_preset('tiny', vocab_size=60, max_len=16,
                                                  dropout_rate=0.0)
  model = transformer.MaskedLM(cfg, rngs=nnx.Rngs(0))
  _, params = state_lib.split_model(model)
  # Random non-zero biases and norms so that a misplaced one cannot hide.
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda x: x + 0.05 * rng.normal(size=x.shape).astype(np.float32),
                        params)
  model = state_lib.merge_model(state_lib.split_model(model)[0], params)
  bert = hf.BertForMaskedLM(hf.BertConfig(
      vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=64, max_position_embeddings=16, type_vocab_size=1,
      hidden_act='gelu', layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0))
  missing, unexpected = bert.load_state_dict(_copy_weights(params, cfg), strict=False)
  assert not unexpected and all('position_ids' in m for m in missing), (missing, unexpected)
  bert.eval()
  tokens = np.array([[2, 7, 8, 4, 9, 3, 11, 3, 0, 0], [2, 5, 6, 7, 4, 4, 12, 13, 14, 3]])
  padding = tokens != 0
  positions = np.array([[3, 1, 6], [4, 5, 9]])
  ours = model(jnp.asarray(tokens), jnp.asarray(positions), padding_mask=jnp.asarray(padding))
  with torch.no_grad():
    ref = bert(input_ids=torch.tensor(tokens),
               attention_mask=torch.tensor(padding.astype(np.int64))).logits.numpy()
  ref = np.take_along_axis(ref, positions[..., None], axis=1)
  np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-4, rtol=1e-4)
