"""Delivery-test harness: a real DNS server (NSD) and scripted receiving SMTP servers.

Python 3.11 standard library only; same conventions as harness.py (every wait bounded,
timeouts through t(), private temp dirs, unittest.SkipTest when a tool is missing).

    with Nsd({"example.net": zone("example.net", ["@ MX 10 mx1", "mx1 A 127.0.0.2"])}) as ns, \\
         MxGroup(["127.0.0.2"]) as mxs:
        # ringmaild: [dns] servers = [ns.server], [delivery] smtp_port = mxs.port
        ...
        msgs = mxs["127.0.0.2"].wait_messages(1, t(30))

NSD runs in the foreground (-d) with username "" and chroot "" so that it neither drops
privileges nor chroots: the same config works as root and as an ordinary user. It serves
only the zones given, on 127.0.0.1:<free port>, UDP and TCP. Every zone is checked with
nsd-checkzone first, because NSD itself starts (and answers REFUSED) with a broken zone.

FakeMx is an SMTP server on one 127.0.0.x address that records every connection,
command and transaction and answers as scripted by a Behaviour. ringmaild delivers to one
port ([delivery] smtp_port) for every MX host, so all FakeMx of a test share one port on
different addresses: MxGroup (or free_port_on + FakeMx) arranges that.

Environment: RINGMAIL_NSD (the nsd binary; default /usr/sbin/nsd), RINGMAIL_TIMEOUT_SCALE
and RINGMAIL_KEEP_TMP as in harness.py.
"""
from __future__ import annotations

import atexit
import base64
import copy
import dataclasses
import email
import email.message
import email.policy
import errno
import ipaddress
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from harness import t

KEEP_TMP = bool(os.environ.get("RINGMAIL_KEEP_TMP"))

# =========================================================================================
# DNS: a tiny query builder and reply parser (enough for SOA/NS/A/AAAA/MX/CNAME/TXT/PTR).
# =========================================================================================
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
          "ANY": 255}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class DnsRecord(NamedTuple):
    name: str   # lower case, no trailing dot; the root is "."
    type: str   # "MX", "A", ... or "TYPE<n>"
    ttl: int
    data: Any   # A/AAAA: address text; MX: (preference, exchange); CNAME/NS/PTR: name;
                # TXT: [str...]; SOA: (mname, rname, serial, refresh, retry, expire, minimum);
                # anything else: the raw rdata bytes


@dataclass
class DnsReply:
    id: int
    flags: int
    rcode: str                  # "NOERROR", "NXDOMAIN", ...
    questions: list             # [(name, type)]
    answers: list[DnsRecord]
    authority: list[DnsRecord]
    additional: list[DnsRecord]

    @property
    def aa(self) -> bool:
        return bool(self.flags & 0x0400)

    @property
    def tc(self) -> bool:
        return bool(self.flags & 0x0200)

    def of_type(self, rtype: str) -> list:
        """The data of the answers of one type, e.g. of_type("MX") -> [(10, "mx1.x")]."""
        return [r.data for r in self.answers if r.type == rtype]


def _encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    out = b""
    if name:
        for label in name.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise ValueError(f"bad DNS label in {name!r}")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def dns_query(name: str, qtype: str | int = "A", qid: int | None = None, rd: bool = False) -> bytes:
    """A one-question DNS query packet (class IN)."""
    qid = random.randrange(1 << 16) if qid is None else qid
    code = qtype if isinstance(qtype, int) else QTYPES[qtype.upper()]
    return (struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0)
            + _encode_name(name) + struct.pack("!HH", code, 1))


def _read_name(pkt: bytes, off: int) -> tuple[str, int]:
    labels, end, jumps = [], None, 0
    while True:
        if off >= len(pkt):
            raise ValueError("DNS name runs past the packet")
        n = pkt[off]
        if n & 0xC0 == 0xC0:
            if jumps > 64 or off + 1 >= len(pkt):
                raise ValueError("bad DNS compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | pkt[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            raise ValueError("bad DNS label type")
        off += 1
        if n == 0:
            break
        labels.append(pkt[off:off + n].decode("ascii", "replace").lower())
        off += n
    return (".".join(labels) or "."), (end if end is not None else off)


def parse_dns(pkt: bytes) -> DnsReply:
    """Parse a DNS message (raises ValueError on a malformed one)."""
    if len(pkt) < 12:
        raise ValueError("DNS message shorter than its header")
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", pkt[:12])
    off = 12
    questions = []
    for _ in range(qd):
        name, off = _read_name(pkt, off)
        qt, _qc = struct.unpack("!HH", pkt[off:off + 4])
        off += 4
        questions.append((name, QTYPE_NAMES.get(qt, f"TYPE{qt}")))
    sections = []
    for count in (an, ns, ar):
        recs = []
        for _ in range(count):
            name, off = _read_name(pkt, off)
            if off + 10 > len(pkt):
                raise ValueError("truncated resource record")
            rt, _rc, ttl, rdlen = struct.unpack("!HHIH", pkt[off:off + 10])
            off += 10
            rd_off, rdata = off, pkt[off:off + rdlen]
            if len(rdata) != rdlen:
                raise ValueError("truncated rdata")
            off += rdlen
            tname = QTYPE_NAMES.get(rt, f"TYPE{rt}")
            data: Any = rdata
            if tname == "A" and rdlen == 4:
                data = str(ipaddress.IPv4Address(rdata))
            elif tname == "AAAA" and rdlen == 16:
                data = str(ipaddress.IPv6Address(rdata))
            elif tname == "MX":
                data = (struct.unpack("!H", rdata[:2])[0], _read_name(pkt, rd_off + 2)[0])
            elif tname in ("CNAME", "NS", "PTR"):
                data = _read_name(pkt, rd_off)[0]
            elif tname == "TXT":
                data, i = [], 0
                while i < rdlen:
                    data.append(rdata[i + 1:i + 1 + rdata[i]].decode("utf-8", "replace"))
                    i += 1 + rdata[i]
            elif tname == "SOA":
                mname, o = _read_name(pkt, rd_off)
                rname, o = _read_name(pkt, o)
                data = (mname, rname) + struct.unpack("!IIIII", pkt[o:o + 20])
            recs.append(DnsRecord(name, tname, ttl, data))
        sections.append(recs)
    return DnsReply(qid, flags, RCODES.get(flags & 0xF, f"RCODE{flags & 0xF}"), questions,
                    *sections)


def dns_lookup(server: tuple[str, int], name: str, qtype: str = "A", tcp: bool = False,
               timeout: float | None = None) -> DnsReply:
    """One query to `server` (UDP, or TCP with tcp=True); raises socket.timeout/OSError."""
    timeout = t(5) if timeout is None else timeout
    qid = random.randrange(1 << 16)
    q = dns_query(name, qtype, qid)
    if tcp:
        with socket.create_connection(server, timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(q)) + q)
            buf = b""
            deadline = time.monotonic() + timeout
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("DNS TCP connection closed before a full reply")
                buf += chunk
            reply = parse_dns(buf[2:2 + struct.unpack("!H", buf[:2])[0]])
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(server)
            s.send(q)
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                reply = parse_dns(s.recv(65536))
                if reply.id == qid:
                    break
    if reply.id != qid or not reply.flags & 0x8000:
        raise ValueError(f"not a reply to our query: {reply!r}")
    return reply


