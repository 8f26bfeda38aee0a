"""SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 (RFC 5802 / 7677), the
error replies, the submission / submissions rules (RFC 6409, RFC 8314), auth.allow_plaintext,
relay and sender ownership after AUTH, and the throttling of repeated failures.

Users are added through the real CLI (`ringctl user add`, password on stdin) while the
daemon runs. Clients: raw sockets (harness.SmtpConn over TLS), smtplib and swaks, plus a
small SCRAM-SHA-256 client written here (smtplib has none).
"""
import base64
import hashlib
import hmac
import os
import re
import smtplib
import time
import unittest

import harness
from harness import Daemon, b64, client_ssl_context, plain_ir, unb64

MAX_SIZE = 52428800
BASE_EXTENSIONS = ["PIPELINING", f"SIZE {MAX_SIZE}", "8BITMIME", "ENHANCEDSTATUSCODES",
                   "SMTPUTF8", "DSN", "CHUNKING"]
AUTH_LINE = "AUTH PLAIN LOGIN SCRAM-SHA-256"

ALICE = "alice@example.test"
ALICE_ALIAS = "al@example.test"
ALICE_PW = "Alice pass: 1 x!"      # spaces and a colon on purpose (smtplib needs ASCII)
BOB = "bob@example.test"
BOB_PW = "bob-secret-2"
CAROL = "carol@example.test"        # disabled
CAROL_PW = "carol-secret-3"
ERIN = "erin@example.test"
ERIN_PW = "p\u00e4ss w\u00f6rd \u65e5"  # non-ASCII (UTF-8 on the wire)

AUTH_OK = (235, "2.7.0 Authentication successful")
AUTH_BAD = (535, "5.7.8 Authentication credentials invalid")
AUTH_REQUIRED = (530, "5.7.0 Authentication required")
ENCRYPTION_REQUIRED = (538, "5.7.11 Encryption required for requested authentication mechanism")

LOGIN_USER_PROMPT = "VXNlcm5hbWU6"   # "Username:"
LOGIN_PASS_PROMPT = "UGFzc3dvcmQ6"   # "Password:"


# --- a SCRAM-SHA-256 client (RFC 5802 section 3, no channel binding) --------------------
def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(self, user: str, password: str, nonce: str | None = None):
        self.user = user
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.gs2 = "n,,"
        self.bare = f"n={_saslname(user)},r={self.nonce}"
        self.server_signature = None
        self.iterations = None

    def client_first(self) -> str:
        return self.gs2 + self.bare

    def client_final(self, server_first: str, nonce_override: str | None = None) -> str:
        attrs = {}
        for part in server_first.split(","):
            k, _, v = part.partition("=")
            attrs[k] = v
        if "m" in attrs:
            raise AssertionError(f"mandatory extension in server-first: {server_first!r}")
        r, salt, i = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not r.startswith(self.nonce) or len(r) == len(self.nonce):
            raise AssertionError(f"server nonce does not extend ours: {server_first!r}")
        self.iterations = i
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode("utf-8"), salt, i)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={b64(self.gs2)},r={nonce_override or r}"
        auth_message = ",".join([self.bare, server_first, without_proof]).encode("utf-8")
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + ",p=" + b64(proof)

    def check_server_final(self, server_final: str) -> None:
        expected = "v=" + b64(self.server_signature)
        if server_final != expected:
            raise AssertionError(f"bad server signature: got {server_final!r}, "
                                 f"want {expected!r}")


