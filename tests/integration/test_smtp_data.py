"""Message content: DATA (dot-stuffing, bare CR/LF, smuggling, line and size limits),
PIPELINING, BDAT (CHUNKING), and real clients (swaks).

Assertions about what was stored use `ringctl queue show` and are skipped while ringctl
is not available.
"""
import os
import shutil
import subprocess
import unittest

import harness
from harness import Daemon, HOSTNAME, require_ringctl, queue_show, split_received

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


class DataBase(harness.DaemonTestCase):
    def begin(self, c, rcpts=("bob@example.test",)):
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        for r in rcpts:
            c.cmd(f"RCPT TO:<{r}>", expect=250)

    def begin_data(self, c):
        self.begin(c)
        c.cmd("DATA", expect=354)

    def assertQueued(self, reply):
        self.assertEqual(reply.code, 250, f"reply: {reply!r}")
        self.assertIsNotNone(reply.queue_id, f"no 'queued as' in {reply!r}")
        return reply.queue_id

    def assertInSyncAndEnd(self, c):
        """NOOP gets the plain NOOP reply, QUIT gets 221, and nothing else arrives: no
        reply to a smuggled or skipped command is hiding in between."""
        r = c.cmd("NOOP")
        self.assertEqual((r.code, r.text), (250, "2.0.0 Ok"), f"out of step: got {r!r} for NOOP")
        r = c.cmd("QUIT")
        self.assertEqual(r.code, 221, f"out of step: got {r!r} for QUIT")
        self.assertTrue(c.wait_closed(), "not closed after QUIT")
        self.assertEqual(c.buf, b"", "unexpected bytes after 221")

    def stored_body(self, qid):
        """The stored message without the Received: header we prepend."""
        require_ringctl(self, self.daemon)
        _, msg = queue_show(self.daemon, qid)
        received, rest = split_received(msg)
        return received, rest


