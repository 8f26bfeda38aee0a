"""Limits and shutdown: timeouts, connection limits, error limit, SIGTERM behaviour."""
import os
import signal
import subprocess
import time
import unittest

import harness
from harness import Daemon, require_ringctl, queue_list_ids, queue_show, split_received


class LimitsBase(harness.ReplyAsserts):
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

    def start(self, **kwargs) -> Daemon:
        d = Daemon(**kwargs)
        self.daemons.append(d)
        return d.start()

    def conn(self, d, source=None):
        c = d.connect(source=source)
        self.conns.append(c)
        return c

    def greeted(self, d):
        """A connection past the greeting and EHLO."""
        c = self.conn(d)
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        return c

    def in_data(self, d, first=b""):
        """A connection inside DATA (after the 354), with `first` already sent."""
        c = self.greeted(d)
        c.cmd("MAIL FROM:<a@b.test>", expect=250)
        c.cmd("RCPT TO:<bob@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        if first:
            c.send(first)
        return c

class Timeouts(LimitsBase):
    def test_idle_command_timeout(self):
        d = self.start(command_timeout="2s")
        c = self.greeted(d)
        r = c.read_reply(timeout=harness.t(2 + 30))
        self.assertReply(r, 421, "4.4.2")
        self.assertTrue(c.wait_closed(), "not closed after the timeout 421")

    def test_idle_before_ehlo_times_out(self):
        d = self.start(command_timeout="2s")
        c = self.conn(d)
        c.expect(220)
        r = c.read_reply(timeout=harness.t(2 + 30))
        self.assertReply(r, 421, "4.4.2")
        self.assertTrue(c.wait_closed())

    def test_activity_keeps_session_alive(self):
        # Commands reset the idle timer: a session busy for longer than the timeout, but
        # never idle that long, is not cut off. (Upper bounds only: no speed asserted.)
        d = self.start(command_timeout="3s")
        c = self.greeted(d)
        for _ in range(5):
            time.sleep(1)
            self.assertEqual(c.cmd("NOOP").code, 250)

    def test_data_timeout(self):
        d = self.start(data_timeout="2s")
        c = self.in_data(d, b"Subject: stalled\r\n\r\npart")
        r = c.read_reply(timeout=harness.t(2 + 30))
        self.assertReply(r, 421, "4.4.2")
        self.assertTrue(c.wait_closed())


class ConnectionLimits(LimitsBase):
    def test_max_connections_per_ip(self):
        d = self.start(max_connections_per_ip=3)
        held = []
        for _ in range(3):
            c = self.conn(d)
            c.expect(220)
            held.append(c)
        fourth = self.conn(d)
        r = fourth.read_reply()
        self.assertReply(r, 421, "4.7.0")
        self.assertTrue(fourth.wait_closed(), "4th connection not closed")
        # the limit is per address: another client address still gets in
        other = self.conn(d, source="127.0.0.2")
        other.expect(220)
        # the three held sessions still work
        for c in held:
            self.assertEqual(c.cmd("NOOP").code, 250)
        # freeing one slot lets the next one in (the slot is freed when the daemon sees
        # the close, so allow a bounded number of retries)
        held[0].cmd("QUIT", expect=221)
        self.assertTrue(held[0].wait_closed())
        for attempt in range(50):
            c = self.conn(d)
            r = c.read_reply()
            if r.code == 220:
                break
            self.assertReply(r, 421, "4.7.0")
            c.wait_closed()
            time.sleep(0.1)
        else:
            self.fail("slot never freed after QUIT")

    def test_max_connections_total(self):
        d = self.start(max_connections=5)
        for i in range(5):
            c = self.conn(d, source=f"127.0.0.{11 + i}")
            c.expect(220)
        sixth = self.conn(d, source="127.0.0.16")
        r = sixth.read_reply()
        self.assertReply(r, 421, "4.7.0")
        self.assertTrue(sixth.wait_closed(), "6th connection not closed")
        # still full for the first address too
        again = self.conn(d, source="127.0.0.11")
        self.assertReply(again.read_reply(), 421, "4.7.0")
        self.assertTrue(again.wait_closed())


class SecondDaemon(LimitsBase):
    def run_second(self, config_text: str, tmp: str) -> subprocess.CompletedProcess:
        path = os.path.join(tmp, "second.toml")
        with open(path, "w") as f:
            f.write(config_text)
        return subprocess.run([harness.RINGMAILD, "-c", path], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=harness.t(30), cwd=tmp)

    def test_same_data_dir_refused(self):
        # It would requeue the first daemon's in-flight mail and deliver it twice.
        d = self.start()
        text = d.write_config().replace(f'"{d.host}:{d.port}"', f'"{d.host}:{harness.free_port()}"')
        r = self.run_second(text, d.tmp)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"is in use by another ringmaild (pid " + str(d.proc.pid).encode(), r.stderr)
        c = self.conn(d)
        c.expect(220)

    def test_same_port_refused(self):
        # SO_REUSEPORT would let it bind and silently take half the connections.
        d = self.start()
        other = os.path.join(d.tmp, "other-data")
        text = d.write_config().replace(repr(d.data_dir)[1:-1], other)
        self.assertIn(other, text)
        r = self.run_second(text, d.tmp)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"already in use", r.stderr)
        self.assertIn(f"{d.host}:{d.port}".encode(), r.stderr)
        # The first one still serves every connection.
        for _ in range(8):
            c = self.conn(d)
            c.expect(220)
            c.close()


