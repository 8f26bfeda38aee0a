"""Open-relay battery (DESIGN "Auth and relay policy").

From an untrusted, unauthenticated client (trusted_networks = []), every classic relay
trick must be refused at RCPT: `554 5.7.1`, or a syntax refusal (501 / 553) for forms that
are not valid RFC 5321 paths at all -- never a 2xx. The battery runs over plain SMTP and
over STARTTLS, with an honest sender, spoofed local senders and the null sender, and with
spoofed HELO names. test_smtp_basic.py has the basic list over one plain session; this
file extends it (more forms, more senders, TLS, HELO, the stored envelope, failed AUTH,
the submission ports, smtplib and swaks) without repeating it.
"""
import smtplib
import unittest

import harness
from harness import Daemon, HOSTNAME, b64, client_ssl_context, plain_ir

STRICT = "554"     # a valid path to a non-local destination: exactly 554 5.7.1
SYNTAX = "syntax"  # not a valid path (or one a strict parser may call invalid):
                   # 501 / 553 or 554 5.7.1, never 2xx

# (path inside <...>, expectation)
TRICKS = [
    # plain remote domains, in every spelling
    ("user@remote.test", STRICT),
    ("USER@REMOTE.TEST", STRICT),
    ("user@sub.example.test", STRICT),
    ("user@example.test.remote.test", STRICT),
    ("user@EXAMPLE.TEST.remote.test", STRICT),
    ("user@example.testx", STRICT),
    ("user@xexample.test", STRICT),
    ("user@example-test", SYNTAX),           # one label: 554, or 501 if refused as syntax
    ("user@localhost", SYNTAX),
    ("user@" + HOSTNAME, STRICT),            # the server's own name is not a local domain
    # %-hack (sendmail's percent routing)
    ("user%remote.test@example.test", STRICT),
    ("USER%REMOTE.TEST@EXAMPLE.TEST", STRICT),
    ("user%remote.test@Example.Test", STRICT),
    ("user%remote.test%example.test@example.test", STRICT),
    ("user%%remote.test@example.test", STRICT),
    ("user%40remote.test@example.test", STRICT),
    ("%remote.test@example.test", STRICT),
    # UUCP bang paths
    ("remote.test!user@example.test", STRICT),
    ("REMOTE.TEST!USER@EXAMPLE.TEST", STRICT),
    ("remote.test!other.test!user@example.test", STRICT),
    ("user!remote.test@example.test", STRICT),
    ("remote.test!user%other.test@example.test", STRICT),
    # quoted local parts hiding an address
    ('"user@remote.test"@example.test', STRICT),
    ('"user@remote.test"@EXAMPLE.TEST', STRICT),
    ('"USER@REMOTE.TEST"@example.test', STRICT),
    ('"user%remote.test"@example.test', STRICT),
    ('"user%remote.test"@EXAMPLE.TEST', STRICT),
    ('"remote.test!user"@example.test', STRICT),
    ('"REMOTE.TEST!user"@example.test', STRICT),
    ('"user\\@remote.test"@example.test', STRICT),           # quoted-pair
    ('"user@remote.test@example.test"@example.test', STRICT),
    ('"@remote.test:user"@example.test', STRICT),
    ('"user"@remote.test', STRICT),
    # source routes (RFC 5321 4.1.1.3: to be ignored, never followed)
    ("@example.test:user@remote.test", STRICT),
    ("@EXAMPLE.TEST:user@remote.test", STRICT),
    ("@example.test,@example.test:user@remote.test", STRICT),
    ("@example.test:user%remote.test@example.test", STRICT),
    ("@example.test:remote.test!user@example.test", STRICT),
    ('@example.test:"user@remote.test"@example.test', STRICT),
    # address literals, including this very host
    ("user@[127.0.0.1]", STRICT),
    ("postmaster@[127.0.0.1]", STRICT),
    ("user@[127.0.0.2]", STRICT),
    ("user@[10.0.0.1]", STRICT),
    ("user@[IPv6:::1]", STRICT),
    ("user@[IPv6:::ffff:127.0.0.1]", SYNTAX),
    ("user%remote.test@[127.0.0.1]", STRICT),
    # not addresses at all
    ("user@remote.test@example.test", SYNTAX),
    ("user@example.test@remote.test", SYNTAX),
    ("user@example.test.", SYNTAX),           # trailing dot: not the local domain
    ("user@EXAMPLE.TEST.", SYNTAX),
    ("user@remote.test.", SYNTAX),
    ("user@example.test..", SYNTAX),
    ("user@.example.test", SYNTAX),
    ("user@example..test", SYNTAX),
    ("user@remote.test%example.test", SYNTAX),
    ("user@example.test%remote.test", SYNTAX),
    ("user@remote.test!example.test", SYNTAX),
    ("user@example.test:25", SYNTAX),
    ("user@example.test:user@remote.test", SYNTAX),
    ("user@example.test,user@remote.test", SYNTAX),
    ("user@[127.0.0.1]@example.test", SYNTAX),
    ("user@[127.0.0.1].example.test", SYNTAX),
    ('"user@remote.test@example.test', SYNTAX),  # unbalanced quote
    ('user@remote.test"@example.test', SYNTAX),
    ("user@example.test\\", SYNTAX),
    ("user\\@remote.test@example.test", SYNTAX),
    ("@remote.test:", SYNTAX),
    ("@example.test:", SYNTAX),
    ("@remote.test", SYNTAX),
    ("user@", SYNTAX),
    ("user(comment)@remote.test", SYNTAX),
    ("user@remote.test(comment)", SYNTAX),
    ("user@(example.test)remote.test", SYNTAX),
    ("<user@remote.test>", SYNTAX),            # doubled brackets
    ("user%[127.0.0.1]@example.test", SYNTAX),  # '[' is not atext
    ("@[127.0.0.1]:user@remote.test", SYNTAX),   # a source route names domains only
    ("user\uff20remote.test@example.test", SYNTAX),  # fullwidth @, no SMTPUTF8: 553 5.6.7
]

