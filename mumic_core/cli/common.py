"""What every command shares: the store acting as the system, one-line errors, progress bars."""

from __future__ import annotations

from tqdm import tqdm

from mumic_core.store.auth import SYSTEM
from mumic_core.store.studio import Studio, open_studio


def one_line(exc: Exception) -> str:
    """The failure as one line; an OSError (a full disk, a denied permission, a missing file)
    names the file and the reason."""
    if isinstance(exc, OSError) and exc.strerror:
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{files}: {exc.strerror}" if files else exc.strerror
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


def system_studio() -> Studio:
    """The store, acting as the system: whoever can run this can read the database file."""
    return open_studio(actor=SYSTEM)


def progress_bar(desc: str):
    """A tqdm bar and the progress callback that drives it: phase, %, time, then epoch/step/loss."""
    bar = tqdm(
        total=100, desc=desc, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"
    )

    def report(phase: str, fraction: float, info: dict) -> None:
        bar.set_description_str(phase)  # set_description would append a second ': '
        bar.n = round(100 * fraction)
        parts = [
            f"epoch {info['epoch']}/{info['epochs']}" if "epochs" in info and "epoch" in info else "",
            f"step {info['step']}" if "step" in info else "",
            f"{info['img/s']:.0f} img/s" if "img/s" in info else "",
            f"loss {info['loss']:.4f}" if "loss" in info else "",
        ]
        bar.set_postfix_str(", ".join(p for p in parts if p))  # tqdm puts ", " before it
        bar.refresh()

    return bar, report
