"""The bad-input corpus: inputs a user could plausibly give capsim, each of which must be refused
with one line and exit code 2, or accepted with a stated reason.

Each module here (``scenarios``, ``cli``, ``traces``, ``benchmarks``, ``workloads``) holds a list
``CASES`` of :class:`BadInput` (and optionally ``ACCEPTED`` of :class:`Accepted`).
``tests/test_bad_input_corpus.py`` runs every case through the real command line in-process
(typer's ``CliRunner``), in a fresh temporary directory holding the case's ``files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["Accepted", "BadInput"]


@dataclass(frozen=True)
class BadInput:
    """One bad input: ``capsim *argv`` must exit 2 with exactly one ``capsim: error: ...`` line on
    stderr that matches the regex ``expect`` (it names the key or row, the value and the rule),
    nothing on stdout and no traceback.

    ``files`` maps a file name to its text (``str``) or bytes, written into the case's working
    directory before the command runs; ``argv`` names them relative to it.
    """

    id: str
    argv: tuple[str, ...]
    expect: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    """An odd input that capsim accepts on purpose: ``capsim *argv`` exits 0 and its output (stdout
    and stderr) matches ``says``, the stated reason (usually a ``warning:`` line)."""

    id: str
    argv: tuple[str, ...]
    says: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)
