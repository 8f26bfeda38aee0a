"""Self-tests of mx_harness.py (no ringmaild needed): NSD answers what the zones say, and
FakeMx records and answers as scripted, checked with smtplib and raw sockets."""
from __future__ import annotations

import smtplib
import socket
import struct
import time
import unittest

from harness import t
from mx_harness import (DEFER, DROP, REJECT, STALL, Behaviour, FakeMx, MxGroup, Nsd, NsdError,
                        dns_lookup, dns_query, first_n, free_port_on, parse_dns, parse_dsn,
                        send_via, xtext_decode, zone)

MSG = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n"
       b"line one\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n")


class NsdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = Nsd({
            "example.net": zone("example.net", [
                "@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.2", "mx2 A 127.0.0.3",
                "mx2 A 127.0.0.4", "v6 AAAA fd00::25", "nullmx MX 0 .", "short 60 A 127.0.0.9",
                'txt TXT "hello world"', "alias CNAME mx1"]),
            "example.org": "$ORIGIN example.org.\n$TTL 120\n"
                           "@ SOA ns.example.org. h.example.org. 7 3600 600 86400 45\n"
                           "@ NS ns.example.net.\n@ A 127.0.0.7\n",
        })
        cls.ns.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.ns.__exit__(None, None, None)

    def test_server_string(self):
        self.assertEqual(self.ns.server, f"127.0.0.1:{self.ns.port}")
        self.assertGreater(self.ns.port, 0)

    def test_mx_answer(self):
        r = self.ns.query("example.net", "MX")
        self.assertEqual(r.rcode, "NOERROR")
        self.assertTrue(r.aa)
        self.assertEqual(sorted(r.of_type("MX")), [(10, "mx1.example.net"), (20, "mx2.example.net")])
        self.assertEqual(r.answers[0].ttl, 300)

    def test_a_records(self):
        self.assertEqual(sorted(self.ns.query("mx2.example.net", "A").of_type("A")),
                         ["127.0.0.3", "127.0.0.4"])
        short = self.ns.query("short.example.net", "A")
        self.assertEqual(short.of_type("A"), ["127.0.0.9"])
        self.assertEqual(short.answers[0].ttl, 60)
        self.assertEqual(self.ns.query("v6.example.net", "AAAA").of_type("AAAA"), ["fd00::25"])
        self.assertEqual(self.ns.query("example.org", "A").of_type("A"), ["127.0.0.7"])

    def test_null_mx(self):
        self.assertEqual(self.ns.query("nullmx.example.net", "MX").of_type("MX"), [(0, ".")])

    def test_cname_txt_tcp(self):
        r = self.ns.query("alias.example.net", "A", tcp=True)
        self.assertEqual(r.of_type("CNAME"), ["mx1.example.net"])
        self.assertEqual(r.of_type("A"), ["127.0.0.2"])
        self.assertEqual(self.ns.query("txt.example.net", "TXT").of_type("TXT"), [["hello world"]])

    def test_negative_answers(self):
        nx = self.ns.query("nosuch.example.net", "A")
        self.assertEqual(nx.rcode, "NXDOMAIN")
        self.assertEqual(nx.authority[0].type, "SOA")
        self.assertEqual(nx.authority[0].data[-1], 30)   # zone()'s negative TTL
        nodata = self.ns.query("mx1.example.net", "MX")
        self.assertEqual((nodata.rcode, nodata.answers), ("NOERROR", []))
        org = self.ns.query("example.org", "SOA").of_type("SOA")[0]
        self.assertEqual(org[2], 7)
        # A zone it does not serve.
        self.assertEqual(self.ns.query("example.com", "A").rcode, "REFUSED")

    def test_broken_zone_is_reported(self):
        with self.assertRaises(NsdError) as cm:
            with Nsd({"bad.test": ["@ MX ten mx1"]}):
                pass
        self.assertIn("bad.test", str(cm.exception))

    def test_stopped_server_is_gone(self):
        ns = Nsd({"gone.test": ["@ A 127.0.0.1"]})
        with ns:
            self.assertEqual(ns.query("gone.test", "A").of_type("A"), ["127.0.0.1"])
            port = ns.port
        self.assertIsNone(ns.proc)
        with self.assertRaises(OSError):
            dns_lookup(("127.0.0.1", port), "gone.test", "A", timeout=0.5)


