"""DSN format read back by an independent parser: Python's email package.

unit_tests (DsnSamples.Write in tests/mta/delivery/dsn_test.cc) writes sample notices
built by mta/delivery/dsn.cc into a temp dir; this file parses them with
email.message_from_bytes(policy=email.policy.default) and checks what a mail client or a
bounce processor would read: the multipart/report structure, the delivery-status fields
per recipient, and the returned message or headers. The inputs are fixed in that test.

Environment: RINGMAIL_BIN, the directory holding unit_tests (ctest sets it; default
<repo>/build/bin).
"""
from __future__ import annotations

import email
import email.policy
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("RINGMAIL_BIN") or os.path.join(REPO, "build", "bin")
UNIT_TESTS = os.path.join(BIN_DIR, "unit_tests")


class DsnFormat(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="ringmail-dsn-")
        env = dict(os.environ, RINGMAIL_DSN_SAMPLES=cls.tmp.name)
        r = subprocess.run([UNIT_TESTS, "--gtest_filter=DsnSamples.Write"], env=env,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"unit_tests failed:\n{r.stdout}\n{r.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def load(self, name):
        with open(os.path.join(self.tmp.name, name), "rb") as f:
            raw = f.read()
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""), "bare LF")
        self.assertNotIn(b"\r", raw.replace(b"\r\n", b""), "bare CR")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg.defects, [], name)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        self.assertEqual(str(msg["From"].addresses[0].addr_spec), "MAILER-DAEMON@mx.example.test")
        return msg

    def report(self, msg, ctype="message/delivery-status"):
        """[per-message fields, per-recipient fields...] of the report part."""
        parts = msg.get_payload()
        self.assertEqual(parts[1].get_content_type(), ctype)
        groups = parts[1].get_payload()
        self.assertGreaterEqual(len(groups), 2)
        return groups

    def test_failure_full(self):
        msg = self.load("failure_full.eml")
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(msg["To"].addresses[0].addr_spec, "alice@example.org")
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        text = parts[0].get_content()
        self.assertIn("<bob@example.net>", text)
        self.assertIn("550 5.1.1 <bob@example.net>: no such user", text)
        groups = self.report(msg)
        self.assertEqual(len(groups), 3)
        self.assertEqual(groups[0]["Reporting-MTA"], "dns; mx.example.test")
        self.assertEqual(groups[0]["Original-Envelope-Id"], "QQ+314")
        self.assertEqual(groups[0]["Arrival-Date"], "Tue, 14 Nov 2023 22:13:20 +0000")
        bob, erin = groups[1], groups[2]
        self.assertEqual(bob["Original-Recipient"], "rfc822; Bob+alias@Example.NET")
        self.assertEqual(bob["Final-Recipient"], "rfc822; bob@example.net")
        self.assertEqual(bob["Action"], "failed")
        self.assertEqual(bob["Status"], "5.1.1")
        self.assertEqual(bob["Remote-MTA"], "dns; mx1.example.net")
        self.assertEqual(bob["Diagnostic-Code"],
                         "smtp; 550 5.1.1 <bob@example.net>: no such user")
        self.assertEqual(bob["Last-Attempt-Date"], "Tue, 14 Nov 2023 23:13:15 +0000")
        self.assertEqual(erin["Final-Recipient"], "rfc822; erin@example.net")
        self.assertEqual(erin["Status"], "5.2.2")
        # The remote's second reply line stays inside Diagnostic-Code.
        self.assertEqual(erin["Diagnostic-Code"],
                         "smtp; 552-5.2.2 mailbox full 552 5.2.2 X-Injected: yes")
        self.assertIsNone(erin["X-Injected"])
        self.assertIsNone(erin["Original-Recipient"])
        original = parts[2].get_payload()[0]
        self.assertEqual(original["Subject"], "lunch")
        self.assertEqual(original["Message-ID"], "<m1@example.org>")
        # The returned copy keeps its CRLFs byte for byte.
        self.assertEqual(original.get_content(), "See you at noon.\r\n")

    def test_failure_hdrs(self):
        msg = self.load("failure_hdrs.eml")
        parts = msg.get_payload()
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        headers = parts[2].get_content()
        self.assertIn("Subject: lunch", headers)
        self.assertNotIn("See you at noon", headers)
        inner = email.message_from_string(headers, policy=email.policy.default)
        self.assertEqual(inner["Message-ID"], "<m1@example.org>")

    def test_delay(self):
        msg = self.load("delay.eml")
        self.assertEqual(msg["Subject"], "Delayed Mail (still being retried)")
        groups = self.report(msg)
        carol = groups[1]
        self.assertEqual(carol["Action"], "delayed")
        self.assertEqual(carol["Status"], "4.4.1")
        self.assertEqual(carol["Diagnostic-Code"], "X-Ringmail; connection refused")
        self.assertEqual(carol["Will-Retry-Until"], "Sun, 19 Nov 2023 22:13:20 +0000")
        self.assertIsNone(carol["Remote-MTA"])
        # Headers only, even though RET=FULL was asked.
        self.assertEqual(msg.get_payload()[2].get_content_type(), "text/rfc822-headers")

    def test_relayed(self):
        msg = self.load("relayed.eml")
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        old = self.report(msg)[1]
        self.assertEqual(old["Action"], "relayed")
        self.assertEqual(old["Status"], "2.0.0")

    def test_huge_returns_headers(self):
        msg = self.load("huge.eml")
        parts = msg.get_payload()
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("only its headers are attached",
                      " ".join(parts[0].get_content().split()))
        self.assertIn("Subject: lunch", parts[2].get_content())
        self.assertNotIn("See you at noon", parts[2].get_content())

    def test_utf8_uses_global_types(self):
        msg = self.load("utf8.eml")
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/global-delivery-status", "message/global"])
        self.assertIn("j\u00f6rg@example.net", parts[0].get_content())
        # Python knows message/delivery-status but not its global twin, which it reads as
        # an embedded message and whose 8-bit bytes it replaces. Cut the report part out
        # of the raw bytes and parse each field group as UTF-8 text (RFC 6532) instead.
        with open(os.path.join(self.tmp.name, "utf8.eml"), "rb") as f:
            raw = f.read()
        chunk = raw.split(b"\r\n--" + msg.get_boundary().encode() + b"\r\n")[2]
        header, _, body = chunk.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Type: message/global-delivery-status", header)
        groups = [email.message_from_string(g, policy=email.policy.default)
                  for g in body.decode("utf-8").split("\r\n\r\n")]
        self.assertEqual(groups[0]["Reporting-MTA"], "dns; mx.example.test")
        self.assertEqual(groups[1]["Final-Recipient"], "utf-8; j\u00f6rg@example.net")
        self.assertEqual(groups[1]["Action"], "failed")
        self.assertEqual(groups[1]["Status"], "5.1.1")

