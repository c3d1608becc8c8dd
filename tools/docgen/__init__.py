"""The parts of ``tools/generate_docs.py``, one concern each.

- ``roff``: help text split into paragraphs, and roff escaping and macros. Pure text.
- ``walk``: the only module that touches Typer and click. It turns the CLI into a plain model
  (``Command``, ``Param``) and fetches Typer's completion scripts.
- ``compose``: the man pages and completion files, built from that model.
- ``output``: which committed files are missing, stale or extra, and writing them.
"""
