"""Themes as data: ``themes/*.toml`` -> ``textual.theme.Theme``.

A theme file holds Textual's base colours at the top level and semantic
names under ``[variables]`` (``health-ok``, ``health-crit``, ``spark``...).
A file that does not parse or lacks ``primary`` is reported, not fatal.

The built-in themes live in the repository's top-level ``themes/`` (the
package's ``flowtui/ui/themes`` links there, so an installed copy has them).
User themes are read afterwards, from ``$XDG_CONFIG_HOME/flowtui/themes``
(``~/.config/flowtui/themes``) and from the config's ``[ui] theme_dir``; a
user theme with a built-in's name replaces it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

THEME_DIR = Path(__file__).parent / "themes"
DEFAULT_THEME = "flowtui-noc"
BASE_KEYS = (
    "primary", "secondary", "warning", "error", "success", "accent",
    "foreground", "background", "surface", "panel", "boost",
)
# Every custom $variable the stylesheet uses, with the fallback Textual applies
# when a theme does not set it (see FlowApp.get_theme_variable_defaults).
VARIABLE_DEFAULTS: dict[str, str] = {
    "health-ok": "ansi_green",
    "health-warn": "ansi_yellow",
    "health-crit": "ansi_red",
    "health-paused": "ansi_blue",
    "health-nodata": "ansi_bright_black",
    "spark": "ansi_cyan",
    "hop-slow": "ansi_red",
    "bar-submit": "ansi_blue",
    "bar-transit": "ansi_magenta",
}


@dataclass(frozen=True)
class ThemeError:
    path: str
    message: str


def theme_from_toml(path: Path) -> Theme:
    """One theme file as a Theme; raises ValueError naming the problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path.name}: 'name' is missing")
    unknown = set(data) - {"name", "dark", "variables", *BASE_KEYS}
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {', '.join(sorted(unknown))}")
    if "primary" not in data:
        raise ValueError(f"{path.name}: 'primary' is missing")
    colours = {}
    for key in BASE_KEYS:
        if key in data:
            value = data[key]
            try:
                Color.parse(value)
            except (ColorParseError, TypeError):
                raise ValueError(f"{path.name}: {key} = {value!r} is not a colour") from None
            colours[key] = value
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError(f"{path.name}: [variables] must map names to colour strings")
    return Theme(name=name, dark=bool(data.get("dark", True)), variables=dict(variables), **colours)


def user_theme_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "flowtui" / "themes"


def load_themes(*directories: Path | str | None) -> tuple[list[Theme], list[ThemeError]]:
    """Themes from each folder in turn (default: the built-ins); a later theme of
    the same name replaces an earlier one. A missing folder is skipped; an
    unreadable one is reported."""
    by_name: dict[str, Theme] = {}
    errors: list[ThemeError] = []
    for directory in directories or (THEME_DIR,):
        if directory is None:
            continue
        folder = Path(directory)
        if not folder.exists():
            continue
        try:
            paths = sorted(folder.glob("*.toml"))
        except OSError as exc:
            errors.append(ThemeError(str(folder), f"{folder}: {exc.strerror or exc}"))
            continue
        for path in paths:
            try:
                theme = theme_from_toml(path)
            except ValueError as exc:
                errors.append(ThemeError(str(path), str(exc)))
                continue
            by_name.pop(theme.name, None)
            by_name[theme.name] = theme
    return list(by_name.values()), errors
