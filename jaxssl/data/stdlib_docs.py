"""The offline default labelled text task: Python standard-library docstrings by chapter.

Each example is the docstring of a public module, class, function or method of the standard
library (``inspect.cleandoc``; at least ``MIN_CHARS`` characters), labelled with the chapter of
"The Python Standard Library" reference (Python's documentation) that documents its module:
16 chapters, from "Text Processing Services" to "Python Language Services". It installs with
Python (PSF licence), needs no network, and is English technical prose like the pretraining
default (``pydoc``: the language reference topics, a different text). It is a jaxssl task, not
a published benchmark: compare methods on it, report published figures on TFDS datasets or
your own files. A docstring found under two chapters is dropped; one found twice in a chapter
is kept once. The content, and so ``data/sha256``, changes with the Python version.

The docstrings are read in a fresh interpreter that sees only the standard library (``python
-I -S`` running this file): imported packages change some (TensorFlow, for one, replaces a
docstring under ``collections.abc``), which would make the task depend on what ran before.
This module imports nothing outside the standard library at its top for that reason.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator

NAME = 'stdlib_docs'
MIN_CHARS = 40  # shorter docstrings ("Return self==value.") say nothing about a chapter

# Chapter -> modules it documents (Python 3.11's library index; modules that may be missing
# from a build, such as tkinter, curses and readline, are left out). Chapters with fewer than
# about 80 docstrings (Binary Data, Functional Programming, Data Persistence, File Formats,
# Cryptographic, Multimedia, Internationalization, Program Frameworks) are left out too, so
# that a 1% label subset still has examples of most classes.
CHAPTERS = {
    'Text Processing Services':
        'string re difflib textwrap unicodedata stringprep rlcompleter',
    'Data Types':
        'datetime zoneinfo calendar collections collections.abc heapq bisect array weakref '
        'types copy pprint reprlib enum graphlib',
    'Numeric and Mathematical Modules':
        'numbers math cmath decimal fractions random statistics',
    'File and Directory Access':
        'pathlib os.path fileinput stat filecmp tempfile glob fnmatch linecache shutil',
    'Data Compression and Archiving': 'zlib gzip bz2 lzma zipfile tarfile',
    'Generic Operating System Services':
        'os io time argparse getopt logging logging.config logging.handlers getpass platform '
        'errno ctypes',
    'Concurrent Execution':
        'threading multiprocessing multiprocessing.pool multiprocessing.managers '
        'multiprocessing.shared_memory concurrent.futures subprocess sched queue contextvars '
        '_thread',
    'Networking and Interprocess Communication':
        'asyncio asyncio.events asyncio.tasks asyncio.streams asyncio.locks asyncio.queues '
        'asyncio.subprocess asyncio.base_events asyncio.futures asyncio.transports '
        'asyncio.protocols socket ssl select selectors signal mmap',
    'Internet Data Handling':
        'email email.message email.parser email.generator email.policy email.headerregistry '
        'email.utils email.mime.text mailbox mimetypes base64 binascii quopri json',
    'Structured Markup Processing Tools':
        'html html.parser html.entities xml.etree.ElementTree xml.dom xml.dom.minidom '
        'xml.dom.pulldom xml.sax xml.sax.handler xml.sax.saxutils xml.sax.xmlreader '
        'xml.parsers.expat',
    'Internet Protocols and Support':
        'webbrowser wsgiref wsgiref.util wsgiref.handlers urllib.request urllib.response '
        'urllib.parse urllib.error urllib.robotparser http http.client ftplib poplib imaplib '
        'smtplib uuid socketserver http.server http.cookies http.cookiejar xmlrpc.client '
        'xmlrpc.server ipaddress',
    'Development Tools':
        'typing pydoc doctest unittest unittest.case unittest.mock unittest.loader '
        'unittest.runner unittest.suite',
    'Debugging and Profiling':
        'bdb faulthandler pdb cProfile profile pstats timeit trace tracemalloc',
    'Python Runtime Services':
        'sys sysconfig builtins warnings dataclasses contextlib abc atexit traceback gc '
        'inspect site',
    'Importing Modules':
        'zipimport pkgutil modulefinder runpy importlib importlib.abc importlib.machinery '
        'importlib.util importlib.resources importlib.metadata',
    'Python Language Services':
        'ast symtable token keyword tokenize tabnanny pyclbr py_compile compileall dis '
        'pickletools',
}


def _defined_in(obj, module_name: str) -> bool:
  # C modules report their private twin (_socket for socket); re-exports are skipped.
  where = getattr(obj, '__module__', None)
  return where in (module_name, '_' + module_name.rsplit('.', 1)[-1])


def _member_docs(cls) -> Iterator[str]:
  for name in sorted(vars(cls)):
    if name.startswith('_'):
      continue
    member = vars(cls)[name]
    member = getattr(member, '__func__', member)  # classmethod / staticmethod
    if (inspect.isroutine(member) or isinstance(member, property)) and member.__doc__:
      yield member.__doc__


def module_docs(module_name: str) -> Iterator[str]:
  """The cleaned docstrings of one module: its own, then those of its public classes (and
  their public methods and properties) and functions defined in it, by name."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # deprecated modules warn on import
    module = importlib.import_module(module_name)
  raw = [module.__doc__]
  for name in sorted(vars(module)):
    obj = vars(module)[name]
    if name.startswith('_') or not (inspect.isclass(obj) or inspect.isroutine(obj)):
      continue
    if not _defined_in(obj, module_name):
      continue
    raw.append(obj.__doc__)
    if inspect.isclass(obj):
      raw.extend(_member_docs(obj))
  for doc in raw:
    if isinstance(doc, str) and doc.strip():
      yield inspect.cleandoc(doc)


def collect() -> list[tuple[str, str, str, int]]:
  """(docstring, chapter, module, index in module) of every example, in the fixed order of
  ``examples``, as this interpreter sees them."""
  chapters_of: dict[str, set[str]] = {}
  found: list[tuple[str, str, str, int]] = []
  for chapter, modules in CHAPTERS.items():
    for module_name in modules.split():
      for i, doc in enumerate(module_docs(module_name)):
        if len(doc) < MIN_CHARS:
          continue
        if doc not in chapters_of:
          found.append((doc, chapter, module_name, i))
        chapters_of.setdefault(doc, set()).add(chapter)
  return [f for f in found if len(chapters_of[f[0]]) == 1]


def examples() -> Iterator:
  """The task's ``labelled_text.Example``s in a fixed order (chapters, modules and names as
  listed and sorted), read by a fresh standard-library-only interpreter (module doc).

  ``file`` is ``'stdlib:<module>'`` and ``line`` the docstring's index within the module.

  Raises:
    RuntimeError: that interpreter failed (its error output is included).
  """
  from jaxssl.data import labelled_text  # pylint: disable=import-outside-toplevel
  proc = subprocess.run([sys.executable, '-I', '-S', __file__], capture_output=True,
                        check=False)
  if proc.returncode:
    raise RuntimeError(f'reading the standard library docstrings failed:\n'
                       f'{proc.stderr.decode("utf-8", "replace")[-2000:]}')
  for doc, chapter, module_name, i in json.loads(proc.stdout.decode('utf-8')):
    yield labelled_text.Example(doc, chapter, f'stdlib:{module_name}', i)


if __name__ == '__main__':
  sys.stdout.buffer.write(json.dumps(collect()).encode('utf-8'))
