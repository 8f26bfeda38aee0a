"""ringctl status, stats and queue flush against a running ringmaild (docs/ringctl-status.md).

RingctlStatusQueued: delivery off (the harness default), so accepted mail stays queued; it
is sent with smtplib, then looked up by queue id, Message-ID (with and without <>) and
address, counted by stats, and flushed (nothing is due later, so nothing moves).

RingctlFlushRetries: delivery on, relayed to a scripted server (mx_harness.FakeMx) that
answers 451 to RCPT, with a one-hour retry interval. The deferral shows in status and
stats; `queue flush ID` makes the daemon retry within seconds (attempt 2); once the server
accepts, another flush delivers it and status still tells the story after the message has
left the queue.
"""
from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import time
import unittest

import harness
from harness import Daemon, t

TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
EVENT_RE = re.compile(rf"^    ({TIME_RE}\.\d{{6}}Z) (\S+)(.*)$")
FLUSHED_RE = re.compile(r"^flushed (\d+) recipients in (\d+) messages\n$")


def send(port: int, sender: str, rcpts: list[str], message_id: str | None,
         subject: str = "status test") -> str:
    """One message over SMTP; returns the queue id from the 250 reply."""
    headers = f"From: <{sender or 'mailer-daemon@sender.test'}>\r\nTo: <{rcpts[0]}>\r\n"
    if message_id is not None:
        headers += f"Message-ID: {message_id}\r\n"
    body = (headers + f"Subject: {subject}\r\n\r\nhello\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=t(20)) as s:
        s.ehlo("client.test")
        code, _ = s.mail(sender)
        assert code == 250, code
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = s.data(body)
        assert code == 250, (code, text)
    m = harness.QUEUE_ID_RE.search(text.decode())
    assert m, text
    return m.group(1)


class RingctlCase(unittest.TestCase):
    daemon: Daemon

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([harness.RINGCTL, "-c", self.daemon.config_path, *args],
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=t(60),
                              text=True)

    def ok(self, *args: str) -> str:
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, f"ringctl {' '.join(args)}: {r.stderr!r}")
        return r.stdout

    def fails(self, *args: str, code: int = 1) -> str:
        r = self.ctl(*args)
        self.assertEqual(r.returncode, code,
                         f"ringctl {' '.join(args)}: want exit {code}: {r.stdout!r} {r.stderr!r}")
        self.assertEqual(r.stdout, "")
        return r.stderr

    def blocks(self, text: str) -> list[list[str]]:
        """status output split into messages (a header line and what follows it)."""
        out: list[list[str]] = []
        for line in text.splitlines():
            if line.startswith("message "):
                out.append([line])
            elif line:
                self.assertTrue(out, f"line before the first message: {line!r}")
                out[-1].append(line)
        return out

    def events(self, *args: str) -> list[dict]:
        return [json.loads(line) for line in self.ok("status", "--json", *args).splitlines()]

    def wait_event(self, key: str, pred, what: str, timeout: float) -> list[dict]:
        """Polls `status --json KEY` until an event satisfies pred (bounded)."""
        deadline = time.monotonic() + timeout
        evs: list[dict] = []
        while time.monotonic() < deadline:
            r = self.ctl("status", "--json", key)
            if r.returncode == 0:
                evs = [json.loads(line) for line in r.stdout.splitlines()]
                if any(pred(e) for e in evs):
                    return evs
            time.sleep(0.1)
        self.fail(f"no {what} event for {key} within {timeout:.0f}s; events: {evs!r}\n"
                  f"daemon log:\n{self.daemon.stderr_text()[-3000:]}")


