"""The dashboard's route table: a DataTable that repaints only the rows that changed.

Textual's ``DataTable.update_cell`` bumps one table-wide counter that is part
of every render cache key, so one changed cell makes the next frame render
every visible cell again through Rich (bench/ui_bench.py: at 500 routes that
repaint was over half of the UI's CPU). ``update_cells`` sets many cells and
drops only the cached renders of their rows; the other rows' cached cells are
reused. It leans on DataTable's private caches, which is why textual is pinned
exactly in pyproject.toml; tests/ui/test_routetable.py checks the rendered
text against a plain DataTable's, so an upgrade that changes them fails there.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets import DataTable
from textual.widgets._data_table import ColumnKey, RowKey


class RouteTable(DataTable):
    def update_cells(self, changes: Iterable[tuple[str, str, object]]) -> None:
        """Set ``(row_key, column_key, value)`` cells (widths unchanged); repaint their rows."""
        rows: set[RowKey] = set()
        for row, column, value in changes:
            row_key, column_key = RowKey(row), ColumnKey(column)
            if row_key not in self._row_locations or column_key not in self._column_locations:
                continue  # removed meanwhile (a filter): nothing to draw
            self._data[row_key][column_key] = value
            rows.add(row_key)
        if not rows:
            return
        indices = {self._row_locations.get(k) for k in rows}
        for cache, hit in (
            (self._cell_render_cache, lambda k: k[0] in rows),  # (row_key, column_key, ...)
            (self._row_render_cache, lambda k: k[0] in rows),  # (row_key, line_no, ...)
            (self._row_renderable_cache, lambda k: k[1] in indices),  # (update_count, row_index)
        ):
            for key in [k for k in cache.keys() if hit(k)]:
                cache.discard(key)
        self._line_cache.clear()  # whole lines: rebuilt from the row caches, cheap
        self.refresh()
