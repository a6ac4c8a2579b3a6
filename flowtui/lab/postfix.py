"""The real lab: a chain of Postfix instances and a Dovecot mailbox, all on 127.0.0.1.

hop1 (submission: STARTTLS + SASL AUTH via Dovecot) -> hop2 -> ... -> hopN
  -> Dovecot LMTP -> Maildir -> Dovecot IMAP (plain) and IMAPS.

Every file (configs, queues, logs, mail, certificate) lives under the lab's
directory; daemons are started by hand (no systemd) and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flowtui.core.errors import UserError
from flowtui.lab import procs
from flowtui.lab.common import (
    LOOPBACK,
    MAIL_DOMAIN,
    PROBE_USER,
    SENDER_USER,
    LabState,
    check_hops,
    free_ports,
    make_certificate,
    new_password,
    pid_alive,
    port_answers,
    prepare_dir,
    wait_port_closed,
    wait_ports,
    write_lab_config,
    write_private,
)

MAIL_UID = MAIL_GID = 5000  # numeric owner of the Maildirs; needs no passwd entry
APT_FIX = (
    "apt-get install -y --no-install-recommends postfix dovecot-imapd dovecot-lmtpd openssl "
    "(preseed postfix to 'No configuration')"
)
DOVECOT_LMTP = "/usr/lib/dovecot/lmtp"

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise UserError(f"lab: {name} is not installed; fix with: {APT_FIX}; or use 'flowtui lab up --embedded'")
    return path


def preflight() -> None:
    """One-line answers for the usual reasons the real lab cannot start here."""
    for name in ("postfix", "postconf", "postsuper", "postqueue", "dovecot"):
        _tool(name)
    if not os.path.exists(DOVECOT_LMTP):
        raise UserError(f"lab: dovecot-lmtpd is not installed; fix with: {APT_FIX}")
    if os.geteuid() != 0:
        raise UserError(
            "lab: the Postfix lab must run as root (Postfix only starts as root); "
            "use 'flowtui lab up --embedded' for a lab that needs no root and no packages"
        )


def _check_traversable(path: Path) -> None:
    """The mail uid and the postfix user must reach DIR: every parent needs o+x."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise UserError(
                f"{path}: {parent} is mode {stat.S_IMODE(mode):04o}, so the mail daemons "
                f"(users postfix, dovecot, uid {MAIL_UID}) cannot reach the lab; "
                f"choose a directory every user can traverse (e.g. under /tmp)"
            )


def _hop_dir(base: Path, hop: int) -> Path:
    return base / f"hop{hop}"


def _conf(base: Path, hop: int) -> str:
    return str(_hop_dir(base, hop) / "conf")


def _run(argv: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """Run a command that may leave a daemon behind.

    Its output goes to a file, not a pipe: a daemon that inherits the pipe
    would keep it open and ``communicate()`` would never return.
    """
    with open(log, "a+") as out:
        start = out.tell()
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True)
        out.seek(start)
        proc.stdout = out.read()
    return proc


