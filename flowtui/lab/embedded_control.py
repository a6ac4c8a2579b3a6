"""``flowtui lab ... --embedded``: the embedded lab as a background process.

``up`` starts ``python -m flowtui.lab.embedded_control serve`` detached; that
process runs the servers and a small control server on 127.0.0.1 that takes
one JSON line per request, authenticated by a token kept in ``lab.json``
(mode 0600). ``down``, ``status``, ``hold``... talk to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flowtui.core.errors import UserError
from flowtui.lab.common import (
    LOOPBACK,
    STATE_FILE,
    LabState,
    check_hop,
    check_hops,
    prepare_dir,
    wait_pid_gone,
)

START_TIMEOUT_S = 30.0


def up(lab_dir: str, hops: int) -> LabState:
    check_hops(hops)
    base = prepare_dir(lab_dir)
    state_path = base / STATE_FILE
    if state_path.exists():
        state_path.unlink()
    log_path = base / "embedded.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "flowtui.lab.embedded_control", "serve", "--dir", str(base), "--hops", str(hops)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the terminal that started it
            cwd=base,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise UserError(f"lab: the embedded lab exited at start: {_last_log_line(log_path)}")
        try:
            state = LabState.load(base)
        except UserError:
            state = None
        if state and state.pids.get("server") == child.pid:
            return state
        time.sleep(0.05)
    child.kill()
    raise UserError(f"lab: the embedded lab did not start within {START_TIMEOUT_S:.0f}s (see {log_path})")


def _last_log_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "no output"


def _request(lab_dir: str, cmd: str, **kw: object) -> dict:
    state = LabState.load(lab_dir)
    port = int(state.extra.get("control_port", 0))
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as s:
            s.sendall((json.dumps({"token": state.extra.get("token"), "cmd": cmd, **kw}) + "\n").encode())
            s.settimeout(30)
            reply = s.makefile("rb").readline()
    except OSError:
        raise UserError(f"lab: the embedded lab in {state.dir} is not running (control port {port} does not answer)")
    try:
        answer = json.loads(reply)
    except ValueError:
        raise UserError(f"lab: the embedded lab in {state.dir} gave no answer to '{cmd}'")
    if not answer.get("ok"):
        raise UserError(f"lab: {answer.get('error', 'request failed')}")
    return answer


def down(lab_dir: str) -> list[str]:
    from flowtui.lab.procs import belongs_to

    state = LabState.load(lab_dir)
    pid = state.pids.get("server", 0)
    if not belongs_to(pid, state.dir):  # gone, or the PID now names someone else's process
        return []
    try:
        _request(lab_dir, "down")
    except UserError:
        os.kill(pid, signal.SIGTERM)
    if not wait_pid_gone(pid, timeout=10):
        os.kill(pid, signal.SIGKILL)
        wait_pid_gone(pid, timeout=5)
    return [f"embedded lab (pid {pid})"]


def status(lab_dir: str) -> dict[str, str]:
    from flowtui.lab.procs import belongs_to

    state = LabState.load(lab_dir)
    if not belongs_to(state.pids.get("server", 0), state.dir):
        return {"lab": "stopped"}
    return _request(lab_dir, "status")["status"]


def hold(lab_dir: str, hop: int) -> str:
    return _request(lab_dir, "hold", hop=hop)["message"]


def release(lab_dir: str, hop: int) -> str:
    return _request(lab_dir, "release", hop=hop)["message"]


def stop_hop(lab_dir: str, hop: int) -> str:
    return _request(lab_dir, "stop", hop=hop)["message"]


def start_hop(lab_dir: str, hop: int) -> str:
    return _request(lab_dir, "start", hop=hop)["message"]


# -- the background process ------------------------------------------------


async def _serve(lab_dir: str, hops: int) -> None:
    from flowtui.lab.embedded import EmbeddedLab

    lab = await EmbeddedLab.start(lab_dir, hops=hops)
    done = asyncio.Event()
    token = secrets.token_urlsafe(16)

    async def act(req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "status":
            return {"status": lab.describe_hops()}
        if cmd == "down":
            done.set()
            return {"message": "stopping"}
        hop_no = req.get("hop")
        if not isinstance(hop_no, int):
            raise UserError(f"'{cmd}' needs a hop number")
        check_hop(hop_no, lab.hops)
        hop = lab.hop(hop_no)
        if cmd == "hold":
            hop.hold()
            return {"message": f"hop {hop_no}: holding mail (release with 'flowtui lab release --dir {lab_dir} {hop_no}')"}
        if cmd == "release":
            hop.release()
            return {"message": f"hop {hop_no}: released"}
        if cmd == "stop":
            await hop.stop()
            return {"message": f"hop {hop_no}: stopped; 127.0.0.1:{hop.port} refuses connections"}
        if cmd == "start":
            await hop.start()
            return {"message": f"hop {hop_no}: running on 127.0.0.1:{hop.port}"}
        raise UserError(f"unknown request {cmd!r}")

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = json.loads(await asyncio.wait_for(reader.readline(), 10))
            if not secrets.compare_digest(str(req.get("token")), token):
                answer = {"ok": False, "error": "bad control token"}
            else:
                answer = {"ok": True, **(await act(req))}
        except UserError as exc:
            answer = {"ok": False, "error": str(exc)}
        except (ValueError, AttributeError, TimeoutError):
            answer = {"ok": False, "error": "bad request"}
        writer.write((json.dumps(answer) + "\n").encode())
        try:
            await writer.drain()
        finally:
            writer.close()

    control = await asyncio.start_server(client, LOOPBACK, 0)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    lab.state.extra.update(control_port=control.sockets[0].getsockname()[1], token=token)
    lab.state.pids = {"server": os.getpid()}
    lab.state.save()  # written last: its server pid tells 'up' that all is ready
    print(f"embedded lab ready: {lab.describe_hops()}", flush=True)
    await done.wait()
    control.close()
    await lab.aclose()
    lab.state.pids = {}
    lab.state.save()


def _serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowtui.lab.embedded_control")
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--hops", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(args.dir, args.hops))
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve_main(sys.argv[1:]))
