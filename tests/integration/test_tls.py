"""TLS: STARTTLS (RFC 3207), implicit TLS on the submissions port (RFC 8314), protocol
versions, the STARTTLS command-injection fix (CVE-2011-0411), the certificate, the
idle limits around the handshake, and the Received: trace of TLS sessions (RFC 3848).

Clients: raw sockets wrapped with Python's ssl (harness.SmtpConn.starttls / connect_tls),
smtplib and swaks.
"""
import os
import re
import shutil
import signal
import socket
import smtplib
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

import harness
from harness import Daemon, HOSTNAME, client_ssl_context, plain_ir

MAX_SIZE = 52428800
BASE_EXTENSIONS = ["PIPELINING", f"SIZE {MAX_SIZE}", "8BITMIME", "ENHANCEDSTATUSCODES",
                   "SMTPUTF8", "DSN", "CHUNKING"]
AUTH_LINE = "AUTH PLAIN LOGIN SCRAM-SHA-256"
PLAIN_EXTENSIONS = BASE_EXTENSIONS + ["STARTTLS"]
TLS_EXTENSIONS = BASE_EXTENSIONS + [AUTH_LINE]

USER = "alice@example.test"
PASSWORD = "Tls-test pass 1"


def iana_cipher_name(openssl_name: str) -> str:
    """OpenSSL's TLS 1.2 cipher names -> the IANA names BoringSSL's
    SSL_CIPHER_standard_name gives (TLS 1.3 names are the same in both)."""
    m = re.fullmatch(r"ECDHE-(RSA|ECDSA)-AES(128|256)-GCM-SHA(256|384)", openssl_name)
    if m:
        return f"TLS_ECDHE_{m[1]}_WITH_AES_{m[2]}_GCM_SHA{m[3]}"
    m = re.fullmatch(r"ECDHE-(RSA|ECDSA)-CHACHA20-POLY1305", openssl_name)
    if m:
        return f"TLS_ECDHE_{m[1]}_WITH_CHACHA20_POLY1305_SHA256"
    return openssl_name


def openssl_cert(directory: str, cn: str = "cert.test.local") -> tuple[str, str]:
    """A throwaway self-signed certificate and key, made with the openssl CLI."""
    if not shutil.which("openssl"):
        raise unittest.SkipTest("the openssl command is not installed")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}"],
                       capture_output=True, timeout=harness.t(60))
    if r.returncode != 0:
        raise AssertionError(f"openssl req failed: {r.stderr.decode(errors='replace')}")
    return cert, key


def pem_certs(path: str) -> list[bytes]:
    """The DER of every certificate in a PEM file."""
    with open(path, "rb") as f:
        data = f.read().decode("ascii", "replace")
    return [ssl.PEM_cert_to_DER_cert(m.group(0)) for m in
            re.finditer(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)]


