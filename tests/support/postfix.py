"""A throwaway Postfix instance in front of Sealgate, for integration tests.

Each instance lives in its own world-traversable directory under /tmp (the
postfix user cannot enter pytest's 0700 ``tmp_path``) with its own main.cf,
master.cf, queue, data directory and maillog; nothing under /etc is touched.
It listens on 127.0.0.1 only, never looks anything up in the DNS, does no
local delivery and retries quickly.

Two ways to put it in front of Sealgate (docs: www.postfix.org/FILTER_README.html):

- relayhost: ``start_relayhost(sealgate_port)``: mail submitted to
  :attr:`Postfix.smtpd_port` goes to Sealgate as the relayhost;
- after-queue content filter: ``start_content_filter(sealgate_port, relay_port)``:
  mail submitted to ``smtpd_port`` goes to Sealgate through the ``scan``
  transport (with XFORWARD), Sealgate hands it back to the re-injection smtpd
  on :attr:`Postfix.reinject_port`, and Postfix relays it on to
  ``relay_port`` (the test's sink).

The ports are picked when the object is made, so Sealgate can be configured
with ``reinject_port`` before Postfix starts.

Needs root (``postfix -c``/``postqueue -c`` with a non-default configuration
directory) and Debian's postfix package.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"
LOOPBACK = "127.0.0.1"

_QUEUE_LINE = re.compile(r"^([0-9A-Za-z]+)[*!]?\s+\d+\s+\w{3}\s", re.MULTILINE)
_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all bound at once, so no two are equal)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class QueueEntry:
    """One message in the Postfix queue (from ``postqueue -j``)."""

    queue_id: str
    queue_name: str  # incoming, active, deferred, hold, maildrop
    sender: str
    recipients: tuple[str, ...]
    delay_reasons: tuple[str, ...] = field(default=())


MAIN_CF = """\
# Throwaway Postfix instance for Sealgate's tests. Generated; do not edit.
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {maillog}
maillog_file_prefixes = {root}
syslog_name = {name}

# Names: never derived from this host, never looked up.
myhostname = {hostname}
mydomain = test
myorigin = $myhostname
append_dot_mydomain = no

# Loopback only, IPv4 only, no DNS.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
smtp_address_preference = ipv4

# Nothing is delivered here: no local domains, no aliases, no local delivery.
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:local delivery disabled
notify_classes =
biff = no

smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_authorized_xforward_hosts = 127.0.0.0/8
smtputf8_enable = yes
message_size_limit = 10240000
smtpd_tls_security_level = none
smtp_tls_security_level = none

# Retry quickly (tests flush the queue instead of waiting where they can).
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s

relayhost = [127.0.0.1]:{relay_port}
{extra}
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{smtpd_port} inet n - n - - smtpd
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
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

CONTENT_FILTER_CF = """\
# After-queue content filter: Postfix -> scan -> Sealgate -> re-injection smtpd.
scan      unix  -       -       n       -       10      smtp
  -o syslog_name={name}/scan
  -o smtp_send_xforward_command=yes
  -o disable_mime_output_conversion=yes
  -o smtp_generic_maps=
127.0.0.1:{reinject_port} inet n - n - 10 smtpd
  -o syslog_name={name}/reinject
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
{reinject_cleanup}"""

# Sealgate prepends trace fields (Received, X-Sealgate-Loop: some 300 bytes),
# and the re-injection hop a Received of its own, so a message that only just
# fitted message_size_limit on the way in would not fit it on the way back
# ("552 5.3.4 message file too big"): Sealgate would pass that on as a 5xx and
# Postfix would bounce mail it had accepted. The re-injection path therefore
# gets its own cleanup service with a larger limit.
REINJECT_CLEANUP_CF = """\
  -o cleanup_service_name=reinject-cleanup
  -o message_size_limit={limit}
reinject-cleanup unix n - n - 0 cleanup
  -o syslog_name={name}/reinject
  -o message_size_limit={limit}
"""
DEFAULT_MESSAGE_SIZE_LIMIT = 10_240_000
REINJECT_HEADROOM = 64 * 1024


class PostfixError(AssertionError):
    pass


