"""Small rendering helpers shared by the pages."""

from __future__ import annotations

import re

from streamlit.delta_generator import DeltaGenerator

from mumic_core.renditions import Rendition

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: object) -> str:
    """User text (class names, prompts, file names) made literal inside Streamlit markdown:
    no links, images, emphasis or LaTeX can be smuggled in. Streamlit already refuses raw HTML."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def show_image(where: DeltaGenerator, rendition: Rendition | None, caption: str | None = None) -> None:
    """A display rendition (see mumic_core.renditions), or one warning saying why this image
    cannot be shown; never the stored file."""
    if rendition is not None and rendition.data is not None:
        where.image(rendition.data, caption=caption, output_format=rendition.format, width="stretch")
        return
    why = rendition.problem if rendition is not None else "no display rendition was made"
    where.warning(f"Cannot show this image: {why}." + (f" ({caption})" if caption else ""),
                  icon=":material/broken_image:")