def old_version_context(version) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 or only TLS 1.1 (weak ciphers allowed, so the
    only reason a handshake can fail is the server refusing the version)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def client_can_speak(version, cert: str, key: str) -> bool:
    """Self-check: can this Python/OpenSSL still make a `version` handshake at all?
    (Otherwise a refused handshake would prove nothing about the daemon.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.load_cert_chain(cert, key)
        srv.set_ciphers("ALL:@SECLEVEL=0")
        srv.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        srv.maximum_version = version
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(harness.t(10))
    result = {}

    def serve():
        try:
            conn, _ = ls.accept()
            conn.settimeout(harness.t(10))
            with srv.wrap_socket(conn, server_side=True) as s:
                result["server"] = s.version()
        except Exception as e:  # noqa: BLE001 - any failure means "cannot"
            result["error"] = e

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with socket.create_connection(ls.getsockname(), timeout=harness.t(10)) as raw:
            with old_version_context(version).wrap_socket(raw) as s:
                got = s.version()
    except (ssl.SSLError, OSError):
        got = None
    th.join(harness.t(10))
    ls.close()
    return got is not None


class TlsCase(harness.DaemonTestCase):
    daemon_kwargs = {"submission": True, "submissions": True}

    def conn(self, port=None):
        c = self.daemon.connect(port=port)
        self.conns.append(c)
        return c

    def tls_conn(self, port=None, context=None):
        c = self.daemon.connect_tls(port=port, context=context)
        self.conns.append(c)
        return c

    def starttls_session(self, port=None, context=None, ehlo="client.test"):
        """Greeted, EHLO, STARTTLS, handshake, EHLO again. Returns (conn, 2nd EHLO reply)."""
        c = self.conn(port)
        c.expect(220)
        c.cmd("EHLO " + ehlo, expect=250)
        c.starttls(context)
        r = c.cmd("EHLO " + ehlo, expect=250)
        return c, r

    def assertInSync(self, c):
        r = c.cmd("NOOP")
        self.assertEqual((r.code, r.text), (250, "2.0.0 Ok"), r)


class StartTls(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.daemon.add_user(USER, PASSWORD)
        except BaseException:
            cls.daemon.close(check=False)
            raise

    def test_plain_ehlo_offers_starttls_and_no_auth(self):
        for port in (self.daemon.port, self.daemon.submission_port):
            with self.subTest(port="smtp" if port == self.daemon.port else "submission"):
                c = self.conn(port)
                c.expect(220)
                r = c.cmd("EHLO client.test", expect=250)
                self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
                self.assertEqual(r.lines[1:], PLAIN_EXTENSIONS)

    def test_starttls_reply_and_ehlo_after(self):
        for port in (self.daemon.port, self.daemon.submission_port):
            with self.subTest(port="smtp" if port == self.daemon.port else "submission"):
                c = self.conn(port)
                c.expect(220)
                c.cmd("EHLO client.test", expect=250)
                r = c.starttls()
                self.assertEqual(r.text, "2.0.0 Ready to start TLS")
                self.assertEqual(len(r.lines), 1, r)
                self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
                r = c.cmd("EHLO client.test", expect=250)
                self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
                # no STARTTLS once TLS is on; AUTH now offered
                self.assertEqual(r.lines[1:], TLS_EXTENSIONS)

    def test_starttls_with_argument_is_501(self):
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        self.assertReply(c.cmd("STARTTLS now"), 501, "5.5.4")
        self.assertInSync(c)
        # still plaintext, STARTTLS still works
        c.starttls()
        c.cmd("EHLO client.test", expect=250)
        self.assertInSync(c)

    def test_starttls_twice_is_503(self):
        c, _ = self.starttls_session()
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        self.assertInSync(c)

    def test_starttls_on_submissions_is_503(self):
        c = self.tls_conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1")
        self.assertInSync(c)

    def test_state_reset_after_handshake(self):
        # RFC 3207 section 4.2: the server forgets everything it learnt before TLS,
        # including the EHLO argument: a new EHLO is needed before MAIL.
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
        c.cmd("EHLO client.test", expect=250)
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: tls\r\n\r\nover tls\r\n.\r\n")
        r = c.read_reply()
        self.assertReply(r, 250, "2.0.0")
        self.assertIsNotNone(r.queue_id, r)

    def test_helo_after_starttls(self):
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        r = c.cmd("HELO client.test", expect=250)
        self.assertEqual(len(r.lines), 1, r)
        self.assertEqual(c.transaction().code, 250)

    def test_starttls_injection_is_discarded(self):
        # CVE-2011-0411: plaintext pipelined behind STARTTLS must be thrown away, not run
        # inside the TLS session.
        payloads = {
            "auth": b"AUTH PLAIN " + plain_ir(USER, PASSWORD).encode() + b"\r\n",
            "mail+rcpt": b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n",
            "noops": b"NOOP\r\nNOOP\r\n",
            "ehlo": b"EHLO injected.test\r\n",
            "rset+mail": b"RSET\r\nMAIL FROM:<a@b.test>\r\n",
            "quit": b"QUIT\r\n",
            "partial line": b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@exa",
        }
        ports = {"smtp": self.daemon.port, "submission": self.daemon.submission_port}
        for (name, payload), where in ((p, w) for p in payloads.items() for w in ports):
            with self.subTest(payload=name, port=where):
                c = self.conn(ports[where])
                c.expect(220)
                c.cmd("EHLO client.test", expect=250)
                c.send(b"STARTTLS\r\n" + payload)
                r = c.read_reply()
                self.assertEqual((r.code, r.text), (220, "2.0.0 Ready to start TLS"), r)
                # wrap_tls fails if anything but the 220 came in plaintext
                c.wrap_tls()
                r = c.cmd("EHLO client.test")
                # the first TLS reply answers our EHLO: not a 250 2.1.0 for an injected MAIL,
                # not a 503 for an injected RCPT, not a 221 for an injected QUIT
                self.assertEqual(r.code, 250, r)
                self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
                self.assertEqual(r.lines[1:], TLS_EXTENSIONS)
                # the injected MAIL did not open a transaction
                self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
                self.assertInSync(c)
                if where == "submission":
                    # and the injected AUTH did not authenticate the TLS session
                    r = c.cmd("MAIL FROM:<>")
                    self.assertEqual((r.code, r.text), (530, "5.7.0 Authentication required"))
                self.assertEqual(c.buf, b"", "stray replies after the session's own")
                c.close()

    def test_plaintext_instead_of_handshake_closes(self):
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.cmd("STARTTLS", expect=220)
        c.send(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n")
        self.assertTrue(c.wait_closed(harness.t(30)),
                        "connection still open after a non-TLS 'handshake'")
        self.assertNotIn(b"250", c.buf, "the plaintext commands were answered")
        # the daemon is fine
        with self.daemon.session() as ok:
            self.assertEqual(ok.cmd("NOOP").code, 250)

    def test_garbage_handshake_then_daemon_still_serves(self):
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.cmd("STARTTLS", expect=220)
        # a TLS record header announcing a handshake message, then junk
        c.send(b"\x16\x03\x01\x00\x40" + b"\xff" * 64)
        self.assertTrue(c.wait_closed(harness.t(30)))
        c2, _ = self.starttls_session()
        self.assertInSync(c2)

    def test_abrupt_close_after_220(self):
        for _ in range(3):
            c = self.conn()
            c.expect(220)
            c.cmd("EHLO client.test", expect=250)
            c.cmd("STARTTLS", expect=220)
            c.close()
        # and half a ClientHello, then gone
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.cmd("STARTTLS", expect=220)
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        c.close()
        c2, _ = self.starttls_session()
        self.assertInSync(c2)

    def test_quit_over_tls(self):
        c, _ = self.starttls_session()
        r = c.cmd("QUIT")
        self.assertReply(r, 221, "2.0.0")
        self.assertTrue(c.wait_closed(), "connection not closed after QUIT over TLS")

    def test_pipelining_over_tls(self):
        c, _ = self.starttls_session()
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n"
               b"RCPT TO:<x@remote.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n")
        replies = c.read_replies(5)
        self.assertEqual([r.code for r in replies], [250, 250, 554, 250, 354], replies)
        c.send(b"Subject: pipelined\r\n\r\nx\r\n.\r\nNOOP\r\n")
        self.assertReply(c.read_reply(), 250, "2.0.0")
        self.assertReply(c.read_reply(), 250, "2.0.0")

    def big_body(self, size):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=.,:;!?"
        lines = [b"Subject: big over tls", b""]
        n = 0
        while n < size:
            l = (b"%08d " % len(lines)) + line
            if len(lines) % 7 == 0:
                l = b"." + l   # needs dot-stuffing
            lines.append(l)
            n += len(l) + 2
        return b"\r\n".join(lines) + b"\r\n"

    def test_large_message_over_tls(self):
        # several MB through the TLS record layer, in one sendall: every byte must arrive
        body = self.big_body(3 << 20)
        c, _ = self.starttls_session()
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(harness.dot_stuff(body) + b".\r\n")
        r = c.read_reply(timeout=harness.t(60))
        self.assertReply(r, 250, "2.0.0")
        harness.require_ringctl(self, self.daemon)
        _, message = harness.queue_show(self.daemon, r.queue_id)
        _, stored = harness.split_received(message)
        self.assertEqual(len(stored), len(body))
        self.assertTrue(stored == body, "stored body differs from the one sent over TLS")

    def test_bdat_over_tls(self):
        body = self.big_body(1 << 20)
        c, _ = self.starttls_session()
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        half = len(body) // 2
        c.send(b"BDAT %d\r\n" % half + body[:half])
        self.assertReply(c.read_reply(timeout=harness.t(60)), 250)
        c.send(b"BDAT %d LAST\r\n" % (len(body) - half) + body[half:])
        r = c.read_reply(timeout=harness.t(60))
        self.assertReply(r, 250, "2.0.0")
        harness.require_ringctl(self, self.daemon)
        _, message = harness.queue_show(self.daemon, r.queue_id)
        _, stored = harness.split_received(message)
        self.assertTrue(stored == body, "stored body differs from the one sent with BDAT")

    def test_concurrent_handshakes(self):
        errors = []

        def one(i):
            try:
                where = ("smtp", "submission", "submissions")[i % 3]
                if where == "submissions":
                    c = self.daemon.connect_tls()
                    c.expect(220)
                else:
                    port = self.daemon.port if where == "smtp" else self.daemon.submission_port
                    c = self.daemon.connect(port=port)
                    c.expect(220)
                    c.cmd("EHLO client.test", expect=250)
                    c.starttls()
                with c:
                    c.cmd("EHLO client.test", expect=250)
                    c.cmd("NOOP", expect=250)
                    c.cmd("QUIT", expect=221)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{i}: {e!r}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(harness.t(120))
        self.assertFalse(any(th.is_alive() for th in threads), "a client thread hung")
        self.assertEqual(errors, [])

    def test_smtplib_starttls(self):
        with smtplib.SMTP(self.daemon.host, self.daemon.port, local_hostname="client.test",
                          timeout=harness.t(30)) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"))
            code, text = s.starttls(context=client_ssl_context())
            self.assertEqual(code, 220, text)
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.esmtp_features.get("auth", "").split(),
                             ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
            refused = s.sendmail("a@b.test", ["bob@example.test"],
                                 b"Subject: smtplib tls\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})

    def test_swaks_starttls(self):
        r = harness.swaks("--server", f"{self.daemon.host}:{self.daemon.port}", "--tls",
                          "--from", "a@b.test", "--to", "bob@example.test",
                          "--helo", "client.test", "--hide-all")
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace")[-2000:]
                         + r.stderr.decode(errors="replace")[-2000:])

    def test_swaks_starttls_shows_tls_session(self):
        r = harness.swaks("--server", f"{self.daemon.host}:{self.daemon.submission_port}",
                          "--tls", "--quit-after", "TLS", "--helo", "client.test",
                          "--to", "bob@example.test")
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out[-2000:])
        self.assertIn("220 2.0.0 Ready to start TLS", out)
        self.assertRegex(out, r"TLS started")


class ImplicitTls(TlsCase):
    def test_greeting_after_handshake(self):
        c = self.tls_conn()
        self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
        r = c.expect(220)
        self.assertTrue(r.lines[0].startswith(HOSTNAME + " "), r)
        r = c.cmd("EHLO client.test", expect=250)
        self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
        self.assertEqual(r.lines[1:], TLS_EXTENSIONS)

    def test_smtplib_smtp_ssl(self):
        with smtplib.SMTP_SSL(self.daemon.host, self.daemon.submissions_port,
                              local_hostname="client.test", context=client_ssl_context(),
                              timeout=harness.t(30)) as s:
            code, _ = s.ehlo()
            self.assertEqual(code, 250)
            self.assertFalse(s.has_extn("starttls"))
            self.assertEqual(s.esmtp_features.get("auth", "").split(),
                             ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
            self.assertEqual(s.noop()[0], 250)

    def test_plaintext_client_gets_no_greeting(self):
        c = self.conn(self.daemon.submissions_port)
        # the server waits for a ClientHello: no plaintext greeting (bounded wait)
        c.sock.settimeout(1.0)
        try:
            early = c.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            early = None
        self.assertIsNone(early, f"plaintext data from the implicit-TLS port: {early!r}")
        c.send(b"EHLO client.test\r\n")
        self.assertTrue(c.wait_closed(harness.t(30)))
        self.assertNotIn(b"220", c.buf)
        self.assertNotIn(b"250", c.buf)

    def test_swaks_tls_on_connect(self):
        r = harness.swaks("--server", f"{self.daemon.host}:{self.daemon.submissions_port}",
                          "--tls-on-connect", "--quit-after", "EHLO", "--helo", "client.test",
                          "--to", "bob@example.test")
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out[-2000:])
        self.assertIn(AUTH_LINE, out)
        self.assertNotIn("STARTTLS", out.split("TLS started", 1)[-1])


class TlsVersions(TlsCase):
    def handshake(self, where, ctx):
        if where == "submissions":
            c = self.tls_conn(context=ctx)
            c.expect(220)
            return c
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls(ctx)
        return c

    def test_tls12_and_tls13_accepted(self):
        for where in ("smtp", "submissions"):
            for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                  (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
                with self.subTest(port=where, version=name):
                    ctx = client_ssl_context(minimum=version, maximum=version)
                    c = self.handshake(where, ctx)
                    self.assertEqual(c.sock.version(), name)
                    r = c.cmd("EHLO client.test", expect=250)
                    self.assertIn(AUTH_LINE, r.lines)
                    self.assertInSync(c)
                    c.close()

    def test_default_client_gets_tls13(self):
        c = self.handshake("smtp", client_ssl_context())
        self.assertEqual(c.sock.version(), "TLSv1.3")

    def test_tls10_and_tls11_refused(self):
        tmp = tempfile.mkdtemp(prefix="ringmail-it-cert-")
        try:
            cert, key = openssl_cert(tmp)
            for version, name in ((ssl.TLSVersion.TLSv1, "TLSv1.0"),
                                  (ssl.TLSVersion.TLSv1_1, "TLSv1.1")):
                if not client_can_speak(version, cert, key):
                    self.skipTest(f"this Python/OpenSSL cannot speak {name} at all")
                for where in ("smtp", "submissions"):
                    with self.subTest(port=where, version=name):
                        ctx = old_version_context(version)
                        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
                            c = self.handshake(where, ctx)
                            # a handshake that "worked" must at least not be old
                            raise AssertionError(f"{name} handshake succeeded: "
                                                 f"{c.sock.version()}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # the refusals did not hurt the daemon
        c, _ = self.starttls_session()
        self.assertInSync(c)


class TlsTimeouts(harness.ReplyAsserts):
    """Idle limits still apply around and inside TLS (command_timeout = 2s)."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(submissions=True, command_timeout="2s").start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def test_silent_after_starttls_is_closed(self):
        with self.daemon.connect() as c:
            c.expect(220)
            c.cmd("EHLO client.test", expect=250)
            c.cmd("STARTTLS", expect=220)
            # no ClientHello ever comes: the handshake must time out, not hang
            self.assertTrue(c.wait_closed(harness.t(2 + 30)), "not closed")

    def test_silent_on_implicit_tls_port_is_closed(self):
        with self.daemon.connect(port=self.daemon.submissions_port) as c:
            self.assertTrue(c.wait_closed(harness.t(2 + 30)), "not closed")
            self.assertNotIn(b"220", c.buf)

    def test_idle_inside_tls_gets_421(self):
        with self.daemon.connect() as c:
            c.expect(220)
            c.cmd("EHLO client.test", expect=250)
            c.starttls()
            c.cmd("EHLO client.test", expect=250)
            r = c.read_reply(timeout=harness.t(2 + 30))
            self.assertReply(r, 421, "4.4.2")
            self.assertTrue(c.wait_closed(), "not closed after the timeout 421")

    def test_idle_on_submissions_gets_421(self):
        with self.daemon.connect_tls() as c:
            c.expect(220)
            r = c.read_reply(timeout=harness.t(2 + 30))
            self.assertReply(r, 421, "4.4.2")
            self.assertTrue(c.wait_closed())


