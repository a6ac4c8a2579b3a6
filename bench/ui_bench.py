"""ui: the TUI is built in parallel and not on this branch yet."""


def run(quick: bool) -> list[dict]:
    return [{"name": "ui", "value": None, "unit": None, "target": None, "ok": None,
             "note": "not measured yet: the TUI is not on this branch"}]