# =========================================================================================
# NSD
# =========================================================================================
def nsd_binary() -> str | None:
    env = os.environ.get("RINGMAIL_NSD")
    if env:
        return env if os.access(env, os.X_OK) else None
    for p in ("/usr/sbin/nsd", "/usr/local/sbin/nsd"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("nsd")


def zone(origin: str, records: list[str] | tuple[str, ...] = (), ttl: int = 300,
         negative_ttl: int = 30, serial: int = 1) -> str:
    """Zone-file text for `origin`: $ORIGIN, $TTL, SOA and NS (ns.<origin>, with an A record
    127.0.0.1 unless the records name "ns" themselves), then `records` as written, one per
    line, relative to the origin: "@ MX 10 mx1", "mx1 A 127.0.0.2", "nullmx MX 0 .",
    "short 60 A 127.0.0.9". The SOA minimum (negative-answer TTL) is `negative_ttl`."""
    o = origin.rstrip(".")
    lines = [f"$ORIGIN {o}.", f"$TTL {ttl}",
             f"@ IN SOA ns.{o}. hostmaster.{o}. {serial} 3600 600 86400 {negative_ttl}",
             "@ IN NS ns"]
    if not any(r.split(None, 1)[0] == "ns" for r in records if r.strip()):
        lines.append("ns IN A 127.0.0.1")
    lines += list(records)
    return "\n".join(lines) + "\n"


class NsdError(Exception):
    pass


class Nsd:
    """NSD serving `zones` on 127.0.0.1:<free port> (UDP and TCP) until closed.

    zones: {origin: zone-file text} (see zone()); a value may also be a list of records,
    which is passed through zone(). Attributes: port, server ("127.0.0.1:PORT", for
    ringmaild's [dns] servers), tmp (the private dir holding config, zones, nsd.log)."""

    def __init__(self, zones: dict[str, str | list[str]], start_timeout: float | None = None):
        self.binary = nsd_binary()
        if not self.binary:
            raise unittest.SkipTest("nsd is not installed (Debian package nsd)")
        if not zones:
            raise ValueError("Nsd needs at least one zone")
        self.zones = {o.rstrip(".").lower(): (zone(o, v) if isinstance(v, (list, tuple)) else v)
                      for o, v in zones.items()}
        self.start_timeout = start_timeout if start_timeout is not None else t(20)
        self.tmp = tempfile.mkdtemp(prefix="ringmail-nsd-")
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        out = []
        for name in ("nsd.log", "nsd.out"):
            try:
                with open(os.path.join(self.tmp, name), "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def _zone_file(self, origin: str) -> str:
        return os.path.join(self.tmp, origin + ".zone")

    def _write_zones(self):
        checker = os.path.join(os.path.dirname(self.binary), "nsd-checkzone")
        if not os.access(checker, os.X_OK):
            checker = shutil.which("nsd-checkzone")
        for origin, text in self.zones.items():
            path = self._zone_file(origin)
            with open(path, "w") as f:
                f.write(text)
            if checker:
                r = subprocess.run([checker, origin, path], capture_output=True, text=True,
                                   stdin=subprocess.DEVNULL, timeout=t(30))
                if r.returncode != 0:
                    raise NsdError(f"zone {origin} does not load:\n{r.stdout}{r.stderr}\n"
                                   f"--- zone text ---\n{text}")

    def _write_config(self):
        d = self.tmp
        lines = ["server:",
                 f"  ip-address: 127.0.0.1@{self.port}",
                 f"  port: {self.port}",
                 '  username: ""',          # no privilege drop: works as root and as a user
                 '  chroot: ""',
                 f'  zonesdir: "{d}"',
                 f'  pidfile: "{d}/nsd.pid"',
                 '  database: ""',
                 f'  xfrdfile: "{d}/xfrd.state"',
                 f'  zonelistfile: "{d}/zone.list"',
                 f'  xfrdir: "{d}"',
                 f'  logfile: "{d}/nsd.log"',
                 "  server-count: 1",
                 "  ip4-only: yes",
                 "  verbosity: 1",
                 "remote-control:",
                 "  control-enable: no"]
        for origin in self.zones:
            lines += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.zone"]
        with open(os.path.join(d, "nsd.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    @staticmethod
    def _free_udp_tcp_port() -> int:
        """A port free for both UDP and TCP on 127.0.0.1 (NSD binds both)."""
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", 0))
                port = u.getsockname()[1]
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                    return port
        raise NsdError("no port free for both UDP and TCP on 127.0.0.1")

    def start(self) -> "Nsd":
        self._write_zones()
        why = ""
        for _attempt in range(5):  # another process may take the port before NSD binds it
            self.port = self._free_udp_tcp_port()
            self._write_config()
            for name in ("nsd.log", "nsd.out"):
                try:
                    os.unlink(os.path.join(self.tmp, name))
                except FileNotFoundError:
                    pass
            with open(os.path.join(self.tmp, "nsd.out"), "wb") as out:
                # Its own process group: NSD forks a server and an xfrd process; stop()
                # signals the whole group.
                self.proc = subprocess.Popen([self.binary, "-d", "-c",
                                              os.path.join(self.tmp, "nsd.conf")],
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                             cwd=self.tmp, process_group=0)
            ok, why = self._wait_ready()
            if ok:
                return self
            self._stop_proc()
            if "in use" not in self.log().lower():
                break
        text = self.log()
        self.close()
        raise NsdError(f"nsd did not start ({why}); its log:\n{text}")

    def _wait_ready(self) -> tuple[bool, str]:
        """Until every zone's SOA is answered authoritatively (bounded)."""
        deadline = time.monotonic() + self.start_timeout
        pending = list(self.zones)
        last = "no answer"
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"exited with {self.proc.returncode}"
            try:
                r = dns_lookup(self.address, pending[0], "SOA", timeout=0.2)
                if r.rcode == "NOERROR" and r.aa and r.of_type("SOA"):
                    pending.pop(0)
                    continue
                last = f"SOA {pending[0]}: {r.rcode}"
            except (OSError, ValueError) as e:
                last = str(e) or type(e).__name__
                time.sleep(0.05)
                continue
            time.sleep(0.05)
        if pending:
            return False, f"not ready within {self.start_timeout:.0f}s: {last}"
        # UDP answered, so the TCP socket (bound before serving) is there too.
        try:
            with socket.create_connection(self.address, timeout=t(5)):
                pass
        except OSError as e:
            return False, f"TCP port not answering: {e}"
        return True, "ok"

    def query(self, name: str, qtype: str = "A", tcp: bool = False) -> DnsReply:
        """Ask this server directly (for tests of the test setup)."""
        return dns_lookup(self.address, name, qtype, tcp=tcp)

    def _stop_proc(self):
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=t(10))
            except subprocess.TimeoutExpired:
                pass
        # Reap the group's forked children too (they share the group id we gave it).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(timeout=t(10))

    def stop(self):
        self._stop_proc()

    def close(self):
        self._stop_proc()
        if not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Nsd":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
        return False


# =========================================================================================
# FakeMx: a scripted SMTP server
# =========================================================================================
STAGES = ("greeting", "ehlo", "mail", "rcpt", "data", "dot")
_STAGE_ALIASES = {"helo": "ehlo", "after-dot": "dot", "after_dot": "dot", "eom": "dot",
                  "connect": "greeting"}

ACCEPT = (250, "2.0.0 OK")
DEFER = (451, "4.3.0 try again later")
REJECT = (550, "5.1.1 no such user")
# A reply function may return one of these instead of (code, text):
DROP = "drop"    # close the connection without replying
STALL = "stall"  # never reply; hold the connection open until the client or the server goes

DEFAULT_EXTENSIONS = ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN",
                      "SMTPUTF8")
MAX_LINE = 1000   # octets including CRLF (RFC 5321 4.5.3.1.6)

SmtpReply = tuple  # (code, text); text may hold "\n" for a multi-line reply


def _stage(name: str | None) -> str | None:
    if name is None:
        return None
    s = _STAGE_ALIASES.get(name.lower(), name.lower())
    if s not in STAGES:
        raise ValueError(f"unknown stage {name!r}; one of {STAGES}")
    return s


def _as_reply_fn(spec, default: SmtpReply) -> Callable:
    """None/"accept"/"defer"/"reject"/DROP/STALL/(code, text)/callable -> callable(arg)."""
    if spec is None or spec == "accept":
        return lambda _arg: default
    if callable(spec):
        return spec
    if spec == "defer":
        return lambda _arg: DEFER
    if spec == "reject":
        return lambda _arg: REJECT
    if spec in (DROP, STALL):
        return lambda _arg: spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return lambda _arg: spec
    raise ValueError(f"bad reply spec {spec!r}")


@dataclass
class Behaviour:
    """How a FakeMx answers. Every field has a default that accepts everything.

    greeting:    (code, text) or just a code; 421 closes after the greeting, other non-220
                 codes answer 503 to everything but QUIT (RFC 5321 3.1). DROP/STALL too.
    hostname:    the name in the greeting and the EHLO reply.
    extensions:  EHLO keywords offered (without STARTTLS/AUTH, which follow starttls/auth).
    ehlo_reply:  None (normal) or (code, text) to refuse EHLO (HELO still works).
    starttls:    offer STARTTLS (a self-signed certificate made with `openssl req`).
    auth:        (user, password): offer AUTH PLAIN and check it.
    require_auth: refuse MAIL with 530 5.7.0 before AUTH (default: True iff auth is set).
    mail_reply(address), rcpt_reply(address), data_reply(message_bytes): each returns
                 (code, text), DROP or STALL; instead of a function: "accept", "defer"
                 (451 4.3.0), "reject" (550 5.1.1), a (code, text) tuple, DROP or STALL.
    drop / stall: a stage ("greeting", "ehlo", "mail", "rcpt", "data", "dot"): at the first
                 such command (for "dot": once the message is read) close / go silent.
    delay:       {stage: seconds} to wait before replying at that stage.
    max_size:    the SIZE limit: a larger SIZE= is refused at MAIL, larger data after the dot
                 (552 5.3.4). Default: taken from the "SIZE n" extension, else 10240000.
    strict_params: refuse (555 5.5.4) MAIL/RCPT parameters of extensions not offered.
    connection_limit: more simultaneous connections than this get "421 4.7.0" and a close.
    batch_replies: hold replies while more pipelined commands are already buffered (like
                 Postfix); False answers every command at once.
    """
    greeting: Any = (220, None)
    hostname: str = "fake-mx.test"
    extensions: tuple = DEFAULT_EXTENSIONS
    ehlo_reply: SmtpReply | None = None
    starttls: bool = False
    auth: tuple[str, str] | None = None
    require_auth: bool | None = None
    mail_reply: Any = None
    rcpt_reply: Any = None
    data_reply: Any = None
    drop: str | None = None
    stall: str | None = None
    delay: dict = field(default_factory=dict)
    max_size: int | None = None
    strict_params: bool = True
    connection_limit: int | None = None
    batch_replies: bool = True

    def without(self, *extensions: str) -> "Behaviour":
        """A copy without the named EHLO extensions (keyword match, case-insensitive)."""
        drop = {e.upper() for e in extensions}
        return dataclasses.replace(self, extensions=tuple(
            e for e in self.extensions if e.split()[0].upper() not in drop))

    def size_limit(self) -> int:
        if self.max_size is not None:
            return self.max_size
        for e in self.extensions:
            parts = e.split()
            if parts[0].upper() == "SIZE" and len(parts) > 1 and parts[1].isdigit() \
                    and int(parts[1]) > 0:
                return int(parts[1])
        return 10240000


def first_n(n: int, first: Behaviour, then: Behaviour) -> Callable[[int], Behaviour]:
    """A behaviour for FakeMx: connections 0..n-1 get `first`, later ones `then` (e.g. defer
    the first n delivery attempts, then accept)."""
    return lambda index: first if index < n else then


class Rcpt(NamedTuple):
    address: str
    params: dict
    reply: Any                       # (code, text), DROP or STALL


@dataclass
class Transaction:
    mail_from: str                   # "" for the null sender
    mail_params: dict                # {"SIZE": "123", "RET": "FULL", "BODY": "8BITMIME", ...}
    mail_reply: Any                  # (code, text), DROP or STALL
    rcpts: list[Rcpt] = field(default_factory=list)
    data: bytes | None = None        # after un-dot-stuffing, CRLFs kept
    data_reply: Any = None           # (code, text); DROP/STALL when the script did that
                                     # after the dot; None: no message (yet)

    @property
    def accepted_rcpts(self) -> list[str]:
        return [r.address for r in self.rcpts if isinstance(r.reply, tuple) and
                200 <= r.reply[0] < 300]

    @property
    def accepted(self) -> bool:
        """The message was taken (2xx after the dot)."""
        return isinstance(self.data_reply, tuple) and 200 <= self.data_reply[0] < 300


@dataclass
class Connection:
    index: int                       # 0, 1, ... in accept order, per FakeMx
    peer: tuple                      # (ip, port) of the client
    local: tuple
    ehlo: str | None = None          # the name given with EHLO/HELO (last one)
    helo: bool = False               # HELO rather than EHLO
    starttls: bool = False           # TLS was set up
    tls_version: str | None = None
    auth_user: str | None = None     # who authenticated with AUTH PLAIN
    auth_attempts: int = 0
    transactions: list[Transaction] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)   # every command line, in order
    pipelined: int = 0               # commands that were already buffered behind another
    ended: str = ""                  # "quit", "client-closed", "dropped at rcpt", ...
    open: bool = True

    @property
    def messages(self) -> list[Transaction]:
        return [tr for tr in self.transactions if tr.accepted]


class _Drop(Exception):
    pass


class _Closed(Exception):
    pass


class _LineReader:
    """Buffered line reader over a socket that may be swapped for a TLS one."""

    def __init__(self, sock: socket.socket, stop: threading.Event, idle: float):
        self.sock, self.stop, self.idle = sock, stop, idle
        self.buf = b""

    def has_line(self) -> bool:
        return b"\n" in self.buf

    def _fill(self):
        deadline = time.monotonic() + self.idle
        while True:
            if self.stop.is_set():
                raise _Closed("server stopping")
            if time.monotonic() > deadline:
                raise _Closed("idle timeout")
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError) as e:
                raise _Closed(f"recv: {e}")
            if not chunk:
                raise _Closed("client closed")
            self.buf += chunk
            return

    def readline(self, limit: int | None) -> tuple[bytes, bool]:
        """(line with its line end, too_long). A too-long line is read to its end anyway."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line, limit is not None and len(line) > limit
            if limit is not None and len(self.buf) > limit:
                # Discard up to the line end, bounded by the idle timeout.
                while b"\n" not in self.buf:
                    self.buf = b""
                    self._fill()
                self.buf = self.buf[self.buf.find(b"\n") + 1:]
                return b"", True
            self._fill()


_cert_lock = threading.Lock()
_cert_paths: tuple[str, str] | None = None


def self_signed_cert() -> tuple[str, str]:
    """(cert path, key path) of a self-signed P-256 certificate made with `openssl req`
    once per process (removed at exit). SkipTest if openssl is missing."""
    global _cert_paths
    with _cert_lock:
        if _cert_paths:
            return _cert_paths
        openssl = shutil.which("openssl")
        if not openssl:
            raise unittest.SkipTest("openssl is not installed: no STARTTLS in FakeMx")
        d = tempfile.mkdtemp(prefix="ringmail-fakemx-tls-")
        if not KEEP_TMP:
            atexit.register(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        r = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                            "-out", cert, "-days", "2", "-subj", "/CN=fake-mx.test",
                            "-addext", "subjectAltName=DNS:fake-mx.test,IP:127.0.0.2"],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=t(60))
        if r.returncode != 0:
            raise RuntimeError(f"openssl req failed: {r.stderr.decode(errors='replace')}")
        _cert_paths = (cert, key)
        return _cert_paths


# MAIL/RCPT parameters and the extension that allows each.
_MAIL_PARAM_EXT = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8", "RET": "DSN",
                   "ENVID": "DSN", "AUTH": "AUTH", "REQUIRETLS": "REQUIRETLS"}
_RCPT_PARAM_EXT = {"NOTIFY": "DSN", "ORCPT": "DSN"}
_PATH_RE = re.compile(r"(?i)^(MAIL\s+FROM|RCPT\s+TO):\s*<([^<>]*)>(?:\s+(.*))?$")


def parse_params(text: str) -> dict:
    """"SIZE=12 RET=HDRS SMTPUTF8" -> {"SIZE": "12", "RET": "HDRS", "SMTPUTF8": None}
    (keywords upper-cased, values exactly as sent)."""
    out = {}
    for word in (text or "").split():
        k, eq, v = word.partition("=")
        out[k.upper()] = v if eq else None
    return out


def xtext_decode(value: str) -> str:
    """RFC 3461 xtext: "+2B" -> "+"."""
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


class FakeMx:
    """A scripted SMTP server on host:port, one thread per connection.

    FakeMx(host="127.0.0.2", port=P, behaviour=Behaviour(...)) or with Behaviour's fields
    as keyword arguments: FakeMx("127.0.0.2", P, rcpt_reply="defer"). behaviour may also be
    a function of the connection index returning a Behaviour (see first_n); set_behaviour()
    changes it while running. A connection keeps the behaviour it started with.

    Everything seen is recorded (see Connection, Transaction); the accessors return copies
    taken under the lock, so they are safe while connections run."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0, behaviour=None,
                 idle_timeout: float | None = None, **knobs):
        if behaviour is not None and knobs:
            raise ValueError("give either behaviour= or Behaviour fields, not both")
        self.host, self.port = host, port
        self._behaviour = behaviour if behaviour is not None else Behaviour(**knobs)
        self.idle_timeout = idle_timeout if idle_timeout is not None else t(120)
        self._cond = threading.Condition(threading.RLock())
        self._conns: list[Connection] = []
        self._active = 0
        self._max_active = 0
        self._refused = 0
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: set = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> "FakeMx":
        if isinstance(self._behaviour, Behaviour) and self._behaviour.starttls:
            self_signed_cert()  # now, in the test's thread: SkipTest without openssl
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.host, self.port))
            s.listen(128)
        except BaseException:
            s.close()
            raise
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self._listener = s
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"fakemx-{self.host}-accept")
        self._acceptor.start()
        return self

    def stop(self, timeout: float | None = None):
        """Stop accepting, end every connection (stalled ones too), join the threads."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout if timeout is not None else t(10))
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._cond:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + (timeout if timeout is not None else t(10))
        for th in list(self._threads):
            th.join(max(0.01, deadline - time.monotonic()))

    close = stop

    def __enter__(self) -> "FakeMx":
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_behaviour(self, behaviour=None, **changes):
        """New behaviour for connections accepted from now on: a Behaviour, a function of
        the connection index, or changes to the current Behaviour's fields."""
        with self._cond:
            if behaviour is not None:
                self._behaviour = behaviour
            else:
                if not isinstance(self._behaviour, Behaviour):
                    raise ValueError("set_behaviour(**changes) needs a Behaviour, not a function")
                self._behaviour = dataclasses.replace(self._behaviour, **changes)

    # --- records --------------------------------------------------------------------
    def connections(self) -> list[Connection]:
        with self._cond:
            return copy.deepcopy(self._conns)

    def transactions(self) -> list[Transaction]:
        with self._cond:
            return copy.deepcopy([tr for c in self._conns for tr in c.transactions])

    def messages(self) -> list[Transaction]:
        """The accepted messages (2xx after the dot), in order."""
        return [tr for tr in self.transactions() if tr.accepted]

    @property
    def connection_count(self) -> int:
        with self._cond:
            return len(self._conns)

    @property
    def message_count(self) -> int:
        with self._cond:
            return sum(1 for c in self._conns for tr in c.transactions if tr.accepted)

    def messages_per_connection(self) -> list[int]:
        with self._cond:
            return [sum(1 for tr in c.transactions if tr.accepted) for c in self._conns]

    @property
    def active(self) -> int:
        """Connections open right now."""
        with self._cond:
            return self._active

    @property
    def max_concurrent(self) -> int:
        """The most connections that were open at the same time."""
        with self._cond:
            return self._max_active

    @property
    def refused_connections(self) -> int:
        """Connections turned away by connection_limit."""
        with self._cond:
            return self._refused

    @property
    def errors(self) -> list[str]:
        """Internal errors of connection threads (a test may assert it is empty)."""
        with self._cond:
            return list(self._errors)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() is true (re-checked on every recorded event and every
        0.1 s); False after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))

    def wait_messages(self, n: int, timeout: float) -> list[Transaction]:
        """Wait for n accepted messages; returns them all. AssertionError on timeout."""
        if not self.wait_for(lambda: self.message_count >= n, timeout):
            raise AssertionError(f"{self.host}: {self.message_count} of {n} messages within "
                                 f"{timeout:.0f}s; seen:\n{self.summary()}")
        return self.messages()

    def wait_connections(self, n: int, timeout: float) -> bool:
        return self.wait_for(lambda: self.connection_count >= n, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """No connection open."""
        return self.wait_for(lambda: self._active == 0, timeout)

    def summary(self) -> str:
        """What happened, for failure messages."""
        out = []
        for c in self.connections():
            out.append(f"  conn {c.index} from {c.peer[0]} ehlo={c.ehlo!r} ended={c.ended!r}")
            for tr in c.transactions:
                out.append(f"    MAIL <{tr.mail_from}> {tr.mail_params} -> {tr.mail_reply}; "
                           f"RCPT {[(r.address, r.reply[0] if isinstance(r.reply, tuple) else r.reply) for r in tr.rcpts]}; "
                           f"DATA {len(tr.data) if tr.data is not None else None} bytes -> "
                           f"{tr.data_reply}")
        return "\n".join(out) or "  no connections"

    def _event(self):
        self._cond.notify_all()

    # --- server ---------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                sock, peer = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)
                continue
            with self._cond:
                index = len(self._conns)
                b = self._behaviour
                b = b(index) if callable(b) and not isinstance(b, Behaviour) else b
                conn = Connection(index=index, peer=peer, local=sock.getsockname())
                self._conns.append(conn)
                self._active += 1
                self._max_active = max(self._max_active, self._active)
                self._socks.add(sock)
                over = b.connection_limit is not None and self._active > b.connection_limit
                self._event()
            th = threading.Thread(target=self._serve, args=(sock, conn, b, over), daemon=True,
                                  name=f"fakemx-{self.host}-{index}")
            self._threads.append(th)
            th.start()

    def _serve(self, sock: socket.socket, conn: Connection, b: Behaviour, over_limit: bool):
        session = _Session(self, sock, conn, b)
        try:
            if over_limit:
                with self._cond:
                    self._refused += 1
                session.reply((421, "4.7.0 too many connections"))
                session.flush()
                session.end("connection limit")
            else:
                session.run()
        except _Drop as e:
            session.end(str(e))
        except _Closed as e:
            session.end(str(e))
        except Exception as e:  # a harness bug: record it for the test to see
            with self._cond:
                self._errors.append(f"conn {conn.index}: {type(e).__name__}: {e}")
            session.end(f"error: {e}")
        finally:
            try:
                session.sock.close()
            except OSError:
                pass
            with self._cond:
                self._socks.discard(sock)
                conn.open = False
                self._active -= 1
                self._event()


class _Session:
    def __init__(self, mx: FakeMx, sock: socket.socket, conn: Connection, b: Behaviour):
        self.mx, self.sock, self.conn, self.b = mx, sock, conn, b
        sock.settimeout(0.1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = _LineReader(sock, mx._stop, mx.idle_timeout)
        self.out = b""
        self.tr: Transaction | None = None
        self.greeted = False      # EHLO/HELO seen
        self.extended = False     # EHLO (not HELO)
        self.tls = False
        self.mail_fn = _as_reply_fn(b.mail_reply, (250, "2.1.0 sender OK"))
        self.rcpt_fn = _as_reply_fn(b.rcpt_reply, (250, "2.1.5 recipient OK"))
        self.data_fn = _as_reply_fn(b.data_reply, (250, "2.0.0 OK queued as FAKE"))
        self.drop, self.stall = _stage(b.drop), _stage(b.stall)
        self.delay = {_stage(k): v for k, v in b.delay.items()}
        self.require_auth = b.require_auth if b.require_auth is not None else bool(b.auth)

    # --- recording ------------------------------------------------------------------
    def record(self, fn):
        with self.mx._cond:
            fn()
            self.mx._event()

    def end(self, why: str):
        def f():
            if not self.conn.ended:
                self.conn.ended = why
        self.record(f)

    # --- output ---------------------------------------------------------------------
    def reply(self, r: SmtpReply):
        code, text = r
        lines = (text or "").split("\n")
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.out += f"{code}{sep}{line}".encode("utf-8") + b"\r\n"

    def flush(self):
        if self.out:
            data, self.out = self.out, b""
            try:
                self.sock.settimeout(t(30))
                self.sock.sendall(data)
                self.sock.settimeout(0.1)
            except (OSError, ssl.SSLError) as e:
                raise _Closed(f"send: {e}")

    def maybe_flush(self):
        if not (self.b.batch_replies and self.reader.has_line()):
            self.flush()

    def decide(self, stage: str, r=None):
        """The stage's drop/stall knob overrides the scripted reply r."""
        if self.drop == stage:
            return DROP
        if self.stall == stage:
            return STALL
        return r

    def act(self, stage: str, r=None):
        """Drop or stall if r says so, else wait the stage's delay; returns when the reply
        is to be sent."""
        if r == DROP:
            self.flush()
            raise _Drop(f"dropped at {stage}")
        if r == STALL:
            self.flush()
            self.record(lambda: setattr(self.conn, "ended", f"stalled at {stage}"))
            self.hold()
        d = self.delay.get(stage)
        if d:
            self.flush()
            if self.mx._stop.wait(d):
                raise _Closed("server stopping")

    def hold(self):
        """Say nothing until the client closes or the server stops (input is discarded)."""
        while True:
            self.reader.buf = b""
            try:
                self.reader._fill()
            except _Closed as e:
                if str(e) == "idle timeout":
                    continue
                raise _Closed(self.conn.ended or str(e))

    # --- the dialogue -----------------------------------------------------------------
    def run(self):
        b = self.b
        g = self.decide("greeting", b.greeting)
        self.act("greeting", g)
        if isinstance(g, int):
            g = (g, None)
        code, text = g
        if text is None:
            text = f"{b.hostname} ESMTP fake" if code == 220 else \
                   f"{b.hostname} 4.3.2 service not available" if code == 421 else \
                   f"{b.hostname} no SMTP service here"
        self.reply((code, text))
        self.flush()
        if code == 421:
            raise _Drop("closed after 421 greeting")
        refusing = code != 220
        while True:
            buffered = self.reader.has_line()
            raw, too_long = self.reader.readline(MAX_LINE)
            if buffered:
                self.record(lambda: setattr(self.conn, "pipelined", self.conn.pipelined + 1))
            if too_long:
                self.record(lambda: self.conn.commands.append("<line too long>"))
                self.reply((500, "5.5.2 line too long"))
                self.maybe_flush()
                continue
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            self.record(lambda: self.conn.commands.append(line))
            verb = line.split(" ", 1)[0].upper()
            if refusing and verb != "QUIT":
                self.reply((503, "5.5.1 no SMTP service here"))
            elif verb in ("EHLO", "HELO"):
                self.cmd_ehlo(line, verb)
            elif verb == "STARTTLS" and b.starttls and self.extended:
                self.cmd_starttls(line)
            elif verb == "AUTH" and b.auth and self.extended:
                self.cmd_auth(line)
            elif verb == "MAIL":
                self.cmd_mail(line)
            elif verb == "RCPT":
                self.cmd_rcpt(line)
            elif verb == "DATA":
                self.cmd_data(line)
            elif verb == "RSET":
                self.tr = None
                self.reply((250, "2.0.0 OK"))
            elif verb == "NOOP":
                self.reply((250, "2.0.0 OK"))
            elif verb == "VRFY":
                self.reply((252, "2.5.0 cannot VRFY"))
            elif verb == "QUIT":
                self.reply((221, "2.0.0 bye"))
                self.flush()
                raise _Closed("quit")
            else:
                self.reply((500, "5.5.1 command not recognized"))
            self.maybe_flush()

    def ehlo_lines(self) -> list[str]:
        b = self.b
        exts = list(b.extensions)
        if b.starttls and not self.tls:
            exts.append("STARTTLS")
        if b.auth:
            exts.append("AUTH PLAIN")
        return exts

    def offered(self, keyword: str) -> bool:
        return self.extended and any(e.split()[0].upper() == keyword for e in self.ehlo_lines())

    def cmd_ehlo(self, line: str, verb: str):
        self.act("ehlo", self.decide("ehlo"))
        name = line[5:].strip() if len(line) > 5 else ""
        if not name:
            self.reply((501, "5.5.4 EHLO needs a domain"))
            return
        if verb == "EHLO" and self.b.ehlo_reply is not None:
            self.reply(self.b.ehlo_reply)
            return

        def f():
            self.conn.ehlo, self.conn.helo = name, verb == "HELO"
        self.record(f)
        self.tr, self.greeted, self.extended = None, True, verb == "EHLO"
        if verb == "HELO":
            self.reply((250, self.b.hostname))
        else:
            self.reply((250, "\n".join([f"{self.b.hostname} greets {name}"] + self.ehlo_lines())))

    def cmd_starttls(self, line: str):
        if self.tls:
            self.reply((503, "5.5.1 TLS already active"))
            return
        cert, key = self_signed_cert()
        self.reply((220, "2.0.0 ready to start TLS"))
        self.flush()
        # Anything sent after STARTTLS before the handshake is an injection attempt: drop it.
        self.reader.buf = b""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.sock.settimeout(t(30))
        try:
            tls = ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raise _Closed(f"TLS handshake failed: {e}")
        with self.mx._cond:
            self.mx._socks.discard(self.sock)
            self.mx._socks.add(tls)
        tls.settimeout(0.1)
        self.sock = self.reader.sock = tls
        self.tls = True
        self.greeted = self.extended = False
        self.tr = None

        def f():
            self.conn.starttls, self.conn.tls_version = True, tls.version()
        self.record(f)

    def cmd_auth(self, line: str):
        words = line.split()
        if self.conn.auth_user is not None:
            self.reply((503, "5.5.1 already authenticated"))
            return
        if self.tr is not None:
            self.reply((503, "5.5.1 AUTH not allowed in a transaction"))
            return
        if len(words) < 2 or words[1].upper() != "PLAIN":
            self.reply((504, "5.5.4 unrecognized authentication type"))
            return
        if len(words) >= 3:
            resp = words[2]
        else:
            self.reply((334, ""))
            self.flush()
            raw, _ = self.reader.readline(MAX_LINE * 12)
            resp = raw.strip().decode("ascii", "replace")
            if resp == "*":
                self.reply((501, "5.0.0 authentication cancelled"))
                return
        try:
            parts = base64.b64decode(resp, validate=True).split(b"\0")
        except ValueError:
            parts = []
        self.record(lambda: setattr(self.conn, "auth_attempts", self.conn.auth_attempts + 1))
        user, password = self.b.auth
        if len(parts) == 3 and parts[1].decode("utf-8", "replace") == user \
                and parts[2].decode("utf-8", "replace") == password:
            self.record(lambda: setattr(self.conn, "auth_user", user))
            self.reply((235, "2.7.0 authentication successful"))
        else:
            self.reply((535, "5.7.8 authentication credentials invalid"))

    def _check_params(self, params: dict, table: dict) -> SmtpReply | None:
        if not self.b.strict_params:
            return None
        for k in params:
            ext = table.get(k)
            if ext is None or not self.offered(ext):
                return (555, f"5.5.4 {k} parameter not supported")
        return None

    def cmd_mail(self, line: str):
        if not self.greeted:
            self.reply((503, "5.5.1 EHLO first"))
            return
        if self.tr is not None:
            self.reply((503, "5.5.1 nested MAIL"))
            return
        m = _PATH_RE.match(line)
        if not m or not m.group(1).upper().startswith("MAIL"):
            self.reply((501, "5.5.4 syntax: MAIL FROM:<address>"))
            return
        address, params = m.group(2), parse_params(m.group(3))
        r = None
        if self.require_auth and self.conn.auth_user is None:
            r = (530, "5.7.0 authentication required")
        r = r or self._check_params(params, _MAIL_PARAM_EXT)
        if r is None and "SIZE" in params and (params["SIZE"] or "").isdigit() \
                and int(params["SIZE"]) > self.b.size_limit():
            r = (552, "5.3.4 message too big")
        if r is None:
            r = self.mail_fn(address)
        r = self.decide("mail", r)
        tr = Transaction(mail_from=address, mail_params=params, mail_reply=r)
        self.record(lambda: self.conn.transactions.append(tr))
        self.act("mail", r)
        if 200 <= r[0] < 300:
            self.tr = tr
        self.reply(r)

    def cmd_rcpt(self, line: str):
        if self.tr is None:
            self.reply((503, "5.5.1 MAIL first"))
            return
        m = _PATH_RE.match(line)
        if not m or not m.group(1).upper().startswith("RCPT"):
            self.reply((501, "5.5.4 syntax: RCPT TO:<address>"))
            return
        address, params = m.group(2), parse_params(m.group(3))
        r = self._check_params(params, _RCPT_PARAM_EXT) or self.rcpt_fn(address)
        r = self.decide("rcpt", r)
        tr = self.tr
        self.record(lambda: tr.rcpts.append(Rcpt(address, params, r)))
        self.act("rcpt", r)
        self.reply(r)

    def cmd_data(self, line: str):
        if self.tr is None:
            self.reply((503, "5.5.1 MAIL first"))
            return
        if not self.tr.accepted_rcpts:
            self.reply((554, "5.5.1 no valid recipients"))
            return
        self.act("data", self.decide("data"))
        self.reply((354, "end data with <CR><LF>.<CR><LF>"))
        self.flush()
        limit = self.b.size_limit()
        chunks, size, too_big = [], 0, False
        while True:
            raw, _ = self.reader.readline(None)
            if raw == b".\r\n":
                break
            if raw.startswith(b"."):
                raw = raw[1:]
            size += len(raw)
            if size > limit:
                too_big = True
                chunks = []
            elif not too_big:
                chunks.append(raw)
        data = b"".join(chunks)
        tr = self.tr
        self.tr = None
        r = (552, "5.3.4 message too big") if too_big else self.data_fn(data)
        r = self.decide("dot", r)

        def f():
            tr.data, tr.data_reply = (b"" if too_big else data), r
        self.record(f)
        self.act("dot", r)
        self.reply(r)
        self.flush()


# =========================================================================================
# Groups of FakeMx sharing one port
# =========================================================================================
def free_port_on(hosts, attempts: int = 50) -> int:
    """A TCP port free on every address in `hosts` (checked by binding each; another
    process may still take it before the FakeMx binds: MxGroup retries)."""
    hosts = list(hosts)
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            ok = True
            for h in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    try:
                        s.bind((h, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
    raise OSError(f"no port free on all of {hosts}")


class MxGroup:
    """Several FakeMx on one port: MxGroup(["127.0.0.2", "127.0.0.3"]) (default behaviour)
    or MxGroup({"127.0.0.2": Behaviour(...), "127.0.0.3": Behaviour(...)}).
    group.port, group["127.0.0.2"] -> FakeMx, iteration over the FakeMx in order."""

    def __init__(self, hosts, idle_timeout: float | None = None):
        self.spec = dict(hosts) if isinstance(hosts, dict) else {h: None for h in hosts}
        self.idle_timeout = idle_timeout
        self.port = 0
        self.mxs: dict[str, FakeMx] = {}

    def start(self) -> "MxGroup":
        last = None
        for _ in range(10):
            self.port = free_port_on(self.spec)
            started = []
            try:
                for h, b in self.spec.items():
                    mx = FakeMx(h, self.port, behaviour=b, idle_timeout=self.idle_timeout)
                    mx.start()
                    started.append(mx)
                self.mxs = {mx.host: mx for mx in started}
                return self
            except OSError as e:
                last = e
                for mx in started:
                    mx.stop()
                if e.errno != errno.EADDRINUSE:
                    raise
        raise OSError(f"could not bind one port on all of {list(self.spec)}: {last}")

    def stop(self):
        for mx in self.mxs.values():
            mx.stop()

    def __getitem__(self, host: str) -> FakeMx:
        return self.mxs[host]

    def __iter__(self):
        return iter(self.mxs.values())

    def messages(self) -> list[tuple[str, Transaction]]:
        """(host, message) of every accepted message on any member."""
        return [(mx.host, m) for mx in self.mxs.values() for m in mx.messages()]

    def wait_messages(self, n: int, timeout: float) -> list[tuple[str, Transaction]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(mx.message_count for mx in self.mxs.values()) >= n:
                return self.messages()
            time.sleep(0.02)
        got = self.messages()
        if len(got) >= n:
            return got
        raise AssertionError(f"{len(got)} of {n} messages within {timeout:.0f}s; seen:\n" +
                             "\n".join(f"{mx.host}:\n{mx.summary()}" for mx in self.mxs.values()))

    def __enter__(self) -> "MxGroup":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


# =========================================================================================
# Client and DSN helpers
# =========================================================================================
def send_via(host: str, port: int, sender: str, rcpts, msg_bytes: bytes, mail_options=(),
             rcpt_options=(), starttls: bool = False, login: tuple[str, str] | None = None,
             **smtp_kwargs) -> dict:
    """Send one message with smtplib (EHLO, optional STARTTLS/AUTH, sendmail). Returns
    sendmail's refused-recipients dict; raises smtplib's exceptions. smtp_kwargs go to
    smtplib.SMTP (local_hostname, source_address, timeout: default t(30))."""
    smtp_kwargs.setdefault("timeout", t(30))
    smtp_kwargs.setdefault("local_hostname", "client.test")
    with smtplib.SMTP(host, port, **smtp_kwargs) as s:
        s.ehlo()
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo()
        if login:
            s.login(*login)
        return s.sendmail(sender, list(rcpts) if not isinstance(rcpts, str) else [rcpts],
                          msg_bytes, mail_options=list(mail_options),
                          rcpt_options=list(rcpt_options))


class Fields(dict):
    """A header-field dict with case-insensitive lookups ("status" finds "Status")."""

    def _key(self, k):
        if isinstance(k, str):
            for key in dict.keys(self):
                if key.lower() == k.lower():
                    return key
        return k

    def __getitem__(self, k):
        return dict.__getitem__(self, self._key(k))

    def __contains__(self, k):
        return dict.__contains__(self, self._key(k))

    def get(self, k, default=None):
        return dict.get(self, self._key(k), default)


@dataclass
class Dsn:
    message: email.message.EmailMessage       # the whole notice
    content_types: list[str]                  # of the top-level parts, in order
    report_type: str | None                   # report-type parameter ("delivery-status")
    text: str                                 # the human-readable first part
    per_message: Fields                       # Reporting-MTA, Arrival-Date, Original-Envelope-Id
    recipients: list[Fields]                  # Final-Recipient, Action, Status, ... each
    returned: email.message.Message | None    # the returned message (message/rfc822|global)
    returned_headers: str | None              # text/rfc822-headers content, or the returned
                                              # message's header block

    def recipient(self, address: str) -> Fields:
        """The group whose Final-Recipient is "<type>; address" (case-insensitive)."""
        for r in self.recipients:
            fr = r.get("Final-Recipient", "")
            if fr.split(";", 1)[-1].strip().lower() == address.lower():
                return r
        raise KeyError(f"no recipient {address!r} in the DSN: "
                       f"{[r.get('Final-Recipient') for r in self.recipients]}")


def _fields(msg: email.message.Message) -> Fields:
    return Fields((k, str(v)) for k, v in msg.items())


def _raw_parts(raw: bytes, boundary: str) -> list[tuple[bytes, bytes]]:
    """(header bytes, body bytes) of each top-level part, straight from the raw bytes."""
    raw = raw.replace(b"\r\n", b"\n")
    delim = b"\n--" + boundary.encode("ascii", "replace")
    chunks = (b"\n" + raw).split(delim)
    out = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
        head, _, body = chunk.partition(b"\n\n")
        out.append((head, body))
    return out


def parse_dsn(message_bytes: bytes) -> Dsn:
    """Parse a delivery status notification (RFC 3464, and RFC 6533's global types) with
    the email package. The message/global-* parts, which Python does not know, are cut out
    of the raw bytes and read as UTF-8 (as test_dsn_format.py does)."""
    msg = email.message_from_bytes(message_bytes, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        raise ValueError(f"not a multipart/report: {msg.get_content_type()}")
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    raw_parts = None

    def raw_body(i: int) -> bytes:
        nonlocal raw_parts
        if raw_parts is None:
            raw_parts = _raw_parts(message_bytes, msg.get_boundary())
        return raw_parts[i][1]

    text = parts[0].get_content() if parts and parts[0].get_content_maintype() == "text" else ""
    per_message, recipients = Fields(), []
    for i, p in enumerate(parts):
        ct = p.get_content_type()
        if ct == "message/delivery-status":
            groups = [_fields(g) for g in p.get_payload()]
        elif ct == "message/global-delivery-status":
            body = raw_body(i).decode("utf-8", "replace").replace("\r\n", "\n")
            groups = [_fields(email.message_from_string(g, policy=email.policy.default))
                      for g in re.split(r"\n\s*\n", body.strip("\n")) if g.strip()]
        else:
            continue
        if groups:
            per_message, recipients = groups[0], groups[1:]
        break
    returned, returned_headers = None, None
    for i, p in enumerate(parts[1:], start=1):
        ct = p.get_content_type()
        if ct == "message/rfc822":
            returned = p.get_payload()[0]
        elif ct == "message/global":
            returned = email.message_from_bytes(raw_body(i).replace(b"\n", b"\r\n"),
                                                policy=email.policy.default)
        elif ct in ("text/rfc822-headers", "message/global-headers"):
            returned_headers = (p.get_content() if ct == "text/rfc822-headers"
                                else raw_body(i).decode("utf-8", "replace"))
            continue
        else:
            continue
        returned_headers = "".join(f"{k}: {v}\n" for k, v in returned.items())
    return Dsn(msg, types, msg.get_param("report-type"), text, per_message, recipients,
               returned, returned_headers)
