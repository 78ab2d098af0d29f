"""Small rendering helpers shared by the pages: user text, images, and the error boundary."""

from __future__ import annotations

import base64
import functools
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from mumic_core.errors import REFUSALS, one_line
from mumic_core.store.jobs import get_job
from mumic_core.store.renditions import Rendition
from mumic_core.store.studio import Studio

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate ... pop directional isolate
# Inside an isolate: isolate controls are dropped (a PDI would end it early) and paragraph
# separators become spaces (a new paragraph would start outside it).
_UNISOLATING = {ord(c): None for c in "\u2066\u2067\u2068\u2069"} | {ord(c): " " for c in "\n\r\x1c\x1d\x1e\x85\u2029"}
_log = logging.getLogger("mumic_core.app")


def isolate(text: object) -> str:
    """User text as a bidirectional isolate (FSI … PDI): a right-to-left override or embedding
    inside it ends with it and cannot reorder the caption around it. For plain-text labels
    (options, widget labels); in markdown use :func:`md`."""
    return f"{FSI}{str(text).translate(_UNISOLATING)}{PDI}"


def md(text: object) -> str:
    """User text (class names, prompts, file names) made literal inside Streamlit markdown: no
    links, images, emphasis or LaTeX can be smuggled in (Streamlit already refuses raw HTML),
    and isolated (:func:`isolate`) so that bidi controls in it cannot reverse the text around it."""
    return isolate(_MARKDOWN.sub(r"\\\1", str(text)))


def show_image(where: DeltaGenerator, rendition: Rendition | None, caption: str | None = None) -> None:
    """A display rendition (see mumic_core.store.renditions), or one warning saying why this image
    cannot be shown; never the stored file."""
    if rendition is not None and rendition.data is not None:
        where.image(rendition.data, caption=caption, output_format=rendition.format, width="stretch")
        return
    why = rendition.problem if rendition is not None else "no display rendition was made"
    where.warning(
        f"Cannot show this image: {why}." + (f" ({caption})" if caption else ""), icon=":material/broken_image:"
    )


def refuse(exc: Exception, context: str = "") -> None:
    """A refused action, in the page: ``context`` and the error's one line (server paths shortened)."""
    st.error(md(f"{context}{one_line(exc, REFUSALS)}"), icon=":material/block:")


def show_error(exc: Exception) -> None:
    """The error boundary of every page: the full traceback to the server log, one line to the browser."""
    _log.error("a page failed: %s", type(exc).__name__, exc_info=exc)
    st.error(md(one_line(exc)), icon=":material/error:")


def new_component_action(key: str, ack_key: str) -> dict | None:
    """The last ``action`` a browser component (review, grid or sweep panel) mounted under ``key``
    sent, once: None when there is none or it was handled already (its ``seq`` is not above
    ``st.session_state[ack_key]``, which this then records)."""
    state = st.session_state
    result = state.get(key)
    value = getattr(result, "action", None) if result is not None else None
    if value is None and isinstance(result, dict):
        value = result.get("action")
    if not isinstance(value, dict) or value.get("seq", 0) <= state.get(ack_key, 0):
        return None
    state[ack_key] = int(value["seq"])
    return value


CALLBACK_MS = "_callback_ms"  # session state: server time of the widget callbacks run before this script run


def timed_callback(fn: Callable[[], None]) -> Callable[[], None]:
    """A widget callback whose server time counts in this run's MUMIC_RUN_LOG line (callbacks
    run before the page script, outside its timer)."""

    @functools.wraps(fn)
    def run() -> None:
        started = time.perf_counter()
        try:
            fn()
        finally:
            st.session_state[CALLBACK_MS] = st.session_state.get(CALLBACK_MS, 0.0) + 1000 * (
                time.perf_counter() - started
            )

    return run


def component_assets(name: str) -> dict[str, str]:
    """The ``js`` (after the shared ``panel_common.js``) and ``css`` of the browser component
    ``app_pages/<name>.{js,css}``."""
    here = Path(__file__).parent
    return {
        "js": (here / "panel_common.js").read_text(encoding="utf-8")
        + "\n"
        + (here / f"{name}.js").read_text(encoding="utf-8"),
        "css": (here / f"{name}.css").read_text(encoding="utf-8"),
    }


def inline_image(rendition: Rendition | None) -> tuple[str, str]:
    """(a data: URL of a display rendition, "") for a component to draw, or ("", why it cannot be shown)."""
    if rendition is None or rendition.data is None:
        return "", rendition.problem if rendition is not None else "no display rendition was made"
    data = base64.b64encode(rendition.data).decode("ascii")
    return f"data:image/{rendition.format.lower()};base64,{data}", ""


@st.fragment(run_every=2.0)
def watch_job(studio: Studio, job_id: int, doing: str) -> None:
    """A background job's progress, every 2 s ("``doing`` in the background (job N, running,
    40%)"); the whole page reruns when the job ends, to show its result."""
    job = get_job(studio, job_id)
    if job.status not in ("queued", "running"):
        st.rerun(scope="app")
    st.caption(f"{doing} in the background (job {job.id}, {job.status}, {job.progress:.0%}).")
