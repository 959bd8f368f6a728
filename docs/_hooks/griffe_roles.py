"""A griffe extension: the docstrings' reST roles as Markdown code spans.

alvaro's docstrings name other objects the way Sphinx does (``:class:`Host```,
``:meth:`~Host.start```) so that they read well in ``help()`` and IDEs. mkdocstrings renders
docstrings as Markdown, where those roles would show literally; this turns each into the name in
code font (without a leading ``~`` or ``!``), and ``Example::`` into ``Example:``, when griffe
loads the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`[~!]?([^`]+)`")
# reST's "Example::" before an indented block; in Markdown the block is code already.
_LITERAL = re.compile(r"::$", re.MULTILINE)


class ReSTRoles(griffe.Extension):
    """Rewrites the roles in every docstring griffe reads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _LITERAL.sub(":", _ROLE.sub(r"`\1`", obj.docstring.value))
