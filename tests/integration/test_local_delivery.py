"""Local delivery: mail for relay.local_domains goes to the mailbox store, read back with
`ringctl mailbox list|show`; aliases, duplicates, quota and unknown users."""
import json
import os
import smtplib
import time
import unittest

from harness import Daemon, t

MSG = (b"From: a@client.test\r\nTo: bob@example.test\r\nSubject: local\r\n"
       b"Message-ID: <local-1@client.test>\r\n\r\nhello\r\n.dot line\r\n")


def events(d: Daemon) -> list[dict]:
    path = os.path.join(d.data_dir, "log", "delivery.jsonl")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_events(d: Daemon, pred, timeout: float) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = events(d)
        if pred(ev):
            return ev
        time.sleep(0.05)
    raise AssertionError(f"timed out; events: {events(d)}")


class LocalDelivery(unittest.TestCase):
    def setUp(self):
        # Delivery on, but nothing remote is ever reachable: DSNs to remote senders stay queued.
        self.d = Daemon(trusted_networks=["127.0.0.0/8"],
                        delivery={"retry_intervals": ["1h"], "connect_timeout": "1s"})
        self.d.start()
        self.d.add_user("bob@example.test", "pw", aliases=["robert@example.test"])

    def tearDown(self):
        self.d.close()

    def send(self, rcpts, msg=MSG, sender="a@client.test"):
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=t(10)) as s:
            return s.sendmail(sender, rcpts, msg)

    def mailbox(self, address):
        r = self.d.ringctl("mailbox", "list", address)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [line.split() for line in r.stdout.decode().splitlines() if line.strip()]

    def test_delivered_into_the_mailbox_byte_for_byte(self):
        self.send(["bob@example.test"])
        ev = wait_events(self.d, lambda e: any(x["event"] == "delivered" for x in e), t(10))
        delivered = [x for x in ev if x["event"] == "delivered"][0]
        self.assertEqual(delivered["mx"], "local")
        self.assertEqual(delivered["attempt"], 1)
        box = self.mailbox("bob@example.test")
        self.assertEqual(len(box), 1)
        self.assertEqual(box[0][0], "1")
        shown = self.d.ringctl("mailbox", "show", "bob@example.test", "1")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        data = shown.stdout
        self.assertTrue(data.startswith(b"Return-Path: <a@client.test>\r\n"
                                        b"Delivered-To: bob@example.test\r\nReceived: "), data[:200])
        self.assertTrue(data.endswith(MSG), data[-200:])
        self.assertEqual(int(box[0][1]), len(data))
        # Delivered: the message has left the queue.
        q = self.d.ringctl("queue", "list")
        self.assertEqual(q.stdout.strip(), b"")

    def test_alias_and_user_in_one_message_deliver_once(self):
        self.send(["robert@example.test", "bob@example.test"])
        ev = wait_events(self.d, lambda e: sum(x["event"] == "delivered" for x in e) == 2, t(10))
        self.assertEqual({x["recipient"] for x in ev if x["event"] == "delivered"},
                         {"robert@example.test", "bob@example.test"})
        self.assertEqual(len(self.mailbox("bob@example.test")), 1)

    def test_unknown_local_user_bounces_and_the_rest_is_delivered(self):
        self.send(["nobody@example.test", "bob@example.test"], sender="bob@example.test")
        ev = wait_events(self.d, lambda e: any(x["event"] == "bounced" for x in e) and
                         sum(x["event"] == "delivered" for x in e) >= 2, t(10))
        bounced = [x for x in ev if x["event"] == "bounced"][0]
        self.assertEqual(bounced["recipient"], "nobody@example.test")
        self.assertEqual(bounced["status"], "5.1.1")
        self.assertTrue(bounced.get("dsn_queue_id"))
        # The sender is local: the bounce lands in bob's mailbox, from <>.
        box = self.mailbox("bob@example.test")
        self.assertEqual(len(box), 2)
        dsn = self.d.ringctl("mailbox", "show", "bob@example.test", box[1][0]).stdout.decode()
        self.assertIn("Return-Path: <>", dsn)
        self.assertIn("report-type=delivery-status", dsn)
        self.assertIn("Final-Recipient: rfc822; nobody@example.test", dsn)
        self.assertIn("Action: failed", dsn)

    def test_postmaster_without_a_user_still_gets_mail(self):
        # RFC 5321 4.5.1: postmaster must be accepted and delivered for a local domain.
        self.send(["PostMaster@example.test"])
        ev = wait_events(self.d, lambda e: any(x["event"] == "delivered" for x in e), t(10))
        self.assertEqual([x["event"] for x in ev if x["event"] != "received"], ["delivered"])
        box = self.mailbox("postmaster@example.test")
        self.assertEqual(len(box), 1)

    def test_bare_postmaster_is_delivered(self):
        # RFC 5321 4.1.1.3: RCPT TO:<Postmaster> without a domain names this server's
        # postmaster: the postmaster of its first local domain.
        self.send(["Postmaster"])
        ev = wait_events(self.d, lambda e: any(x["event"] == "delivered" for x in e), t(10))
        self.assertEqual([x["event"] for x in ev if x["event"] != "received"], ["delivered"])
        self.assertEqual(ev[0]["recipient"], "Postmaster@example.test")
        self.assertEqual(len(self.mailbox("postmaster@example.test")), 1)

    def test_bare_postmaster_reaches_a_postmaster_alias(self):
        self.d.add_user("admin@example.test", "pw", aliases=["postmaster@example.test"])
        self.send(["postmaster"])
        wait_events(self.d, lambda e: any(x["event"] == "delivered" for x in e), t(10))
        self.assertEqual(len(self.mailbox("admin@example.test")), 1)

    def test_over_quota_defers(self):
        r = self.d.ringctl("user", "quota", "bob@example.test", "100")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.send(["bob@example.test"])
        ev = wait_events(self.d, lambda e: any(x["event"] == "deferred" for x in e), t(10))
        deferred = [x for x in ev if x["event"] == "deferred"][0]
        self.assertEqual(deferred["status"], "4.2.2")
        self.assertIn("mailbox full", deferred["response"])
        self.assertEqual(self.mailbox("bob@example.test"), [])
        # Still queued for a retry, not lost.
        q = self.d.ringctl("queue", "list")
        self.assertIn(b"bob@example.test(deferred)", q.stdout)


if __name__ == "__main__":
    unittest.main()