class Postfix:
    """One Postfix instance; ``close()`` stops it and removes its directory."""

    def __init__(self, name: str = "postfix-test", hostname: str = "postfix.test") -> None:
        self.name = name
        self.hostname = hostname
        self.root = Path(tempfile.mkdtemp(prefix="sealgate-postfix-", dir="/tmp"))
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.maillog_path = self.root / "maillog"
        self.smtpd_port, self.reinject_port = free_ports(2)
        self.mode: str | None = None
        self.running = False
        self.master_pid: int | None = None

    # -- life ------------------------------------------------------------------

    def start_relayhost(
        self, sealgate_port: int, *, settings: dict[str, str] | None = None
    ) -> None:
        """Relay everything to Sealgate at ``127.0.0.1:sealgate_port``.

        ``settings`` are added to main.cf (and win over the defaults above them).
        """
        self._write(relay_port=sealgate_port, content_filter=None, settings=settings)
        self.mode = "relayhost"
        self._start()

    def start_content_filter(
        self,
        sealgate_port: int,
        relay_port: int,
        *,
        settings: dict[str, str] | None = None,
        reinject_headroom: int = REINJECT_HEADROOM,
    ) -> None:
        """Filter everything through Sealgate; re-injected mail goes to ``relay_port``.

        ``reinject_headroom``: bytes the re-injection path may exceed
        message_size_limit by (0: the same limit as on the way in).
        """
        self._write(
            relay_port=relay_port,
            content_filter=sealgate_port,
            settings=settings,
            reinject_headroom=reinject_headroom,
        )
        self.mode = "content_filter"
        self._start()

    def _write(
        self,
        *,
        relay_port: int,
        content_filter: int | None,
        settings: dict[str, str] | None,
        reinject_headroom: int = 0,
    ) -> None:
        for directory in (self.etc, self.queue_dir, self.data_dir):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
        shutil.chown(self.data_dir, "postfix", "postfix")
        extra = ""
        if content_filter is not None:
            extra = f"content_filter = scan:[127.0.0.1]:{content_filter}\n"
        main_cf = MAIN_CF.format(
            etc=self.etc,
            queue=self.queue_dir,
            data=self.data_dir,
            maillog=self.maillog_path,
            root=self.root,
            name=self.name,
            hostname=self.hostname,
            relay_port=relay_port,
            extra=extra,
        )
        for name, value in (settings or {}).items():
            line = f"{name} = {value}"
            main_cf, found = re.subn(rf"^{re.escape(name)} =.*$", line, main_cf, flags=re.MULTILINE)
            if not found:
                main_cf += line + "\n"
        (self.etc / "main.cf").write_text(main_cf)
        master = MASTER_CF.format(smtpd_port=self.smtpd_port)
        if content_filter is not None:
            limit = int((settings or {}).get("message_size_limit", DEFAULT_MESSAGE_SIZE_LIMIT))
            reinject_cleanup = ""
            if reinject_headroom and limit:
                reinject_cleanup = REINJECT_CLEANUP_CF.format(
                    name=self.name, limit=limit + reinject_headroom
                )
            master += CONTENT_FILTER_CF.format(
                name=self.name, reinject_port=self.reinject_port, reinject_cleanup=reinject_cleanup
            )
        (self.etc / "master.cf").write_text(master)
        # Postfix waits until a configuration file is older than the current
        # second before reading it (so as not to read one being edited):
        # date them back to save that wait on every command.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.etc / name, (past, past))

    def _start(self) -> None:
        self.command("check")
        self.running = True  # from here on, stop() has something to stop
        self.command("start")
        self.master_pid = self._read_master_pid()
        ports = [self.smtpd_port] + ([self.reinject_port] if self.mode == "content_filter" else [])
        self.wait_for(
            lambda: all(port_open(p) for p in ports), timeout=10, what="Postfix listeners"
        )

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the instance and wait until every one of its processes is gone.

        ``postfix abort`` sends the master the same SIGTERM as ``postfix stop``
        (the master passes it on to its process group and exits), but does
        not then sleep in whole seconds; we poll for the processes instead.
        """
        if not self.running:
            return
        self.running = False
        pid = self.master_pid or self._read_master_pid()
        result = self._run([POSTFIX, "-c", str(self.etc), "abort"], check=False)
        if pid is None:
            if result.returncode != 0:
                raise PostfixError(f"postfix abort failed: {result.stderr}\n{self.maillog_tail()}")
            return
        deadline = time.monotonic() + 10
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            raise PostfixError(
                f"Postfix (master {pid}) did not stop on SIGTERM: {result.stderr}\n"
                f"{self.maillog_tail()}"
            )

    def close(self) -> None:
        """Stop (if running) and remove the instance directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
        if check and result.returncode != 0:
            raise PostfixError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}\n"
                f"{self.maillog_tail()}"
            )
        return result

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``postfix -c ETC ARGS...``; raise with the output if it fails."""
        return self._run([POSTFIX, "-c", str(self.etc), *args])

    def flush(self) -> None:
        """Retry every deferred message now (``postqueue -f``), dead destinations included."""
        self._run([POSTQUEUE, "-c", str(self.etc), "-f"])

    def queue(self) -> list[str]:
        """Queue ids of every message in the queue, parsed from ``postqueue -p``."""
        output = self._run([POSTQUEUE, "-c", str(self.etc), "-p"]).stdout
        return _QUEUE_LINE.findall(output)

    def queue_entries(self) -> list[QueueEntry]:
        """The queue with each message's place and delay reasons (``postqueue -j``)."""
        output = self._run([POSTQUEUE, "-c", str(self.etc), "-j"]).stdout
        entries = []
        for line in output.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            recipients = item.get("recipients", [])
            entries.append(
                QueueEntry(
                    queue_id=item["queue_id"],
                    queue_name=item["queue_name"],
                    sender=item.get("sender", ""),
                    recipients=tuple(r["address"] for r in recipients),
                    delay_reasons=tuple(
                        r["delay_reason"] for r in recipients if "delay_reason" in r
                    ),
                )
            )
        return entries

    def purge(self) -> None:
        """Delete every queued message (``postsuper -d ALL``)."""
        self._run([POSTSUPER, "-c", str(self.etc), "-d", "ALL"])

    # -- mail ------------------------------------------------------------------

    def submit(
        self,
        mail_from: str,
        rcpt_tos: Sequence[str],
        data: bytes,
        *,
        mail_options: Sequence[str] = ("BODY=8BITMIME",),
        xforward: dict[str, str] | None = None,
        port: int | None = None,
    ) -> str:
        """Hand one message to Postfix's smtpd; its Postfix queue id.

        ``data`` goes on the wire as it is (CRLF line ends expected); only
        dot-stuffing is added. ``xforward`` sends an XFORWARD command first,
        as a content filter in front of Postfix would.
        """
        with smtplib.SMTP(LOOPBACK, port or self.smtpd_port, timeout=30) as client:
            client.ehlo("submitter.test")
            if xforward:
                attributes = " ".join(f"{key}={value}" for key, value in xforward.items())
                code, reply = client.docmd("XFORWARD", attributes)
                if code != 250:
                    raise PostfixError(f"XFORWARD refused: {code} {reply!r}")
            code, reply = client.mail(mail_from, list(mail_options))
            if code != 250:
                raise PostfixError(f"MAIL refused: {code} {reply!r}\n{self.maillog_tail()}")
            for address in rcpt_tos:
                code, reply = client.rcpt(address)
                if code not in (250, 251):
                    raise PostfixError(
                        f"RCPT {address} refused: {code} {reply!r}\n{self.maillog_tail()}"
                    )
            code, reply = client.data(data)
            if code != 250:
                raise PostfixError(f"DATA refused: {code} {reply!r}\n{self.maillog_tail()}")
        match = _QUEUED_AS.search(reply.decode("ascii", "replace"))
        if match is None:
            raise PostfixError(f"no queue id in {reply!r}")
        return match.group(1)

    # -- diagnostics -----------------------------------------------------------

    def maillog(self) -> str:
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines: int = 60) -> str:
        text = self.maillog().splitlines()[-lines:]
        return "--- Postfix maillog (last lines) ---\n" + "\n".join(text)

    def describe(self) -> str:
        """Queue and maillog, for assertion messages."""
        try:
            queue = "\n".join(
                f"{e.queue_id} {e.queue_name} {e.sender} -> {list(e.recipients)} "
                f"{list(e.delay_reasons)}"
                for e in self.queue_entries()
            )
        except PostfixError as error:
            queue = f"(queue unavailable: {error})"
        return f"--- Postfix queue ---\n{queue or '(empty)'}\n{self.maillog_tail()}"

    def wait_for(
        self,
        condition: Callable[[], object],
        timeout: float = 15,
        what: str = "condition",
        *,
        interval: float = 0.05,
        describe: Callable[[], str] | None = None,
    ) -> None:
        """Poll ``condition``; fail with the queue and maillog if it never holds."""
        deadline = time.monotonic() + timeout
        while True:
            if condition():
                return
            if time.monotonic() >= deadline:
                extra = describe() + "\n" if describe else ""
                raise PostfixError(f"timed out waiting for {what}\n{extra}{self.describe()}")
            time.sleep(interval)


def _live_state(pid: int) -> tuple[bool, int]:
    """Whether ``pid`` runs (zombies do not count) and its process group."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False, -1
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] not in ("Z", "X"), int(fields[2])


def group_alive(pgid: int) -> bool:
    """Whether any live process is in process group ``pgid`` (Postfix's master and children).

    Zombies are ignored: the master is not our child, and the container's
    init may be slow to reap it.
    """
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            alive, group = _live_state(int(entry))
            if alive and group == pgid:
                return True
    return False


@contextlib.contextmanager
def postfix_instance(**kwargs: str) -> Iterator[Postfix]:
    instance = Postfix(**kwargs)
    try:
        yield instance
    finally:
        instance.close()
