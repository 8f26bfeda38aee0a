"""Integration-test harness: run the real ringmaild on loopback, talk to it raw.

Python 3.11 standard library only. Every Daemon gets its own temp data dir and its own
free loopback port, so test files can run in parallel (ctest -j). Every wait is bounded
in count and time; the time bounds are generous (sanitizer builds are 5-10x slower) and
are only upper limits: nothing here asserts how fast anything is.

    with Daemon(trusted_networks=["127.0.0.0/8"], max_recipients=100) as d:
        with d.connect() as c:
            c.expect(220)
            r = c.cmd("EHLO client.test")

TLS and AUTH (test_tls.py, test_auth.py, test_relay_policy.py):

    with Daemon(submission=True, submissions=True, auth={"failure_delay": "0s"}) as d:
        d.add_user("alice@example.test", "secret", aliases=["al@example.test"])
        c = d.connect(port=d.submission_port)   # plaintext, then c.starttls()
        c = d.connect_tls()                      # implicit TLS on the submissions port
        c.cmd("AUTH PLAIN " + plain_ir("alice@example.test", "secret"), expect=235)

Environment:
    RINGMAIL_BIN            directory holding ringmaild and ringctl (ctest sets it);
                            default: <repo>/build/bin
    RINGMAIL_TIMEOUT_SCALE  multiplies every timeout (default 1; 3 if the daemon
                            looks like a sanitizer build)
    RINGMAIL_KEEP_TMP       keep the temp dirs (config, data, stderr log) for debugging
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("RINGMAIL_BIN") or os.path.join(REPO, "build", "bin")
RINGMAILD = os.path.join(BIN_DIR, "ringmaild")
RINGCTL = os.path.join(BIN_DIR, "ringctl")

HOSTNAME = "mx.test.local"
LOCAL_DOMAIN = "example.test"
MESSAGE_CONTENTS_MARKER = b"*** MESSAGE CONTENTS ***"
QUEUE_ID_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


def _detect_scale() -> float:
    env = os.environ.get("RINGMAIL_TIMEOUT_SCALE")
    if env:
        try:
            return max(1.0, float(env))
        except ValueError:
            pass
    # A sanitizer build is much slower; find its runtime's marker in the binary.
    try:
        with open(RINGMAILD, "rb") as f:
            data = f.read(64 << 20)
        if b"__asan_init" in data or b"AddressSanitizer" in data:
            return 3.0
    except OSError:
        pass
    return 1.0


SCALE = _detect_scale()


def t(seconds: float) -> float:
    """A timeout, scaled for slow (sanitizer) builds."""
    return seconds * SCALE


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


class DaemonError(Exception):
    pass


class Daemon:
    """One ringmaild process with its own config, data dir and port.

    Keyword arguments other than the named ones become [limits] keys, e.g.
    Daemon(max_recipients=100, command_timeout="2s").

    The smtp listener (self.port) is always there. submission=True / submissions=True add
    those listeners, each on its own free port (self.submission_port,
    self.submissions_port). auth={...} becomes the [auth] table (allow_plaintext,
    max_failures, failure_window, failure_delay, sender_ownership, ...). tls_cert/tls_key
    become [tls] cert/key; without them the daemon makes a self-signed certificate under
    <data_dir>/tls/ on first start.

    delivery={...} becomes the [delivery] table (a "domains" entry maps domain ->
    {key: value} for [delivery.domains."x"]); without it delivery is disabled
    (enabled = false). dns={...} becomes [dns]; the default points at a dead loopback
    port so no test ever reaches a real resolver.
    """

    def __init__(self, trusted_networks=(), local_domains=(LOCAL_DOMAIN,), hostname=HOSTNAME,
                 threads=2, data_dir=None, extra_toml="", submission=False, submissions=False,
                 auth=None, tls_cert=None, tls_key=None, delivery=None, dns=None, relay=None,
                 **limits):
        if not os.path.exists(RINGMAILD):
            raise unittest.SkipTest(f"ringmaild not built: {RINGMAILD} is missing")
        self.trusted_networks = list(trusted_networks)
        self.local_domains = list(local_domains)
        self.relay = dict(relay or {})  # more [relay] keys
        self.hostname = hostname
        self.threads = threads
        self.limits = dict(limits)
        self.extra_toml = extra_toml
        self.tmp = tempfile.mkdtemp(prefix="ringmail-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.config_path = os.path.join(self.tmp, "ringmail.toml")
        self.host = "127.0.0.1"
        self.port = 0
        self.submission = submission
        self.submissions = submissions
        self.submission_port = 0
        self.submissions_port = 0
        self.auth = dict(auth or {})
        # Delivery is off unless a test asks for it (delivery={...}): accept-side tests
        # keep their mail in the queue, and nothing ever asks a DNS server off loopback.
        self.delivery = dict(delivery) if delivery is not None else {"enabled": False}
        # Never the system resolver: port 9 on loopback answers nothing.
        self.dns = dict(dns) if dns is not None else {"servers": ["127.0.0.1:9"],
                                                      "timeout": "1s", "attempts": 1}
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.proc: subprocess.Popen | None = None
        self._stderr_file = None
        self.stderr_path = None
        self._runs = 0
        self.last_exit = None
        self.last_stderr = ""

    # --- config ---------------------------------------------------------------------
    def write_config(self) -> str:
        lines = [
            "[server]",
            f"hostname = {_toml_value(self.hostname)}",
            f"data_dir = {_toml_value(self.data_dir)}",
            f"threads = {self.threads}",
            "",
            "[[listen]]",
            f"address = {_toml_value(f'{self.host}:{self.port}')}",
            'protocol = "smtp"',
            "",
        ]
        for enabled, port, proto in ((self.submission, self.submission_port, "submission"),
                                     (self.submissions, self.submissions_port, "submissions")):
            if enabled:
                lines += ["[[listen]]",
                          f"address = {_toml_value(f'{self.host}:{port}')}",
                          f"protocol = {_toml_value(proto)}",
                          ""]
        lines += [
            "[relay]",
            f"local_domains = {_toml_value(self.local_domains)}",
            f"trusted_networks = {_toml_value(self.trusted_networks)}",
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.relay.items()]
        lines += [""]
        if self.tls_cert or self.tls_key:
            lines.append("[tls]")
            if self.tls_cert:
                lines.append(f"cert = {_toml_value(self.tls_cert)}")
            if self.tls_key:
                lines.append(f"key = {_toml_value(self.tls_key)}")
            lines.append("")
        if self.auth:
            lines.append("[auth]")
            for k, v in self.auth.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        lines.append("[delivery]")
        domains = {}
        for k, v in self.delivery.items():
            if k == "domains":
                domains = v
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        for name, keys in domains.items():
            lines.append(f"[delivery.domains.{_toml_value(name)}]")
            for k, v in keys.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        lines.append("[dns]")
        for k, v in self.dns.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        if self.limits:
            lines.append("[limits]")
            for k, v in self.limits.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        if self.extra_toml:
            lines.append(self.extra_toml)
        text = "\n".join(lines) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)
        return text

    # --- process --------------------------------------------------------------------
    def start(self, keep_port: bool = False) -> "Daemon":
        """Start ringmaild and wait until it greets. Retries on a port taken meanwhile."""
        if self.proc is not None and self.proc.poll() is None:
            raise DaemonError("already running")
        attempts = 5
        for attempt in range(attempts):
            if not keep_port or not self.port or attempt > 0:
                self._pick_ports()
            self.write_config()
            self._runs += 1
            self.stderr_path = os.path.join(self.tmp, f"stderr.{self._runs}.log")
            self._stderr_file = open(self.stderr_path, "wb")
            self.proc = subprocess.Popen([RINGMAILD, "-c", self.config_path],
                                         stdin=subprocess.DEVNULL,
                                         stdout=self._stderr_file, stderr=self._stderr_file,
                                         cwd=self.tmp)
            ok, why = self._wait_ready(t(30))
            if ok:
                return self
            # It died or never answered: collect what it said.
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=t(10))
            self._close_stderr()
            text = self.stderr_text()
            self.proc = None
            if "in use" in text.lower() and attempt + 1 < attempts:
                continue  # another test took the port between probe and bind
            raise DaemonError(f"ringmaild did not start ({why}); stderr:\n{text}")
        raise DaemonError("ringmaild did not start: no free port")

    def _pick_ports(self):
        """Distinct free ports for every listener (bound at once so they differ)."""
        socks = []
        try:
            for _ in range(1 + bool(self.submission) + bool(self.submissions)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((self.host, 0))
            ports = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        self.port = ports.pop(0)
        self.submission_port = ports.pop(0) if self.submission else 0
        self.submissions_port = ports.pop(0) if self.submissions else 0

    def _wait_ready(self, timeout: float):
        deadline = time.monotonic() + timeout
        delay = 0.02
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"exited with {self.proc.returncode}"
            try:
                with socket.create_connection((self.host, self.port), timeout=t(5)) as s:
                    # A full, polite session: the greeting proves the loop runs, and waiting
                    # for the close means the connection no longer counts against limits.
                    s.settimeout(t(10))
                    buf = b""
                    while b"\n" not in buf and len(buf) < 4096:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if not buf.startswith(b"220"):
                        last = f"greeting {buf[:80]!r}"
                        time.sleep(delay)
                        continue
                    s.sendall(b"QUIT\r\n")
                    for _ in range(100):
                        if not s.recv(4096):
                            break
                    return True, "ok"
            except OSError as e:
                last = str(e)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return False, f"not ready after {timeout:.0f}s: {last}"

    def _close_stderr(self):
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def stderr_text(self) -> str:
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_stderr(self, needle: str, timeout: float) -> bool:
        """Poll the log until `needle` appears (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.stderr_text():
                return True
            time.sleep(0.02)
        return needle in self.stderr_text()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float):
        """Wait for the process to exit; returns (exit code, stderr) like stop()."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=t(10))
            self._close_stderr()
            self.last_exit = self.proc.returncode
            self.last_stderr = self.stderr_text()
            self.proc = None
            raise DaemonError(f"ringmaild did not exit within {timeout:.0f}s; killed. "
                              f"stderr:\n{self.last_stderr}")
        self._close_stderr()
        self.last_exit = self.proc.returncode
        self.last_stderr = self.stderr_text()
        self.proc = None
        return self.last_exit, self.last_stderr

    def stop(self, timeout: float | None = None):
        """SIGTERM and wait (bounded). Returns (exit code, stderr text)."""
        if self.proc is None:
            return self.last_exit, self.last_stderr
        self.signal(signal.SIGTERM)
        return self.wait(timeout if timeout is not None else t(60))

    def kill9(self):
        if self.proc is None:
            return self.last_exit, self.last_stderr
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(t(30))

    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                         "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")

    def all_stderr(self) -> str:
        """Every log this Daemon has written (one per start)."""
        out = []
        for n in range(1, self._runs + 1):
            path = os.path.join(self.tmp, f"stderr.{n}.log")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
        return "\n".join(out)

    def close(self, check: bool = True):
        """Stop (SIGTERM, so sanitizers run their exit checks), remove the temp dir.
        With check: a non-zero exit or a sanitizer report in any log raises."""
        problems = []
        try:
            if self.proc is not None:
                try:
                    code, _ = self.stop()
                    if code != 0:
                        problems.append(f"exit code {code} after SIGTERM")
                except DaemonError as e:
                    problems.append(str(e))
            text = self.all_stderr()
            for m in self.SANITIZER_MARKERS:
                if m in text:
                    problems.append(f"sanitizer report ({m!r}) in the daemon log")
                    break
        finally:
            self._close_stderr()
            if self.proc is not None:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
            if problems and check:
                keep = os.environ.get("RINGMAIL_KEEP_TMP")
                log = self.all_stderr()
                if not keep:
                    shutil.rmtree(self.tmp, ignore_errors=True)
                raise AssertionError("ringmaild: " + "; ".join(problems) + "\nlog:\n" + log[-8000:])
            if not os.environ.get("RINGMAIL_KEEP_TMP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)
        return False

    # --- clients --------------------------------------------------------------------
    def connect(self, source: str | None = None, timeout: float | None = None,
                port: int | None = None) -> "SmtpConn":
        return SmtpConn(self.host, port or self.port, source=source, timeout=timeout)

    def connect_tls(self, port: int | None = None, source: str | None = None,
                    context: ssl.SSLContext | None = None,
                    timeout: float | None = None) -> "SmtpConn":
        """Implicit TLS (submissions): the handshake comes before the 220 greeting."""
        c = SmtpConn(self.host, port or self.submissions_port, source=source, timeout=timeout)
        try:
            c.wrap_tls(context)
        except BaseException:
            c.close()
            raise
        return c

    def session(self, ehlo: str = "client.test", source: str | None = None) -> "SmtpConn":
        """Connected, greeted and EHLO'd."""
        c = self.connect(source=source)
        c.expect(220)
        c.cmd("EHLO " + ehlo, expect=250)
        return c

    # --- ringctl --------------------------------------------------------------------
    def ringctl(self, *args, timeout: float | None = None,
                input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([RINGCTL, "-c", self.config_path, *args], capture_output=True,
                              input=input if input is not None else b"",
                              timeout=timeout if timeout is not None else t(60))

    def add_user(self, address: str, password: str, aliases=(), disabled: bool = False) -> None:
        """`ringctl -c CONFIG user add ADDRESS [--alias A]... [--disabled]`, password on
        stdin (first line)."""
        args = ["user", "add", address]
        for a in aliases:
            args += ["--alias", a]
        if disabled:
            args.append("--disabled")
        r = self.ringctl(*args, input=(password + "\n").encode("utf-8"))
        if r.returncode != 0:
            raise AssertionError(f"ringctl {' '.join(args)} failed ({r.returncode}): "
                                 f"stdout={r.stdout[:500]!r} stderr={r.stderr[:500]!r}")


# --- ringctl availability -------------------------------------------------------------
_ringctl_state: tuple[bool, str] | None = None


def ringctl_usable(daemon: Daemon) -> tuple[bool, str]:
    """(usable, reason). ringctl is being written in parallel: until it exists and does
    something, queue assertions are skipped (never failed)."""
    global _ringctl_state
    if _ringctl_state is not None:
        return _ringctl_state
    if not os.path.exists(RINGCTL):
        _ringctl_state = (False, f"ringctl not built yet ({RINGCTL} missing): "
                                 "queue contents not checked")
        return _ringctl_state
    try:
        bogus = daemon.ringctl("no-such-command-for-probe", timeout=t(30))
        listing = daemon.ringctl("queue", "list", timeout=t(30))
    except (OSError, subprocess.TimeoutExpired) as e:
        _ringctl_state = (False, f"ringctl not usable ({e}): queue contents not checked")
        return _ringctl_state
    if bogus.returncode == 0 and not bogus.stdout and not listing.stdout and not listing.stderr:
        # A placeholder binary: accepts anything, prints nothing.
        _ringctl_state = (False, "ringctl is still a placeholder (accepts any command, prints "
                                 "nothing): queue contents not checked")
        return _ringctl_state
    _ringctl_state = (True, "ok")
    return _ringctl_state


def require_ringctl(testcase: unittest.TestCase, daemon: Daemon):
    ok, why = ringctl_usable(daemon)
    if not ok:
        testcase.skipTest(why)


def queue_list_ids(daemon: Daemon) -> list[str]:
    r = daemon.ringctl("queue", "list")
    if r.returncode != 0:
        raise AssertionError(f"ringctl queue list failed ({r.returncode}): "
                             f"{r.stderr.decode(errors='replace')}")
    ids = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        tok = line.split(None, 1)[0] if line.strip() else ""
        if re.fullmatch(r"[0-9A-Za-z]{6,32}", tok):
            ids.append(tok)
    return ids


def queue_show(daemon: Daemon, qid: str) -> tuple[bytes, bytes]:
    """(envelope text, stored message) of one queued message, via ringctl queue show.
    The message is returned with line ends normalised to CRLF."""
    r = daemon.ringctl("queue", "show", qid)
    if r.returncode != 0:
        raise AssertionError(f"ringctl queue show {qid} failed ({r.returncode}): "
                             f"{r.stderr.decode(errors='replace')}")
    out = r.stdout
    i = out.find(MESSAGE_CONTENTS_MARKER)
    if i < 0:
        raise AssertionError(f"ringctl queue show {qid}: no '{MESSAGE_CONTENTS_MARKER.decode()}' "
                             f"line in output: {out[:300]!r}")
    envelope = out[:i]
    rest = out[i + len(MESSAGE_CONTENTS_MARKER):]
    # the marker's own line end
    if rest.startswith(b"\r\n"):
        rest = rest[2:]
    elif rest.startswith(b"\n"):
        rest = rest[1:]
    return envelope, to_crlf(rest)


def to_crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def split_received(message: bytes) -> tuple[bytes, bytes]:
    """Split off the first header field (the Received: we prepend) with its folded lines."""
    if not message.lower().startswith(b"received:"):
        raise AssertionError(f"stored message does not start with Received:: {message[:200]!r}")
    pos = 0
    while True:
        eol = message.find(b"\r\n", pos)
        if eol < 0:
            return message, b""
        pos = eol + 2
        if pos >= len(message) or message[pos:pos + 1] not in (b" ", b"\t"):
            return message[:pos], message[pos:]


# --- TLS -------------------------------------------------------------------------------
def client_ssl_context(minimum=ssl.TLSVersion.TLSv1_2, maximum=None) -> ssl.SSLContext:
    """A client context for the daemon's (self-signed) certificate: no verification,
    TLS 1.2 at least."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


# --- raw SMTP client ------------------------------------------------------------------
class Reply:
    def __init__(self, code: int, lines: list[str]):
        self.code = code
        self.lines = lines  # the text after "NNN-" / "NNN "

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def queue_id(self) -> str | None:
        m = QUEUE_ID_RE.search(self.text)
        return m.group(1) if m else None

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"

    def __str__(self):
        return "\n".join(f"{self.code} {l}" for l in self.lines)


class ConnectionClosed(Exception):
    pass


class SmtpConn:
    """A raw SMTP client socket: write exact bytes, read replies (multi-line aware)."""

    def __init__(self, host: str, port: int, source: str | None = None,
                 timeout: float | None = None):
        self.timeout = timeout if timeout is not None else t(30)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if source:
                self.sock.bind((source, 0))
            self.sock.settimeout(self.timeout)
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout: float):
        if self.eof:
            raise ConnectionClosed("connection closed by server")
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed by server; unread: " + repr(self.buf[:200]))
        self.buf += chunk

    @property
    def tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def wrap_tls(self, context: ssl.SSLContext | None = None, timeout: float | None = None):
        """TLS handshake on this connection now (after STARTTLS's 220, or at once for
        implicit TLS). Plaintext already received and not yet read is an error: the
        server must not send anything between its 220 and the handshake."""
        if self.buf:
            raise AssertionError(f"plaintext after the 220 / before the handshake: "
                                 f"{self.buf[:200]!r}")
        ctx = context or client_ssl_context()
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_side=False, do_handshake_on_connect=True)
        self.sock.settimeout(self.timeout)
        self.eof = False

    def starttls(self, context: ssl.SSLContext | None = None) -> Reply:
        """STARTTLS, expect `220`, then the handshake. Returns the 220 reply."""
        r = self.cmd("STARTTLS")
        if r.code != 220:
            raise AssertionError(f"STARTTLS: expected 220, got {r!r}")
        self.wrap_tls(context)
        return r

    def read_line(self, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"no reply line within the timeout; have {self.buf[:200]!r}")
            if len(self.buf) > 1 << 20:
                raise AssertionError("reply line longer than 1 MiB")
            self._fill(left)
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_reply(self, timeout: float | None = None) -> Reply:
        """One reply: "250-..." lines continue until "250 ..." (bounded to 1000 lines)."""
        limit = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + limit
        lines: list[str] = []
        code = None
        for _ in range(1000):
            try:
                raw = self.read_line(max(0.01, deadline - time.monotonic()))
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"no complete reply within {limit:.0f}s; received so far: "
                                     f"{lines!r} + {self.buf[:200]!r}") from None
            text = raw.decode("utf-8", "replace")
            if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] not in " -"):
                raise AssertionError(f"malformed reply line {text!r}")
            c = int(text[:3])
            if code is not None and c != code:
                raise AssertionError(f"reply code changed inside a multi-line reply: {text!r}")
            code = c
            lines.append(text[4:])
            if len(text) == 3 or text[3] == " ":
                return Reply(code, lines)
        raise AssertionError("multi-line reply over 1000 lines")

    def expect(self, code: int, timeout: float | None = None) -> Reply:
        r = self.read_reply(timeout)
        if r.code != code:
            raise AssertionError(f"expected {code}, got {r!r}")
        return r

    def cmd(self, line: bytes | str, expect: int | None = None, timeout: float | None = None) -> Reply:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        r = self.read_reply(timeout)
        if expect is not None and r.code != expect:
            raise AssertionError(f"{line[:100]!r}: expected {expect}, got {r!r}")
        return r

    def read_replies(self, n: int, timeout: float | None = None) -> list[Reply]:
        return [self.read_reply(timeout) for _ in range(n)]

    def wait_closed(self, timeout: float | None = None) -> bool:
        """True if the server closes the connection within timeout (data before the close
        is collected in self.buf)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        if self.eof:
            return True
        while time.monotonic() < deadline:
            try:
                self._fill(max(0.01, deadline - time.monotonic()))
            except ConnectionClosed:
                return True
            except (socket.timeout, TimeoutError):
                return False
            if len(self.buf) > 1 << 20:
                return False
        return False

    def transaction(self, sender: str = "a@b.test", rcpts=("bob@example.test",),
                    body: bytes = b"Subject: test\r\n\r\nhello\r\n") -> Reply:
        """MAIL, RCPT..., DATA with dot-stuffing; returns the final reply."""
        self.cmd(f"MAIL FROM:<{sender}>", expect=250)
        for r in rcpts:
            self.cmd(f"RCPT TO:<{r}>", expect=250)
        self.cmd("DATA", expect=354)
        self.send(dot_stuff(body) + b".\r\n")
        return self.read_reply()


def dot_stuff(body: bytes) -> bytes:
    """CRLF-terminated body -> DATA content (without the final ".\\r\\n")."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    out = []
    for line in body.split(b"\r\n")[:-1]:
        out.append((b"." + line) if line.startswith(b".") else line)
    return b"".join(l + b"\r\n" for l in out)


class ReplyAsserts(unittest.TestCase):
    """Reply checks shared by every integration test class."""

    def assertReply(self, reply, code, enhanced=None, contains=None):
        self.assertEqual(reply.code, code, f"reply: {reply!r}")
        if enhanced is not None:
            self.assertTrue(reply.lines[-1].startswith(enhanced + " "),
                            f"expected enhanced status {enhanced}: {reply!r}")
        if contains is not None:
            self.assertIn(contains, reply.text, f"reply: {reply!r}")


class DaemonTestCase(ReplyAsserts):
    """One daemon per test class (config from `daemon_kwargs`); every test opens its own
    connections, closed after the test."""
    daemon: Daemon
    daemon_kwargs: dict = {}

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(**cls.daemon_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def setUp(self):
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()

    def conn(self):
        c = self.daemon.connect()
        self.conns.append(c)
        return c

    def session(self, ehlo="client.test"):
        c = self.daemon.session(ehlo)
        self.conns.append(c)
        return c


# --- AUTH helpers ------------------------------------------------------------------------
def b64(data: bytes | str) -> str:
    import base64
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    import base64
    return base64.b64decode(text.encode("ascii"), validate=True)


def plain_ir(user: str, password: str, authzid: str = "") -> str:
    """The base64 PLAIN message (RFC 4616): authzid NUL authcid NUL password."""
    return b64(f"{authzid}\0{user}\0{password}")


# --- swaks --------------------------------------------------------------------------------
SWAKS = shutil.which("swaks")


def swaks(*args, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run swaks (skips the calling test when it is not installed). Exit codes: 0 ok,
    2 connect, 24 RCPT refused, 28 AUTH failed, 29 TLS failed (swaks(1))."""
    if not SWAKS:
        raise unittest.SkipTest("swaks is not installed")
    return subprocess.run([SWAKS, *args], capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=timeout if timeout is not None else t(60))
