"""The truth for timing tests: when did a message land in the Postfix lab's Maildirs?

A thread lists every ``Maildir/new`` and ``Maildir/cur`` under a root every
millisecond and notes the monotonic instant each Message-ID first shows
(Dovecot writes into ``tmp/`` and renames into ``new/``, so a listed file is
whole). Used by the accuracy benchmark and the timing tests, sharing one
process and one monotonic clock with the engine.
"""

from __future__ import annotations

import email
import os
import threading
import time
from pathlib import Path


class MaildirClock(threading.Thread):
    """Notes the monotonic instant each message first shows in the Maildirs under ``root``."""

    def __init__(self, root: Path, limit_s: float = 600.0) -> None:
        super().__init__(daemon=True, name="maildir-clock")
        self.root = root
        self.limit_s = limit_s
        self.seen: dict[str, float] = {}  # message-id -> first seen (monotonic)
        self.stop = threading.Event()

    def run(self) -> None:
        names: set[str] = set()
        dirs: list[Path] = []
        deadline = time.monotonic() + self.limit_s  # bounded, whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not dirs:
                dirs = [p for p in self.root.glob("**/Maildir/new")] + [p for p in self.root.glob("**/Maildir/cur")]
            for d in dirs:
                try:
                    entries = os.listdir(d)
                except FileNotFoundError:
                    continue
                for name in entries:
                    if name in names:
                        continue
                    at = time.monotonic()
                    names.add(name)
                    try:
                        with open(d / name, "rb") as f:
                            msg = email.message_from_binary_file(f)
                        mid = msg.get("Message-ID")
                        if mid:
                            self.seen.setdefault(mid.strip(), at)
                    except OSError:
                        pass
            time.sleep(0.001)
