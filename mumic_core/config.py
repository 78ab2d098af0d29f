"""Settings, read from the environment once per process.

All state lives under ``MUMIC_HOME`` (default ``./mumic_data``): the database, the image
store, model versions, cached embeddings and the job queue. ``MUMIC_STORAGE_URL`` (an fsspec
URL such as ``s3://bucket/prefix``) moves the images and published model versions to an object
store; ``MUMIC_STORAGE_OPTIONS`` (a JSON object) is passed to fsspec for it.
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
BUILTIN_MODEL = "mumic-tiny-rn"


@dataclass(frozen=True)
class Settings:
    """Where state lives and which model to use."""

    home: Path
    database_url: str
    model: str
    pretrained: str
    model_explicit: bool = False
    offline_probe_seconds: float = 4.0
    max_image_pixels: int = 64_000_000
    max_image_bytes: int = 64 * 2**20
    embedding_chunk: int = 1024  # images encoded between two saved cache parts (the unit of resume)
    import_root: Path | None = None  # server folders below it may be imported from the browser
    queue_url: str = ""  # redis://... for huey on Redis; empty: huey on SQLite in queue.db
    batch_stale_seconds: float = 120.0  # an encode batch without a heartbeat this long is claimed again
    storage_url: str = ""  # "": images and models under home; else an fsspec URL (s3://bucket/prefix)
    storage_options: dict = field(default_factory=dict)  # passed to fsspec with storage_url
    run_log: Path | None = None  # when set, the web server appends each page run's server time here
    api_url: str = "http://127.0.0.1:8000"  # how people's browsers and tools reach the HTTP API
    extra: dict = field(default_factory=dict)

    @property
    def image_dir(self) -> Path:
        return self.home / "images"

    @property
    def model_dir(self) -> Path:
        return self.home / "models"

    @property
    def embedding_dir(self) -> Path:
        return self.home / "embeddings"

    @property
    def demo_dir(self) -> Path:
        return self.home / "demo"

    @property
    def storage_cache_dir(self) -> Path:
        """Local read-through copies of files held by a remote ``storage_url``."""
        return self.home / "cache" / "storage"

    @property
    def rendition_cache_dir(self) -> Path:
        """Display renditions of the images (see renditions.py): made on first view, kept."""
        return self.home / "cache" / "renditions"

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.db"

    @property
    def queue(self) -> str:
        """Where the job queue is: the Redis URL, or the SQLite file under MUMIC_HOME."""
        return self.queue_url or str(self.queue_path)

    def ensure_dirs(self) -> None:
        local_images = () if self.storage_url else (self.image_dir,)
        for path in (self.home, *local_images, self.model_dir, self.embedding_dir):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # a file where a folder should be
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None


def without_password(url: str) -> str:
    """A database or queue URL fit to show people: its password, if any, as ***."""
    return make_url(url).render_as_string(hide_password=True) if "://" in url else url


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from ``MUMIC_*`` environment variables."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("MUMIC_HOME", "mumic_data")).expanduser().resolve()
    url = env.get("MUMIC_DATABASE_URL") or f"sqlite:///{home / 'mumic.db'}"
    explicit = "MUMIC_MODEL" in env or "MUMIC_PRETRAINED" in env
    return Settings(
        home=home,
        database_url=url,
        model=env.get("MUMIC_MODEL", DEFAULT_MODEL),
        pretrained=env.get("MUMIC_PRETRAINED", DEFAULT_PRETRAINED),
        model_explicit=explicit,
        offline_probe_seconds=_number(env, "MUMIC_OFFLINE_PROBE_SECONDS", "4", float),
        embedding_chunk=max(1, _number(env, "MUMIC_EMBEDDING_CHUNK", "1024", int)),
        import_root=Path(env.get("MUMIC_IMPORT_ROOT") or home / "incoming").expanduser().resolve(),
        queue_url=env.get("MUMIC_QUEUE_URL", ""),
        batch_stale_seconds=_number(env, "MUMIC_BATCH_STALE_SECONDS", "120", float),
        storage_url=env.get("MUMIC_STORAGE_URL", "").strip(),
        storage_options=_json_object(env.get("MUMIC_STORAGE_OPTIONS", ""), "MUMIC_STORAGE_OPTIONS"),
        run_log=Path(env["MUMIC_RUN_LOG"]).expanduser().resolve() if env.get("MUMIC_RUN_LOG") else None,
        api_url=(env.get("MUMIC_API_URL") or f"http://127.0.0.1:{env.get('MUMIC_API_PORT') or 8000}").rstrip("/"),
    )


def _number(env: dict[str, str], name: str, default: str, kind: type[int] | type[float]) -> int | float:
    """A finite number from an environment variable; ValueError naming the variable otherwise."""
    text = env.get(name, default)
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        raise ValueError(f"{name} must be a {'whole number' if kind is int else 'number'}, not {text!r}")
    return value


def _json_object(text: str, name: str) -> dict:
    """A JSON object from an environment variable ("" is {})."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f'{name} must be a JSON object, e.g. {{"client_kwargs": {{"endpoint_url": ...}}}}')
    return value
