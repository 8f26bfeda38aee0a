"""Per-destination send rate (delivery.max_messages_per_minute and its per-domain
override): sends to a limited destination are spaced by at least 60 s / rate, however
fast the queue fills; another destination is not held back by it.

The assertion is a lower bound the limiter guarantees (a slow machine only widens the
gaps), never a speed."""
import json
import os
import smtplib
import time
import unittest
from datetime import datetime

from harness import Daemon, t
from mx_harness import Nsd, MxGroup, zone


def delivered_times(d: Daemon, domain: str) -> list[float]:
    path = os.path.join(d.data_dir, "log", "delivery.jsonl")
    out = []
    try:
        with open(path) as f:
            for line in f:
                e = json.loads(line)
                if e["event"] == "delivered" and e["recipient"].endswith("@" + domain):
                    ts = datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    out.append(ts.timestamp())
    except FileNotFoundError:
        pass
    return sorted(out)


class Rate(unittest.TestCase):
    def test_rate_limited_domain_is_paced_and_others_are_not_held(self):
        with Nsd({"slow.test": zone("slow.test", ["@ MX 10 mx", "mx A 127.0.0.2"]),
                  "fast.test": zone("fast.test", ["@ MX 10 mx", "mx A 127.0.0.3"])}) as ns, \
                MxGroup(["127.0.0.2", "127.0.0.3"]) as mxs, \
                Daemon(trusted_networks=["127.0.0.0/8"],
                       delivery={"smtp_port": mxs.port, "tls": "none",
                                 "domains": {"slow.test": {"max_messages_per_minute": 120}}},
                       dns={"servers": [ns.server], "timeout": "1s", "attempts": 1}) as d:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=t(10)) as s:
                for i in range(4):
                    s.sendmail("a@client.test", [f"u{i}@slow.test"], b"Subject: s\r\n\r\nx\r\n")
                    s.sendmail("a@client.test", [f"u{i}@fast.test"], b"Subject: f\r\n\r\nx\r\n")
            end = time.monotonic() + t(20)
            while time.monotonic() < end and len(delivered_times(d, "slow.test")) < 4:
                time.sleep(0.05)
            slow = delivered_times(d, "slow.test")
            fast = delivered_times(d, "fast.test")
            self.assertEqual(len(slow), 4, slow)
            self.assertEqual(len(fast), 4, fast)
            gaps = [b - a for a, b in zip(slow, slow[1:])]
            # 120 a minute = one per 0.5 s; the event is written after each transaction,
            # whose own length varies a little, hence 0.4.
            self.assertTrue(all(g >= 0.4 for g in gaps), gaps)
            # The unlimited domain finished before the limited one had sent its third.
            self.assertLess(fast[-1], slow[2], (fast, slow))


if __name__ == "__main__":
    unittest.main()