class ErrorLimit(LimitsBase):
    def test_max_errors(self):
        d = self.start(max_errors=3)
        c = self.greeted(d)
        self.assertEqual(c.cmd("BOGUS1").code, 500)
        self.assertEqual(c.cmd("BOGUS2").code, 500)
        c.send(b"BOGUS3\r\n")
        replies = [c.read_reply(), c.read_reply()]
        self.assertEqual(replies[0].code, 500)
        self.assertReply(replies[1], 421)
        self.assertTrue(c.wait_closed(), "not closed after too many errors")

    def test_errors_of_any_kind_count(self):
        d = self.start(max_errors=3)
        c = self.greeted(d)
        self.assertEqual(c.cmd("RCPT TO:<bob@example.test>").code, 503)  # sequence
        self.assertEqual(c.cmd("MAIL FROM:bad").code, 501)               # syntax
        c.send(b"XYZZY\r\n")
        self.assertEqual(c.read_reply().code, 500)
        self.assertReply(c.read_reply(), 421)
        self.assertTrue(c.wait_closed())

    def test_handler_refusals_alone_end_the_session(self):
        # Refusals counted inside MAIL/RCPT (syntax, relay probing) reach the limit on
        # their own, without a plain unknown command to trigger the check.
        d = self.start(max_errors=3)
        c = self.greeted(d)
        c.cmd("MAIL FROM:<a@client.test>", expect=250)
        self.assertEqual(c.cmd("RCPT TO:<x@remote.test>").code, 554)
        self.assertEqual(c.cmd("RCPT TO:<y@remote.test>").code, 554)
        c.send(b"RCPT TO:<z@remote.test>\r\n")
        self.assertEqual(c.read_reply().code, 554)
        self.assertReply(c.read_reply(), 421)
        self.assertTrue(c.wait_closed(), "relay probing did not end the session")

    def test_junk_command_limit(self):
        d = self.start(max_junk_commands=5)
        c = self.greeted(d)
        for verb in ("NOOP", "RSET", "VRFY bob", "HELP", "NOOP"):
            self.assertLess(c.cmd(verb).code, 300)
        self.assertReply(c.cmd("NOOP"), 421, "4.7.0")
        self.assertTrue(c.wait_closed(), "not closed after too many junk commands")

    def test_good_commands_do_not_count(self):
        d = self.start(max_errors=3)
        c = self.greeted(d)
        self.assertEqual(c.cmd("BOGUS").code, 500)
        for _ in range(10):
            self.assertEqual(c.cmd("NOOP").code, 250)
        self.assertEqual(c.cmd("BOGUS").code, 500)
        self.assertEqual(c.cmd("NOOP").code, 250)


class Shutdown(LimitsBase):
    def test_sigterm_idle_session(self):
        d = self.start()
        c = self.greeted(d)
        d.signal(signal.SIGTERM)
        r = c.read_reply(timeout=harness.t(30))
        self.assertReply(r, 421, "4.3.2")
        self.assertTrue(c.wait_closed())
        code, err = d.wait(harness.t(60))
        self.assertEqual(code, 0, err)
        self.assertIn("group-commit:", err)

    def test_sigterm_during_data_finishes_message(self):
        d = self.start()
        busy = self.in_data(d)
        first = b"Subject: in flight\r\nMessage-ID: <sigterm@b.test>\r\n\r\nfirst half\r\n"
        busy.send(first)
        idle = []
        for _ in range(4):  # likely one on each loop thread
            c = self.conn(d)
            c.expect(220)
            c.cmd("EHLO idle.test", expect=250)
            idle.append(c)
        d.signal(signal.SIGTERM)
        self.assertTrue(d.wait_stderr("stopping", harness.t(30)), d.stderr_text())
        for c in idle:
            self.assertReply(c.read_reply(timeout=harness.t(30)), 421, "4.3.2")
        rest = b"second half\r\n"
        busy.send(rest + b".\r\n")
        r = busy.read_reply(timeout=harness.t(30))
        self.assertEqual(r.code, 250, r)
        qid = r.queue_id
        self.assertIsNotNone(qid)
        self.assertReply(busy.read_reply(timeout=harness.t(30)), 421, "4.3.2")
        self.assertTrue(busy.wait_closed())
        code, err = d.wait(harness.t(60))
        self.assertEqual(code, 0, err)
        self.assertIn("group-commit:", err)
        # the message acknowledged during shutdown is in the queue after a restart
        d.start()
        require_ringctl(self, d)
        self.assertIn(qid, queue_list_ids(d))
        _, msg = queue_show(d, qid)
        _, body = split_received(msg)
        self.assertEqual(body, first + rest)

    def test_shutdown_timeout_closes_stalled_transaction(self):
        d = self.start(shutdown_timeout="2s")
        busy = self.in_data(d, b"Subject: never finished\r\n\r\n")
        d.signal(signal.SIGTERM)
        r = busy.read_reply(timeout=harness.t(2 + 30))
        self.assertReply(r, 421, "4.3.2")
        self.assertTrue(busy.wait_closed())
        code, err = d.wait(harness.t(60))
        self.assertEqual(code, 0, err)
        self.assertIn("group-commit:", err)

    def test_no_new_sessions_after_sigterm(self):
        d = self.start(shutdown_timeout="5s")
        busy = self.in_data(d)  # keeps the daemon alive while we knock
        d.signal(signal.SIGTERM)
        self.assertTrue(d.wait_stderr("stopping", harness.t(30)))
        time.sleep(0.2)
        # a new connection is refused outright or told 421; it never gets a 220
        try:
            c = self.conn(d)
            r = c.read_reply(timeout=harness.t(10))
            self.assertReply(r, 421)
        except (ConnectionRefusedError, harness.ConnectionClosed, ConnectionResetError):
            pass
        busy.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        self.assertEqual(busy.read_reply(timeout=harness.t(30)).code, 250)
        code, err = d.wait(harness.t(60))
        self.assertEqual(code, 0, err)


if __name__ == "__main__":
    unittest.main()
