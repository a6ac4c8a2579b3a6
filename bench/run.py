"""Run flowtui's benchmarks and print one JSON line per figure.

    python bench/run.py [--quick] [--only NAME]

Each line is {"name", "value", "unit", "target", "ok"} (plus "note" where a
figure needs words: sizes, scaling, what limits it); target and ok are null
where there is no target. The last line says how many targets were met. The
exit status is 0 even when targets are missed: the figures are reports, not
gates. Every benchmark runs in a fresh interpreter, so CPU time and peak RSS
are its own. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BENCHMARKS = ("lag", "accuracy", "scale", "store", "ui", "history")


def child(name: str, quick: bool) -> int:
    import importlib

    from common import emit

    module = importlib.import_module(f"{name}_bench" if name == "ui" else name)
    for item in module.run(quick):
        emit(item)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, same shape (under 60 s)")
    ap.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this benchmark (repeatable)")
    ap.add_argument("--child", choices=BENCHMARKS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.quick)

    from common import emit, load1

    met = total = 0
    started = time.monotonic()
    emit({"name": "load_before", "value": load1(), "unit": "load average (1 min)", "target": None, "ok": None,
          "note": f"{os.cpu_count()} CPUs; other work may share them"})
    for name in args.only or BENCHMARKS:
        cmd = [sys.executable, str(HERE / "run.py"), "--child", name] + (["--quick"] if args.quick else [])
        t = time.monotonic()
        try:  # bounded: a benchmark that hangs is reported, not waited for forever
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
                                  timeout=120 if args.quick else 1500)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            proc = subprocess.CompletedProcess(cmd, -9, out)
        got = 0
        for text in proc.stdout.splitlines():
            try:
                item = json.loads(text)
            except ValueError:
                print(text, file=sys.stderr)
                continue
            got += 1
            if item.get("target") is not None:
                total += 1
                met += item.get("ok") is True
            emit(item)
        if proc.returncode != 0 or not got:
            emit({"name": name, "value": None, "unit": None, "target": None, "ok": None,
                  "note": f"benchmark failed (exit {proc.returncode}); see stderr"})
        print(f"[bench] {name}: {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
    emit({"name": "load_after", "value": load1(), "unit": "load average (1 min)", "target": None, "ok": None,
          "note": f"whole run {time.monotonic() - started:.1f} s"})
    print(f"{met} of {total} targets met", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
