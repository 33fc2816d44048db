"""Docs as tests: the fenced examples of README.md and docs/*.md, parsed and run (tests/test_docs_examples.py).

- ``blocks``: markdown -> fenced blocks, their language and their markers (``<!-- not-run: ... -->``).
- ``commands``: a shell block -> commands; the short-run override; running them in this process.
- ``fixtures``: the input files the docs name (``book.txt``, ``airpassengers.csv``...) in a working folder.
"""