class DnsParserTest(unittest.TestCase):
    def test_query_packet(self):
        q = dns_query("Mx1.Example.NET", "MX", qid=0x1234)
        self.assertEqual(q[:12], struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 0))
        self.assertEqual(q[12:], b"\x03Mx1\x07Example\x03NET\x00\x00\x0f\x00\x01")
        r = parse_dns(q)
        self.assertEqual(r.questions, [("mx1.example.net", "MX")])

    def test_pointer_loop_rejected(self):
        pkt = struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
        with self.assertRaises(ValueError):
            parse_dns(pkt)


class MxCase(unittest.TestCase):
    """Every test gets FakeMx servers that are stopped (bounded) afterwards, and checks
    that no connection thread hit an internal error."""

    def setUp(self):
        self.servers = []

    def tearDown(self):
        for mx in self.servers:
            mx.stop()
        for mx in self.servers:
            self.assertEqual(mx.errors, [])

    def mx(self, host="127.0.0.2", port=0, **kw) -> FakeMx:
        m = FakeMx(host, port, **kw).start()
        self.servers.append(m)
        return m

    def raw(self, mx, timeout=None) -> "Raw":
        return Raw(mx.host, mx.port, timeout or t(10))


class Raw:
    """A minimal raw client for the pipelining and concurrency tests."""

    def __init__(self, host, port, timeout):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def send(self, data: bytes):
        self.s.sendall(data)

    def reply(self):
        lines = []
        while True:
            line = self.f.readline(2000)
            if not line:
                raise ConnectionError(f"closed after {lines!r}")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[0][:3]), lines

    def close(self):
        self.f.close()
        self.s.close()


