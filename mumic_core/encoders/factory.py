"""Create open_clip encoders: pretrained tags, checkpoint files, ``local-dir:`` folders.

The default is ViT-B-32 with LAION-2B weights. When those weights are neither cached nor
downloadable (offline), this is found out within a few seconds and the product falls back to a
small built-in architecture with random weights, named as such everywhere.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError
from safetensors.torch import save_file

from mumic_core.config import BUILTIN_MODEL, Settings
from mumic_core.encoders.spec import (
    CONFIG_DIR,
    CONFIG_NAME,
    WEIGHTS_NAME,
    EncoderSpec,
    starter_available,
    starter_spec,
)
from mumic_core.errors import ModelUnavailable


@dataclass
class Encoder:
    """A loaded open_clip model with its transforms and tokenizer."""

    model: torch.nn.Module
    preprocess: object
    train_preprocess: object
    tokenizer: object
    spec: EncoderSpec
    model_cfg: dict
    image_size: int


def _import_open_clip():
    import open_clip  # deferred: 1.6 s to import; only building a model needs it

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def _hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def host_reachable(host: str, port: int = 443, timeout: float = 4.0) -> bool:
    """True when a TCP connection to ``host`` succeeds within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def cached_pretrained_file(architecture: str, tag: str) -> str | None:
    """Path of already downloaded weights for an open_clip tag, without touching the network."""
    open_clip = _import_open_clip()
    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    if cfg.get("url"):
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if path.is_file():
            return str(path)
    return None


def is_pretrained_tag(architecture: str, tag: str) -> bool:
    open_clip = _import_open_clip()
    return bool(open_clip.get_pretrained_cfg(architecture, tag))


def obtainable(architecture: str, weights: str, timeout: float) -> bool:
    """Whether these weights can be loaded now: a local file, a cached tag, or a reachable hub."""
    if architecture.startswith("local-dir:") or os.path.isfile(weights):
        return True
    if not is_pretrained_tag(architecture, weights):
        return False
    return cached_pretrained_file(architecture, weights) is not None or host_reachable(_hub_host(), timeout=timeout)


def builtin_dir(settings: Settings) -> Path:
    return settings.model_dir / "builtin-random"


def resolve_base_spec(settings: Settings) -> EncoderSpec:
    """The encoder to start from: configured weights, else the default, else the built-in one.

    Explicitly configured weights that cannot be had raise ``ModelUnavailable`` (fail fast);
    the default falls back to the untrained built-in architecture.
    """
    arch, weights = settings.model, settings.pretrained
    if arch.startswith("local-dir:"):
        path = Path(arch.removeprefix("local-dir:")).expanduser().resolve()
        if not (path / CONFIG_NAME).is_file():
            raise ModelUnavailable(f"{arch}: no {CONFIG_NAME} in that folder")
        return EncoderSpec(f"local-dir:{path}", "", "pretrained", f"{read_label(path)} (from {path})")
    if weights.startswith("local-dir:"):
        return resolve_base_spec(Settings(**{**settings.__dict__, "model": weights, "pretrained": ""}))
    if obtainable(arch, weights, settings.offline_probe_seconds):
        kind = "pretrained"
        label = f"{arch} pretrained ({Path(weights).name if os.path.isfile(weights) else weights})"
        return EncoderSpec(arch, weights, kind, label)
    if not settings.model_explicit and starter_available(settings):
        return starter_spec(settings)
    if settings.model_explicit:
        raise ModelUnavailable(
            f"cannot load {arch} with weights '{weights}': not a local file, not in the open_clip "
            f"cache, and {_hub_host()} is unreachable (offline?). Download them on a connected "
            "machine, or set MUMIC_PRETRAINED to a checkpoint file or local-dir:FOLDER."
        )
    path = builtin_dir(settings)
    if not (path / WEIGHTS_NAME).is_file():
        create_random_local_dir(BUILTIN_MODEL, path, seed=0)
    return EncoderSpec(
        f"local-dir:{path}",
        "",
        "builtin-random",
        f"untrained built-in model ({BUILTIN_MODEL}, random weights): pretrained {arch} "
        f"weights could not be obtained offline",
    )


def read_label(path: Path) -> str:
    """The label a local model folder's config gives it (its folder name when it has none)."""
    try:
        return json.loads((path / CONFIG_NAME).read_text()).get("mumic_label", path.name)
    except (OSError, ValueError):
        return path.name