# Whole RCPT lines (for forms the <...> wrapper cannot express).
RAW_LINES = [
    "RCPT TO:user@remote.test",
    "RCPT TO: <user@remote.test>",
    "RCPT TO:<user@remote.test> ",
    "RCPT TO:<user@remote.test>  ",
    "RCPT  TO:<user@remote.test>",
    "RCPT TO:<user@example.test>@remote.test>",
    "RCPT TO:<user@example.test><user@remote.test>",
    "RCPT TO:<user@example.test> <user@remote.test>",
    "RCPT TO:<user@example.test> ORCPT=rfc822;user@remote.test NOTIFY=NEVER x",
    "RCPT TO:<user@remote.test\tbob@example.test>",
    "RCPT TO:<user@remote.test\x00@example.test>",
    "RCPT TO:<user@remote.test\x0b@example.test>",
    "RCPT TO:<\"user@remote.test\x00\"@example.test>",
    "RCPT TO:<user@remote.test>\x00<bob@example.test>",
    "RCPT TO:<>",
]

SENDERS = ["a@b.test", "postmaster@example.test", "bob@example.test", ""]


class RelayBattery(harness.DaemonTestCase):
    # relay probing counts towards max_errors; the battery needs many refusals per session
    daemon_kwargs = {"max_errors": 100000, "submission": True, "submissions": True}

    def conn(self, port=None, source=None):
        c = self.daemon.connect(port=port, source=source)
        self.conns.append(c)
        return c

    def open(self, transport, helo="EHLO client.test", source=None):
        c = self.conn(source=source)
        c.expect(220)
        if transport == "starttls":
            c.cmd("EHLO client.test", expect=250)
            c.starttls()
        c.cmd(helo, expect=250)
        return c

    def assertRefused(self, reply, expectation, what):
        self.assertNotEqual(reply.code // 100, 2, f"{what!r} accepted: {reply!r}")
        if expectation == STRICT:
            self.assertReply(reply, 554, "5.7.1")
        elif expectation == SYNTAX:
            self.assertIn(reply.code, (501, 553, 554), f"{what!r}: {reply!r}")
            if reply.code == 554:
                self.assertReply(reply, 554, "5.7.1")
        else:
            # raw lines: any syntax / parameter refusal, or the relay refusal
            self.assertIn(reply.code, (500, 501, 553, 554, 555), f"{what!r}: {reply!r}")

    def run_battery(self, c, sender):
        self.assertReply(c.cmd(f"MAIL FROM:<{sender}>"), 250, "2.1.0")
        for path, expectation in TRICKS:
            with self.subTest(rcpt=path, sender=sender):
                self.assertRefused(c.cmd(f"RCPT TO:<{path}>"), expectation, path)
        for line in RAW_LINES:
            with self.subTest(line=line, sender=sender):
                self.assertRefused(c.cmd(line), "raw", line)
        # nothing got in: DATA has no recipient
        self.assertEqual(c.cmd("DATA").code // 100, 5)
        self.assertEqual(c.cmd("NOOP").code, 250)
        # a plain local recipient still works after all that
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<Carol@EXAMPLE.test>"), 250, "2.1.5")
        c.cmd("DATA", expect=354)
        c.send(b"Subject: relay battery\r\n\r\nlocal only\r\n.\r\n")
        r = c.read_reply()
        self.assertReply(r, 250, "2.0.0")
        return r.queue_id

    def test_battery_plain(self):
        c = self.open("plain")
        for sender in SENDERS:
            self.run_battery(c, sender)

    def test_battery_starttls(self):
        c = self.open("starttls")
        for sender in SENDERS:
            self.run_battery(c, sender)

    def test_battery_with_helo(self):
        c = self.open("plain", helo="HELO client.test")
        self.run_battery(c, "postmaster@example.test")

    def test_spoofed_helo_names(self):
        for helo in ["EHLO example.test", f"EHLO {HOSTNAME}", "EHLO [127.0.0.1]",
                     "EHLO localhost", "HELO example.test"]:
            for transport in ("plain", "starttls"):
                with self.subTest(helo=helo, transport=transport):
                    c = self.open(transport, helo=helo)
                    c.cmd("MAIL FROM:<postmaster@example.test>", expect=250)
                    self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
                    self.assertReply(c.cmd("RCPT TO:<user%remote.test@example.test>"),
                                     554, "5.7.1")
                    c.close()

    def test_other_loopback_source(self):
        c = self.open("starttls", source="127.0.0.5")
        self.run_battery(c, "a@b.test")

    def test_refused_recipients_not_stored(self):
        c = self.open("starttls")
        qid = self.run_battery(c, "a@b.test")
        harness.require_ringctl(self, self.daemon)
        envelope, _ = harness.queue_show(self.daemon, qid)
        env = envelope.decode("utf-8", "replace").lower()
        self.assertIn("bob@example.test", env)
        self.assertIn("carol@example.test", env)
        for bad in ("remote.test", "other.test", "[127.0.0.1]", "10.0.0.1", "ipv6:"):
            self.assertNotIn(bad, env)

    def test_pipelined_battery(self):
        # the same refusals when every RCPT comes in one write (PIPELINING)
        c = self.open("starttls")
        lines = ["MAIL FROM:<postmaster@example.test>"]
        lines += [f"RCPT TO:<{p}>" for p, _ in TRICKS]
        lines += ["RCPT TO:<bob@example.test>", "RSET"]
        c.send("".join(l + "\r\n" for l in lines))
        replies = c.read_replies(len(lines))
        self.assertReply(replies[0], 250, "2.1.0")
        for (path, expectation), r in zip(TRICKS, replies[1:]):
            with self.subTest(rcpt=path):
                self.assertRefused(r, expectation, path)
        self.assertReply(replies[-2], 250, "2.1.5")
        self.assertReply(replies[-1], 250, "2.0.0")

    def test_submission_ports_need_auth_before_any_relay(self):
        # plaintext submission, submission after STARTTLS, submissions
        c = self.conn(self.daemon.submission_port)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        sessions = [c]
        c = self.conn(self.daemon.submission_port)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        c.cmd("EHLO client.test", expect=250)
        sessions.append(c)
        c = self.daemon.connect_tls()
        self.conns.append(c)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        sessions.append(c)
        for i, c in enumerate(sessions):
            with self.subTest(session=i):
                self.assertReply(c.cmd("MAIL FROM:<postmaster@example.test>"), 530, "5.7.0")
                self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 503, "5.5.1")
                self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")

    def test_smtplib_relay_refused(self):
        with smtplib.SMTP(self.daemon.host, self.daemon.port, local_hostname="client.test",
                          timeout=harness.t(30)) as s:
            s.starttls(context=client_ssl_context())
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("postmaster@example.test",
                           ["user@remote.test", "user%remote.test@example.test"],
                           b"Subject: relay\r\n\r\nx\r\n")
            for code, _ in cm.exception.recipients.values():
                self.assertEqual(code, 554)
            # mixed: the local recipient is taken, the remote one refused
            refused = s.sendmail("a@b.test", ["bob@example.test", "user@remote.test"],
                                 b"Subject: mixed\r\n\r\nx\r\n")
            self.assertEqual(list(refused), ["user@remote.test"])
            self.assertEqual(refused["user@remote.test"][0], 554)

    def test_swaks_relay_refused(self):
        for extra in ([], ["--tls"]):
            with self.subTest(tls=bool(extra)):
                r = harness.swaks("--server", f"{self.daemon.host}:{self.daemon.port}",
                                  "--from", "postmaster@example.test", "--to",
                                  "user@remote.test", "--helo", "client.test", "--hide-all",
                                  *extra)
                self.assertEqual(r.returncode, 24, (r.stdout + r.stderr)[-2000:])  # RCPT refused


class FailedAuthGrantsNothing(harness.DaemonTestCase):
    """Only a successful AUTH opens relaying; a failed, cancelled or refused one does not."""
    daemon_kwargs = {"submission": True, "max_errors": 1000,
                     "auth": {"max_failures": 1000, "failure_delay": "0s"}}
    USER, PW = "relay-user@example.test", "relay-pw-9"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.daemon.add_user(cls.USER, cls.PW)
        except BaseException:
            cls.daemon.close(check=False)
            raise

    def tls(self):
        c = self.daemon.connect()
        self.conns.append(c)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.starttls()
        c.cmd("EHLO client.test", expect=250)
        return c

    def assertNoRelay(self, c):
        self.assertReply(c.cmd(f"MAIL FROM:<{self.USER}>"), 250, "2.1.0")
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 554, "5.7.1")
        c.cmd("RSET", expect=250)

    def test_wrong_password(self):
        c = self.tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(self.USER, "wrong")), 535, "5.7.8")
        self.assertNoRelay(c)

    def test_unknown_user(self):
        c = self.tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir("x@remote.test", "x")), 535, "5.7.8")
        self.assertNoRelay(c)

    def test_cancelled(self):
        c = self.tls()
        self.assertEqual(c.cmd("AUTH LOGIN").code, 334)
        self.assertEqual(c.cmd(b64(self.USER)).code, 334)
        self.assertReply(c.cmd("*"), 501, "5.7.0")
        self.assertNoRelay(c)

    def test_bad_base64(self):
        c = self.tls()
        self.assertReply(c.cmd("AUTH PLAIN !!!!"), 501, "5.5.2")
        self.assertNoRelay(c)

    def test_authzid_mismatch(self):
        c = self.tls()
        r = c.cmd("AUTH PLAIN " + plain_ir(self.USER, self.PW, authzid="boss@example.test"))
        self.assertReply(r, 535, "5.7.8")
        self.assertNoRelay(c)

    def test_auth_without_tls_refused(self):
        c = self.daemon.connect()
        self.conns.append(c)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(self.USER, self.PW)), 538, "5.7.11")
        self.assertNoRelay(c)

    def test_success_then_relay(self):
        c = self.tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(self.USER, self.PW)), 235, "2.7.0")
        c.cmd(f"MAIL FROM:<{self.USER}>", expect=250)
        self.assertReply(c.cmd("RCPT TO:<user@remote.test>"), 250, "2.1.5")
        c.cmd("RSET", expect=250)

    def test_auth_is_per_connection(self):
        # a second connection from the same address never inherits the first one's AUTH
        c = self.tls()
        self.assertReply(c.cmd("AUTH PLAIN " + plain_ir(self.USER, self.PW)), 235, "2.7.0")
        c2 = self.tls()
        self.assertNoRelay(c2)


if __name__ == "__main__":
    unittest.main()
