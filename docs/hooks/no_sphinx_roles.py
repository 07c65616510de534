"""mkdocs hook: a page that still shows a Sphinx role (``:class:`X```) fails the build.

mkdocstrings renders Markdown cross-references (``[X][torchcross.module.X]``), not Sphinx
roles, which would reach the reader as literal text.
"""

from __future__ import annotations

import re
from typing import Any

from mkdocs.exceptions import PluginError

SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|ref|py:\w+):`")


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    found = SPHINX_ROLE.findall(html)
    if found:
        raise PluginError(
            f"{page.file.src_uri} shows {len(found)} raw Sphinx role(s) such as {found[0]!r}: "
            "write Markdown cross-references, [Name][torchcross.module.Name], in docstrings"
        )
    return html
