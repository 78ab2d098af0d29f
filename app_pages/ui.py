"""Small rendering helpers shared by the pages."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: object) -> str:
    """User text (class names, prompts, file names) made literal inside Streamlit markdown:
    no links, images, emphasis or LaTeX can be smuggled in. Streamlit already refuses raw HTML."""
    return _MARKDOWN.sub(r"\\\1", str(text))
