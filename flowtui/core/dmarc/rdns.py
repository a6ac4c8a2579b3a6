"""Reverse DNS of report source IPs: looked up lazily, in a thread, and cached in the store.

``resolve_missing`` blocks (dnspython, synchronous): call it from a worker
thread or through ``asyncio.to_thread``. ``[dns] nameservers`` are used when
set, the system's resolver otherwise; tests give a resolver on loopback or
inject ``lookup``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flowtui.core.dmarc.store import cached_names, store_names
from flowtui.core.storage import Store

Lookup = Callable[[str], str | None]  # ip -> PTR name or None; raises on a resolver failure

MAX_PER_CALL = 50


def dns_lookup(nameservers: tuple[tuple[str, int], ...] = (), timeout_s: float = 3.0) -> Lookup:
    import dns.exception
    import dns.resolver
    import dns.reversename

    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [h for h, _ in nameservers]
        resolver.port = nameservers[0][1]
    resolver.lifetime = timeout_s

    def lookup(ip: str) -> str | None:
        if not nameservers and not _is_global(ip):
            # the system resolver is asked only about public addresses: a private, loopback or
            # documentation one (lab and test reports) has no PTR the public DNS should be asked for;
            # with [dns] nameservers set, your own resolver is asked about every address
            return None
        try:
            answer = resolver.resolve(dns.reversename.from_address(ip), "PTR")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        names = sorted(str(r.target).rstrip(".") for r in answer)
        return names[0] if names else None

    return lookup


def _is_global(ip: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_global
    except ValueError:
        return False


def resolve_missing(store: Store, ips: Iterable[str], lookup: Lookup) -> dict[str, str | None]:
    """Look up the IPs not in the cache (at most MAX_PER_CALL), cache them, return what was found."""
    ips = sorted(set(ips))
    known = store.read(lambda conn: cached_names(conn, ips))
    todo = [ip for ip in ips if ip not in known][:MAX_PER_CALL]
    found: dict[str, tuple[str | None, str | None]] = {}
    for ip in todo:
        try:
            found[ip] = (lookup(ip), None)
        except Exception as exc:  # timeout, refused: cached as unknown, with why
            found[ip] = (None, f"{type(exc).__name__}")
    if found:
        store.call(store_names(found)).result()
    return {ip: name for ip, (name, _) in found.items()}