def _postfix(base: Path, hop: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = _run([_tool("postfix"), "-c", _conf(base, hop), *args], _hop_dir(base, hop) / "postfix.out")
    if check and proc.returncode != 0:
        raise UserError(f"lab: hop {hop}: postfix {' '.join(args)} failed: {_last_line(proc)}")
    return proc


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def _main_cf(base: Path, hop: int, state: LabState, cert: tuple[Path, Path]) -> str:
    d = _hop_dir(base, hop)
    lines = [
        "compatibility_level = 3.6",
        f"queue_directory = {d / 'spool'}",
        f"data_directory = {d / 'data'}",
        f"myhostname = hop{hop}.lab.test",
        "mydomain = lab.test",
        "myorigin = $myhostname",
        "mydestination =",
        f"inet_interfaces = {LOOPBACK}",
        "inet_protocols = ipv4",
        f"smtpd_banner = hop{hop}.lab.test ESMTP flowtui lab",
        "alias_maps =",
        "alias_database =",
        "local_recipient_maps =",
        f"local_transport = error:local delivery disabled on hop{hop}",
        "biff = no",
        "append_dot_mydomain = no",
        f"maillog_file = {d / 'maillog'}",
        f"maillog_file_prefixes = {base}",
        "smtp_tls_security_level = none",
        "smtp_dns_support_level = disabled",
        "queue_run_delay = 1s",
        "minimal_backoff_time = 1s",
        "maximal_backoff_time = 2s",
        "smtpd_client_connection_rate_limit = 0",
        "recipient_delimiter = +",  # probe+Junk@ lands in the Junk folder (Dovecot LMTP detail)
    ]
    if hop == 1:  # the submission hop: STARTTLS, then SASL AUTH checked by Dovecot
        lines += [
            "mynetworks = 127.0.0.1/32",
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_tls_security_level = may",
            f"smtpd_tls_cert_file = {cert[0]}",
            f"smtpd_tls_key_file = {cert[1]}",
            "smtpd_tls_received_header = yes",
            "smtpd_tls_auth_only = yes",
            "smtpd_sasl_auth_enable = yes",
            "smtpd_sasl_type = dovecot",
            f"smtpd_sasl_path = inet:{LOOPBACK}:{state.extra['auth_port']}",
        ]
    else:
        lines += [
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "smtpd_tls_security_level = none",
        ]
    if hop < state.hops:
        lines.append(f"relayhost = [{LOOPBACK}]:{state.smtp_ports[hop]}")
    else:
        lines += [
            f"virtual_mailbox_domains = {MAIL_DOMAIN}",
            f"virtual_mailbox_maps = texthash:{d / 'conf' / 'vmailbox'}",
            f"virtual_transport = lmtp:inet:{LOOPBACK}:{state.extra['lmtp_port']}",
        ]
    return "\n".join(lines) + "\n"


def _write_postfix(base: Path, hop: int, state: LabState, cert: tuple[Path, Path]) -> None:
    d = _hop_dir(base, hop)
    (d / "conf").mkdir(parents=True, exist_ok=True)
    (d / "spool").mkdir(exist_ok=True)
    (d / "data").mkdir(mode=0o700, exist_ok=True)
    shutil.chown(d / "data", "postfix")  # Postfix insists on owning data_directory
    (d / "conf" / "main.cf").write_text(_main_cf(base, hop, state, cert))
    listen = f"{LOOPBACK}:{state.smtp_ports[hop - 1]}"
    (d / "conf" / "master.cf").write_text(MASTER_CF.format(listen=listen))
    if hop == state.hops:
        (d / "conf" / "vmailbox").write_text(
            "".join(f"{u} {u}\n" for u in (PROBE_USER, SENDER_USER))
        )


def _write_dovecot(base: Path, state: LabState, cert: tuple[Path, Path]) -> None:
    d = base / "dovecot"
    d.mkdir(exist_ok=True)
    users = "".join(
        f"{user}:{{PLAIN}}{state.passwords[user]}:{MAIL_UID}:{MAIL_GID}::{base / 'mail' / user.split('@')[0]}\n"
        for user in (PROBE_USER, SENDER_USER)
    )
    write_private(d / "users", users)
    shutil.chown(d / "users", "dovecot")  # read by the auth process as user dovecot; 0600
    x = state.extra
    oauth2 = ""
    url = x.get("oauth2_introspection_url")
    if url:  # tokens checked by POSTing them to url (RFC 7662); the answer names the user
        (d / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = {url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        oauth2 = (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {d / 'oauth2.conf.ext'}\n}}\n"
            # tests refuse tokens on purpose, all from 127.0.0.1: no growing penalty, no 2 s delay
            "auth_failure_delay = 0\n"
            "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
        )
    conf = f"""\
base_dir = {d / 'run'}
state_dir = {d / 'state'}
instance_name = flowtui-lab-{state.imap_port}
log_path = {d / 'dovecot.log'}
protocols = imap lmtp
listen = {LOOPBACK}
hostname = mailbox.lab.test
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
ssl = yes
ssl_cert = <{cert[0]}
ssl_key = <{cert[1]}
disable_plaintext_auth = no
auth_mechanisms = plain login{' xoauth2 oauthbearer' if oauth2 else ''}
mail_location = maildir:~/Maildir
first_valid_uid = 100
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d / 'users'}{chr(10) + '  mechanisms = plain login' if oauth2 else ''}
}}
{oauth2}userdb {{
  driver = passwd-file
  args = username_format=%u {d / 'users'}
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {state.imap_port}
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {state.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {LOOPBACK}
    port = {x['lmtp_port']}
  }}
}}
service auth {{
  inet_listener auth-client {{
    address = {LOOPBACK}
    port = {x['auth_port']}
  }}
}}
"""
    (d / "dovecot.conf").write_text(conf)


def _dovecot_pid(base: Path) -> int | None:
    return procs.read_pid(base / "dovecot" / "run" / "master.pid")


def _master_pid(base: Path, hop: int) -> int | None:
    return procs.read_pid(_hop_dir(base, hop) / "spool" / "pid" / "master.pid")


def up(lab_dir: str, hops: int, oauth2_introspection_url: str | None = None) -> LabState:
    """Start the lab. With ``oauth2_introspection_url`` Dovecot (and so Postfix submission,
    through Dovecot SASL) also takes XOAUTH2 and OAUTHBEARER logins, checking each token
    at that RFC 7662 introspection endpoint (``{"active": true, "username": ...}``)."""
    check_hops(hops)
    if oauth2_introspection_url is not None:
        from urllib.parse import urlsplit

        host = urlsplit(oauth2_introspection_url).hostname or ""
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise UserError(f"lab: the introspection URL must be on loopback, got {oauth2_introspection_url}")
    preflight()
    base = prepare_dir(lab_dir)
    _check_traversable(base)
    os.chmod(base, 0o755)
    ports = free_ports(hops + 4)
    state = LabState(
        kind="postfix",
        dir=str(base),
        hops=hops,
        smtp_ports=ports[:hops],
        imap_port=ports[hops],
        imaps_port=ports[hops + 1],
        passwords={PROBE_USER: new_password(), SENDER_USER: new_password()},
        extra={"lmtp_port": ports[hops + 2], "auth_port": ports[hops + 3]}
        | ({"oauth2_introspection_url": oauth2_introspection_url} if oauth2_introspection_url else {}),
        started=time.time(),
    )
    cert = make_certificate(base / "tls")
    if cert is None:
        raise UserError(f"lab: openssl is not installed; fix with: {APT_FIX}")
    mail = base / "mail"
    mail.mkdir(exist_ok=True)
    os.chown(mail, MAIL_UID, MAIL_GID)
    for hop in range(1, hops + 1):
        _write_postfix(base, hop, state, cert)
    _write_dovecot(base, state, cert)
    state.save()  # saved before anything starts, so 'down' can clean up a half start

    dovecot = _run([_tool("dovecot"), "-c", str(base / "dovecot" / "dovecot.conf")], base / "dovecot" / "start.out")
    if dovecot.returncode != 0:
        down(str(base))
        raise UserError(f"lab: dovecot did not start: {_last_line(dovecot)}")
    # a fresh queue directory costs ~2 s on first start: start the hops in parallel
    with ThreadPoolExecutor(max_workers=hops) as pool:
        results = list(pool.map(lambda h: _postfix(base, h, "start", check=False), range(1, hops + 1)))
    for hop, proc in enumerate(results, start=1):
        if proc.returncode != 0:
            down(str(base))
            raise UserError(f"lab: hop {hop}: postfix start failed: {_last_line(proc)}")
    _record_pids(base, state)
    greeters = {f"hop{h} smtp": p for h, p in enumerate(state.smtp_ports, start=1)}
    greeters.update({"imap": state.imap_port, "lmtp": int(state.extra["lmtp_port"])})
    silent = {"imaps": state.imaps_port, "auth": int(state.extra["auth_port"])}  # TLS / client speaks first
    try:
        wait_ports(greeters, timeout=30)
        wait_ports(silent, timeout=10, banner=False)
    except UserError:
        down(str(base))
        raise
    write_lab_config(state, tls=True)
    return state


def _record_pids(base: Path, state: LabState) -> None:
    pids = {}
    for hop in range(1, state.hops + 1):
        pid = _master_pid(base, hop)
        if pid:
            pids[f"hop{hop}"] = pid
    pid = _dovecot_pid(base)
    if pid:
        pids["dovecot"] = pid
    state.pids = pids
    state.save()


def down(lab_dir: str) -> list[str]:
    """Stop every daemon of the lab; returns what was stopped. Leaves no process."""
    state = LabState.load(lab_dir)
    base = Path(state.dir)
    roots = {}
    for hop in range(1, state.hops + 1):
        pid = _master_pid(base, hop) or state.pids.get(f"hop{hop}")
        if pid and procs.belongs_to(pid, base):
            roots[f"hop{hop}"] = pid
    pid = _dovecot_pid(base) or state.pids.get("dovecot")
    if pid and procs.belongs_to(pid, base):
        roots["dovecot"] = pid
    everything = set().union(*(procs.tree(p) for p in roots.values())) if roots else set()
    for name, pid in roots.items():
        if name.startswith("hop"):
            _postfix(base, int(name[3:]), "stop", check=False)
        else:
            procs.kill_all({pid}, signal.SIGTERM)
    left = procs.wait_all_gone(everything, timeout=8)
    if left:
        procs.kill_all(left)
        procs.wait_all_gone(left, timeout=3)
    state.pids = {}
    state.save()
    return sorted(roots)


def status(lab_dir: str) -> dict[str, str]:
    state = LabState.load(lab_dir)
    base = Path(state.dir)
    out: dict[str, str] = {}
    for hop in range(1, state.hops + 1):
        pid = _master_pid(base, hop)
        port = state.smtp_ports[hop - 1]
        if pid and pid_alive(pid):
            held = "held" if _is_held(base, hop) else "flowing"
            out[f"hop{hop}"] = f"running (pid {pid}) smtp 127.0.0.1:{port}, {held}, queue {_queue_len(base, hop)}"
        else:
            out[f"hop{hop}"] = f"stopped (smtp 127.0.0.1:{port})"
    pid = _dovecot_pid(base)
    if pid and pid_alive(pid):
        out["dovecot"] = f"running (pid {pid}) imap 127.0.0.1:{state.imap_port} imaps 127.0.0.1:{state.imaps_port}"
    else:
        out["dovecot"] = "stopped"
    return out


def _queue_len(base: Path, hop: int) -> int:
    spool = _hop_dir(base, hop) / "spool"
    n = 0
    for q in ("incoming", "active", "deferred", "hold"):
        for _root, _dirs, files in os.walk(spool / q):
            n += len(files)
    return n


def _is_held(base: Path, hop: int) -> bool:
    return "HOLD" in (Path(_conf(base, hop)) / "main.cf").read_text()


def _hop_tool(tool: str, base: Path, hop: int, *args: str) -> None:
    """Run a Postfix tool (postconf, postsuper, postqueue) on one hop's instance."""
    proc = subprocess.run([_tool(tool), "-c", _conf(base, hop), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"lab: hop {hop}: {tool} {' '.join(args)} failed: {_last_line(proc)}")


def _running(base: Path, hop: int) -> bool:
    pid = _master_pid(base, hop)
    return bool(pid and procs.belongs_to(pid, base))


def _restart_smtpd(base: Path, hop: int, port: int) -> None:
    """Make a config change take effect at once for the next connection.

    ``postfix reload`` is asynchronous and an idle smtpd may take one more
    connection with the old settings; a stop/start takes ~0.3 s and is exact.
    The previous hop retries within a second, so no mail is lost.
    """
    if not _running(base, hop):
        return
    _postfix(base, hop, "stop")
    wait_port_closed(port, timeout=10)
    _postfix(base, hop, "start")
    wait_ports({f"hop{hop} smtp": port}, timeout=20)


def _hop_target(lab_dir: str, hop: int) -> tuple[Path, int]:
    """The lab's base directory and the hop's SMTP port (checking the hop number)."""
    state = LabState.load(lab_dir)
    return Path(state.dir), state.hop_port(hop)


def hold(lab_dir: str, hop: int) -> str:
    base, port = _hop_target(lab_dir, hop)
    _hop_tool("postconf", base, hop, "-e", "smtpd_recipient_restrictions = check_client_access static:HOLD")
    _restart_smtpd(base, hop, port)
    if _running(base, hop):
        _hop_tool("postsuper", base, hop, "-h", "ALL")  # and what is already queued there
    return f"hop {hop}: holding mail (release with 'flowtui lab release --dir {lab_dir} {hop}')"


def release(lab_dir: str, hop: int) -> str:
    base, port = _hop_target(lab_dir, hop)
    _hop_tool("postconf", base, hop, "-X", "smtpd_recipient_restrictions")
    _restart_smtpd(base, hop, port)
    if _running(base, hop):
        _hop_tool("postsuper", base, hop, "-H", "ALL")
        _hop_tool("postqueue", base, hop, "-f")
    return f"hop {hop}: released"


def stop_hop(lab_dir: str, hop: int) -> str:
    base, port = _hop_target(lab_dir, hop)
    pid = _master_pid(base, hop)
    if not (pid and procs.belongs_to(pid, base)):
        return f"hop {hop}: already stopped"
    everything = procs.tree(pid)
    _postfix(base, hop, "stop")
    left = procs.wait_all_gone(everything, timeout=8)
    procs.kill_all(left)
    wait_port_closed(port)
    return f"hop {hop}: stopped; 127.0.0.1:{port} refuses connections"


def _flush_upstream(base: Path, hop: int) -> None:
    """Mail deferred at ``hop`` while the next server was down flows on now, not at the next retry."""
    if hop >= 1 and _running(base, hop) and not _is_held(base, hop):
        _hop_tool("postqueue", base, hop, "-f")


def start_hop(lab_dir: str, hop: int) -> str:
    state = LabState.load(lab_dir)
    port = state.hop_port(hop)
    base = Path(state.dir)
    if not _running(base, hop):
        _postfix(base, hop, "start")
    wait_ports({f"hop{hop} smtp": port}, timeout=20)
    _record_pids(base, state)
    _flush_upstream(base, hop - 1)
    if port_answers(port):
        return f"hop {hop}: running on 127.0.0.1:{port}"
    raise UserError(f"lab: hop {hop}: started but 127.0.0.1:{port} does not answer")


def stop_imap(lab_dir: str) -> str:
    """Stop Dovecot (IMAP, IMAPS, LMTP): mail then waits in the last hop's queue."""
    state = LabState.load(lab_dir)
    base = Path(state.dir)
    pid = _dovecot_pid(base)
    if not (pid and procs.belongs_to(pid, base)):
        return "imap: already stopped"
    everything = procs.tree(pid)
    procs.kill_all({pid}, signal.SIGTERM)
    left = procs.wait_all_gone(everything, timeout=8)
    procs.kill_all(left)
    wait_port_closed(state.imap_port)
    return f"imap: stopped; 127.0.0.1:{state.imap_port} and :{state.imaps_port} refuse connections"


def start_imap(lab_dir: str) -> str:
    state = LabState.load(lab_dir)
    base = Path(state.dir)
    pid = _dovecot_pid(base)
    if not (pid and procs.belongs_to(pid, base)):
        proc = _run([_tool("dovecot"), "-c", str(base / "dovecot" / "dovecot.conf")], base / "dovecot" / "start.out")
        if proc.returncode != 0:
            raise UserError(f"lab: dovecot did not start: {_last_line(proc)}")
    wait_ports({"imap": state.imap_port, "lmtp": int(state.extra["lmtp_port"])}, timeout=20)
    _record_pids(base, state)
    _flush_upstream(base, state.hops)
    return f"imap: running on 127.0.0.1:{state.imap_port} (imaps :{state.imaps_port})"