class AuthCase(harness.DaemonTestCase):
    """A daemon with smtp + submission + submissions, and alice (alias al@), bob and a
    disabled carol. Failures are not throttled here (max_failures is large)."""
    daemon_kwargs = {"submission": True, "submissions": True,
                     "auth": {"max_failures": 1000, "failure_delay": "0s"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.daemon.add_user(ALICE, ALICE_PW, aliases=[ALICE_ALIAS])
            cls.daemon.add_user(BOB, BOB_PW)
            cls.daemon.add_user(CAROL, CAROL_PW, disabled=True)
            cls.daemon.add_user(ERIN, ERIN_PW)
        except BaseException:
            cls.daemon.close(check=False)
            raise

    PORTS = ("smtp+starttls", "submission+starttls", "submissions")

    def conn(self, port=None, source=None):
        c = self.daemon.connect(port=port, source=source)
        self.conns.append(c)
        return c

    def tls_session(self, where="submission+starttls", source=None):
        """Connected over TLS and EHLO'd (after the handshake)."""
        if where == "submissions":
            c = self.daemon.connect_tls(source=source)
            self.conns.append(c)
            c.expect(220)
        else:
            port = self.daemon.port if where == "smtp+starttls" else self.daemon.submission_port
            c = self.conn(port, source=source)
            c.expect(220)
            c.cmd("EHLO client.test", expect=250)
            c.starttls()
        c.cmd("EHLO client.test", expect=250)
        return c

    def plain_session(self, port=None):
        c = self.conn(port)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        return c

    def assertExact(self, reply, expected):
        self.assertEqual((reply.code, reply.text), expected, reply)

    def assertInSync(self, c):
        self.assertExact(c.cmd("NOOP"), (250, "2.0.0 Ok"))

    def assertNotAuthenticated(self, c):
        """On submission(s), MAIL before AUTH is 530: the session is not authenticated."""
        self.assertExact(c.cmd("MAIL FROM:<alice@example.test>"), AUTH_REQUIRED)

    def assertAuthenticated(self, c):
        r = c.cmd("MAIL FROM:<>")
        self.assertReply(r, 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<someone@remote.test>"), 250, "2.1.5")
        c.cmd("RSET", expect=250)

    def scram(self, c, user, password, initial_response=True, client=None):
        """A whole SCRAM-SHA-256 exchange; returns (client, final reply)."""
        sc = client or ScramClient(user, password)
        if initial_response:
            r = c.cmd("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
        else:
            r = c.cmd("AUTH SCRAM-SHA-256")
            self.assertEqual((r.code, r.text), (334, ""), r)
            r = c.cmd(b64(sc.client_first()))
        self.assertEqual(r.code, 334, r)
        server_first = unb64(r.text).decode()
        self.assertRegex(server_first, r"^r=[^,]+,s=[A-Za-z0-9+/=]+,i=\d+")
        r = c.cmd(b64(sc.client_final(server_first)))
        if r.code != 334:
            return sc, r
        sc.check_server_final(unb64(r.text).decode())
        return sc, c.cmd("")


class Mechanisms(AuthCase):
    def test_plain_initial_response(self):
        for where in self.PORTS:
            with self.subTest(port=where):
                c = self.tls_session(where)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
                self.assertAuthenticated(c)

    def test_plain_without_initial_response(self):
        c = self.tls_session()
        r = c.cmd("AUTH PLAIN")
        self.assertExact(r, (334, ""))
        self.assertExact(c.cmd(plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        self.assertAuthenticated(c)

    def test_login_without_initial_response(self):
        for where in self.PORTS:
            with self.subTest(port=where):
                c = self.tls_session(where)
                self.assertExact(c.cmd("AUTH LOGIN"), (334, LOGIN_USER_PROMPT))
                self.assertExact(c.cmd(b64(ALICE)), (334, LOGIN_PASS_PROMPT))
                self.assertExact(c.cmd(b64(ALICE_PW)), AUTH_OK)
                self.assertAuthenticated(c)

    def test_login_with_initial_response(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH LOGIN " + b64(BOB)), (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64(BOB_PW)), AUTH_OK)
        self.assertAuthenticated(c)

    def test_scram_sha256(self):
        for where in self.PORTS:
            for ir in (True, False):
                with self.subTest(port=where, initial_response=ir):
                    c = self.tls_session(where)
                    sc, r = self.scram(c, ALICE, ALICE_PW, initial_response=ir)
                    self.assertExact(r, AUTH_OK)
                    self.assertGreaterEqual(sc.iterations, 4096)  # RFC 7677 section 4
                    self.assertAuthenticated(c)

    def test_scram_wrong_password(self):
        c = self.tls_session()
        _, r = self.scram(c, ALICE, ALICE_PW + "x")
        self.assertExact(r, AUTH_BAD)
        self.assertNotAuthenticated(c)

    def test_scram_unknown_user(self):
        c = self.tls_session()
        _, r = self.scram(c, "nobody@example.test", "whatever")
        self.assertExact(r, AUTH_BAD)
        self.assertNotAuthenticated(c)

    def test_scram_nonce_tampered(self):
        c = self.tls_session()
        sc = ScramClient(ALICE, ALICE_PW)
        r = c.cmd("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
        self.assertEqual(r.code, 334, r)
        server_first = unb64(r.text).decode()
        final = sc.client_final(server_first, nonce_override=sc.nonce + "forged")
        self.assertExact(c.cmd(b64(final)), AUTH_BAD)
        self.assertNotAuthenticated(c)

    def test_scram_channel_binding_request_refused(self):
        # "p=" asks for channel binding, which the server does not offer (no -PLUS)
        c = self.tls_session()
        first = "p=tls-unique,," + f"n={ALICE},r=abcdefghijklmnop"
        r = c.cmd("AUTH SCRAM-SHA-256 " + b64(first))
        self.assertEqual(r.code // 100, 5, r)
        self.assertNotAuthenticated(c)

    def test_mechanism_name_case_insensitive(self):
        c = self.tls_session()
        self.assertExact(c.cmd("auth plain " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_login_name_case_insensitive(self):
        # user names are addresses, stored lower-cased
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir("Alice@EXAMPLE.Test", ALICE_PW)),
                         AUTH_OK)

    def test_wrong_password(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")), AUTH_BAD)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW.upper())), AUTH_BAD)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW + " ")), AUTH_BAD)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, BOB_PW)), AUTH_BAD)
        self.assertExact(c.cmd("AUTH LOGIN " + b64(ALICE)), (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64("wrong")), AUTH_BAD)
        self.assertNotAuthenticated(c)
        # the session goes on: a right password still works afterwards
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_unknown_user_looks_like_wrong_password(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir("nobody@example.test", "x")),
                         AUTH_BAD)
        self.assertExact(c.cmd("AUTH LOGIN " + b64("nobody@example.test")),
                         (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64("x")), AUTH_BAD)
        self.assertNotAuthenticated(c)

    def test_alias_is_not_a_login_name(self):
        # aliases are addresses the user may send as, not extra login names
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE_ALIAS, ALICE_PW)), AUTH_BAD)

    def test_disabled_user_refused(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(CAROL, CAROL_PW)), AUTH_BAD)
        _, r = self.scram(c, CAROL, CAROL_PW)
        self.assertExact(r, AUTH_BAD)
        self.assertNotAuthenticated(c)

    def test_disable_and_enable_while_running(self):
        d = self.daemon
        d.add_user("dave@example.test", "dave-pw-4")
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir("dave@example.test", "dave-pw-4")),
                         AUTH_OK)
        r = d.ringctl("user", "disable", "dave@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir("dave@example.test", "dave-pw-4")),
                         AUTH_BAD)
        r = d.ringctl("user", "enable", "dave@example.test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir("dave@example.test", "dave-pw-4")),
                         AUTH_OK)

    def test_non_ascii_password(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ERIN, ERIN_PW)), AUTH_OK)
        c = self.tls_session()
        _, r = self.scram(c, ERIN, ERIN_PW)
        self.assertExact(r, AUTH_OK)
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ERIN, "p\u00e4ss w\u00f6rd")), AUTH_BAD)

    def test_plain_authzid(self):
        c = self.tls_session()
        # authzid differing from authcid: acting as someone else is refused
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW, authzid=BOB)),
                         AUTH_BAD)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW, authzid="x")),
                         AUTH_BAD)
        self.assertNotAuthenticated(c)
        # authzid equal to authcid is the same as none (RFC 4616)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW, authzid=ALICE)),
                         AUTH_OK)

    def test_secrets_not_logged(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(BOB, "Wr0ng-guess-xyz")), AUTH_BAD)
        self.assertExact(c.cmd("AUTH LOGIN " + b64(BOB)), (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64("Other-guess-abc")), AUTH_BAD)
        _, r = self.scram(c, BOB, "Scram-guess-def")
        self.assertExact(r, AUTH_BAD)
        time.sleep(0.2)  # let the log lines land (nothing is asserted about timing)
        log = self.daemon.stderr_text()
        for secret in [ALICE_PW, "Wr0ng-guess-xyz", "Other-guess-abc", "Scram-guess-def",
                       plain_ir(ALICE, ALICE_PW), plain_ir(BOB, "Wr0ng-guess-xyz"),
                       b64("Other-guess-abc")]:
            self.assertNotIn(secret, log, "a password (or its base64) is in the daemon log")

    def test_plain_malformed_message(self):
        c = self.tls_session()
        for raw in [b"alice@example.test", b"\0alice@example.test", b"\0\0pw",
                    b"\0alice@example.test\0", b"a\0b\0c\0d"]:
            with self.subTest(raw=raw):
                self.assertExact(c.cmd("AUTH PLAIN " + b64(raw)), AUTH_BAD)
        self.assertNotAuthenticated(c)


