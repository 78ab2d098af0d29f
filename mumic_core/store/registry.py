"""Model versions: the base model, trained versions, activation."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update

from db.models import ModelVersion
from mumic_core.encoders.spec import EncoderSpec
from mumic_core.errors import ModelUnavailable
from mumic_core.model.head import Head
from mumic_core.store.auth import audit, requires
from mumic_core.store.storage import storage_for
from mumic_core.store.studio import Studio

_LOCAL = "local-dir:"
_TRAINED = ("head", "full")  # kinds whose folder training publishes to storage


@dataclass(frozen=True)
class VersionInfo:
    """A model version as pages and the pipeline see it (not a database row)."""

    id: int
    name: str
    kind: str  # pretrained | starter | builtin-random | head | full
    description: str
    architecture: str
    weights: str
    parent_id: int | None
    training_config: dict
    metrics: dict
    status: str  # candidate | active | retired
    created_at: datetime | None

    @classmethod
    def of(cls, row: ModelVersion) -> VersionInfo:
        return cls(
            row.id,
            row.name,
            row.kind,
            row.description or "",
            row.architecture,
            row.weights,
            row.parent_id,
            dict(row.training_config or {}),
            dict(row.metrics or {}),
            row.status,
            row.created_at,
        )


@requires("train")
def publish_version_folder(studio: Studio, name: str) -> int:
    """Copy a finished version folder (``model_dir/name``) to remote storage (MUMIC_STORAGE_URL)
    before the version is registered; returns the number of files (0 for local storage)."""
    if not studio.settings.storage_url:
        return 0
    return storage_for(studio.settings, "models").upload_dir(studio.settings.model_dir / name, name)


def _materialise(studio: Studio, version: VersionInfo) -> None:
    """With remote storage, download a trained version's folder into ``model_dir/name`` when this
    machine lacks it (the paths that versions record stay valid). Local storage: nothing to do."""
    settings = studio.settings
    if not settings.storage_url or version.kind not in _TRAINED or (settings.model_dir / version.name).is_dir():
        return
    storage_for(settings, "models").local_dir(version.name, dest=settings.model_dir / version.name)


def _to_stored(studio: Studio, architecture: str) -> str:
    """Paths inside MUMIC_HOME are stored relative to it, so the folder can move."""
    if architecture.startswith(_LOCAL):
        path = Path(architecture.removeprefix(_LOCAL))
        try:
            return _LOCAL + path.relative_to(studio.settings.home).as_posix()
        except ValueError:
            return architecture
    return architecture


def _from_stored(studio: Studio, architecture: str) -> str:
    if architecture.startswith(_LOCAL):
        path = Path(architecture.removeprefix(_LOCAL))
        return _LOCAL + str(path if path.is_absolute() else studio.settings.home / path)
    return architecture


def encoder_spec(studio: Studio, version: VersionInfo) -> EncoderSpec:
    """The encoder a version runs on."""
    _materialise(studio, version)
    return EncoderSpec(
        _from_stored(studio, version.architecture),
        version.weights,
        version.kind if version.kind in ("pretrained", "builtin-random", "starter") else "fine-tuned",
        version.description,
    )


def head_path(studio: Studio, version: VersionInfo) -> Path:
    """Where a version's head lives locally (fetched from remote storage first when needed)."""
    _materialise(studio, version)
    return studio.settings.model_dir / version.name / "head.json"


_parsed: dict[Path, tuple[tuple[int, int], dict]] = {}  # head file -> ((mtime, size), its JSON)


def _head_json(path: Path) -> dict:
    """A head file's JSON, parsed once per process while the file is unchanged (120 classes'
    vectors: 8 ms to parse, on every run of the Review page)."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _parsed.get(path)
    if hit is None or hit[0] != stamp:
        if len(_parsed) > 16:
            _parsed.clear()
        hit = (stamp, json.loads(path.read_text()))
        _parsed[path] = hit
    return hit[1]


def load_head(studio: Studio, version: VersionInfo) -> Head | None:
    """A version's head (None before it has one); ModelUnavailable, naming the version and what
    to do, when its file cannot be read as a head (truncated, edited, not a head)."""
    path = head_path(studio, version)
    if not path.exists():
        return None
    try:
        return Head.from_dict(_head_json(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelUnavailable(
            f"model version {version.name} is damaged: its head cannot be read ({type(exc).__name__}); retrain, "
            "or activate another version (on the Training page, or: python -m mumic_core models activate NAME)"
        ) from exc


@requires("train")
def save_head(studio: Studio, name: str, head: Head) -> Path:
    """Write a version's head into its folder (atomically; the folder is made if new)."""
    path = studio.settings.model_dir / name / "head.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(head.to_dict()))
    tmp.replace(path)
    return path


