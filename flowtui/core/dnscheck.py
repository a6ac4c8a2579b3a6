"""DNS checks of the configured domains (MX, SPF, DMARC, MTA-STS, TLS-RPT) with
dnspython's async resolver: never blocks the loop, never raises.

Each check becomes a ``DnsObservation`` (value normalised so a reordering is
not a change; error when the resolver did not answer; invalid when the record
does not parse; SPF look-ups counted through include/redirect) and a
``DnsCheckRecord`` in the store.
"""

from __future__ import annotations

import asyncio
import re
import time

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from flowtui.core.alerts import DnsObservation
from flowtui.core.model import DnsSettings
from flowtui.core.storage import DnsCheckRecord, Store

TXT_NAMES = {"SPF": "{d}", "DMARC": "_dmarc.{d}", "MTA-STS": "_mta-sts.{d}", "TLSRPT": "_smtp._tls.{d}"}
TXT_PREFIX = {"SPF": "v=spf1", "DMARC": "v=DMARC1", "MTA-STS": "v=STSv1", "TLSRPT": "v=TLSRPTv1"}
SPF_LOOKUP_LIMIT = 10
_SPF_TERM = re.compile(
    r"(?i)^[+\-~?]?(all|include:\S+|a(:\S+)?(/\d+)?(//\d+)?|mx(:\S+)?(/\d+)?(//\d+)?|ptr(:\S+)?|"
    r"ip4:[\d./]+|ip6:[0-9a-f:./]+|exists:\S+)$|^(redirect|exp)=\S+$|^[a-z][a-z0-9_.-]*=\S*$"
)


class _NoAnswer(Exception):
    pass


def make_resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver:
    if settings.nameservers:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in settings.nameservers]
    else:
        r = dns.asyncresolver.Resolver()
    r.timeout = settings.timeout_s
    r.lifetime = settings.timeout_s
    return r


def _txt(answer) -> list[str]:
    return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]


def parse_problem(kind: str, value: str) -> str | None:
    """Why a record does not parse (None: it does)."""
    if kind == "SPF":
        for term in value.split()[1:]:
            if not _SPF_TERM.match(term):
                return f"unknown SPF term {term!r}"
        return None
    tags = dict(
        (k.strip().lower(), v.strip()) for k, _, v in (t.partition("=") for t in value.split(";")) if k.strip()
    )
    if kind == "DMARC" and tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return 'no valid p= (none, quarantine or reject)'
    if kind == "MTA-STS" and not tags.get("id"):
        return "no id="
    if kind == "TLSRPT" and not tags.get("rua"):
        return "no rua="
    return None


class DnsChecker:
    def __init__(self, settings: DnsSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store
        self.resolver = make_resolver(settings)

    async def _query(self, name: str, rdtype: str):
        try:
            return await self.resolver.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise _NoAnswer from None

    async def _records(self, domain: str, kind: str) -> list[str]:
        if kind == "MX":
            answer = await self._query(domain, "MX")
            return sorted(f"{rr.preference} {rr.exchange.to_text().lower()}" for rr in answer)
        answer = await self._query(TXT_NAMES[kind].format(d=domain), "TXT")
        prefix = TXT_PREFIX[kind].lower()
        return sorted(t for t in _txt(answer) if t.lower().split(" ")[0].rstrip(";") == prefix)

    async def spf_lookups(self, record: str, depth: int = 0, seen: set[str] | None = None) -> int:
        """DNS look-ups the record needs (RFC 7208 4.6.4), following include and redirect."""
        seen = set() if seen is None else seen
        count = 0
        for term in record.split()[1:]:
            t = term.lstrip("+-~?").lower()
            target = None
            if t.startswith("include:"):
                target = t[8:]
            elif t.startswith("redirect="):
                target = t[9:]
            elif t in ("a", "mx", "ptr") or t.startswith(("a:", "a/", "mx:", "mx/", "ptr:", "exists:")):
                count += 1
                continue
            if target is None:
                continue
            count += 1
            if depth < 10 and target not in seen:
                seen.add(target)
                try:
                    inner = [v for v in await self._records(target, "SPF")]
                except (_NoAnswer, dns.exception.DNSException):
                    inner = []
                if inner:
                    count += await self.spf_lookups(inner[0], depth + 1, seen)
        return count

    async def check(self, domain: str, kind: str) -> DnsObservation:
        try:
            records = await self._records(domain, kind)
        except _NoAnswer:
            records = []
        except dns.exception.Timeout:
            return DnsObservation(domain, kind, error=f"timed out after {self.settings.timeout_s:g}s")
        except dns.exception.DNSException as exc:  # NoNameservers (refused, SERVFAIL), ...
            return DnsObservation(domain, kind, error=str(exc).splitlines()[0][:200] or type(exc).__name__)
        if not records:
            return DnsObservation(domain, kind)
        value = " | ".join(records)
        invalid = None
        if kind != "MX" and len(records) > 1:
            invalid = f"{len(records)} {kind} records (there must be one)"
        elif kind != "MX":
            invalid = parse_problem(kind, records[0])
        lookups = await self.spf_lookups(records[0]) if kind == "SPF" else None
        return DnsObservation(domain, kind, value=value, invalid=invalid, lookups=lookups)

    async def check_all(self) -> list[DnsObservation]:
        jobs = [self.check(d, k) for d in self.settings.domains for k in self.settings.records]
        out = list(await asyncio.gather(*jobs))
        if self.store is not None:
            now = time.time()
            for obs in out:
                self.store.write_dns_check(DnsCheckRecord(obs.domain, obs.kind, now, obs.value, obs.error or obs.invalid))
        return out
