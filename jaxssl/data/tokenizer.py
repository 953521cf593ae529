"""A deterministic SentencePiece (unigram) vocabulary with fixed special ids.

Ids 0-4 are the specials in every vocabulary: [PAD] padding, [UNK], [CLS] first token of every
packed row, [SEP] end of every document, [MASK] masked-LM corruption; ids >= ``NUM_SPECIAL``
are ordinary pieces. Training is byte-for-byte reproducible (one thread, no sampling or
shuffling), since the vocabulary is cached on disk and shared by restarts and processes.
"""

import io
import os
from collections.abc import Iterator, Sequence

import numpy as np
import sentencepiece as spm
from etils import epath

from jaxssl import fileio

PAD_ID = 0
UNK_ID = 1
CLS_ID = 2
SEP_ID = 3
MASK_ID = 4
NUM_SPECIAL = 5
SPECIAL_PIECES = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]')

# SentencePiece drops training sentences longer than this many bytes; documents are
# fed line by line, and a line is at most `max_document_chars` (<= 4 bytes a char).
_MAX_SENTENCE_BYTES = 1 << 16
_SEED = 0
# Bump when training settings change the model: part of the token cache's key.
TRAINER_VERSION = 1
_WORD_START = '\u2581'  # '▁', SentencePiece's mark of a piece that starts a word.


def _lines(documents: Sequence[str]) -> Iterator[str]:
  """Yields the non-empty lines of every document, in order."""
  for document in documents:
    for line in document.split('\n'):
      if line.strip():
        yield line


def _train_model_proto(documents: Sequence[str], vocab_size: int) -> bytes:
  """Trains a unigram model in memory; returns the serialized ModelProto."""
  spm.set_random_generator_seed(_SEED)
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=_lines(documents),
      model_writer=model,
      model_type='unigram',
      vocab_size=vocab_size,
      # Small corpora cannot fill a large vocabulary: allow fewer pieces.
      hard_vocab_limit=False,
      pad_id=PAD_ID,
      unk_id=UNK_ID,
      bos_id=-1,
      eos_id=-1,
      pad_piece=SPECIAL_PIECES[PAD_ID],
      unk_piece=SPECIAL_PIECES[UNK_ID],
      control_symbols=list(SPECIAL_PIECES[CLS_ID:]),
      # Determinism: the model differs between thread counts; read every sentence in
      # order, no sampling and no shuffling.
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      max_sentence_length=_MAX_SENTENCE_BYTES,
      character_coverage=0.9995,
      minloglevel=2,
  )
  return model.getvalue()


def train_model(documents: Sequence[str], *, vocab_size: int) -> bytes:
  """Trains a SentencePiece unigram vocabulary; returns the serialized model file.

  Deterministic (byte-identical in any process). ``vocab_size`` counts the specials and is
  soft: a small corpus gets fewer pieces (read ``Tokenizer.vocab_size``). Each non-empty line
  of ``documents`` is a training sentence, normalised by SentencePiece's ``nmt_nfkc`` rule.

  Raises:
    ValueError: if ``vocab_size <= NUM_SPECIAL`` or the documents hold no text.
  """
  if vocab_size <= NUM_SPECIAL:
    raise ValueError(f'vocab_size must be > {NUM_SPECIAL}, got {vocab_size}.')
  if not any(True for _ in _lines(documents)):
    raise ValueError('train_tokenizer: the documents hold no text.')
  return _train_model_proto(documents, vocab_size)


def train_tokenizer(
    documents: Sequence[str], *, vocab_size: int, model_path: str | os.PathLike
) -> None:
  """``train_model`` written to ``model_path`` atomically (same errors)."""
  fileio.write_atomic(os.fspath(model_path), train_model(documents, vocab_size=vocab_size))


def _load_processor(path: epath.Path) -> spm.SentencePieceProcessor:
  """Loads a model file (local or in a bucket), checking the specials sit at their fixed ids."""
  if not path.exists():
    raise FileNotFoundError(f'No tokenizer model at {path}.')
  processor = spm.SentencePieceProcessor()
  try:
    processor.load_from_serialized_proto(path.read_bytes())
  except (OSError, RuntimeError) as e:
    raise ValueError(f'{path} is not a SentencePiece model: {e}') from e
  num_found = min(NUM_SPECIAL, processor.get_piece_size())
  found = tuple(processor.id_to_piece(i) for i in range(num_found))
  if found != SPECIAL_PIECES:
    raise ValueError(
        f'{path}: special pieces {found} at ids 0-{NUM_SPECIAL - 1}, expected '
        f'{SPECIAL_PIECES}; it was not made by train_tokenizer.'
    )
  return processor


class Tokenizer:
  """Encodes documents to int32 ids and back with a trained SentencePiece model.

  Attributes:
    model_path: the model file.
    vocab_size: V, ids including specials; may be below the size asked for a small corpus.
    word_start: bool [V], True where the piece starts a word (begins with '▁'), False for the
      specials; whole-word masking groups a word-start piece with the pieces after it.
  """

  def __init__(self, model_path: epath.PathLike):
    """Loads ``model_path``.

    Raises:
      FileNotFoundError: if the file does not exist (naming it).
      ValueError: if it is not a SentencePiece model with this module's specials.
    """
    self.model_path = epath.Path(model_path)
    self._processor = _load_processor(self.model_path)
    self.vocab_size = self._processor.get_piece_size()
    pieces = [self._processor.id_to_piece(i) for i in range(self.vocab_size)]
    self.word_start = np.array([p.startswith(_WORD_START) for p in pieces], dtype=bool)
    self.word_start[:NUM_SPECIAL] = False

  def encode(self, documents: Sequence[str]) -> list[np.ndarray]:
    """Encodes N documents (newlines read as spaces); no special ids are added.

    Returns:
      N int32 arrays [n_i] of ids in [0, V); ids >= ``NUM_SPECIAL`` except ``UNK_ID``.
    """
    ids = self._processor.encode(list(documents), out_type=int)
    return [np.asarray(x, dtype=np.int32) for x in ids]

  def decode(self, ids) -> str:
    """Decodes int [n] ids in [0, V) into text, dropping special ids ([PAD], [CLS], [MASK], ...).

    Raises:
      ValueError: if ``ids`` is not 1-D or holds an id outside [0, V).
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
      raise ValueError(f'decode takes ids of shape [n], got {ids.shape}.')
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(f'ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}.')
    return self._processor.decode(ids[ids >= NUM_SPECIAL].tolist())