class AuthErrors(AuthCase):
    def test_auth_before_ehlo(self):
        # on submissions, straight after the greeting
        c = self.daemon.connect_tls()
        self.conns.append(c)
        c.expect(220)
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), 503, "5.5.1")
        # after STARTTLS, before the new EHLO
        c = self.conn(self.daemon.submission_port)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), 503, "5.5.1")
        c.cmd("EHLO client.test", expect=250)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_unknown_mechanism(self):
        c = self.tls_session()
        for mech in ["CRAM-MD5", "DIGEST-MD5", "XOAUTH2", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS",
                     "PLAINX", "GSSAPI"]:
            with self.subTest(mechanism=mech):
                self.assertReply(c.cmd("AUTH " + mech), 504, "5.5.4")
        self.assertInSync(c)
        self.assertNotAuthenticated(c)

    def test_already_authenticated(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(BOB, BOB_PW)), 503, "5.5.1")
        self.assertReply(c.cmd("AUTH LOGIN"), 503, "5.5.1")
        self.assertInSync(c)
        # still alice: bob's address is not hers
        self.assertReply(c.cmd(f"MAIL FROM:<{BOB}>"), 553, "5.7.1")

    def test_auth_during_transaction(self):
        # smtp port: an unauthenticated transaction may be open
        c = self.tls_session("smtp+starttls")
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), 503, "5.5.1")
        # the transaction is intact
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("RSET", expect=250)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_cancel(self):
        cases = {
            "plain": ["AUTH PLAIN"],
            "login at username": ["AUTH LOGIN"],
            "login at password": ["AUTH LOGIN", b64(ALICE)],
            "login ir at password": ["AUTH LOGIN " + b64(ALICE)],
            "scram no ir": ["AUTH SCRAM-SHA-256"],
        }
        for name, steps in cases.items():
            with self.subTest(case=name):
                c = self.tls_session()
                for line in steps:
                    self.assertEqual(c.cmd(line).code, 334)
                self.assertReply(c.cmd("*"), 501, "5.7.0")
                self.assertInSync(c)
                self.assertNotAuthenticated(c)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_cancel_scram_after_server_first(self):
        c = self.tls_session()
        sc = ScramClient(ALICE, ALICE_PW)
        self.assertEqual(c.cmd("AUTH SCRAM-SHA-256 " + b64(sc.client_first())).code, 334)
        self.assertReply(c.cmd("*"), 501, "5.7.0")
        self.assertInSync(c)
        self.assertNotAuthenticated(c)

    def test_bad_base64(self):
        cases = {
            "plain ir": ["AUTH PLAIN !!!!"],
            "plain ir bad length": ["AUTH PLAIN AGFsaWNl="],
            "plain response": ["AUTH PLAIN", "%%%%"],
            "login username": ["AUTH LOGIN", "not base64!"],
            "login password": ["AUTH LOGIN", b64(ALICE), "@@@@"],
            "scram ir": ["AUTH SCRAM-SHA-256 ====="],
        }
        for name, steps in cases.items():
            with self.subTest(case=name):
                c = self.tls_session()
                for line in steps[:-1]:
                    self.assertEqual(c.cmd(line).code, 334)
                self.assertReply(c.cmd(steps[-1]), 501, "5.5.2")
                self.assertInSync(c)
                self.assertNotAuthenticated(c)

    def test_smtplib_wrong_password(self):
        with smtplib.SMTP_SSL(self.daemon.host, self.daemon.submissions_port,
                              context=client_ssl_context(), timeout=harness.t(30)) as s:
            s.ehlo("client.test")
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                s.login(ALICE, "wrong")
            self.assertEqual(cm.exception.smtp_code, 535)