class Certificates(harness.ReplyAsserts):
    def setUp(self):
        self.daemons = []
        self.tmp = tempfile.mkdtemp(prefix="ringmail-it-cert-")

    def tearDown(self):
        problems = []
        for d in self.daemons:
            try:
                d.close()
            except AssertionError as e:
                problems.append(str(e))
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            self.fail("\n".join(problems))

    def start(self, **kw):
        d = Daemon(**kw)
        self.daemons.append(d)
        return d.start()

    def peer_cert(self, d, implicit=False) -> bytes:
        if implicit:
            with d.connect_tls() as c:
                c.expect(220)
                return c.sock.getpeercert(binary_form=True)
        with d.connect() as c:
            c.expect(220)
            c.cmd("EHLO client.test", expect=250)
            c.starttls()
            return c.sock.getpeercert(binary_form=True)

    def test_self_signed_certificate_made_and_kept(self):
        d = self.start(submissions=True)
        tls_dir = os.path.join(d.data_dir, "tls")
        self.assertTrue(os.path.isdir(tls_dir), f"{tls_dir} was not created")
        served = self.peer_cert(d)
        self.assertTrue(served)
        self.assertEqual(self.peer_cert(d, implicit=True), served)
        on_disk = []
        for name in sorted(os.listdir(tls_dir)):
            on_disk += pem_certs(os.path.join(tls_dir, name))
        self.assertIn(served, on_disk, "the served certificate is not the one in data_dir/tls")
        # a restart serves the same certificate (made once, on the first start)
        d.stop()
        d.start(keep_port=True)
        self.assertEqual(self.peer_cert(d), served)

    def test_sighup_reloads_certificate(self):
        # conf/README.md [tls]: SIGHUP reloads cert and key; new handshakes get the new pair,
        # sessions already in TLS keep going.
        cert, key = openssl_cert(self.tmp, cn="first.test.local")
        d = self.start(submissions=True, tls_cert=cert, tls_key=key)
        (first,) = pem_certs(cert)
        self.assertEqual(self.peer_cert(d), first)
        old = d.connect()
        try:
            old.expect(220)
            old.cmd("EHLO client.test", expect=250)
            old.starttls()
            old.cmd("EHLO client.test", expect=250)
            newdir = os.path.join(self.tmp, "second")
            os.mkdir(newdir)
            cert2, key2 = openssl_cert(newdir, cn="second.test.local")
            shutil.copyfile(cert2, cert)
            shutil.copyfile(key2, key)
            (second,) = pem_certs(cert)
            self.assertNotEqual(first, second)
            d.signal(signal.SIGHUP)
            deadline = time.monotonic() + harness.t(30)
            served = self.peer_cert(d)
            while served != second and time.monotonic() < deadline:
                time.sleep(0.1)
                served = self.peer_cert(d)
            self.assertEqual(served, second, "still the old certificate after SIGHUP")
            self.assertEqual(self.peer_cert(d, implicit=True), second)
            # the session from before the reload still works
            self.assertEqual(old.cmd("NOOP").code, 250)
            self.assertEqual(old.transaction().code, 250)
        finally:
            old.close()
        self.assertTrue(d.running())

    def test_sighup_with_broken_certificate_keeps_old(self):
        cert, key = openssl_cert(self.tmp, cn="keep.test.local")
        d = self.start(tls_cert=cert, tls_key=key)
        (first,) = pem_certs(cert)
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        before = len(d.stderr_text())
        d.signal(signal.SIGHUP)
        # the failed load is reported on stderr; wait for that (bounded), then the old
        # pair must still be served
        deadline = time.monotonic() + harness.t(10)
        while len(d.stderr_text()) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(len(d.stderr_text()), before, "nothing logged after SIGHUP")
        self.assertTrue(d.running(), "the daemon died on a broken certificate at SIGHUP")
        self.assertEqual(self.peer_cert(d), first)

    def test_configured_certificate_is_served(self):
        cert, key = openssl_cert(self.tmp, cn="configured.test.local")
        d = self.start(submissions=True, tls_cert=cert, tls_key=key)
        (expected,) = pem_certs(cert)
        self.assertEqual(self.peer_cert(d), expected)
        self.assertEqual(self.peer_cert(d, implicit=True), expected)


