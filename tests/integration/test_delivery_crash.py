"""Crash during delivery: kill -9 while messages are being delivered, restart, and every
acknowledged message still reaches the next hop at least once; duplicates are counted
and reported (at-least-once delivery: a message the next hop took just before the kill,
whose outcome was not yet committed, is sent again after the restart).

setUpClass runs the scenario once: a scripted receiving server (mx_harness.FakeMx) on
127.0.0.2 that answers each final dot after a short pause, so deliveries are in flight
when the kill comes; 4 parallel smtplib clients send N messages (unique Message-IDs) to
a remote domain routed there through `delivery.relayhost`; once the receiver has taken
60 of them, the daemon gets SIGKILL (injection may still be running: only messages
that got 250 count). Two delivery connections keep delivery behind injection. The daemon is restarted on the same data dir and the receiver's
log is checked.
"""
import os
import re
import smtplib
import threading
import time
import unittest

from harness import Daemon, t
from mx_harness import Behaviour, FakeMx, free_port_on

N_MESSAGES = 300
N_CLIENTS = 4
KILL_AT = 60
MSGID_RE = re.compile(rb"^Message-ID: (<[^>]+>)", re.M | re.I)


def message(i: int) -> tuple[str, bytes]:
    msgid = f"<dcrash-{i}@client.test>"
    body = (f"From: a@client.test\r\nTo: r@remote.test\r\nSubject: crash {i}\r\n"
            f"Message-ID: {msgid}\r\n\r\n").encode()
    body += b"".join(f"line {n} of message {i}\r\n".encode() for n in range(i % 50 + 1))
    body += b".a line with a leading dot\r\n"
    return msgid, body


class DeliveryCrash(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        port = free_port_on(["127.0.0.2"])
        # A pause before each final reply keeps deliveries in flight at the kill, and two
        # connections at ~20 messages/s each keep delivery behind injection, so there is
        # a backlog in the queue too (also in slow sanitizer builds).
        cls.mx = FakeMx(host="127.0.0.2", port=port,
                        behaviour=Behaviour(delay={"dot": 0.05}))
        cls.mx.__enter__()
        cls.daemon = Daemon(trusted_networks=["127.0.0.0/8"], delivery={
            "relayhost": f"127.0.0.2:{port}", "tls": "none", "max_connections": 2,
            "max_messages_per_connection": 20, "retry_intervals": ["1s"],
            "connect_timeout": "2s", "command_timeout": "5s"})
        cls.daemon.start()
        cls.acked: set[str] = set()
        cls.refused = 0
        lock = threading.Lock()
        next_i = iter(range(N_MESSAGES))
        stop = threading.Event()

        def take():
            with lock:
                return next(next_i, None)

        def client():
            while not stop.is_set():
                i = take()
                if i is None:
                    return
                msgid, data = message(i)
                try:
                    with smtplib.SMTP("127.0.0.1", cls.daemon.port, timeout=t(10)) as s:
                        s.sendmail("a@client.test", ["r@remote.test"], data)
                    with lock:
                        cls.acked.add(msgid)
                except (smtplib.SMTPException, OSError):
                    with lock:
                        cls.refused += 1
                    if not cls.daemon.running():
                        return

        threads = [threading.Thread(target=client, daemon=True) for _ in range(N_CLIENTS)]
        for th in threads:
            th.start()
        cls.killed_at = None
        deadline = time.monotonic() + t(60)
        while time.monotonic() < deadline:
            if cls.mx.message_count >= KILL_AT:
                cls.killed_at = cls.mx.message_count
                cls.daemon.kill9()
                break
            time.sleep(0.005)
        stop.set()
        for th in threads:
            th.join(t(15))
        cls.before_restart = cls.mx.message_count
        cls.daemon.start()
        # Every acknowledged message must arrive; wait for that, bounded.
        deadline = time.monotonic() + t(90)
        while time.monotonic() < deadline:
            if cls.acked <= cls.received_ids():
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let a straggler duplicate land before counting
        cls.daemon.stop()

    @classmethod
    def received_ids(cls) -> set[str]:
        return set(cls.ids_in_order())

    @classmethod
    def ids_in_order(cls) -> list[str]:
        out = []
        for m in cls.mx.messages():
            found = MSGID_RE.search(m.data)
            if found:
                out.append(found.group(1).decode())
        return out

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close(check=False)
        cls.mx.__exit__(None, None, None)

    def test_the_kill_happened_during_delivery(self):
        self.assertIsNotNone(self.killed_at, "the receiver never reached the kill threshold")
        self.assertLess(self.before_restart, len(self.acked),
                        "everything was delivered before the kill: nothing was tested")

    def test_every_acknowledged_message_is_delivered(self):
        missing = self.acked - self.received_ids()
        self.assertFalse(missing, f"{len(missing)} acknowledged messages never delivered, "
                                  f"e.g. {sorted(missing)[:5]}")

    def test_duplicates_are_counted(self):
        ids = self.ids_in_order()
        dups = len(ids) - len(set(ids))
        # At-least-once: a message may arrive again only if it arrived before the kill (its
        # outcome was not yet in the queue), and then once more at most. How many that is
        # depends on timing (how far the queue's writer was behind at the kill: under a
        # loaded sanitizer build, dozens), so it is printed, not bounded.
        print(f"\ndelivery crash: {len(self.acked)} acknowledged, {self.refused} refused at "
              f"the kill, {self.before_restart} delivered before restart, {len(ids)} "
              f"deliveries in all, {dups} duplicates", flush=True)
        first_at = {}
        for pos, msgid in enumerate(ids):
            if msgid in first_at:
                self.assertLess(first_at[msgid], self.before_restart,
                                f"{msgid} first arrived after the restart, and again later")
            else:
                first_at[msgid] = pos
        too_many = sorted(m for m in set(ids) if ids.count(m) > 2)
        self.assertEqual(too_many, [], "delivered three times or more")
        unexpected = set(ids) - self.acked
        # Messages in the DATA phase at the kill may have been committed without the
        # client seeing 250: those may arrive too, but nothing that was never sent.
        self.assertTrue(all(i.startswith("<dcrash-") for i in unexpected))

    def test_messages_arrive_intact(self):
        by_id = {}
        for m in self.mx.messages():
            found = MSGID_RE.search(m.data)
            if found:
                by_id.setdefault(found.group(1).decode(), m.data)
        checked = 0
        for msgid, data in by_id.items():
            i = int(msgid.split("-")[1].split("@")[0])
            _, original = message(i)
            # Our Received: field comes first; the rest is the message byte for byte.
            self.assertTrue(data.endswith(original), msgid)
            self.assertTrue(data.startswith(b"Received: "), msgid)
            checked += 1
        self.assertGreater(checked, 0)


if __name__ == "__main__":
    unittest.main()
