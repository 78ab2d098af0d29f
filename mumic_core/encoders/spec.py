"""Which encoder weights to load, and where the starter model lives: plain data, no torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mumic_core.config import Settings

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
STARTER_ARCH = "mumic-small-rn96"
STARTER_LABEL = "starter model pretrained on drawings (Tux Paint stamps and emoji), not CLIP"


@dataclass(frozen=True)
class EncoderSpec:
    """Which open_clip weights to load.

    ``architecture`` is an open_clip model name or ``local-dir:PATH``; ``weights`` is a
    pretrained tag, a checkpoint file, or empty (random init / local-dir).
    ``kind``: pretrained | builtin-random | fine-tuned | starter.
    """

    architecture: str
    weights: str
    kind: str
    description: str

    @property
    def key(self) -> str:
        """Names the cached embeddings of these weights. Weight files on disk add their size and
        modification time, so a model rebuilt in place (e.g. the starter recipe run again)
        never reuses the embeddings of the old weights."""
        ident = f"{self.architecture}|{self.weights}"
        files = (
            [Path(self.architecture.removeprefix("local-dir:")) / WEIGHTS_NAME]
            if self.architecture.startswith("local-dir:")
            else [Path(self.weights)]
            if self.weights
            else []
        )
        for f in files:
            try:
                st = f.stat()
                ident += f"|{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                pass
        return hashlib.sha1(ident.encode()).hexdigest()[:16]

    @property
    def is_untrained(self) -> bool:
        return self.kind == "builtin-random"


def starter_dir(settings: Settings) -> Path:
    return settings.model_dir / "starter"


def corpus_dir(settings: Settings) -> Path:
    return settings.home / "starter-corpus"


def starter_available(settings: Settings) -> bool:
    return (starter_dir(settings) / CONFIG_NAME).is_file()


def starter_spec(settings: Settings) -> EncoderSpec:
    return EncoderSpec(f"local-dir:{starter_dir(settings)}", "", "starter", STARTER_LABEL)