class ReceivedTrace(TlsCase):
    """The Received: header names the TLS version and cipher (RFC 3848 ESMTPS/ESMTPSA)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.daemon.add_user(USER, PASSWORD)
        except BaseException:
            cls.daemon.close(check=False)
            raise

    def send_and_read(self, c, sender="a@b.test", rcpt="bob@example.test"):
        c.cmd(f"MAIL FROM:<{sender}>", expect=250)
        c.cmd(f"RCPT TO:<{rcpt}>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: trace\r\n\r\nbody\r\n.\r\n")
        r = c.read_reply()
        self.assertReply(r, 250, "2.0.0")
        harness.require_ringctl(self, self.daemon)
        _, message = harness.queue_show(self.daemon, r.queue_id)
        received, _ = harness.split_received(message)
        return received.decode("utf-8", "replace")

    def assertTlsNamed(self, received, sock):
        version = sock.version()
        cipher = sock.cipher()[0]
        self.assertIn(version, received)
        names = {cipher, iana_cipher_name(cipher)}
        self.assertTrue(any(n in received for n in names),
                        f"cipher {names} not in Received: {received!r}")

    def test_starttls_without_auth_is_esmtps(self):
        c, _ = self.starttls_session()
        received = self.send_and_read(c)
        self.assertRegex(received, r"\bwith ESMTPS\b")
        self.assertIn("TLSv1.3", received)
        self.assertTlsNamed(received, c.sock)

    def test_starttls_and_auth_is_esmtpsa(self):
        c, _ = self.starttls_session(port=self.daemon.submission_port)
        c.cmd("AUTH PLAIN " + plain_ir(USER, PASSWORD), expect=235)
        received = self.send_and_read(c, sender=USER, rcpt="x@remote.test")
        self.assertRegex(received, r"\bwith ESMTPSA\b")
        self.assertIn("TLSv1.3", received)
        self.assertTlsNamed(received, c.sock)

    def test_implicit_tls_and_auth_is_esmtpsa(self):
        c = self.tls_conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.cmd("AUTH PLAIN " + plain_ir(USER, PASSWORD), expect=235)
        received = self.send_and_read(c, sender=USER)
        self.assertRegex(received, r"\bwith ESMTPSA\b")
        self.assertTlsNamed(received, c.sock)

    def test_tls12_named(self):
        ctx = client_ssl_context(maximum=ssl.TLSVersion.TLSv1_2)
        c, _ = self.starttls_session(context=ctx)
        self.assertEqual(c.sock.version(), "TLSv1.2")
        received = self.send_and_read(c)
        self.assertRegex(received, r"\bwith ESMTPS\b")
        self.assertIn("TLSv1.2", received)
        self.assertNotIn("TLSv1.3", received)
        self.assertTlsNamed(received, c.sock)

    def test_plain_session_is_plain_esmtp(self):
        c = self.conn()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        received = self.send_and_read(c)
        self.assertRegex(received, r"\bwith ESMTP\b")
        self.assertNotIn("TLSv1", received)


if __name__ == "__main__":
    unittest.main()
