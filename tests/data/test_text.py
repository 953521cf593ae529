"""Tests for jaxssl.data.text."""

import re

import pydoc_data.topics
import pytest

from jaxssl.data import text


def test_clean_text_hand_worked():
  raw = (
      'Title\r\n'
      '*****\r\n'
      '\r\n'
      '  indented\tline   with   spaces  \r'
      '   ======\n'
      '~~~~\n'
      '-- not a rule\n'
      'ab\n'
      '\n'
      '\n'
      'ﬁne ｆｕｌｌ\n'  # NFKC: ligature fi, full-width letters.
  )
  expected = 'Title\n\nindented line with spaces\n-- not a rule\nab\n\n\nfine full\n'
  assert text.clean_text(raw) == expected


@pytest.mark.parametrize('line', ['***', '======', '   -----', '~~~~   ', '^^^^', '____'])
def test_clean_text_drops_rule_lines(line):
  assert text.clean_text(f'a\n{line}\nb') == 'a\nb'


@pytest.mark.parametrize('line', ['**', '*=*', 'a***', '*** x', '1111'])
def test_clean_text_keeps_non_rule_lines(line):
  assert text.clean_text(f'a\n{line}\nb') == f'a\n{line}\nb'


def test_clean_text_is_idempotent_on_pydoc():
  once = text.clean_text(text.pydoc_text())
  assert text.clean_text(once) == once


def test_clean_pydoc_has_no_rules_or_space_runs():
  raw = text.pydoc_text()
  assert re.search(r'^\*{3,}$', raw, flags=re.M)  # The raw text has title underlines.
  cleaned = text.clean_text(raw)
  assert not re.search(r'^([^\w\s]|_)\1{2,}$', cleaned, flags=re.M)
  assert '  ' not in cleaned and '\t' not in cleaned and '\r' not in cleaned
  assert all(line == line.strip() for line in cleaned.split('\n'))


def test_pydoc_text_joins_sorted_topics():
  topics = pydoc_data.topics.topics
  raw = text.pydoc_text()
  first, last = sorted(topics)[0], sorted(topics)[-1]
  assert raw.startswith(topics[first] + '\n\n\n')
  assert raw.endswith('\n\n\n' + topics[last])
  assert len(raw) == sum(map(len, topics.values())) + 3 * (len(topics) - 1)


def test_split_documents_at_blank_lines():
  cleaned = '\n\na b\nc\n\n\n\nd\n\n'
  assert text.split_documents(cleaned, max_chars=100) == ['a b\nc', 'd']


def test_split_documents_blank_lines_with_spaces():
  assert text.split_documents('a\n  \t\nb', max_chars=10) == ['a', 'b']


def test_split_documents_chunks_long_blocks_at_lines():
  # 'aaa\nbb' is 6 chars; adding '\ncccc' would make 11 > 8.
  block = 'aaa\nbb\ncccc\nd'
  assert text.split_documents(block, max_chars=8) == ['aaa\nbb', 'cccc\nd']


def test_split_documents_cuts_long_line_at_last_space():
  # The last space at or before position 7 is at 6: 'one two' (7), then 'three'.
  assert text.split_documents('one two three', max_chars=7) == ['one two', 'three']
  assert text.split_documents('aaa bbb ccc\nd', max_chars=5) == ['aaa', 'bbb', 'ccc\nd']


def test_split_documents_hard_cuts_line_without_space():
  assert text.split_documents('abcdefghij', max_chars=4) == ['abcd', 'efgh', 'ij']


def test_split_documents_respects_max_chars_on_pydoc():
  docs = text.split_documents(text.clean_text(text.pydoc_text()), max_chars=300)
  assert max(map(len, docs)) <= 300
  assert all(doc.strip() for doc in docs)


def test_split_documents_rejects_bad_max_chars():
  with pytest.raises(ValueError, match='max_chars'):
    text.split_documents('a', max_chars=0)


def test_split_documents_empty():
  assert text.split_documents('\n\n  \n', max_chars=10) == []