def active_version(studio: Studio) -> VersionInfo | None:
    """The version that makes the suggestions, if any."""
    with studio.read() as s:
        row = s.scalar(select(ModelVersion).where(ModelVersion.status == "active"))
    return VersionInfo.of(row) if row is not None else None


def get_version(studio: Studio, name_or_id: str | int) -> VersionInfo:
    with studio.read() as s:
        q = select(ModelVersion)
        q = (
            q.where(ModelVersion.id == int(name_or_id))
            if str(name_or_id).isdigit()
            else q.where(ModelVersion.name == str(name_or_id))
        )
        version = s.scalar(q)
    if version is None:
        raise KeyError(f"no model version {name_or_id!r}")
    return VersionInfo.of(version)


def list_versions(studio: Studio) -> list[VersionInfo]:
    """Every version, oldest first."""
    with studio.read() as s:
        return [VersionInfo.of(row) for row in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]


def next_version_name(studio: Studio) -> str:
    with studio.read() as s:
        n = (s.scalar(select(func.max(ModelVersion.id))) or 0) + 1
    return f"v{n:04d}"


@requires("train")
def register_version(
    studio: Studio,
    name: str,
    spec: EncoderSpec,
    kind: str,
    description: str,
    parent_id: int | None = None,
    training_config: dict | None = None,
    metrics: dict | None = None,
    status: str = "candidate",
) -> VersionInfo:
    """Record a model version whose files are already complete on disk."""
    with studio.write() as s:
        version = ModelVersion(
            name=name,
            kind=kind,
            description=description,
            architecture=_to_stored(studio, spec.architecture),
            weights=spec.weights,
            parent_id=parent_id,
            training_config=training_config or {},
            metrics=metrics or {},
            status="candidate",
        )
        s.add(version)
        s.flush()
        version_id = version.id
    if status == "active":
        activate(studio, version_id)
    return get_version(studio, version_id)


@requires("models")
def activate(studio: Studio, version_id: int) -> None:
    """Make one version active and retire the previously active one, atomically."""
    with studio.write() as s:
        if s.get(ModelVersion, version_id) is None:
            raise KeyError(f"no model version {version_id}")
        s.execute(
            update(ModelVersion)
            .where(ModelVersion.status == "active", ModelVersion.id != version_id)
            .values(status="retired")
        )
        s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(status="active"))
        audit(s, studio, "activate_model", version_id=version_id)


def describe(version: VersionInfo) -> str:
    """How the UI and CLI name a version: never call an untrained model pretrained."""
    if version.kind == "builtin-random":
        return f"{version.name}: UNTRAINED built-in model (random weights) — suggestions are not meaningful yet"
    if version.kind in ("head", "full"):
        base = version.training_config.get("base_kind")
        origin = (
            " on your labels only, from the untrained built-in model (no pretraining)"
            if base == "builtin-random"
            else ""
        )
        return f"{version.name}: fine-tuned{origin} ({version.description})"
    return f"{version.name}: {version.description}"


@requires("export")
def export_model_zip(studio: Studio, version: VersionInfo) -> bytes:
    """A zip of everything a version needs: its encoder (when it is a local folder), its head,
    and a manifest naming the architecture and weights."""
    buf = io.BytesIO()
    spec = encoder_spec(studio, version)
    manifest = {
        "name": version.name,
        "kind": version.kind,
        "description": version.description,
        "architecture": version.architecture,
        "weights": version.weights,
        "training_config": version.training_config,
        "metrics": version.metrics.get("val", {}),
    }
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if spec.architecture.startswith(_LOCAL):
            folder = Path(spec.architecture.removeprefix(_LOCAL))
            for f in sorted(folder.iterdir()):
                if f.is_file():  # weights barely compress: stored as they are, a large model zips in seconds
                    stored = f.suffix in (".safetensors", ".bin", ".pt", ".pth")
                    zf.write(f, f"encoder/{f.name}", compress_type=zipfile.ZIP_STORED if stored else None)
            manifest["encoder"] = "encoder/ (open_clip local-dir: MUMIC_PRETRAINED=local-dir:encoder)"
        head = head_path(studio, version)
        if head.exists():
            zf.write(head, "head.json")
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, default=str))
    return buf.getvalue()
