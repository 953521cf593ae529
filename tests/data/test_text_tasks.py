"""Tests for the labelled text task: label_splits, text_tasks and the stdlib_docs default."""

import hashlib
import inspect
import json
import math
import string

import numpy as np
import pytest

from jaxssl.data import label_splits, labelled_text, stdlib_docs, text_tasks


def _texts(n, prefix='doc'):
  return [f'{prefix} {i}' for i in range(n)]


def test_keys_are_sha256_of_seed_purpose_and_text():
  assert label_splits.keys(['a'], 3, 'labels')[0] == hashlib.sha256(b'3\0labels\0a').digest()


def test_held_out_takes_the_ceil_fraction_with_smallest_keys():
  texts = _texts(10)
  by_key = sorted(texts, key=lambda t: hashlib.sha256(f'0\0test\0{t}'.encode()).digest())
  mask = label_splits.held_out(texts, 0.25, 0, 'test')
  assert {t for t, m in zip(texts, mask) if m} == set(by_key[:3])  # ceil(2.5) = 3


def test_label_subset_is_stratified_with_ceil_counts_and_at_least_one():
  labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
  chosen = label_splits.label_subset(_texts(14), labels, 0.25, 0)
  # ceil(0.25 * 10) = 3, ceil(0.75) = 1, ceil(0.25) = 1
  assert np.bincount(labels[chosen]).tolist() == [3, 1, 1]
  assert (np.diff(chosen) > 0).all()


def test_label_subsets_are_nested_fixed_by_seed_and_independent_of_order():
  rng = np.random.default_rng(0)
  texts, labels = _texts(400), rng.integers(0, 4, 400)
  small, large = (set(label_splits.label_subset(texts, labels, f, 7)) for f in (0.01, 0.1))
  assert small < large
  assert len(label_splits.label_subset(texts, labels, 1.0, 7)) == 400
  order = rng.permutation(400)
  shuffled = label_splits.label_subset([texts[i] for i in order], labels[order], 0.1, 7)
  assert {texts[order[i]] for i in shuffled} == {texts[i] for i in large}
  other_seed = set(label_splits.label_subset(texts, labels, 0.1, 8))
  assert other_seed != large and len(other_seed) == len(large)


@pytest.mark.parametrize('fraction', [0.0, 1.5, -0.1])
def test_label_subset_refuses_a_bad_fraction(fraction):
  with pytest.raises(ValueError, match='data.label_fraction'):
    label_splits.label_subset(['a'], np.array([0]), fraction, 0)


def _config(tmp_path, train_rows, test_rows=None, **overrides):
  train = tmp_path / 'train.csv'
  train.write_text('text,label\n' + ''.join(f'{t},{y}\n' for t, y in train_rows),
                   encoding='utf-8')
  c = text_tasks.data_config()
  c.files = str(train)
  if test_rows is not None:
    test = tmp_path / 'test.jsonl'
    test.write_text(''.join(json.dumps({'text': t, 'label': y}) + '\n' for t, y in test_rows),
                    encoding='utf-8')
    c.test_files = str(test)
  c.update(overrides)
  return c


def test_splits_are_disjoint_and_account_for_every_distinct_text(tmp_path):
  rows = [(f'doc {i}', 'ab'[i % 2]) for i in range(100)] + [('doc 3', 'b')]  # a duplicate
  task = text_tasks.load(_config(tmp_path, rows))
  parts = [set(s.texts) for s in (task.train, task.validation, task.test)]
  assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
  assert set.union(*parts) == {t for t, _ in rows}
  # test: ceil(0.2 * 100) = 20; validation: ceil(0.1 * 80) = 8; the rest trains.
  assert (len(task.test), len(task.validation), len(task.train)) == (20, 8, 72)
  assert task.info['data/duplicates_dropped'] == 1
  assert task.classes == ('a', 'b')
  assert [task.classes[y] for y in task.train.labels] == [
      dict(rows[:100])[t] for t in task.train.texts]