class FakeMxRecording(MxCase):
    def test_accepts_and_records_dsn_params(self):
        mx = self.mx()
        refused = send_via(mx.host, mx.port, "alice@example.org",
                           ["bob@example.net", "carol@example.net"], MSG,
                           mail_options=["RET=HDRS", "ENVID=QQ+2B314"],
                           rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Bob+2Bx@example.net"],
                           local_hostname="client.example.org")
        self.assertEqual(refused, {})
        [m] = mx.wait_messages(1, t(10))
        self.assertEqual(m.mail_from, "alice@example.org")
        self.assertEqual(m.mail_params, {"SIZE": str(len(MSG)), "RET": "HDRS",
                                         "ENVID": "QQ+2B314"})
        self.assertEqual(xtext_decode(m.mail_params["ENVID"]), "QQ+314")
        self.assertEqual([(r.address, r.params, r.reply[0]) for r in m.rcpts], [
            ("bob@example.net", {"NOTIFY": "SUCCESS,DELAY", "ORCPT": "rfc822;Bob+2Bx@example.net"}, 250),
            ("carol@example.net", {"NOTIFY": "SUCCESS,DELAY", "ORCPT": "rfc822;Bob+2Bx@example.net"}, 250)])
        # Dot-stuffing undone, CRLFs kept.
        self.assertEqual(m.data, MSG)
        self.assertEqual(m.data_reply[0], 250)
        [c] = mx.connections()
        self.assertEqual(c.ehlo, "client.example.org")
        self.assertFalse(c.helo)
        self.assertFalse(c.starttls)
        self.assertIsNone(c.auth_user)
        self.assertEqual(c.local, ("127.0.0.2", mx.port))
        self.assertTrue(mx.wait_idle(t(10)))
        self.assertEqual(mx.connections()[0].ended, "quit")
        self.assertEqual((mx.connection_count, mx.message_count), (1, 1))
        self.assertEqual(mx.messages_per_connection(), [1])

    def test_ehlo_extensions_and_removal(self):
        mx = self.mx()
        with smtplib.SMTP(mx.host, mx.port, timeout=t(10)) as s:
            code, text = s.ehlo("c.test")
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "dsn", "smtputf8"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features["size"], "10240000")
            self.assertFalse(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"))
        mx.set_behaviour(Behaviour().without("DSN", "smtputf8"))
        with smtplib.SMTP(mx.host, mx.port, timeout=t(10)) as s:
            s.ehlo("c.test")
            self.assertFalse(s.has_extn("dsn"))
            self.assertFalse(s.has_extn("smtputf8"))
            self.assertTrue(s.has_extn("8bitmime"))
            # A parameter of an extension not offered is refused.
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("a@example.org", ["b@example.net"], MSG, mail_options=["RET=FULL"])
            self.assertEqual(cm.exception.smtp_code, 555)

    def test_size_limit(self):
        mx = self.mx(extensions=("PIPELINING", "SIZE 2000", "ENHANCEDSTATUSCODES"))
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            send_via(mx.host, mx.port, "a@example.org", ["b@example.net"], b"x" * 3000 + b"\r\n")
        self.assertEqual(cm.exception.smtp_code, 552)
        # Without SIZE= the limit is found after the dot.
        r = self.raw(mx)
        try:
            self.assertEqual(r.reply()[0], 220)
            r.send(b"EHLO c.test\r\n")
            self.assertEqual(r.reply()[0], 250)
            r.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
            self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 354])
            r.send((b"y" * 998 + b"\r\n") * 3 + b".\r\n")
            code, lines = r.reply()
            self.assertEqual(code, 552)
            self.assertIn("5.3.4", lines[0])
        finally:
            r.close()
        self.assertEqual(mx.message_count, 0)

    def test_rset_noop_sequence_and_long_line(self):
        mx = self.mx()
        r = self.raw(mx)
        try:
            r.reply()
            r.send(b"MAIL FROM:<a@example.org>\r\n")
            self.assertEqual(r.reply()[0], 503)           # EHLO first
            r.send(b"HELO old.client\r\n")
            self.assertEqual(r.reply()[0], 250)
            r.send(b"MAIL FROM:<>\r\n")
            self.assertEqual(r.reply()[0], 250)
            r.send(b"MAIL FROM:<a@example.org>\r\n")
            self.assertEqual(r.reply()[0], 503)           # nested
            r.send(b"RSET\r\n")
            self.assertEqual(r.reply()[0], 250)
            r.send(b"NOOP\r\n")
            self.assertEqual(r.reply()[0], 250)
            r.send(b"DATA\r\n")
            self.assertEqual(r.reply()[0], 503)
            r.send(b"NOOP " + b"x" * 995 + b"\r\n")       # 1002 octets
            code, lines = r.reply()
            self.assertEqual((code, lines[0][:9]), (500, "500 5.5.2"))
            r.send(b"NOOP " + b"x" * 993 + b"\r\n")       # exactly 1000
            self.assertEqual(r.reply()[0], 250)
            r.send(b"QUIT\r\n")
            self.assertEqual(r.reply()[0], 221)
        finally:
            r.close()
        [c] = mx.connections()
        self.assertTrue(c.helo)
        self.assertEqual(c.ehlo, "old.client")
        self.assertEqual([tr.mail_from for tr in c.transactions], [""])  # the nested MAIL got 503
        self.assertEqual(c.commands[:3], ["MAIL FROM:<a@example.org>", "HELO old.client",
                                          "MAIL FROM:<>"])

    def test_pipelined_replies_in_order(self):
        mx = self.mx(rcpt_reply=lambda a: REJECT if a.startswith("nobody") else (250, "2.1.5 ok"))
        r = self.raw(mx)
        try:
            r.reply()
            r.send(b"EHLO c.test\r\n")
            code, lines = r.reply()
            self.assertIn("250-PIPELINING", lines)
            # One write: the replies must come one per command, in order.
            r.send(b"MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@example.net>\r\n"
                   b"RCPT TO:<nobody@example.net>\r\nRCPT TO:<c@example.net> NOTIFY=NEVER\r\n"
                   b"NOOP\r\nDATA\r\n")
            got = [r.reply() for _ in range(6)]
            self.assertEqual([g[0] for g in got], [250, 250, 550, 250, 250, 354])
            self.assertIn("5.1.1", got[2][1][0])
            r.send(b"Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n")
            self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 221])
        finally:
            r.close()
        [m] = mx.wait_messages(1, t(10))
        self.assertEqual(m.accepted_rcpts, ["b@example.net", "c@example.net"])
        self.assertEqual(m.rcpts[1], ("nobody@example.net", {}, REJECT))
        self.assertEqual(m.mail_params, {"BODY": "8BITMIME", "SMTPUTF8": None})
        self.assertEqual(m.data, b"Subject: p\r\n\r\nbody\r\n")
        self.assertGreaterEqual(mx.connections()[0].pipelined, 5)

    def test_two_servers_share_a_port(self):
        port = free_port_on(["127.0.0.2", "127.0.0.3"])
        a = self.mx("127.0.0.2", port)
        b = self.mx("127.0.0.3", port, rcpt_reply="reject")
        self.assertEqual((a.port, b.port), (port, port))
        send_via("127.0.0.2", port, "s@example.org", ["x@example.net"], MSG)
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            send_via("127.0.0.3", port, "s@example.org", ["y@example.net"], MSG)
        self.assertEqual([m.rcpts[0].address for m in a.messages()], ["x@example.net"])
        self.assertEqual(b.message_count, 0)
        self.assertEqual(b.transactions()[0].rcpts[0].address, "y@example.net")
        self.assertEqual(b.transactions()[0].rcpts[0].reply, REJECT)

    def test_group(self):
        with MxGroup({"127.0.0.2": None, "127.0.0.3": Behaviour(rcpt_reply="defer")}) as g:
            send_via("127.0.0.2", g.port, "s@example.org", ["x@example.net"], MSG)
            refused = {}
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                send_via("127.0.0.3", g.port, "s@example.org", ["y@example.net"], MSG)
            refused = cm.exception.recipients
            self.assertEqual(refused["y@example.net"][0], 451)
            self.assertEqual([h for h, _ in g.wait_messages(1, t(10))], ["127.0.0.2"])
            self.assertEqual(g["127.0.0.3"].connection_count, 1)
        for mx in g:
            self.assertEqual(mx.errors, [])


