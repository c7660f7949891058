"""Read the app config from a Serve config YAML (the ``args`` of the ltrr
application) or from a bare app-config YAML, so every tool shares one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ltrr.config import AppConfig
from ltrr.errors import ConfigError

APP_NAME = "ltrr"


def load_app_args(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if "applications" in data:
        for app in data["applications"]:
            if app.get("name") == APP_NAME:
                return dict(app.get("args") or {})
        raise ConfigError(f"{path}: no application named {APP_NAME!r}")
    return dict(data)


def load_app_config(path: str | Path) -> AppConfig:
    return AppConfig.model_validate(load_app_args(path))
