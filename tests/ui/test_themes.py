"""Every theme file loads; a bad one is skipped with a notification, not a crash."""

from __future__ import annotations

import shutil

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