class FakeMxFailures(MxCase):
    def test_defer_and_reject(self):
        mx = self.mx(rcpt_reply=lambda a: DEFER if "later" in a else
                     REJECT if "gone" in a else (250, "2.1.5 ok"))
        refused = send_via(mx.host, mx.port, "s@example.org",
                           ["later@example.net", "gone@example.net", "ok@example.net"], MSG)
        self.assertEqual({k: v[0] for k, v in refused.items()},
                         {"later@example.net": 451, "gone@example.net": 550})
        self.assertEqual(mx.wait_messages(1, t(10))[0].accepted_rcpts, ["ok@example.net"])

        mx.set_behaviour(mail_reply="defer")
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            send_via(mx.host, mx.port, "s@example.org", ["ok@example.net"], MSG)
        self.assertEqual(cm.exception.smtp_code, 451)
        mx.set_behaviour(Behaviour(data_reply=lambda data: (554, "5.6.0 no " + str(len(data)))))
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send_via(mx.host, mx.port, "s@example.org", ["ok@example.net"], MSG)
        self.assertEqual(cm.exception.smtp_code, 554)
        self.assertIn(str(len(MSG)).encode(), cm.exception.smtp_error)
        trs = mx.transactions()
        self.assertEqual(trs[1].mail_reply, DEFER)
        self.assertEqual(trs[2].data, MSG)
        self.assertFalse(trs[2].accepted)
        self.assertEqual(mx.message_count, 1)

    def test_multiline_reply(self):
        mx = self.mx(rcpt_reply=(550, "5.1.1 first line\n5.1.1 second line"))
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG)
        code, text = cm.exception.recipients["b@example.net"]
        self.assertEqual((code, text), (550, b"5.1.1 first line\n5.1.1 second line"))

    def test_greeting_codes(self):
        for code in (554, 421):
            mx = self.mx(greeting=code)
            with self.assertRaises(smtplib.SMTPConnectError) as cm:
                smtplib.SMTP(mx.host, mx.port, timeout=t(10))
            self.assertEqual(cm.exception.smtp_code, code)
        r = self.raw(self.servers[0])     # 554: every command but QUIT gets 503
        try:
            self.assertEqual(r.reply()[0], 554)
            r.send(b"EHLO c.test\r\nQUIT\r\n")
            self.assertEqual([r.reply()[0], r.reply()[0]], [503, 221])
        finally:
            r.close()

    def test_drop_stages(self):
        cases = [("greeting", smtplib.SMTPServerDisconnected),
                 ("ehlo", smtplib.SMTPServerDisconnected),
                 ("mail", smtplib.SMTPServerDisconnected),
                 ("rcpt", smtplib.SMTPServerDisconnected),
                 ("data", smtplib.SMTPServerDisconnected),
                 ("dot", smtplib.SMTPServerDisconnected)]
        for stage, exc in cases:
            with self.subTest(stage=stage):
                mx = self.mx(drop=stage)
                with self.assertRaises(exc):
                    send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG)
                self.assertTrue(mx.wait_idle(t(10)))
                [c] = mx.connections()
                self.assertEqual(c.ended, f"dropped at {stage}")
                self.assertEqual(mx.message_count, 0)
                if stage == "dot":
                    self.assertEqual(c.transactions[0].data, MSG)
                    self.assertEqual(c.transactions[0].data_reply, DROP)
        # DROP returned by a reply function: only that recipient's command.
        mx = self.mx(rcpt_reply=lambda a: DROP if a.startswith("x") else (250, "2.1.5 ok"))
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            send_via(mx.host, mx.port, "s@example.org", ["b@example.net", "x@example.net"], MSG)
        self.assertTrue(mx.wait_idle(t(10)))
        self.assertEqual([r.reply for r in mx.transactions()[0].rcpts], [(250, "2.1.5 ok"), DROP])

    def test_stall(self):
        mx = self.mx(stall="data")
        # smtplib gives up after its timeout (and closes its socket itself).
        started = time.monotonic()
        with self.assertRaises((TimeoutError, socket.timeout, smtplib.SMTPServerDisconnected)):
            send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG, timeout=0.5)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        self.assertTrue(mx.wait_for(lambda: mx.connection_count == 1 and
                                    mx.connections()[0].ended == "stalled at data", t(5)))
        self.assertTrue(mx.wait_idle(t(10)))    # gone once the client closed
        # A raw client: the server holds the connection open while stalled.
        r = self.raw(mx, timeout=0.3)
        try:
            r.reply()
            r.send(b"EHLO c.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                   b"DATA\r\n")
            self.assertEqual([r.reply()[0] for _ in range(3)], [250, 250, 250])
            with self.assertRaises((TimeoutError, socket.timeout)):
                r.reply()
            self.assertEqual(mx.active, 1)
            self.assertEqual(mx.connections()[1].ended, "stalled at data")
        finally:
            r.close()
        self.assertTrue(mx.wait_idle(t(10)))
        # Stalled at the greeting: holds until the server stops, and stop() is bounded.
        mx2 = self.mx(greeting=STALL)
        r = self.raw(mx2, timeout=0.3)
        try:
            with self.assertRaises((TimeoutError, socket.timeout)):
                r.reply()
            self.assertTrue(mx2.wait_for(lambda: mx2.active == 1, t(5)))
            started = time.monotonic()
            mx2.stop()
            self.assertLess(time.monotonic() - started, t(5))
            self.assertEqual(mx2.active, 0)
        finally:
            r.close()

    def test_delay(self):
        mx = self.mx(delay={"rcpt": 0.3})
        started = time.monotonic()
        send_via(mx.host, mx.port, "s@example.org", ["b@example.net", "c@example.net"], MSG)
        self.assertGreaterEqual(time.monotonic() - started, 0.6)
        self.assertEqual(mx.message_count, 1)

    def test_defer_first_attempts_then_accept(self):
        mx = self.mx(behaviour=first_n(2, Behaviour(rcpt_reply="defer"), Behaviour()))
        for _ in range(2):
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG)
        send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG)
        self.assertEqual(mx.messages_per_connection(), [0, 0, 1])
        self.assertEqual([tr.rcpts[0].reply[0] for tr in mx.transactions()], [451, 451, 250])

    def test_wait_is_bounded(self):
        mx = self.mx()
        started = time.monotonic()
        self.assertFalse(mx.wait_for(lambda: mx.message_count > 0, 0.3))
        with self.assertRaises(AssertionError):
            mx.wait_messages(1, 0.2)
        self.assertLess(time.monotonic() - started, 3)


