"""What a server does at start, before any browser connects, so that the first page run does
not wait for it: import the project's modules that the pages import, and settle Streamlit's
once-per-process check of how it was started."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import streamlit.delta_generator

PAGES = Path(__file__).parent


def import_what_pages_use() -> list[str]:
    """Import the project's modules that the pages import (otherwise the first browser after a
    restart waits for them in its page run: torch, scikit-learn and cleanlab alone take about
    4 s on 2 cores). Returns their names."""
    names: set[str] = set()
    for page in PAGES.glob("*.py"):
        tree = ast.parse(page.read_text(encoding="utf-8"))
        names |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    ours = sorted(n for n in names if n.split(".")[0] in ("mumic_core", "app_pages", "db"))
    for name in ours:
        importlib.import_module(name)
    return ours


def skip_direct_execution_check() -> None:
    """Mark Streamlit's "run me with `streamlit run`" warning as shown: the server is run that
    way. Its check walks the whole call stack with source lines (``inspect.stack()``) on the
    first element any page draws, and that first page run would wait for it."""
    streamlit.delta_generator._use_warning_has_been_displayed = True  # noqa: SLF001


def warm_start() -> None:
    """Everything above, once per server process (serve.py calls it at import)."""
    import_what_pages_use()
    skip_direct_execution_check()
