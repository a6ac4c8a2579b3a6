"""RouteTable.update_cells repaints only changed rows yet draws what a plain DataTable draws."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from flowtui.ui.routetable import RouteTable

COLS = ("route", "health", "p95")


class Pair(App):
    def compose(self) -> ComposeResult:
        yield RouteTable(id="fast", cursor_type="row")
        yield DataTable(id="plain", cursor_type="row")

    def on_mount(self) -> None:
        for t in self.query(DataTable):
            t.styles.height = 12
            for c in COLS:
                t.add_column(c, key=c, width=10)
            for i in range(30):
                t.add_row(f"r{i}", "ok", "1.0s", key=f"r{i}", height=1)


def lines(t: DataTable) -> list[str]:
    return [t.render_line(y).text for y in range(t.size.height)]


async def test_update_cells_draws_what_update_cell_draws():
    app = Pair()
    rng = random.Random(7)
    async with app.run_test(size=(60, 30)) as pilot:
        fast, plain = app.query_one("#fast", RouteTable), app.query_one("#plain", DataTable)
        await pilot.pause()
        assert lines(fast) == lines(plain)
        for step in range(25):
            changes = [(f"r{rng.randrange(30)}", rng.choice(COLS[1:]), f"[b]{rng.random():.3f}[/b]")
                       for _ in range(rng.randrange(1, 6))]
            fast.update_cells(changes)
            for row, col, value in changes:
                plain.update_cell(row, col, value)
            if step % 5 == 0:  # the cursor and a scroll move too
                row = rng.randrange(30)
                for t in (fast, plain):
                    t.move_cursor(row=row, animate=False)
            await pilot.pause()
            assert lines(fast) == lines(plain), step
        fast.update_cells([("gone", "p95", "x")])  # a row removed by a filter meanwhile: ignored
        assert fast.get_cell("r0", "route") == "r0"


async def test_update_cells_keeps_other_rows_cached():
    app = Pair()
    async with app.run_test(size=(60, 30)) as pilot:
        fast = app.query_one("#fast", RouteTable)
        await pilot.pause()
        lines(fast)
        before = set(fast._cell_render_cache.keys())
        of_r1 = {k for k in before if k[0].value == "r1"}
        assert of_r1 and len(before) > 2 * len(of_r1)
        fast.update_cells([("r1", "p95", "9.9s")])
        # only row r1's cached cells were dropped
        assert set(fast._cell_render_cache.keys()) == before - of_r1
        await pilot.pause()
        assert "9.9s" in " ".join(lines(fast))