class FakeMxConcurrency(MxCase):
    def test_max_concurrent(self):
        mx = self.mx()
        clients = [self.raw(mx) for _ in range(3)]
        try:
            for c in clients:
                self.assertEqual(c.reply()[0], 220)
            self.assertEqual((mx.active, mx.max_concurrent), (3, 3))
        finally:
            for c in clients:
                c.close()
        self.assertTrue(mx.wait_idle(t(10)))
        c = self.raw(mx)
        c.reply()
        c.close()
        self.assertTrue(mx.wait_idle(t(10)))
        self.assertEqual((mx.max_concurrent, mx.connection_count), (3, 4))

    def test_connection_limit(self):
        mx = self.mx(connection_limit=2)
        clients = [self.raw(mx) for _ in range(2)]
        try:
            for c in clients:
                self.assertEqual(c.reply()[0], 220)
            third = self.raw(mx)
            clients.append(third)
            code, lines = third.reply()
            self.assertEqual(code, 421)
            self.assertIn("4.7.0", lines[0])
        finally:
            for c in clients:
                c.close()
        self.assertEqual(mx.refused_connections, 1)
        self.assertTrue(mx.wait_idle(t(10)))


class FakeMxAuthTls(MxCase):
    def test_auth_plain(self):
        mx = self.mx(auth=("relayuser", "s3cret"))
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG)
        self.assertEqual(cm.exception.smtp_code, 530)
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG,
                     login=("relayuser", "wrong"))
        send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG,
                 login=("relayuser", "s3cret"))
        conns = mx.connections()
        self.assertEqual([c.auth_user for c in conns], [None, None, "relayuser"])
        self.assertEqual(conns[2].auth_attempts, 1)
        self.assertEqual(mx.message_count, 1)

    def test_starttls(self):
        mx = self.mx(starttls=True)
        send_via(mx.host, mx.port, "s@example.org", ["b@example.net"], MSG, starttls=True)
        [c] = mx.connections()
        self.assertTrue(c.starttls)
        self.assertIn("TLS", c.tls_version)
        self.assertEqual(mx.messages()[0].data, MSG)
        self.assertEqual([x.split()[0].upper() for x in c.commands],
                         ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"])


DSN_SAMPLE = (
    b"From: MAILER-DAEMON@mx.example.test\r\nTo: alice@example.org\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="BND"\r\n\r\n'
    b"--BND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nIt failed.\r\n\r\n"
    b"--BND\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.test\r\nOriginal-Envelope-Id: QQ+314\r\n"
    b"Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
    b"Original-Recipient: rfc822; Bob@example.net\r\nFinal-Recipient: rfc822; bob@example.net\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx1.example.net\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 no such\r\n user\r\n"
    b"Last-Attempt-Date: Tue, 14 Nov 2023 23:13:15 +0000\r\n\r\n"
    b"Final-Recipient: rfc822; carol@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
    b"Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n\r\n"
    b"--BND\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: lunch\r\nMessage-ID: <m1@example.org>\r\n\r\nSee you.\r\n\r\n--BND--\r\n")


class DsnParsing(unittest.TestCase):
    def test_delivery_status(self):
        d = parse_dsn(DSN_SAMPLE)
        self.assertEqual(d.content_types,
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        self.assertEqual(d.report_type, "delivery-status")
        self.assertIn("It failed.", d.text)
        self.assertEqual(d.per_message["Reporting-MTA"], "dns; mx.example.test")
        self.assertEqual(d.per_message["original-envelope-id"], "QQ+314")
        self.assertEqual(len(d.recipients), 2)
        bob = d.recipient("BOB@example.net")
        self.assertEqual(dict(bob), {
            "Original-Recipient": "rfc822; Bob@example.net",
            "Final-Recipient": "rfc822; bob@example.net", "Action": "failed",
            "Status": "5.1.1", "Remote-MTA": "dns; mx1.example.net",
            "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
            "Last-Attempt-Date": "Tue, 14 Nov 2023 23:13:15 +0000"})
        carol = d.recipient("carol@example.net")
        self.assertEqual((carol["Action"], carol.get("Remote-MTA")), ("delayed", None))
        self.assertEqual(d.returned["Message-ID"], "<m1@example.org>")
        self.assertIn("Subject: lunch", d.returned_headers)
        with self.assertRaises(KeyError):
            d.recipient("nobody@example.net")

    def test_global_types(self):
        raw = (DSN_SAMPLE.replace(b"report-type=delivery-status", b"report-type=global-delivery-status")
               .replace(b"message/delivery-status", b"message/global-delivery-status")
               .replace(b"message/rfc822", b"text/rfc822-headers")
               .replace(b"rfc822; carol@", "utf-8; j\u00f6rg@".encode()))
        d = parse_dsn(raw)
        self.assertEqual(d.content_types, ["text/plain", "message/global-delivery-status",
                                           "text/rfc822-headers"])
        self.assertEqual(d.per_message["Arrival-Date"], "Tue, 14 Nov 2023 22:13:20 +0000")
        self.assertEqual(d.recipient("j\u00f6rg@example.net")["Status"], "4.4.1")
        self.assertIsNone(d.returned)
        self.assertIn("Message-ID: <m1@example.org>", d.returned_headers)

    def test_not_a_report(self):
        with self.assertRaises(ValueError):
            parse_dsn(MSG)


if __name__ == "__main__":
    unittest.main()
