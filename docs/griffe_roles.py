"""A griffe extension for the API reference (mkdocs.yml loads it into mkdocstrings): the Sphinx
roles in capsim's docstrings, such as :func:`sim.engine.simulate`, shown as plain code.

The docstrings are written to be read in a terminal and in the source, where a role says what
kind of name follows; Markdown has no roles and would print ``:func:`` before the code. The name
stays as code, not a link: a link to a name the reference does not document would be a broken
link, which the strict build refuses.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# :func:`name`, :class:`~pkg.Name`, ... → ``name``: the role and Sphinx's leading ~ dropped.
_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj|const):`~?([^`]+)`")


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites each object's docstring once, when griffe loads it, before it is rendered."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"``\1``", obj.docstring.value)
