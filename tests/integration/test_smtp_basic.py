"""SMTP commands, replies, sequencing, parameters and relay policy (RFC 5321, ESMTP).

One daemon per class (started in setUpClass); every test opens its own connection.
"""
import json
import os
import smtplib
import unittest

import harness
from harness import Daemon, HOSTNAME

MAX_SIZE = 52428800  # the default limits.max_message_size


class SmtpBasic(harness.DaemonTestCase):
    daemon_kwargs = {"max_recipients": 100}

    def mail(self, c, sender="a@b.test", params=""):
        return c.cmd(f"MAIL FROM:<{sender}>{params}", expect=250)

    def assertStillInSync(self, c):
        r = c.cmd("NOOP")
        self.assertReply(r, 250, "2.0.0")

    def test_threads_are_named_for_operators(self):
        # top -H / ps -L tell the parts apart (conf/thread_name.h).
        task_dir = f"/proc/{self.daemon.proc.pid}/task"
        names = set()
        for tid in os.listdir(task_dir):
            try:
                with open(os.path.join(task_dir, tid, "comm")) as f:
                    names.add(f.read().strip())
            except OSError:
                pass  # a thread that just ended
        for want in ("rm-smtp0", "rm-smtp1", "rm-commit", "rm-wal0", "rm-hash0", "rm-store0"):
            self.assertIn(want, names)

    # --- greeting and simple commands -----------------------------------------------
    def test_greeting(self):
        c = self.conn()
        r = c.read_reply()
        self.assertEqual(r.code, 220)
        self.assertEqual(len(r.lines), 1)
        self.assertTrue(r.lines[0].startswith(HOSTNAME + " "), r)

    def test_ehlo_advertises_exact_extensions(self):
        c = self.conn()
        c.expect(220)
        r = c.cmd("EHLO client.test", expect=250)
        self.assertTrue(r.lines[0].startswith(HOSTNAME), r)
        # STARTTLS last (the connection is not TLS yet); no AUTH before TLS by default
        self.assertEqual(r.lines[1:], [
            "PIPELINING", f"SIZE {MAX_SIZE}", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
            "DSN", "CHUNKING", "STARTTLS"])

    def test_helo(self):
        c = self.conn()
        c.expect(220)
        r = c.cmd("HELO client.test", expect=250)
        self.assertEqual(len(r.lines), 1)
        self.assertIn(HOSTNAME, r.lines[0])
        # HELO allows a plain transaction
        self.assertEqual(c.transaction().code, 250)

    def test_helo_then_esmtp_params_refused(self):
        c = self.conn()
        c.expect(220)
        c.cmd("HELO client.test", expect=250)
        r = c.cmd("MAIL FROM:<a@b.test> SIZE=100")
        self.assertReply(r, 555, "5.5.4")

    def test_ehlo_without_argument_is_501(self):
        c = self.conn()
        c.expect(220)
        self.assertReply(c.cmd("EHLO"), 501, "5.5.4")
        self.assertReply(c.cmd("HELO"), 501, "5.5.4")
        c.cmd("EHLO client.test", expect=250)

    def test_noop_rset_vrfy_help_quit(self):
        c = self.session()
        self.assertReply(c.cmd("NOOP"), 250, "2.0.0")
        self.mail(c)
        self.assertReply(c.cmd("RSET"), 250, "2.0.0")
        # RSET cleared the transaction: MAIL is allowed again, RCPT before it is not
        self.mail(c)
        self.assertReply(c.cmd("VRFY bob"), 252)
        self.assertReply(c.cmd("VRFY <bob@example.test>"), 252)
        self.assertReply(c.cmd("HELP"), 214)
        r = c.cmd("QUIT")
        self.assertReply(r, 221, "2.0.0")
        self.assertTrue(c.wait_closed(), "connection not closed after QUIT")

    def test_rset_clears_transaction(self):
        c = self.session()
        self.mail(c)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("RSET", expect=250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")

    def test_unknown_command(self):
        c = self.session()
        self.assertReply(c.cmd("FROBNICATE now"), 500, "5.5.2")
        self.assertReply(c.cmd("XYZZY"), 500, "5.5.2")
        self.assertStillInSync(c)

    def test_expn_not_implemented(self):
        c = self.session()
        self.assertReply(c.cmd("EXPN staff"), 502)
        self.assertStillInSync(c)

    def test_commands_are_case_insensitive(self):
        c = self.conn()
        c.expect(220)
        c.cmd("ehlo client.test", expect=250)
        c.cmd("mail from:<a@b.test>", expect=250)
        c.cmd("rcpt to:<bob@example.test>", expect=250)
        c.cmd("noop", expect=250)
        c.cmd("rset", expect=250)

    # --- accepting mail ---------------------------------------------------------------
    def test_smtplib_sendmail_local_domain(self):
        with smtplib.SMTP(self.daemon.host, self.daemon.port, local_hostname="client.test",
                          timeout=harness.t(30)) as s:
            s.ehlo()
            s.mail("a@b.test")
            code, _ = s.rcpt("bob@example.test")
            self.assertEqual(code, 250)
            code, text = s.data(b"Subject: hi\r\nMessage-ID: <basic-1@b.test>\r\n\r\nhello\r\n")
            self.assertEqual(code, 250, text)
            self.assertRegex(text.decode(), r"queued as [0-9A-Z]{13}$")
        # and the plain sendmail() path
        with smtplib.SMTP(self.daemon.host, self.daemon.port, timeout=harness.t(30)) as s:
            refused = s.sendmail("a@b.test", ["bob@example.test", "carol@example.test"],
                                 b"Subject: hi\r\n\r\nhello again\r\n")
            self.assertEqual(refused, {})

    def test_delivery_log_has_received_events(self):
        # DESIGN "Delivery log": JSON Lines under <data_dir>/log, one record per recipient.
        with smtplib.SMTP(self.daemon.host, self.daemon.port, timeout=harness.t(30)) as s:
            s.ehlo("client.test")
            s.mail("log-sender@b.test")
            s.rcpt("dave@example.test")
            s.rcpt("erin@example.test")
            code, text = s.data(b"Subject: log\r\nMessage-ID: <log-1@b.test>\r\n\r\nx\r\n")
            self.assertEqual(code, 250, text)
        qid = text.decode().rsplit(" ", 1)[-1]
        path = os.path.join(self.daemon.data_dir, "log", "delivery.jsonl")
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if qid in line]
        self.assertEqual(sorted(r["recipient"] for r in records),
                         ["dave@example.test", "erin@example.test"])
        for r in records:
            self.assertEqual(r["event"], "received")
            self.assertEqual(r["queue_id"], qid)
            self.assertEqual(r["sender"], "log-sender@b.test")
            self.assertEqual(r["message_id"], "<log-1@b.test>")
            self.assertEqual(r["client"], "127.0.0.1")
            self.assertRegex(r["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

    def test_queue_ids_unique(self):
        c = self.session()
        ids = set()
        for i in range(5):
            r = c.transaction(body=f"Subject: {i}\r\n\r\nx\r\n".encode())
            self.assertEqual(r.code, 250, r)
            self.assertRegex(r.text, r"^2\.0\.0 Ok: queued as [0-9A-Z]{13}$")
            ids.add(r.queue_id)
        self.assertEqual(len(ids), 5)

    def test_null_sender_accepted(self):
        c = self.session()
        c.cmd("MAIL FROM:<>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)

    def test_null_recipient_refused(self):
        c = self.session()
        self.mail(c)
        r = c.cmd("RCPT TO:<>")
        self.assertEqual(r.code // 100, 5, r)
        self.assertStillInSync(c)

    def test_local_domain_is_case_insensitive(self):
        c = self.session()
        self.mail(c)
        self.assertReply(c.cmd("RCPT TO:<bob@EXAMPLE.TEST>"), 250, "2.1.5")
        self.assertReply(c.cmd("RCPT TO:<Bob@Example.Test>"), 250, "2.1.5")

    def test_relay_to_remote_domain_denied(self):
        c = self.session()
        self.mail(c)
        self.assertReply(c.cmd("RCPT TO:<x@remote.test>"), 554, "5.7.1")
        # a subdomain of a local domain is not local either
        self.assertReply(c.cmd("RCPT TO:<x@sub.example.test>"), 554, "5.7.1")
        self.assertReply(c.cmd("RCPT TO:<x@example.test.remote.test>"), 554, "5.7.1")
        # after the refusals the transaction still works
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)

    def test_relay_tricks_refused(self):
        tricks = [
            "user%remote.test@example.test",
            '"remote!user"@example.test',
            "remote!user@example.test",
            '"user@remote.test"@example.test',
            '"user%remote.test"@example.test',
            "@example.test:user@remote.test",      # source route
            "@remote.test:user@example.test",      # source route through a remote host
            "@example.test,@remote.test:user@example.test",
            "user@[127.0.0.1]",
            "user@[IPv6:::1]",
            "user@remote.test@example.test",
        ]
        c = self.session()
        self.mail(c)
        for rcpt in tricks:
            with self.subTest(rcpt=rcpt):
                r = c.cmd(f"RCPT TO:<{rcpt}>")
                if rcpt == "user@remote.test@example.test":
                    # not even an address: a syntax error is just as good as a refusal
                    self.assertIn(r.code, (501, 554), r)
                else:
                    self.assertReply(r, 554, "5.7.1")
        # none of them was taken: DATA has no valid recipient
        self.assertEqual(c.cmd("DATA").code // 100, 5)
        self.assertStillInSync(c)

    # --- sequence errors ------------------------------------------------------------
    def test_rcpt_before_mail(self):
        c = self.session()
        self.assertReply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")

    def test_mail_before_ehlo(self):
        c = self.conn()
        c.expect(220)
        self.assertReply(c.cmd("MAIL FROM:<a@b.test>"), 503, "5.5.1")

    def test_data_without_rcpt(self):
        c = self.session()
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.mail(c)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.assertStillInSync(c)

    def test_nested_mail(self):
        c = self.session()
        self.mail(c)
        self.assertReply(c.cmd("MAIL FROM:<other@b.test>"), 503, "5.5.1")
        # the first transaction is intact
        c.cmd("RCPT TO:<bob@example.test>", expect=250)

    def test_ehlo_resets_transaction(self):
        c = self.session()
        self.mail(c)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("EHLO again.test", expect=250)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        self.mail(c)

    # --- syntax errors --------------------------------------------------------------
    def test_mail_syntax_errors(self):
        c = self.session()
        for line in ["MAIL FROM:a@b.test", "MAIL FROM:<a@@b.test>", "MAIL FROM:<a b@b.test>",
                     "MAIL FROM:<a@b..test>", "MAIL FROM:<a@b.test", "MAIL TO:<a@b.test>",
                     "MAIL", "MAIL FROM:<a@b.test>SIZE=10", "MAIL FROM:<.a@b.test>",
                     "MAIL FROM:<a@-b.test>", "MAIL FROM:<a@b.test> SIZE=abc",
                     "MAIL FROM:<a@b.test> SIZE=1 SIZE=2", "MAIL FROM:<a@b.test> BODY=9BIT"]:
            with self.subTest(line=line):
                self.assertEqual(c.cmd(line).code, 501)
        self.assertStillInSync(c)

    def test_rcpt_syntax_errors(self):
        c = self.session()
        self.mail(c)
        for line in ["RCPT TO:bob@example.test", "RCPT TO:<bob@@example.test>",
                     "RCPT TO:<bob>", "RCPT FROM:<bob@example.test>", "RCPT",
                     "RCPT TO:<bob@example.test> NOTIFY=SOMETIMES",
                     "RCPT TO:<bob@example.test> NOTIFY=NEVER,SUCCESS",
                     "RCPT TO:<bob@example.test> ORCPT=bob@example.test"]:
            with self.subTest(line=line):
                self.assertEqual(c.cmd(line).code, 501)
        self.assertStillInSync(c)

    def test_unknown_mail_parameter(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<a@b.test> FOO=BAR"), 555, "5.5.4")
        self.assertReply(c.cmd("MAIL FROM:<a@b.test> XFORWARD"), 555, "5.5.4")
        self.mail(c)

    def test_unknown_rcpt_parameter(self):
        c = self.session()
        self.mail(c)
        self.assertReply(c.cmd("RCPT TO:<bob@example.test> FOO=BAR"), 555, "5.5.4")
        c.cmd("RCPT TO:<bob@example.test>", expect=250)

    def test_body_binarymime_not_supported(self):
        c = self.session()
        self.assertReply(c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME"), 504)
        self.mail(c, params=" BODY=8BITMIME")

    def test_body_params(self):
        c = self.session()
        self.mail(c, params=" BODY=7BIT")
        c.cmd("RSET", expect=250)
        self.mail(c, params=" BODY=8BITMIME SIZE=1000")

    def test_size_over_limit(self):
        c = self.session()
        self.assertReply(c.cmd(f"MAIL FROM:<a@b.test> SIZE={MAX_SIZE + 1}"), 552, "5.3.4")
        self.assertReply(c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999999"), 552, "5.3.4")
        self.mail(c, params=f" SIZE={MAX_SIZE}")

    def test_too_many_recipients(self):
        c = self.session()
        self.mail(c)
        # pipelined: 101 RCPTs in one write
        c.send("".join(f"RCPT TO:<user{i}@example.test>\r\n" for i in range(101)))
        replies = c.read_replies(101)
        for i, r in enumerate(replies[:100]):
            self.assertEqual(r.code, 250, f"recipient {i}: {r!r}")
        self.assertReply(replies[100], 452, "4.5.3")
        c.cmd("DATA", expect=354)
        c.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.read_reply().code, 250)

    def test_dsn_parameters_accepted(self):
        c = self.session()
        self.mail(c, params=" RET=HDRS ENVID=abc+2B")
        r = c.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test")
        self.assertReply(r, 250)
        r = c.cmd("RCPT TO:<carol@example.test> NOTIFY=NEVER")
        self.assertReply(r, 250)
        r = c.cmd("RCPT TO:<dave@example.test> NOTIFY=DELAY ORCPT=rfc822;dave+2Bx@example.test")
        self.assertReply(r, 250)
        c.cmd("RSET", expect=250)
        self.mail(c, params=" RET=FULL")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.test> NOTIFY=success,delay").code, 250)

    def test_dsn_parameters_stored(self):
        c = self.session()
        self.mail(c, params=" RET=HDRS ENVID=abc+2B")
        c.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test",
              expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: dsn\r\n\r\nx\r\n.\r\n")
        r = c.read_reply()
        self.assertEqual(r.code, 250, r)
        harness.require_ringctl(self, self.daemon)
        envelope, _ = harness.queue_show(self.daemon, r.queue_id)
        env = envelope.decode(errors="replace")
        self.assertIn("abc+2B", env)
        self.assertIn("rfc822;bob@example.test", env)
        self.assertIn("hdrs", env.lower())
        self.assertIn("success", env.lower())
        self.assertIn("failure", env.lower())

    def test_dsn_bad_values(self):
        c = self.session()
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test> RET=SOME").code, 501)
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test> ENVID=a+zz").code, 501)
        self.assertEqual(c.cmd("MAIL FROM:<a@b.test> ENVID=" + "x" * 101).code, 501)
        self.mail(c, params=" ENVID=" + "x" * 100)

    def test_smtputf8(self):
        c = self.session()
        # with the SMTPUTF8 parameter, UTF-8 addresses are accepted
        r = c.cmd("MAIL FROM:<s\u00e9nder@b.test> SMTPUTF8")
        self.assertReply(r, 250)
        self.assertReply(c.cmd("RCPT TO:<b\u00f8b@example.test>"), 250)
        c.cmd("RSET", expect=250)
        # without it they are refused with 553 5.6.7 (RFC 6531 3.5)
        self.mail(c)
        self.assertReply(c.cmd("RCPT TO:<b\u00f8b@example.test>"), 553, "5.6.7")
        c.cmd("RSET", expect=250)
        self.assertReply(c.cmd("MAIL FROM:<s\u00e9nder@b.test>"), 553, "5.6.7")
        self.assertStillInSync(c)

    def test_http_request_closes(self):
        c = self.conn()
        c.expect(220)
        c.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r = c.read_reply()
        self.assertEqual(r.code, 221, r)
        self.assertTrue(c.wait_closed(), "connection not closed after an HTTP request")

    def test_http_post_closes(self):
        c = self.conn()
        c.expect(220)
        c.send(b"POST /form HTTP/1.1\r\nContent-Length: 4\r\n\r\nMAIL")
        self.assertEqual(c.read_reply().code, 221)
        self.assertTrue(c.wait_closed())
        self.assertEqual(c.buf, b"", "nothing may follow the 221")

    def test_command_line_too_long(self):
        c = self.session()
        c.send(b"NOOP " + b"x" * 1100 + b"\r\n")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 500, "5.5.2")
        self.assertStillInSync(c)
        # a MAIL command hidden in the tail of the long line is not executed
        c.send(b"X" * 1200 + b"MAIL FROM:<a@b.test>\r\n")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 500, "5.5.2")
        self.mail(c)  # would be 503 nested MAIL if the tail had been executed

    def test_command_line_too_long_pipelined(self):
        # the over-long line ends at its own LF: the command after it is answered normally
        c = self.session()
        c.send(b"NOOP " + b"x" * 1100 + b"\r\nNOOP\r\n")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 500, "5.5.2")
        r = c.read_reply(timeout=harness.t(10))
        self.assertEqual((r.code, r.text), (250, "2.0.0 Ok"))
        c.send(b"X" * 1001 + b"\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 500, "5.5.2")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 250, "2.1.0")
        self.assertReply(c.read_reply(timeout=harness.t(10)), 250, "2.1.5")

    def test_command_line_at_limit(self):
        c = self.session()
        # 1000 octets including CRLF is allowed (RFC 5321 4.5.3.1.4)
        line = b"NOOP " + b"x" * (1000 - 2 - 5)
        self.assertEqual(len(line) + 2, 1000)
        c.send(line + b"\r\n")
        self.assertReply(c.read_reply(), 250)

    def test_nul_and_control_bytes_do_not_crash(self):
        c = self.session()
        c.send(b"NO\x00OP\r\n")
        self.assertEqual(c.read_reply().code // 100, 5)
        c.send(b"MAIL FROM:<a\x00@b.test>\r\n")
        self.assertEqual(c.read_reply().code // 100, 5)
        c.send(b"EHLO bad\x01host\r\n")
        self.assertEqual(c.read_reply().code, 501)
        self.assertStillInSync(c)


class SmtpTrusted(unittest.TestCase):
    """relay.trusted_networks lets loopback clients relay anywhere."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(trusted_networks=["127.0.0.0/8"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def test_relay_allowed_from_trusted_network(self):
        with self.daemon.session() as c:
            c.cmd("MAIL FROM:<a@b.test>", expect=250)
            r = c.cmd("RCPT TO:<x@remote.test>")
            self.assertEqual(r.code, 250, r)
            c.cmd("RCPT TO:<bob@example.test>", expect=250)
            c.cmd("DATA", expect=354)
            c.send(b"Subject: relay\r\n\r\nx\r\n.\r\n")
            self.assertEqual(c.read_reply().code, 250)

    def test_relay_via_smtplib(self):
        with smtplib.SMTP(self.daemon.host, self.daemon.port, timeout=harness.t(30)) as s:
            refused = s.sendmail("a@b.test", ["x@remote.test"], b"Subject: r\r\n\r\nx\r\n")
            self.assertEqual(refused, {})

    def test_trusted_from_other_loopback_address(self):
        with self.daemon.session(source="127.0.0.9") as c:
            c.cmd("MAIL FROM:<a@b.test>", expect=250)
            self.assertEqual(c.cmd("RCPT TO:<x@remote.test>").code, 250)


class SmtpTrustedSingleHost(unittest.TestCase):
    """A trusted /32 covers only that address."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(trusted_networks=["127.0.0.2"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def test_only_listed_address_may_relay(self):
        with self.daemon.session(source="127.0.0.2") as c:
            c.cmd("MAIL FROM:<a@b.test>", expect=250)
            self.assertEqual(c.cmd("RCPT TO:<x@remote.test>").code, 250)
        with self.daemon.session(source="127.0.0.1") as c:
            c.cmd("MAIL FROM:<a@b.test>", expect=250)
            r = c.cmd("RCPT TO:<x@remote.test>")
            self.assertEqual(r.code, 554, r)


if __name__ == "__main__":
    unittest.main()
