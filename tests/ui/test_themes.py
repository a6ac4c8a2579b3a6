"""Every theme file loads; a bad one is skipped with a notification, not a crash."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from flowtui.core.config import load_config
from flowtui.core.errors import UserError
from flowtui.core.model import UiSettings
from flowtui.ui.app import FlowApp
from flowtui.ui.themes import THEME_DIR, VARIABLE_DEFAULTS, load_themes, theme_from_toml
from ui.scripted import NOW, scripted


def test_every_theme_file_loads_and_sets_every_variable():
    paths = sorted(THEME_DIR.glob("*.toml"))
    assert len(paths) >= 3
    names = set()
    for path in paths:
        theme = theme_from_toml(path)
        names.add(theme.name)
        assert set(VARIABLE_DEFAULTS) <= set(theme.variables), path.name
    assert {"flowtui-noc", "flowtui-light", "flowtui-contrast"} <= names


async def test_bad_theme_file_falls_back_with_a_notification(tmp_path):
    themes = tmp_path / "themes"
    shutil.copytree(THEME_DIR, themes)
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    loaded, errors = load_themes(themes)
    assert len(loaded) == 3 and len(errors) == 1 and "broken.toml" in errors[0].message
    config, store = scripted(tmp_path)
    app = FlowApp(config, store, theme="broken", clock=lambda: NOW, theme_dir=themes)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app.theme == "flowtui-noc"
            texts = [str(n.message) for n in app._notifications]
            assert any("broken.toml" in t for t in texts) and any("no theme 'broken'" in t for t in texts)
            seen = [app.theme]
            for _ in range(3):
                await pilot.press("t")
                seen.append(app.theme)
            assert set(seen) == {"flowtui-noc", "flowtui-light", "flowtui-contrast"} and seen[-1] == seen[0]
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
    finally:
        store.close()


def test_builtin_themes_are_the_top_level_themes_folder():
    top = Path(__file__).resolve().parents[2] / "themes"
    assert THEME_DIR.resolve() == top.resolve()
    assert sorted(p.name for p in top.glob("*.toml")) == sorted(p.name for p in THEME_DIR.glob("*.toml"))


def test_config_ui_section_is_read_and_checked(tmp_path):
    cfg = tmp_path / "c.toml"
    base = (
        '[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.net"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n'
    )
    cfg.write_text(base + '\n[ui]\ntheme = "mine"\ntheme_dir = "my-themes"\n')
    config = load_config(cfg)
    assert config.ui.theme == "mine" and config.ui.theme_dir == str(tmp_path / "my-themes")
    cfg.write_text(base + '\n[ui]\nthem = "mine"\n')
    with pytest.raises(UserError, match=r'ui: unknown key "them" \(did you mean "theme"\?\)'):
        load_config(cfg)


async def test_user_and_config_theme_folders_and_ui_theme_pick_the_theme(tmp_path, monkeypatch):
    noc = (THEME_DIR / "noc.toml").read_text()
    xdg = tmp_path / "xdg"
    (xdg / "flowtui" / "themes").mkdir(parents=True)
    # a user theme named like a built-in replaces it
    (xdg / "flowtui" / "themes" / "noc.toml").write_text(noc.replace('primary = "', 'primary = "#123456" #', 1))
    mine = tmp_path / "my-themes"
    mine.mkdir()
    (mine / "mine.toml").write_text(noc.replace('"flowtui-noc"', '"mine"'))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    config, store = scripted(tmp_path)
    config = dataclasses.replace(config, ui=UiSettings(theme="mine", theme_dir=str(mine)))
    app = FlowApp(config, store, clock=lambda: NOW)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app.theme == "mine"
            assert str(app.available_themes["flowtui-noc"].primary).lower() == "#123456"
            assert not app.theme_errors
    finally:
        store.close()
    # --theme on the command line beats [ui] theme
    (tmp_path / "b").mkdir()
    config2, store2 = scripted(tmp_path / "b")
    config2 = dataclasses.replace(config2, ui=UiSettings(theme="mine", theme_dir=str(mine)))
    app2 = FlowApp(config2, store2, theme="flowtui-light", clock=lambda: NOW)
    try:
        async with app2.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert app2.theme == "flowtui-light"
    finally:
        store2.close()


async def test_theme_short_names_match_the_files(tmp_path):
    config, store = scripted(tmp_path)
    try:
        for short, full in (("light", "flowtui-light"), ("contrast", "flowtui-contrast"), ("noc", "flowtui-noc")):
            assert (THEME_DIR / f"{short}.toml").is_file()
            app = FlowApp(config, store, theme=short, clock=lambda: NOW)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert app.theme == full
                assert not any("no theme" in str(n.message) for n in app._notifications)
    finally:
        store.close()
