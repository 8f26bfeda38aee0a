"""ringbench sink with --fsync and --group-commit: the durable bound compare-postfix uses.

The sink must answer every message exactly once, after its content is written and synced,
also when many connections end messages at the same moment (several sessions waiting on
one group) and across many groups; a directory it cannot write in is a clear start-up
failure, not a sink that answers 250 without storing.
"""
from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import tempfile
import unittest

from harness import BIN_DIR, free_port, t

RINGBENCH = os.path.join(BIN_DIR, "ringbench")


class Sink:
    def __init__(self, *flags: str, fsync_dir: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [RINGBENCH, "sink", "--port", str(self.port), "--address", "127.0.0.1",
             "--fsync-dir", fsync_dir, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        import socket
        import time
        deadline = time.monotonic() + t(20)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sink exited: " + self.proc.stderr.read())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("sink did not greet")

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=t(30))
        except subprocess.TimeoutExpired:
            # A sink that does not stop is a failure, and must not outlive the test.
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("sink did not exit on SIGTERM: " + err[-500:])
        return self.proc.returncode, out, err


def bench(port: int, *args: str) -> dict[str, str]:
    r = subprocess.run([RINGBENCH, "--port", str(port), *args], capture_output=True, text=True,
                       timeout=t(120))
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, r.stdout + r.stderr
    return dict(kv.split("=", 1) for kv in line[-1].split()[1:])


@unittest.skipUnless(os.access(RINGBENCH, os.X_OK), "ringbench not built")
class DurableSinkTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def run_load(self, *flags: str) -> int:
        """Returns the sink's syncs= count."""
        sink = Sink(*flags, fsync_dir=self.tmp.name)
        try:
            sink.wait_ready()
            # 20 lock-step connections ending messages together: groups of several; 600
            # messages: many groups one after another. Then one more message by smtplib,
            # alone in its group.
            r = bench(sink.port, "--messages", "600", "--connections", "20", "--size", "3000",
                      "--per-connection", "0")
            self.assertEqual(r["messages"], "600")
            self.assertEqual(r["errors"], "0")
            r = bench(sink.port, "--messages", "40", "--connections", "8", "--size", "100",
                      "--per-connection", "1")
            self.assertEqual((r["messages"], r["errors"]), ("40", "0"))
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=t(20)) as c:
                code, msg = c.ehlo("client.test")
                self.assertEqual(code, 250)
                c.sendmail("a@bench.test", ["b@bench.test"], b"Subject: x\r\n\r\nbody\r\n")
                # An empty message is stored (and answered) like any other.
                c.sendmail("a@bench.test", ["b@bench.test"], b"")
        finally:
            rc, out, err = sink.stop()
        self.assertEqual(rc, 0, err)
        self.assertIn("SINK messages=642", out)
        self.assertNotIn("--fsync:", err)  # no write or sync error was reported
        m = re.search(r"SINK messages=642 connections=\d+ syncs=(\d+)\n", out)
        self.assertTrue(m, out)
        return int(m.group(1))

    def test_group_commit(self):
        syncs = self.run_load("--group-commit", "--threads", "1")
        # 20 lock-step connections on one thread: messages that end during a sync share
        # the next one, so there are fewer syncs than messages (each one at least one).
        self.assertGreaterEqual(syncs, 1)
        self.assertLess(syncs, 642)

    def test_group_commit_two_threads(self):
        syncs = self.run_load("--group-commit", "--threads", "2")
        self.assertGreaterEqual(syncs, 2)
        self.assertLess(syncs, 642)

    def test_fsync_per_message(self):
        # One sync per message (an empty message too).
        self.assertEqual(self.run_load("--fsync", "--threads", "2"), 642)

    def test_unwritable_directory_fails_at_start(self):
        missing = os.path.join(self.tmp.name, "no", "such", "dir")
        r = subprocess.run([RINGBENCH, "sink", "--port", str(free_port()), "--group-commit",
                            "--fsync-dir", missing], capture_output=True, text=True,
                           timeout=t(30))
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(missing))


if __name__ == "__main__":
    unittest.main()
