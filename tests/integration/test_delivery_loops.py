"""Mail loops: an MX (or address literal) that is one of our own listeners, and a message
that has passed too many MTAs, bounce with 5.4.6 instead of circling forever."""
import json
import os
import smtplib
import time
import unittest

from harness import Daemon, free_port, t
from mx_harness import FakeMx, free_port_on


def wait_event(d: Daemon, event: str, timeout: float) -> dict:
    path = os.path.join(d.data_dir, "log", "delivery.jsonl")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                for line in f:
                    e = json.loads(line)
                    if e["event"] == event:
                        return e
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {event} event within {timeout} s")


class Loops(unittest.TestCase):
    def test_delivery_to_our_own_listener_bounces(self):
        p = free_port()
        # A second smtp listener on port p, and delivery to port p: [127.0.0.1] is us.
        with Daemon(trusted_networks=["127.0.0.0/8"],
                    delivery={"smtp_port": p, "tls": "none", "retry_intervals": ["1h"]},
                    extra_toml=f'[[listen]]\naddress = "127.0.0.1:{p}"\nprotocol = "smtp"\n') as d:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=t(10)) as s:
                s.sendmail("a@client.test", ["x@[127.0.0.1]"], b"Subject: loop\r\n\r\nbody\r\n")
            e = wait_event(d, "bounced", t(10))
            self.assertEqual(e["recipient"], "x@[127.0.0.1]")
            self.assertEqual(e["status"], "5.4.6")
            self.assertIn("loops back to myself", e["response"])

    def test_too_many_received_fields_bounce(self):
        port = free_port_on(["127.0.0.2"])
        with FakeMx(host="127.0.0.2", port=port) as mx, \
                Daemon(trusted_networks=["127.0.0.0/8"],
                       delivery={"relayhost": f"127.0.0.2:{port}", "tls": "none"}) as d:
            looping = b"".join(b"Received: from hop%d.test by hop%d.test; x\r\n" % (i, i + 1)
                               for i in range(100))
            with smtplib.SMTP("127.0.0.1", d.port, timeout=t(10)) as s:
                # 100 here plus our own Received: = 101 hops: over the limit.
                s.sendmail("a@client.test", ["r@remote.test"], looping + b"Subject: x\r\n\r\nb\r\n")
                # 98 + ours = 99: still delivered.
                s.sendmail("a@client.test", ["ok@remote.test"],
                           looping[: looping.index(b"Received: from hop98")] + b"Subject: y\r\n\r\nb\r\n")
            e = wait_event(d, "bounced", t(10))
            self.assertEqual(e["recipient"], "r@remote.test")
            self.assertEqual(e["status"], "5.4.6")
            self.assertIn("too many hops", e["response"])
            # The relayhost gets the good message and the bounce (from <>) for the bad one.
            mx.wait_messages(2, t(10))
            got = {(m.mail_from, m.rcpts[0].address) for m in mx.messages()}
            self.assertEqual(got, {("a@client.test", "ok@remote.test"), ("", "a@client.test")})


if __name__ == "__main__":
    unittest.main()
