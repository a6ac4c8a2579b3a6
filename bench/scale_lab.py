"""The scale benchmark's mail servers, in their own process (so flowtui's CPU and RSS are its own).

One embedded lab (pymap hosts one user) with ``mailboxes`` folders F0..F{n-1};
the same pymap server also listens (IMAPS) on one extra loopback port per
folder, so each folder is a distinct mailbox to flowtui (its own connection
and watcher). Prints the ports as one JSON line, then runs until stdin closes
or ``--max-s`` passes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from flowtui.lab.common import LOOPBACK, free_ports
from flowtui.lab.embedded import EmbeddedLab


async def main(lab_dir: str, mailboxes: int, hops: int, max_s: float) -> None:
    from proxyprotocol.reader import ProxyProtocolReader
    from pymap.imap import IMAPServer

    async with await EmbeddedLab.start(lab_dir, hops=hops) as lab:
        backend = lab._backend
        async with backend.login.demo_user_identity.new_session() as session:
            for i in range(mailboxes):
                await session.create_mailbox(f"F{i}")
        config = backend.config
        ports = free_ports(mailboxes)
        servers = []
        for port in ports:
            cb = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(backend.login, config))
            servers.append(await asyncio.start_server(cb, LOOPBACK, port, ssl=lab.server_tls))
        print(json.dumps({"imaps_ports": ports}), flush=True)
        loop = asyncio.get_running_loop()
        closed = loop.run_in_executor(None, sys.stdin.read)
        try:
            await asyncio.wait_for(closed, max_s)
        except TimeoutError:
            pass
        print(json.dumps({"delivered": len(lab.deliveries)}), flush=True)
        for s in servers:
            s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--mailboxes", type=int, default=100)
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--max-s", type=float, default=900)
    a = ap.parse_args()
    asyncio.run(main(a.dir, a.mailboxes, a.hops, a.max_s))
