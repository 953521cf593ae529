"""The import rules of STYLE.md section 1, read from the source: imports point down, no
circles, and jaxssl/ never imports experiments/ or tools/."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules() -> dict[str, str]:
  """{dotted module name: path} of every module under jaxssl/."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, 'jaxssl')):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        out[dotted.removesuffix('.__init__')] = path
  return out


def _imports(path: str) -> set[str]:
  """Every module named by an import anywhere in the file (function-level ones too)."""
  names = set()
  for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.update([node.module] + [f'{node.module}.{a.name}' for a in node.names])
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
  return names


@pytest.fixture(scope='module')
def graph() -> dict[str, set[str]]:
  modules = _modules()
  return {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}


def _package(module: str) -> str:
  parts = module.split('.')
  return parts[1] if len(parts) > 2 else module


def test_data_models_and_losses_never_import_train(graph):
  bad = [(m, n) for m, names in graph.items() for n in names
         if _package(m) in ('data', 'models', 'losses') and _package(n) == 'train']
  assert not bad


def test_jaxssl_never_imports_experiments_or_tools():
  for path in _modules().values():
    assert not {n for n in _imports(path) if n.split('.')[0] in ('experiments', 'tools')}, path


def test_no_import_circle(graph):
  state = {}  # module -> 'open' while on the DFS path, 'done' after

  def visit(m, path):
    state[m] = 'open'
    for n in sorted(graph[m]):
      assert state.get(n) != 'open', ' -> '.join(path + [m, n])
      if n not in state:
        visit(n, path + [m])
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


def test_the_checks_see_a_circle_and_a_layer_violation():
  # The rules above would pass vacuously if the graph were empty or the walk never looked.
  with pytest.raises(AssertionError, match='a -> b -> a'):
    test_no_import_circle({'a': {'b'}, 'b': {'a'}})
  with pytest.raises(AssertionError):
    test_data_models_and_losses_never_import_train({'jaxssl.data.x': {'jaxssl.train.loop'},
                                                    'jaxssl.train.loop': set()})