class SubmissionRules(AuthCase):
    def test_mail_before_auth_is_530(self):
        for where in ("submission+starttls", "submissions"):
            with self.subTest(port=where):
                c = self.tls_session(where)
                self.assertExact(c.cmd("MAIL FROM:<a@b.test>"), AUTH_REQUIRED)
                self.assertExact(c.cmd(f"MAIL FROM:<{ALICE}>"), AUTH_REQUIRED)
                self.assertExact(c.cmd("MAIL FROM:<>"), AUTH_REQUIRED)
                # local recipients do not help either
                self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
                self.assertInSync(c)
        # plaintext submission, before STARTTLS
        c = self.plain_session(self.daemon.submission_port)
        self.assertExact(c.cmd("MAIL FROM:<a@b.test>"), AUTH_REQUIRED)

    def test_auth_without_tls_is_538(self):
        for port, name in ((self.daemon.submission_port, "submission"),
                           (self.daemon.port, "smtp")):
            with self.subTest(port=name):
                c = self.plain_session(port)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)),
                                 ENCRYPTION_REQUIRED)
                self.assertExact(c.cmd("AUTH PLAIN"), ENCRYPTION_REQUIRED)
                self.assertExact(c.cmd("AUTH LOGIN"), ENCRYPTION_REQUIRED)
                self.assertExact(c.cmd("AUTH SCRAM-SHA-256"), ENCRYPTION_REQUIRED)
                self.assertInSync(c)
                # and nothing was authenticated: the same session after STARTTLS needs AUTH
                c.starttls()
                c.cmd("EHLO client.test", expect=250)
                if port == self.daemon.submission_port:
                    self.assertNotAuthenticated(c)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)

    def test_smtp_port_needs_no_auth_for_local_mail(self):
        c = self.tls_session("smtp+starttls")
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")

    def test_authenticated_relay(self):
        for where in self.PORTS:
            with self.subTest(port=where):
                c = self.tls_session(where)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
                c.cmd(f"MAIL FROM:<{ALICE}>", expect=250)
                self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 250, "2.1.5")
                self.assertReply(c.cmd("RCPT TO:<other@far.away.test>"), 250, "2.1.5")
                self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
                c.cmd("DATA", expect=354)
                c.send(b"Subject: relay\r\n\r\nrelayed\r\n.\r\n")
                r = c.read_reply()
                self.assertReply(r, 250, "2.0.0")
                self.assertIsNotNone(r.queue_id, r)

    def test_auth_user_recorded_in_envelope(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        c.cmd(f"MAIL FROM:<{ALICE_ALIAS}>", expect=250)
        c.cmd("RCPT TO:<x@remote.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: who\r\n\r\nx\r\n.\r\n")
        r = c.read_reply()
        self.assertReply(r, 250, "2.0.0")
        harness.require_ringctl(self, self.daemon)
        envelope, _ = harness.queue_show(self.daemon, r.queue_id)
        lines = envelope.decode("utf-8", "replace").lower().splitlines()
        self.assertTrue(any("auth" in l and ALICE in l for l in lines),
                        f"no auth line naming {ALICE}: {lines}")
        # an unauthenticated message records no user
        c = self.tls_session("smtp+starttls")
        r = c.transaction(sender=ALICE)
        self.assertReply(r, 250, "2.0.0")
        envelope, _ = harness.queue_show(self.daemon, r.queue_id)
        self.assertFalse([l for l in envelope.decode("utf-8", "replace").lower().splitlines()
                          if l.startswith("auth")], envelope)

    def test_rset_keeps_authentication(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        c.cmd(f"MAIL FROM:<{ALICE}>", expect=250)
        c.cmd("RSET", expect=250)
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250, "2.1.0")

    def test_smtplib_starttls_login_sendmail(self):
        with smtplib.SMTP(self.daemon.host, self.daemon.submission_port,
                          local_hostname="client.test", timeout=harness.t(30)) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("auth"))
            s.starttls(context=client_ssl_context())
            s.ehlo()
            code, text = s.login(ALICE, ALICE_PW)   # smtplib picks PLAIN
            self.assertEqual(code, 235, text)
            refused = s.sendmail(ALICE, ["x@remote.test", "bob@example.test"],
                                 b"Subject: submission\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})

    def test_smtplib_login_mechanism(self):
        with smtplib.SMTP_SSL(self.daemon.host, self.daemon.submissions_port,
                              local_hostname="client.test", context=client_ssl_context(),
                              timeout=harness.t(30)) as s:
            s.ehlo()
            s.user, s.password = BOB, BOB_PW
            code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            self.assertEqual(code, 235, text)
            refused = s.sendmail(BOB, ["x@remote.test"], b"Subject: s\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})

    def swaks(self, *args):
        r = harness.swaks("--from", ALICE, "--to", "x@remote.test", "--helo", "client.test",
                          "--hide-all", *args)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-3000:]

    def test_swaks_auth(self):
        sub = f"{self.daemon.host}:{self.daemon.submission_port}"
        subs = f"{self.daemon.host}:{self.daemon.submissions_port}"
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mechanism=mech, port="submission"):
                code, out = self.swaks("--server", sub, "--tls", "--auth", mech,
                                       "--auth-user", ALICE, "--auth-password", ALICE_PW)
                self.assertEqual(code, 0, out)
            with self.subTest(mechanism=mech, port="submissions"):
                code, out = self.swaks("--server", subs, "--tls-on-connect", "--auth", mech,
                                       "--auth-user", BOB, "--auth-password", BOB_PW,
                                       "--from", BOB)
                self.assertEqual(code, 0, out)

    def test_swaks_auth_failures(self):
        sub = f"{self.daemon.host}:{self.daemon.submission_port}"
        code, out = self.swaks("--server", sub, "--tls", "--auth", "PLAIN",
                               "--auth-user", ALICE, "--auth-password", "wrong")
        self.assertEqual(code, 28, out)   # swaks: AUTH failed
        # without TLS there is no AUTH to use
        code, out = self.swaks("--server", sub, "--auth", "PLAIN",
                               "--auth-user", ALICE, "--auth-password", ALICE_PW)
        self.assertNotEqual(code, 0, out)
        # without AUTH, submission refuses the MAIL
        code, out = self.swaks("--server", sub, "--tls")
        self.assertEqual(code, 23, out)   # swaks: MAIL FROM refused