class RingctlStatusQueued(RingctlCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(harness.RINGCTL):
            raise unittest.SkipTest(f"ringctl not built: {harness.RINGCTL}")
        # Relaying from loopback lets one message go to a remote domain; delivery stays off.
        cls.daemon = Daemon(trusted_networks=["127.0.0.0/8"]).start()
        port = cls.daemon.port
        cls.id1 = send(port, "alice@sender.test", ["bob@example.test", "carol@example.test"],
                       "<it-1@sender.test>")
        cls.id2 = send(port, "dave@sender.test", ["Bob@Example.TEST"], "<it-2@sender.test>")
        # A null sender, a remote recipient, a Message-ID without brackets.
        cls.id3 = send(port, "", ["erin@remote.test"], "it-3@sender.test")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    # --- status ---------------------------------------------------------------------
    def test_status_by_queue_id(self):
        out = self.ok("status", self.id1)
        b = self.blocks(out)
        self.assertEqual(len(b), 1, out)
        self.assertRegex(
            b[0][0], rf"^message {self.id1} arrival={TIME_RE}\.\d{{6}}Z "
                     r"sender=<alice@sender.test> message_id=<it-1@sender.test> size=\d+ "
                     r"client=127.0.0.1 in_queue=yes matched=queue-id$")
        self.assertRegex(b[0][1], rf"^  recipient <bob@example.test> state=queued attempts=0 "
                                  rf"next_attempt={TIME_RE}Z$")
        self.assertRegex(b[0][2], r"^    \S+ received$")
        self.assertRegex(b[0][3], r"^  recipient <carol@example.test> state=queued ")
        self.assertRegex(b[0][4], r"^    \S+ received$")
        self.assertEqual(len(b[0]), 5, out)
        # The received time is the arrival time (both microseconds).
        self.assertEqual(EVENT_RE.match(b[0][2]).group(1), b[0][0].split()[2][len("arrival="):])
        # Queue ids are case-insensitive.
        self.assertEqual(self.ok("status", self.id1.lower()), out)

    def test_status_by_message_id_with_and_without_brackets(self):
        with_brackets = self.ok("status", "<it-1@sender.test>")
        without = self.ok("status", "it-1@sender.test")
        self.assertEqual(with_brackets, without)
        b = self.blocks(with_brackets)
        self.assertEqual(len(b), 1)
        self.assertTrue(b[0][0].startswith(f"message {self.id1} "), b)
        self.assertTrue(b[0][0].endswith(" matched=message-id"), b)
        self.assertEqual(with_brackets, self.ok("status", self.id1).replace(
            "matched=queue-id", "matched=message-id"))
        # Stored without brackets: found both ways as well.
        for key in ("it-3@sender.test", "<it-3@sender.test>"):
            b = self.blocks(self.ok("status", key))
            self.assertEqual([x[0].split()[1] for x in b], [self.id3], key)
            self.assertIn(" sender=<> message_id=it-3@sender.test ", b[0][0])
            self.assertRegex(b[0][1], r"^  recipient <erin@remote.test> state=queued ")
        # Exact otherwise.
        self.fails("status", "<IT-1@sender.test>")
        self.fails("status", "it-1@sender")

    def test_status_by_address_ignores_case(self):
        out = self.ok("status", "BOB@example.TEST")
        b = self.blocks(out)
        # Both messages to bob, in queue-id order, each with only bob's timeline.
        self.assertEqual([x[0].split()[1] for x in b], sorted([self.id1, self.id2]))
        self.assertEqual([x[0].split()[1] for x in b], [self.id1, self.id2])
        for block in b:
            self.assertTrue(block[0].endswith(" matched=address"), block)
            rcpts = [line for line in block if line.startswith("  recipient ")]
            self.assertEqual(len(rcpts), 1, block)
            self.assertRegex(rcpts[0], r"(?i)^  recipient <bob@example.test> ")
        self.assertEqual(self.ok("status", "<bob@example.test>"), out)
        # The sender's address: the whole message.
        b = self.blocks(self.ok("status", "Alice@Sender.Test"))
        self.assertEqual(len(b), 1)
        self.assertEqual(len([x for x in b[0] if x.startswith("  recipient ")]), 2)

    def test_status_json(self):
        evs = self.events(self.id1)
        self.assertEqual([e["event"] for e in evs], ["received", "received"])
        self.assertEqual([e["recipient"] for e in evs], ["bob@example.test", "carol@example.test"])
        for e in evs:
            self.assertEqual(e["queue_id"], self.id1)
            self.assertEqual(e["message_id"], "<it-1@sender.test>")
            self.assertEqual(e["sender"], "alice@sender.test")
            self.assertEqual(e["client"], "127.0.0.1")
            self.assertGreater(e["size"], 0)
            self.assertRegex(e["time"], rf"^{TIME_RE}\.\d{{6}}Z$")
        # --json may come after the key too.
        self.assertEqual(self.ok("status", "bob@example.test", "--json"),
                         self.ok("status", "--json", "bob@example.test"))
        self.assertEqual({e["queue_id"] for e in self.events("bob@example.test")},
                         {self.id1, self.id2})

    def test_status_no_match(self):
        for key in ("nobody@nowhere.test", "0000000000000", "<>", "example.test"):
            err = self.fails("status", key)
            self.assertEqual(err, f"ringctl: no message matches {key}\n")
        self.fails("status", code=2)
        self.fails("status", "a", "b", code=2)
        self.fails("status", "--bogus", self.id1, code=2)

    # --- stats ----------------------------------------------------------------------
    def test_stats_text(self):
        out = self.ok("stats")
        lines = out.splitlines()
        self.assertRegex(out, r"(?m)^messages\s+3$")
        self.assertRegex(out, r"(?m)^bytes\s+\d+$")
        self.assertRegex(out, r"(?m)^recipients\s+4$")
        self.assertRegex(out, r"(?m)^  queued\s+4$")
        for state in ("in-flight", "deferred", "delivered", "bounced", "expired"):
            self.assertRegex(out, rf"(?m)^  {state}\s+0$")
        header = next(x for x in lines if x.startswith("domain "))
        self.assertEqual(header.split(), ["domain", "recipients", "queued", "in-flight",
                                          "deferred", "delivered", "bounced", "expired"])
        self.assertRegex(out, r"(?m)^example\.test\s+3\s+3\s+0\s+0\s+0\s+0\s+0$")
        self.assertRegex(out, r"(?m)^remote\.test\s+1\s+1\s+0\s+0\s+0\s+0\s+0$")
        # Busiest domain first.
        self.assertLess(out.index("example.test "), out.index("remote.test "))
        self.assertRegex(out, r"(?m)^event\s+all-time\s+last-hour$")
        self.assertRegex(out, r"(?m)^received\s+4\s+4$")
        for ev in ("delivered", "deferred", "delayed", "bounced", "expired"):
            self.assertRegex(out, rf"(?m)^{ev}\s+0\s+0$")
        # Columns line up: every row of the domain table has the header's width.
        i = lines.index(header)
        self.assertEqual(len(lines[i + 1]), len(header))

    def test_stats_json(self):
        st = json.loads(self.ok("stats", "--json"))
        self.assertEqual(st["messages"], 3)
        self.assertGreater(st["bytes"], 0)
        self.assertEqual(st["recipients"], {"total": 4, "queued": 4, "in-flight": 0,
                                            "deferred": 0, "delivered": 0, "bounced": 0,
                                            "expired": 0})
        self.assertEqual(set(st["domains"]), {"example.test", "remote.test"})
        self.assertEqual(st["domains"]["example.test"]["total"], 3)
        self.assertEqual(st["domains"]["remote.test"]["queued"], 1)
        self.assertEqual(st["events"]["all_time"]["received"], 4)
        self.assertEqual(st["events"]["last_hour"]["received"], 4)
        self.assertEqual(st["events"]["all_time"]["bounced"], 0)
        self.assertRegex(st["time"], rf"^{TIME_RE}Z$")
        # Same bytes as the text form.
        self.assertRegex(self.ok("stats"), rf"(?m)^bytes\s+{st['bytes']}$")
        self.fails("stats", "extra", code=2)

    # --- flush ----------------------------------------------------------------------
    def test_flush_with_nothing_due_later(self):
        # Fresh mail is due at arrival: nothing to bring forward.
        self.assertRegex(self.ok("queue", "flush"), FLUSHED_RE)
        self.assertEqual(self.ok("queue", "flush"), "flushed 0 recipients in 0 messages\n")
        self.assertEqual(self.ok("queue", "flush", self.id2),
                         "flushed 0 recipients in 0 messages\n")
        self.assertEqual(self.ok("queue", "flush", self.id2.lower()),
                         "flushed 0 recipients in 0 messages\n")
        # Nothing changed and no event was added.
        self.assertEqual(len(self.events(self.id2)), 1)
        self.assertRegex(self.ok("stats"), r"(?m)^  queued\s+4$")

    def test_flush_unknown_or_bad_id(self):
        err = self.fails("queue", "flush", "0000000000000")
        self.assertEqual(err, "ringctl: no message 0000000000000 in the queue\n")
        err = self.fails("queue", "flush", "not-an-id")
        self.assertEqual(err, "ringctl: 'not-an-id' is not a queue id\n")
        self.fails("queue", "flush", self.id1, self.id2, code=2)


class RingctlFlushRetries(RingctlCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(harness.RINGCTL):
            raise unittest.SkipTest(f"ringctl not built: {harness.RINGCTL}")
        from mx_harness import ACCEPT, DEFER, FakeMx, free_port_on
        port = free_port_on(["127.0.0.2"])
        # Decided per RCPT: the daemon reuses its connection, which keeps its Behaviour.
        cls.accepting = False
        cls.mx = FakeMx(host="127.0.0.2", port=port,
                        rcpt_reply=lambda _addr: ACCEPT if cls.accepting else DEFER)
        cls.mx.__enter__()
        try:
            # An hour between tries: only a flush makes it try again during the test.
            cls.daemon = Daemon(trusted_networks=["127.0.0.0/8"], delivery={
                "relayhost": f"127.0.0.2:{port}", "tls": "none", "retry_intervals": ["1h"],
                "connect_timeout": "5s", "command_timeout": "10s"}).start()
        except BaseException:
            cls.mx.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.daemon.close()
        finally:
            cls.mx.__exit__(None, None, None)

    def test_deferred_then_flushed_then_delivered(self):
        qid = send(self.daemon.port, "alice@sender.test", ["r@remote.test"], "<retry@sender.test>")
        evs = self.wait_event(qid, lambda e: e["event"] == "deferred", "deferred", t(30))
        d = next(e for e in evs if e["event"] == "deferred")
        self.assertEqual(d["attempt"], 1)
        self.assertEqual(d["code"], 451)
        self.assertEqual(d["address"], "127.0.0.2")

        out = self.ok("status", qid)
        b = self.blocks(out)
        self.assertEqual(len(b), 1, out)
        self.assertRegex(b[0][1], rf"^  recipient <r@remote.test> state=deferred attempts=1 "
                                  rf"next_attempt={TIME_RE}Z$")
        line = next(x for x in b[0] if " deferred " in x and x.startswith("    "))
        self.assertRegex(line, rf"^    {TIME_RE}\.\d{{6}}Z deferred attempt=1 mx=\S+ "
                               rf"\[127\.0\.0\.2\] code=451 status=4\.3\.0 "
                               rf"next_attempt={TIME_RE}Z response=\".*451.*\"$")
        next_attempt = d["next_attempt"]
        self.assertIn(f"next_attempt={next_attempt}", b[0][1])
        self.assertGreater(next_attempt, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(time.time() + 1800)))
        st = json.loads(self.ok("stats", "--json"))
        self.assertEqual(st["recipients"]["deferred"], 1)
        self.assertEqual(st["domains"]["remote.test"]["deferred"], 1)
        self.assertEqual(st["events"]["last_hour"]["deferred"], 1)

        # Flush: due now; the scheduler notices within its one-second rescan.
        self.assertEqual(self.ok("queue", "flush", qid), "flushed 1 recipients in 1 messages\n")
        self.wait_event(qid, lambda e: e["event"] == "deferred" and e["attempt"] == 2,
                        "second deferred", t(30))
        self.assertGreaterEqual(len(self.mx.transactions()), 2)  # the retry reached the server
        self.assertRegex(self.ok("status", qid), r"(?m)^  recipient <r@remote.test> "
                                                 r"state=deferred attempts=2 ")

        # The server takes it now; flushing everything delivers it.
        type(self).accepting = True
        self.assertEqual(self.ok("queue", "flush"), "flushed 1 recipients in 1 messages\n")
        self.wait_event(qid, lambda e: e["event"] == "delivered", "delivered", t(30))
        # Gone from the queue, but its history stays.
        deadline = time.monotonic() + t(10)
        while "in_queue=yes" in self.ok("status", qid) and time.monotonic() < deadline:
            time.sleep(0.1)
        b = self.blocks(self.ok("status", "<retry@sender.test>"))
        self.assertEqual(len(b), 1)
        self.assertIn(" in_queue=no ", b[0][0])
        self.assertEqual(b[0][1], "  recipient <r@remote.test> state=delivered")
        names = [EVENT_RE.match(x).group(2) for x in b[0][2:]]
        self.assertEqual(names, ["received", "deferred", "deferred", "delivered"])
        self.assertEqual(self.fails("queue", "flush", qid),
                         f"ringctl: no message {qid} in the queue\n")
        st = json.loads(self.ok("stats", "--json"))
        self.assertEqual(st["messages"], 0)
        self.assertEqual(st["events"]["all_time"]["delivered"], 1)
        self.assertEqual(st["events"]["all_time"]["deferred"], 2)


if __name__ == "__main__":
    unittest.main()