def test_validation_and_test_do_not_move_with_the_label_fraction(tmp_path):
  rows = [(f'doc {i}', 'abc'[i % 3]) for i in range(300)]
  full = text_tasks.load(_config(tmp_path, rows))
  tenth = text_tasks.load(_config(tmp_path, rows, label_fraction=0.1))
  assert full.validation.texts == tenth.validation.texts
  assert full.test.texts == tenth.test.texts
  assert set(tenth.train.texts) < set(full.train.texts)
  per_class = np.bincount(full.train.labels)  # the whole pool, per class
  assert np.bincount(tenth.train.labels).tolist() == [math.ceil(0.1 * n) for n in per_class]


def test_test_file_drops_texts_seen_in_training_and_orders_integer_labels(tmp_path):
  rows = [(f'doc {i}', str([2, 10][i % 2])) for i in range(40)]
  task = text_tasks.load(_config(tmp_path, rows, [('doc 0', 2), ('new', 10), ('other', 2)]))
  assert task.test.texts == ('new', 'other')
  assert task.classes == ('2', '10')  # numerically, not '10' < '2'
  assert task.test.labels.tolist() == [1, 0]


def test_a_label_seen_only_in_test_names_the_test_file_and_line(tmp_path):
  rows = [(f'doc {i}', 'ab'[i % 2]) for i in range(40)]
  config = _config(tmp_path, rows, [('x', 'a'), ('y', 'c')])
  with pytest.raises(labelled_text.LabelledFileError,
                     match=r"test\.jsonl, line 2: test label 'c' never occurs in training"):
    text_tasks.load(config)


def test_one_class_is_refused(tmp_path):
  with pytest.raises(ValueError, match='1 class'):
    text_tasks.load(_config(tmp_path, [(f'doc {i}', 'a') for i in range(40)]))


def test_stdlib_docs_default_task():
  examples = list(stdlib_docs.examples())
  assert examples == list(stdlib_docs.examples())  # a fixed order
  assert {e.label for e in examples} == set(stdlib_docs.CHAPTERS)
  assert len(examples) > 2000 and len({e.text for e in examples}) == len(examples)
  assert min(len(e.text) for e in examples) >= stdlib_docs.MIN_CHARS
  by_text = {e.text: e.label for e in examples}
  # The string module's own docstring; the library reference files it under text processing.
  assert by_text[string.__doc__.strip()] == 'Text Processing Services'
  assert by_text[inspect.cleandoc(json.dumps.__doc__)] == 'Internet Data Handling'


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  from tests.data import labelled_builder  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  for config in ('labelled', 'hidden'):
    labelled_builder.prepare(config, data_dir)
  return data_dir


def test_a_tfds_dataset_is_read_with_its_class_names(tfds_dir):
  from tests.data import labelled_builder  # pylint: disable=import-outside-toplevel
  c = text_tasks.data_config()
  c.update(name=f'{labelled_builder.NAME}/labelled', data_dir=tfds_dir, text_column='sentence')
  task = text_tasks.load(c)
  assert task.classes == ('neg', 'pos')
  want = dict(labelled_builder.split_examples('test', hidden=False))
  assert sorted(task.test.texts) == sorted(want)
  assert [want[t] for t in task.test.texts] == task.test.labels.tolist()
  assert len(task.train) + len(task.validation) == 30
  assert task.info['data/source'] == f'tfds:{labelled_builder.NAME}/labelled'


def test_hidden_tfds_test_labels_are_refused_naming_the_split_field(tfds_dir):
  from tests.data import labelled_builder  # pylint: disable=import-outside-toplevel
  c = text_tasks.data_config()
  c.update(name=f'{labelled_builder.NAME}/hidden', data_dir=tfds_dir, text_column='sentence')
  with pytest.raises(ValueError, match=r'label -1 \(hidden labels.*data.test_split'):
    text_tasks.load(c)
  c.test_split = 'validation'
  assert sorted(text_tasks.load(c).test.texts) == sorted(
      t for t, _ in labelled_builder.split_examples('validation', hidden=True))
  c.text_column = 'text'
  with pytest.raises(ValueError, match="has no feature 'text'"):
    text_tasks.load(c)