class SenderOwnership(AuthCase):
    def authed(self, who=ALICE, pw=ALICE_PW, where="submission+starttls"):
        c = self.tls_session(where)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(who, pw)), AUTH_OK)
        return c

    def test_own_addresses_allowed(self):
        c = self.authed()
        for sender in [ALICE, ALICE_ALIAS, "ALICE@EXAMPLE.TEST", "Alice@Example.Test",
                       "AL@example.test", "al@EXAMPLE.test", ""]:
            with self.subTest(sender=sender):
                self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
                c.cmd("RSET", expect=250)

    def test_other_addresses_refused(self):
        for where in self.PORTS:
            c = self.authed(where=where)
            for sender in [BOB, "someone@example.test", "alice@remote.test",
                           "alice@sub.example.test", "al@remote.test", "postmaster@example.test",
                           "alice+tag@example.test", "xalice@example.test",
                           "alice@example.test.remote.test"]:
                with self.subTest(port=where, sender=sender):
                    self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 553, "5.7.1")
            # no transaction was opened by the refusals
            self.assertReply(c.cmd("RCPT TO:<x@remote.test>"), 503, "5.5.1")
            self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250, "2.1.0")

    def test_bob_may_not_use_alice_alias(self):
        c = self.authed(BOB, BOB_PW)
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE_ALIAS}>"), 553, "5.7.1")
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 553, "5.7.1")
        self.assertReply(c.cmd(f"MAIL FROM:<{BOB}>"), 250, "2.1.0")

    def test_unauthenticated_smtp_not_affected(self):
        c = self.tls_session("smtp+starttls")
        self.assertReply(c.cmd(f"MAIL FROM:<{ALICE}>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
        c.cmd("RSET", expect=250)
        self.assertReply(c.cmd("MAIL FROM:<anyone@remote.test>"), 250, "2.1.0")
        c = self.plain_session()
        self.assertReply(c.cmd(f"MAIL FROM:<{BOB}>"), 250, "2.1.0")


class SenderOwnershipOff(AuthCase):
    daemon_kwargs = {"submission": True, "submissions": True,
                     "auth": {"sender_ownership": False, "max_failures": 1000,
                              "failure_delay": "0s"}}

    def test_any_sender_allowed(self):
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        for sender in [ALICE, BOB, "someone@remote.test", "postmaster@example.test", ""]:
            with self.subTest(sender=sender):
                self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
                self.assertReply(c.cmd("RCPT TO:<x@remote.test>"), 250, "2.1.5")
                c.cmd("RSET", expect=250)

    def test_still_needs_auth_on_submission(self):
        c = self.tls_session()
        self.assertExact(c.cmd("MAIL FROM:<someone@remote.test>"), AUTH_REQUIRED)


class PlaintextAuthAllowed(AuthCase):
    """auth.allow_plaintext = true: AUTH is offered and works without TLS."""
    daemon_kwargs = {"submission": True, "submissions": True,
                     "auth": {"allow_plaintext": True, "max_failures": 1000,
                              "failure_delay": "0s"}}

    def test_ehlo_offers_starttls_and_auth(self):
        for port in (self.daemon.port, self.daemon.submission_port):
            with self.subTest(port=port):
                c = self.conn(port)
                c.expect(220)
                r = c.cmd("EHLO client.test", expect=250)
                self.assertEqual(r.lines[1:], BASE_EXTENSIONS + ["STARTTLS", AUTH_LINE])
                c.starttls()
                r = c.cmd("EHLO client.test", expect=250)
                self.assertEqual(r.lines[1:], BASE_EXTENSIONS + [AUTH_LINE])

    def test_auth_without_tls(self):
        for port in (self.daemon.port, self.daemon.submission_port):
            with self.subTest(port=port):
                c = self.plain_session(port)
                self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
                self.assertAuthenticated(c)
        c = self.plain_session(self.daemon.submission_port)
        self.assertExact(c.cmd("AUTH LOGIN"), (334, LOGIN_USER_PROMPT))
        self.assertExact(c.cmd(b64(BOB)), (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64(BOB_PW)), AUTH_OK)
        c = self.plain_session(self.daemon.submission_port)
        _, r = self.scram(c, ALICE, ALICE_PW)
        self.assertExact(r, AUTH_OK)

    def test_starttls_forgets_plaintext_auth(self):
        # RFC 3207 4.2: nothing learnt from the client before TLS survives the handshake
        c = self.plain_session(self.daemon.submission_port)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        r = c.cmd("STARTTLS")
        if r.code == 503:
            return  # refusing STARTTLS after AUTH is fine too
        self.assertEqual(r.code, 220, r)
        c.wrap_tls()
        c.cmd("EHLO client.test", expect=250)
        self.assertNotAuthenticated(c)

    def test_submission_still_requires_auth(self):
        c = self.plain_session(self.daemon.submission_port)
        self.assertExact(c.cmd("MAIL FROM:<a@b.test>"), AUTH_REQUIRED)

    def test_received_says_esmtpa(self):
        c = self.plain_session(self.daemon.submission_port)
        self.assertExact(c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)), AUTH_OK)
        c.cmd(f"MAIL FROM:<{ALICE}>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: esmtpa\r\n\r\nx\r\n.\r\n")
        r = c.read_reply()
        self.assertReply(r, 250, "2.0.0")
        harness.require_ringctl(self, self.daemon)
        _, message = harness.queue_show(self.daemon, r.queue_id)
        received, _ = harness.split_received(message)
        text = received.decode("utf-8", "replace")
        self.assertRegex(text, r"\bwith ESMTPA\b")
        self.assertNotIn("TLSv1", text)


