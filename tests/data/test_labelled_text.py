"""Tests for jaxssl.data.labelled_text: CSV / TSV / JSON-lines labelled files and their errors."""

import gzip
import json

import pytest

from jaxssl.data import labelled_text as lt


def _read(path, **kw):
  return [(e.text, e.label, e.line) for e in lt.read_file(str(path), **kw)]


def test_csv_quoted_fields_spanning_lines_keep_their_start_line(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_text('label,text\n'
                  'pos,"good, really"\n'
                  '\n'
                  'neg,"two\nlines"\n'
                  'pos,  padded  \n', encoding='utf-8')
  # Line numbers counted by hand: the record starting at line 4 runs to line 5.
  assert _read(path) == [('good, really', 'pos', 2), ('two\nlines', 'neg', 4),
                         ('padded', 'pos', 6)]


def test_tsv_and_other_column_names(tmp_path):
  path = tmp_path / 'a.tsv'
  path.write_text('id\tsentence\ty\n1\tHello there\t0\n2\tBye\t1\n', encoding='utf-8')
  assert _read(path, text_column='sentence', label_column='y') == [
      ('Hello there', '0', 2), ('Bye', '1', 3)]


def test_json_lines_integer_and_string_labels_are_one_label(tmp_path):
  path = tmp_path / 'a.jsonl'
  path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": "1"}\n',
                  encoding='utf-8')
  assert _read(path) == [('a', '1', 1), ('b', '1', 3)]


def test_gzip_is_detected_from_the_content(tmp_path):
  path = tmp_path / 'a.csv.gz'
  path.write_bytes(gzip.compress('text,label\nhi,x\n'.encode('utf-8')))
  plain_named_gz = tmp_path / 'b.csv.gz'
  plain_named_gz.write_text('text,label\nhi,x\n', encoding='utf-8')
  assert _read(path) == _read(plain_named_gz) == [('hi', 'x', 2)]


def test_byte_order_mark_is_dropped(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_bytes('\ufefftext,label\nhi,x\n'.encode('utf-8'))
  assert _read(path) == [('hi', 'x', 2)]


@pytest.mark.parametrize('name,content,needle', [
    ('a.csv', 'sentence,label\nhi,x\n', "line 1: no column 'text'"),
    ('a.csv', '', 'empty file'),
    ('a.csv', 'text,label\nhi,x\n   ,y\n', "line 3: empty text in column 'text'"),
    ('a.csv', 'text,label\nhi,x\nho,\n', "line 3: empty label"),
    ('a.csv', 'text,label\nhi,x\nho,y,z\n', 'line 3: 3 fields where the header has 2'),
    ('a.jsonl', '{"text": "a", "label": 1}\n{"text": "b"}\n', "line 2: no field 'label'"),
    ('a.jsonl', '{"text": "a", "label": 1}\n{"text": "b", "label": 2\n', 'line 2: not JSON'),
    ('a.jsonl', '[1, 2]\n', 'line 1: a JSON list, not an object'),
    ('a.jsonl', '{"text": 5, "label": 1}\n', "line 1: column 'text' holds int"),
    ('a.jsonl', '{"text": "a", "label": 1.5}\n', "line 1: column 'label' holds 1.5"),
    ('a.jsonl', '{"text": "a", "label": true}\n', "line 1: column 'label' holds True"),
    ('a.txt', 'text,label\n', "unknown labelled-file format '.txt'"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, name, content, needle):
  path = tmp_path / name
  path.write_text(content, encoding='utf-8')
  with pytest.raises(lt.LabelledFileError, match=str(path)) as e:
    list(lt.read_file(str(path)))
  assert needle in str(e.value)


def test_bad_encoding_names_the_line(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_bytes(b'text,label\nfine,x\ncaf\xe9,y\n')  # Latin-1 e-acute on line 3
  with pytest.raises(lt.LabelledFileError, match=r'a\.csv, line 3: not valid UTF-8'):
    list(lt.read_file(str(path)))


def test_truncated_gzip_is_reported(tmp_path):
  path = tmp_path / 'a.csv.gz'
  path.write_bytes(gzip.compress(('text,label\n' + 'hi,x\n' * 1000).encode('utf-8'))[:-20])
  with pytest.raises(lt.LabelledFileError, match='damaged or truncated gzip'):
    list(lt.read_file(str(path)))


def test_read_files_refuses_a_file_with_only_a_header(tmp_path):
  good, empty = tmp_path / 'a.jsonl', tmp_path / 'b.csv'
  good.write_text(json.dumps({'text': 'a', 'label': 'x'}) + '\n', encoding='utf-8')
  empty.write_text('text,label\n\n', encoding='utf-8')
  with pytest.raises(lt.LabelledFileError, match=f'{empty}: no labelled example'):
    list(lt.read_files([str(good), str(empty)]))