def create_random_local_dir(architecture: str, dest: Path, seed: int = 0) -> None:
    """Instantiate ``architecture`` (a name or ``local-dir:``) with seeded random weights and
    save it as a local-dir."""
    open_clip = _import_open_clip()
    _check_architecture(open_clip, architecture)
    torch.manual_seed(seed)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip warns "initialized randomly": here that is the point
    try:
        model = open_clip.create_model(architecture, pretrained=None, load_weights=False)
    finally:
        logging.disable(previous)
    if architecture.startswith("local-dir:"):
        cfg = json.loads((Path(architecture.removeprefix("local-dir:")) / CONFIG_NAME).read_text())["model_cfg"]
    else:
        cfg = open_clip.get_model_config(architecture)
    save_local_dir(model, cfg, dest, label=f"{architecture} (random)")


def save_local_dir(model: torch.nn.Module, model_cfg: dict, dest: Path, label: str = "") -> None:
    """Save in open_clip's local-dir format, atomically (a half-written folder is never visible)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        config = {
            "model_cfg": model_cfg,
            "preprocess_cfg": {"mean": list(model.visual.image_mean or ()), "std": list(model.visual.image_std or ())}
            if getattr(model.visual, "image_mean", None)
            else {},
            "mumic_label": label,
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def device_name() -> str:
    """What this process computes on, in words ("cpu", or the GPU's name)."""
    return f"cuda: {torch.cuda.get_device_name(0)}"[:60] if torch.cuda.is_available() else "cpu"


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """Load an encoder (cached per process). Raises ModelUnavailable with a clear reason."""
    encoder = _load_encoder(spec.architecture, spec.weights, _device(device))
    return encoder if encoder.spec == spec else Encoder(**{**encoder.__dict__, "spec": spec})


@functools.lru_cache(maxsize=3)
def _load_encoder(arch: str, weights: str, device: str) -> Encoder:
    open_clip = _import_open_clip()
    spec = EncoderSpec(arch, weights, "", "")
    pretrained: str | None = weights or None
    if pretrained and not os.path.isfile(pretrained):
        cached = cached_pretrained_file(arch, pretrained)
        if cached:
            pretrained = cached
        elif not host_reachable(_hub_host()):
            raise ModelUnavailable(f"{arch}/{weights}: weights not cached and {_hub_host()} unreachable")
    if arch.startswith("local-dir:") and not Path(arch.removeprefix("local-dir:")).is_dir():
        raise ModelUnavailable(f"model folder missing: {arch.removeprefix('local-dir:')}")
    _check_architecture(open_clip, arch)
    named = f"{arch} with weights {weights}" if weights else arch
    try:
        model, train_pp, val_pp = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
        if arch.startswith("local-dir:"):
            cfg = json.loads((Path(arch.removeprefix("local-dir:")) / CONFIG_NAME).read_text())["model_cfg"]
        else:
            cfg = open_clip.get_model_config(arch)
    except Exception as exc:  # noqa: BLE001 - open_clip, torch and safetensors raise many kinds
        if _is_corrupt_weights(exc):
            raise ModelUnavailable(
                f"cannot load {named}: its weights file is truncated or corrupt "
                f"({_first_line(exc)}); copy or download it again"
            ) from exc
        if isinstance(exc, (RuntimeError, OSError, ValueError, KeyError)):
            raise ModelUnavailable(f"cannot load {named}: {_first_line(exc)}") from exc
        raise
    model.eval()
    size = cfg["vision_cfg"].get("image_size", 224)
    return Encoder(
        model=model,
        preprocess=val_pp,
        train_preprocess=train_pp,
        tokenizer=open_clip.get_tokenizer(arch),
        spec=spec,
        model_cfg=cfg,
        image_size=size if isinstance(size, int) else size[0],
    )


def _check_architecture(open_clip, architecture: str) -> None:
    """ModelUnavailable for an architecture name open_clip does not know (its own error lists
    every known name on one very long line)."""
    if not architecture.startswith(("local-dir:", "hf-hub:")) and open_clip.get_model_config(architecture) is None:
        raise ModelUnavailable(
            f"unknown architecture {architecture!r}: not an open_clip model name "
            "(open_clip.list_models() lists them) nor local-dir:FOLDER"
        )


def _is_corrupt_weights(exc: Exception) -> bool:
    """A weights file that cannot be decoded: cut short, or not weights at all. Torch names a
    broken checkpoint archive only in its RuntimeError's message."""
    return isinstance(exc, (SafetensorError, pickle.UnpicklingError, EOFError)) or (
        isinstance(exc, RuntimeError) and "PytorchStreamReader" in str(exc)
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