class LiveUserChanges(AuthCase):
    """`ringctl user ...` while the daemon runs: the next AUTH sees the change."""

    def ringctl_ok(self, *args, input=None):
        r = self.daemon.ringctl(*args, input=input)
        self.assertEqual(r.returncode, 0, (args, r.stdout, r.stderr))
        return r

    def auth_plain(self, user, pw):
        c = self.tls_session()
        return c, c.cmd("AUTH PLAIN " + plain_ir(user, pw))

    def test_passwd(self):
        user = "frank@example.test"
        self.daemon.add_user(user, "first-pw")
        self.assertExact(self.auth_plain(user, "first-pw")[1], AUTH_OK)
        self.ringctl_ok("user", "passwd", user, input=b"second-pw\n")
        self.assertExact(self.auth_plain(user, "first-pw")[1], AUTH_BAD)
        self.assertExact(self.auth_plain(user, "second-pw")[1], AUTH_OK)
        c = self.tls_session()
        self.assertExact(self.scram(c, user, "second-pw")[1], AUTH_OK)
        c = self.tls_session()
        self.assertExact(self.scram(c, user, "first-pw")[1], AUTH_BAD)

    def test_disable_after_a_cached_login(self):
        # The verified-login cache (auth.cache_ttl) must never outlive a disable.
        user = "ivy-cached@example.test"
        self.daemon.add_user(user, "hank-pw")
        self.assertExact(self.auth_plain(user, "hank-pw")[1], AUTH_OK)
        self.assertExact(self.auth_plain(user, "hank-pw")[1], AUTH_OK)
        self.ringctl_ok("user", "disable", user)
        self.assertExact(self.auth_plain(user, "hank-pw")[1], AUTH_BAD)
        self.ringctl_ok("user", "enable", user)
        self.assertExact(self.auth_plain(user, "hank-pw")[1], AUTH_OK)

    def test_del(self):
        user = "gina@example.test"
        self.daemon.add_user(user, "gina-pw")
        self.assertExact(self.auth_plain(user, "gina-pw")[1], AUTH_OK)
        self.ringctl_ok("user", "del", user)
        self.assertExact(self.auth_plain(user, "gina-pw")[1], AUTH_BAD)

    def test_alias_add_and_del(self):
        user, alias = "hank@example.test", "h@example.test"
        self.daemon.add_user(user, "hank-pw")
        c, r = self.auth_plain(user, "hank-pw")
        self.assertExact(r, AUTH_OK)
        self.assertReply(c.cmd(f"MAIL FROM:<{alias}>"), 553, "5.7.1")
        # (a session may keep what it learnt at AUTH: check with new sessions)
        self.ringctl_ok("user", "alias", "add", user, alias)
        c, r = self.auth_plain(user, "hank-pw")
        self.assertExact(r, AUTH_OK)
        self.assertReply(c.cmd(f"MAIL FROM:<{alias}>"), 250, "2.1.0")
        self.ringctl_ok("user", "alias", "del", user, alias)
        c, r = self.auth_plain(user, "hank-pw")
        self.assertExact(r, AUTH_OK)
        self.assertReply(c.cmd(f"MAIL FROM:<{alias}>"), 553, "5.7.1")

    def test_imported_sha512_crypt_user(self):
        # an imported crypt hash works for PLAIN/LOGIN; SCRAM needs verifiers the import
        # cannot have (auth/user.h) until the password is set here
        if not harness.shutil.which("openssl"):
            self.skipTest("openssl command not installed")
        user, pw = "ivan@example.test", "imported pw 7"
        h = harness.subprocess.run(["openssl", "passwd", "-6", "-salt", "s4ltS4lt", pw],
                                   capture_output=True, timeout=harness.t(30))
        self.assertEqual(h.returncode, 0, h.stderr)
        line = f"{user}:{{SHA512-CRYPT}}{h.stdout.decode().strip()}::::::\n"
        self.ringctl_ok("user", "import", "-", input=line.encode())
        self.assertExact(self.auth_plain(user, pw)[1], AUTH_OK)
        self.assertExact(self.auth_plain(user, pw + "x")[1], AUTH_BAD)
        c = self.tls_session()
        self.assertExact(c.cmd("AUTH LOGIN " + b64(user)), (334, LOGIN_PASS_PROMPT))
        self.assertExact(c.cmd(b64(pw)), AUTH_OK)
        c = self.tls_session()
        self.assertExact(self.scram(c, user, pw)[1], AUTH_BAD)
        self.ringctl_ok("user", "passwd", user, input=(pw + "\n").encode())
        c = self.tls_session()
        self.assertExact(self.scram(c, user, pw)[1], AUTH_OK)