class Data(DataBase):
    # --- dot-stuffing ---------------------------------------------------------------
    def test_dot_stuffing_undone_exactly(self):
        c = self.session()
        self.begin_data(c)
        wire = (b"Subject: dots\r\n\r\n"
                b"..x\r\n"          # stuffed ".x"
                b"..\r\n"           # a line holding a single "."
                b"...\r\n"          # ".."
                b"a.b\r\n"          # dot not at line start: untouched
                b".. leading\r\n"
                b"last\r\n.\r\n")
        c.send(wire)
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"Subject: dots\r\n\r\n.x\r\n.\r\n..\r\na.b\r\n. leading\r\nlast\r\n")

    def test_unstuffed_dot_lines(self):
        # RFC 5321 4.5.2: a receiver deletes the first "." of any line that starts with one
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: x\r\n\r\n.x\r\n.\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"Subject: x\r\n\r\nx\r\n")

    def test_empty_message(self):
        c = self.session()
        self.begin_data(c)
        c.send(b".\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"")

    def test_received_header(self):
        c = self.session("sender.client.test")
        self.begin_data(c)
        c.send(b"Subject: trace\r\nMessage-ID: <trace@b.test>\r\n\r\nbody\r\n.\r\n")
        qid = self.assertQueued(c.read_reply())
        received, body = self.stored_body(qid)
        text = received.decode()
        self.assertIn(f"by {HOSTNAME}", text)
        self.assertIn(qid, text)
        self.assertIn("sender.client.test", text)
        self.assertIn("127.0.0.1", text)
        self.assertTrue(received.endswith(b"\r\n"))
        self.assertEqual(body, b"Subject: trace\r\nMessage-ID: <trace@b.test>\r\n\r\nbody\r\n")

    def test_8bit_content_kept(self):
        c = self.session()
        c.cmd("MAIL FROM:<a@b.test> BODY=8BITMIME", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        content = "Subject: 8bit\r\n\r\nGr\u00fc\u00dfe, \u65e5\u672c\r\n".encode()
        c.send(content + b".\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, content)

    # --- bare CR / LF and smuggling -----------------------------------------------------
    def test_smuggling_bare_lf_dot_lf(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"hello\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        self.assertInSyncAndEnd(c)

    def test_smuggling_variants(self):
        # None of these ends DATA: only CRLF "." CRLF does. Each payload carries a whole
        # smuggled transaction; if DATA ended early, its replies would show up.
        smuggled = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                    b"Subject: smuggled\r\n\r\nsmuggled\r\n")
        for sep in [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\n",
                    b"\r.\r", b"\n.\r"]:
            with self.subTest(separator=sep):
                c = self.session()
                self.begin_data(c)
                c.send(b"Subject: innocent\r\n\r\nhello" + sep + smuggled + b"\r\n.\r\n")
                r = c.read_reply()
                self.assertReply(r, 554, "5.6.0")
                self.assertInSyncAndEnd(c)

    def test_bare_cr_rejected(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: cr\r\n\r\nhello\rworld\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        # the session goes on and the next message is fine
        self.begin_data(c)
        c.send(b"Subject: ok\r\n\r\nfine\r\n.\r\n")
        self.assertQueued(c.read_reply())
        self.assertInSyncAndEnd(c)

    def test_bare_lf_rejected(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: lf\r\n\r\nhello\nworld\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        self.assertInSyncAndEnd(c)

    def test_bare_lf_in_headers_rejected(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: lf\nX-Other: y\r\n\r\nbody\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        self.assertInSyncAndEnd(c)

    # --- line length ----------------------------------------------------------------------
    def test_long_line_in_data(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: long\r\n\r\n" + b"x" * 1500 + b"\r\nmore\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        # session continues
        self.assertEqual(c.cmd("NOOP").code, 250)
        self.begin_data(c)
        c.send(b"Subject: ok\r\n\r\nshort\r\n.\r\n")
        self.assertQueued(c.read_reply())
        self.assertInSyncAndEnd(c)

    def test_line_at_limit_in_data(self):
        c = self.session()
        self.begin_data(c)
        line = b"y" * 998  # + CRLF = 1000 octets: the RFC 5321 maximum, allowed
        c.send(b"Subject: limit\r\n\r\n" + line + b"\r\n.\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"Subject: limit\r\n\r\n" + line + b"\r\n")

    def test_line_one_over_limit_in_data(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: limit\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
        self.assertReply(c.read_reply(), 554, "5.6.0")
        self.assertInSyncAndEnd(c)

    # --- pipelining -----------------------------------------------------------------------
    def test_pipelining_replies_in_order(self):
        c = self.session()
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n"
               b"RCPT TO:<x@remote.test>\r\nDATA\r\n")
        r = c.read_replies(4)
        self.assertEqual([x.code for x in r], [250, 250, 554, 354], r)
        self.assertReply(r[0], 250, "2.1.0")
        self.assertReply(r[1], 250, "2.1.5")
        self.assertReply(r[2], 554, "5.7.1")
        c.send(b"Subject: pipelined\r\n\r\nhello\r\n.\r\n")
        self.assertQueued(c.read_reply())
        self.assertInSyncAndEnd(c)

    def test_pipelining_whole_session_in_one_write(self):
        c = self.daemon.connect()
        self.conns.append(c)
        c.expect(220)
        c.send(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n"
               b"RCPT TO:<carol@example.test>\r\nDATA\r\n")
        r = c.read_replies(5)
        self.assertEqual([x.code for x in r], [250, 250, 250, 250, 354], r)
        # after the 354: body, end, then the next transaction and QUIT, all in one write
        c.send(b"Subject: 1\r\n\r\none\r\n.\r\nMAIL FROM:<a@b.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        r = c.read_replies(4)
        self.assertEqual([x.code for x in r], [250, 250, 250, 354], r)
        self.assertIsNotNone(r[0].queue_id)
        c.send(b"Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
        r = c.read_replies(2)
        self.assertEqual([x.code for x in r], [250, 221], r)
        self.assertIsNotNone(r[0].queue_id)
        self.assertTrue(c.wait_closed())

    def test_pipelining_all_recipients_fail(self):
        c = self.session()
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\n")
        r = c.read_replies(3)
        self.assertEqual([x.code for x in r], [250, 554, 554], r)  # RFC 2920 3.1
        self.assertInSyncAndEnd(c)

    # --- BDAT -------------------------------------------------------------------------
    def test_bdat_two_chunks(self):
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 5\r\nhello")
        self.assertReply(c.read_reply(), 250)
        c.send(b"BDAT 0 LAST\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"hello")

    def test_bdat_one_chunk_last(self):
        c = self.session()
        self.begin(c)
        content = b"Subject: bdat\r\n\r\n.\r\n..x\r\nbinary-ish\x00\xff\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(content) + content)
        qid = self.assertQueued(c.read_reply())
        # BDAT content is taken as is: no dot-unstuffing, no end marker
        _, body = self.stored_body(qid)
        self.assertEqual(body, content)

    def test_bdat_pipelined_with_mail_rcpt(self):
        c = self.session()
        content = b"Subject: piped\r\n\r\nchunked\r\n"
        c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<bob@example.test>\r\n"
               b"BDAT 9\r\nSubject: " + b"BDAT %d LAST\r\n" % (len(content) - 9) + content[9:]
               + b"NOOP\r\n")
        r = c.read_replies(5)
        self.assertEqual([x.code for x in r], [250, 250, 250, 250, 250], r)
        qid = self.assertQueued(r[3])
        self.assertEqual(r[4].text, "2.0.0 Ok")
        _, body = self.stored_body(qid)
        self.assertEqual(body, content)

    def test_bdat_without_mail(self):
        c = self.session()
        chunk = b"RSET\r\nMAIL FROM:<x@y.test>\r\n"  # looks like commands; must be skipped
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        self.assertReply(c.read_reply(), 503, "5.5.1")
        self.assertInSyncAndEnd(c)

    def test_bdat_without_rcpt(self):
        c = self.session()
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        c.send(b"BDAT 6 LAST\r\nNOOP\r\n")
        self.assertReply(c.read_reply(), 503, "5.5.1")
        self.assertInSyncAndEnd(c)

    def test_data_after_bdat(self):
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 5\r\nhello")
        self.assertReply(c.read_reply(), 250)
        self.assertReply(c.cmd("DATA"), 503, "5.5.1")
        # the chunked transaction can still be finished
        c.send(b"BDAT 6 LAST\r\n world")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"hello world")

    def test_bad_bdat_syntax_closes(self):
        for arg in [b"BDAT abc", b"BDAT", b"BDAT 5 FIRST", b"BDAT -1", b"BDAT 5 LAST extra"]:
            with self.subTest(command=arg):
                c = self.session()
                self.begin(c)
                c.send(arg + b"\r\n")
                r = c.read_reply()
                self.assertReply(r, 501)
                self.assertTrue(c.wait_closed(), "connection not closed after bad BDAT")

    def test_bdat_split_across_writes(self):
        c = self.session()
        self.begin(c)
        content = b"Subject: slow\r\n\r\n" + b"z" * 3000 + b"\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(content))
        for i in range(0, len(content), 700):
            c.send(content[i:i + 700])
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, content)

    # --- real clients --------------------------------------------------------------------
    def swaks(self, *args, timeout=None):
        if not os.path.exists(SWAKS):
            self.skipTest("swaks not installed")
        cmd = [SWAKS, "--server", f"{self.daemon.host}:{self.daemon.port}",
               "--timeout", str(int(harness.t(30))), "--helo", "swaks.test", *args]
        return subprocess.run(cmd, capture_output=True, timeout=timeout or harness.t(120),
                              stdin=subprocess.DEVNULL)

    def test_swaks_pipeline(self):
        r = self.swaks("--to", "bob@example.test", "--from", "a@b.test", "--pipeline")
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode(errors="replace"))
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as [0-9A-Z]{13}")

    def test_swaks_relay_denied(self):
        r = self.swaks("--to", "x@remote.test", "--from", "a@b.test")
        out = r.stdout.decode(errors="replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("554 5.7.1", out)

    def test_swaks_esmtp_200k_body(self):
        path = os.path.join(self.daemon.tmp, "body-200k.txt")
        lines = [f"line {i:05d} " + "abcdefghij" * 6 for i in range(2800)]
        lines[100] = "." + lines[100]  # swaks must stuff it and we must unstuff it
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.assertGreater(os.path.getsize(path), 200 * 1000)
        r = self.swaks("--to", "bob@example.test", "--from", "a@b.test", "--protocol", "ESMTP",
                       "--body", "@" + path, "--header", "Message-ID: <swaks-200k@b.test>")
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out[-3000:])
        m = harness.QUEUE_ID_RE.search(out)
        self.assertIsNotNone(m, out[-2000:])
        _, body = self.stored_body(m.group(1))
        # swaks ends the body with blank lines of its own; the lines we gave come through
        # exactly, the one starting with "." unstuffed again
        expected = b"\r\n\r\n" + "\r\n".join(lines).encode() + b"\r\n"
        self.assertIn(expected, body, "body not stored exactly")
        self.assertIn(b"<swaks-200k@b.test>\r\n", body)


class DataBareLfFixup(DataBase):
    """limits.reject_bare_lf = false: bare LF becomes CRLF, but DATA still ends only at
    CRLF "." CRLF (the smuggling defence must not depend on rejecting)."""
    daemon_kwargs = {"reject_bare_lf": False}

    def test_bare_lf_fixed_up(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: lf\n\nhello\nworld\r\n.\r\n")
        qid = self.assertQueued(c.read_reply())
        _, body = self.stored_body(qid)
        self.assertEqual(body, b"Subject: lf\r\n\r\nhello\r\nworld\r\n")

    def test_no_smuggling_when_fixing_up(self):
        smuggled = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                    b"Subject: smuggled\r\n\r\nsmuggled\r\n")
        for sep in [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r.\n"]:
            with self.subTest(separator=sep):
                c = self.session()
                self.begin_data(c)
                c.send(b"Subject: innocent\r\n\r\nhello" + sep + smuggled + b"\r\n.\r\n")
                r = c.read_reply()
                # one message, accepted whole (smuggled text is just content)
                self.assertQueued(r)
                self.assertInSyncAndEnd(c)


class DataSizeLimit(DataBase):
    daemon_kwargs = {"max_message_size": 10000}

    def test_ehlo_advertises_size(self):
        c = self.daemon.connect()
        self.conns.append(c)
        c.expect(220)
        r = c.cmd("EHLO client.test", expect=250)
        self.assertIn("SIZE 10000", r.lines)

    def test_message_over_size_limit(self):
        c = self.session()
        self.begin_data(c)
        c.send(b"Subject: big\r\n\r\n")
        for _ in range(30):
            c.send(b"b" * 998 + b"\r\n")
        # no reply before the terminator
        c.send(b".\r\n")
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertEqual(c.cmd("NOOP").code, 250)
        # a message within the limit still goes through on the same session
        self.begin_data(c)
        c.send(b"Subject: small\r\n\r\n" + (b"s" * 98 + b"\r\n") * 90 + b".\r\n")
        self.assertQueued(c.read_reply())
        self.assertInSyncAndEnd(c)

    def test_bdat_chunk_over_size_limit(self):
        # A single chunk larger than any acceptable message is not drained (that would
        # make the server a sink for up to 2^64 octets): 552, then the connection closes.
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 20000 LAST\r\n" + b"c" * 20000)
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertTrue(c.wait_closed(), "connection not closed after an oversized chunk")

    def test_bdat_size_that_would_wrap(self):
        # 2^64-1 added to the bytes already received must not wrap to a small number.
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 100\r\n" + b"f" * 100)
        self.assertReply(c.read_reply(), 250)
        c.send(b"BDAT 18446744073709551615 LAST\r\n" + b"f" * 100)
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertTrue(c.wait_closed(), "connection not closed after an oversized chunk")

    def test_bdat_chunks_add_up_over_limit(self):
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 6000\r\n" + b"d" * 6000)
        self.assertReply(c.read_reply(), 250)
        c.send(b"BDAT 6000 LAST\r\n" + b"d" * 6000)
        self.assertReply(c.read_reply(), 552, "5.3.4")
        self.assertInSyncAndEnd(c)

    def test_bdat_at_limit(self):
        c = self.session()
        self.begin(c)
        c.send(b"BDAT 10000 LAST\r\n" + b"e" * 10000)
        self.assertQueued(c.read_reply())


if __name__ == "__main__":
    unittest.main()
