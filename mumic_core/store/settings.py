"""Collection-wide settings that leads change from the UI, stored in the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from db.models import StudioSetting
from mumic_core.store.auth import audit, requires
from mumic_core.store.studio import Studio

DEFAULTS: dict[str, Any] = {
    "auto_retrain_labels": 0,  # retrain after this many new human labels; 0 = off
    "auto_retrain_mode": "head",
    "promotion_policy": "if-better",  # if-better | always | never
}


def get_setting(studio: Studio, key: str) -> Any:
    if key not in DEFAULTS:
        raise KeyError(f"unknown setting {key!r}")
    with studio.read() as s:
        row = s.get(StudioSetting, key)
    return row.value.get("v", DEFAULTS[key]) if row else DEFAULTS[key]


@requires("settings")
def set_setting(studio: Studio, key: str, value: Any) -> None:
    if key not in DEFAULTS:
        raise KeyError(f"unknown setting {key!r}")
    if type(value) is not type(DEFAULTS[key]):
        raise ValueError(f"setting {key} takes a {type(DEFAULTS[key]).__name__}, not {value!r}")
    for attempt in (1, 2):  # PostgreSQL: two first saves of a key at once; the later one updates
        try:
            with studio.write() as s:
                audit(s, studio, "set_setting", key=key, value=value)
                row = s.get(StudioSetting, key, with_for_update=True)
                if row is None:
                    s.add(StudioSetting(key=key, value={"v": value}))
                else:
                    row.value = {"v": value}
            return
        except IntegrityError:
            if attempt == 2:
                raise