class Throttling(harness.ReplyAsserts):
    """auth.max_failures = 3, failure_delay = 0s: two 535s, then 421 and a block for
    the address; a second loopback address is unaffected. One daemon per test (the
    block is per daemon and lasts failure_window)."""

    MAX = 3

    def setUp(self):
        self.conns = []
        self.daemons = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        problems = []
        for d in self.daemons:
            try:
                d.close()
            except AssertionError as e:
                problems.append(str(e))
        if problems:
            self.fail("\n".join(problems))

    def start(self, window="1h", **auth):
        d = Daemon(submission=True, submissions=True,
                   auth={"max_failures": self.MAX, "failure_delay": "0s",
                         "failure_window": window, **auth})
        self.daemons.append(d)
        d.start()
        d.add_user(ALICE, ALICE_PW)
        return d

    def tls(self, d, source=None):
        c = d.connect_tls(source=source)
        self.conns.append(c)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        return c

    def assert421Closed(self, c, reply):
        self.assertReply(reply, 421, "4.7.0")
        self.assertTrue(c.wait_closed(harness.t(30)), "connection not closed after 421")

    def assertAuthLogged(self, d, ip):
        deadline = time.monotonic() + harness.t(10)
        while True:
            lines = [l for l in d.stderr_text().splitlines()
                     if ip in l and "auth" in l.lower()]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(lines, f"no log line with {ip} and 'auth':\n{d.stderr_text()[-3000:]}")

    def test_block_after_max_failures(self):
        d = self.start()
        c = self.tls(d)
        for _ in range(self.MAX - 1):
            r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong"))
            self.assertEqual((r.code, r.text), AUTH_BAD, r)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")))
        self.assertAuthLogged(d, "127.0.0.1")
        # a new connection from the same address: refused at once, even the right password
        c = self.tls(d)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)))
        # no challenge first: the 421 answers the AUTH command itself
        c = self.tls(d)
        self.assert421Closed(c, c.cmd("AUTH LOGIN"))
        c = self.tls(d)
        self.assert421Closed(c, c.cmd("AUTH SCRAM-SHA-256"))
        # over STARTTLS on submission too
        c = d.connect(port=d.submission_port)
        self.conns.append(c)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        c.cmd("EHLO client.test", expect=250)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW)))
        # another client address is not blocked
        c = self.tls(d, source="127.0.0.2")
        r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW))
        self.assertEqual((r.code, r.text), AUTH_OK, r)

    def test_failures_counted_across_connections(self):
        d = self.start()
        for _ in range(self.MAX - 1):
            c = self.tls(d)
            r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong"))
            self.assertEqual((r.code, r.text), AUTH_BAD, r)
            c.cmd("QUIT", expect=221)
        c = self.tls(d)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")))

    def test_every_mechanism_and_unknown_users_count(self):
        d = self.start()
        c = self.tls(d)
        r = c.cmd("AUTH PLAIN " + plain_ir("nobody@example.test", "x"))
        self.assertEqual((r.code, r.text), AUTH_BAD, r)
        self.assertEqual(c.cmd("AUTH LOGIN " + b64(ALICE)).code, 334)
        r = c.cmd(b64("wrong"))
        self.assertEqual((r.code, r.text), AUTH_BAD, r)
        sc = ScramClient(ALICE, "wrong")
        r = c.cmd("AUTH SCRAM-SHA-256 " + b64(sc.client_first()))
        self.assertEqual(r.code, 334, r)
        r = c.cmd(b64(sc.client_final(unb64(r.text).decode())))
        self.assert421Closed(c, r)

    def test_success_does_not_reset_the_count(self):
        # whoever owns one account must not be able to clear the count between guesses
        d = self.start()
        c = self.tls(d)
        for _ in range(self.MAX - 1):
            r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong"))
            self.assertEqual((r.code, r.text), AUTH_BAD, r)
        c = self.tls(d)
        r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW))
        self.assertEqual((r.code, r.text), AUTH_OK, r)
        c = self.tls(d)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")))

    def test_block_ends_after_window(self):
        window = 6
        d = self.start(window=f"{window}s")
        c = self.tls(d)
        for _ in range(self.MAX - 1):
            self.assertEqual(c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")).code, 535)
        self.assert421Closed(c, c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong")))
        # every failure is now older than the window
        time.sleep(window + 1.5)
        c = self.tls(d)
        r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, ALICE_PW))
        self.assertEqual((r.code, r.text), AUTH_OK, r)


if __name__ == "__main__":
    unittest.main()
