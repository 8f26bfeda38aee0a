"""ringctl user ...: the user database from the command line, driven through the real binary.

Passwords go in on standard input (never argv). Where a test needs to know which hash was
stored, it reads the crypt strings straight out of the LMDB file (they are stored verbatim)
and checks them with Python's crypt module, which is libxcrypt underneath.
"""
from __future__ import annotations

import os
import re
import subprocess
import unittest
import warnings

import harness
from harness import Daemon, t

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11, still present; only used to cross-check hashes
except ImportError:  # pragma: no cover
    crypt = None

# "correct horse" in each format (libxcrypt; the unit tests pin the same strings).
SHA512 = ("$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/"
          "31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1")
BCRYPT = "$2b$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2"
YESCRYPT = "$y$j9T$abcdefghijklmnop$0Hi8KsZH/hAMRN9Bam6ce3nmi5QAIz3R/KeaXG/c7p9"
MD5 = "$1$abc$mEYYKBYwc4Odg5SoPgnFr/"
CRYPT_RE = re.compile(rb"\$(?:y|6|5|2[aby])\$[./0-9A-Za-z$=]{20,120}")


class RingctlUserTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(harness.RINGCTL):
            self.skipTest(f"ringctl not built: {harness.RINGCTL}")
        # The Daemon gives the config and temp dir; it is started only where a test says.
        self.d = Daemon()
        self.d.port = harness.free_port()  # the config must name a real port
        self.d.write_config()

    def tearDown(self):
        self.d.close()

    # --- helpers ------------------------------------------------------------------------
    def ctl(self, *args, stdin: bytes | None = b"") -> subprocess.CompletedProcess:
        return subprocess.run([harness.RINGCTL, "-c", self.d.config_path, *args],
                              input=stdin, capture_output=True, timeout=t(60))

    def ok(self, *args, stdin: bytes | None = b"") -> str:
        r = self.ctl(*args, stdin=stdin)
        self.assertEqual(r.returncode, 0, f"ringctl {' '.join(args)}: {r.stderr!r}")
        return r.stdout.decode()

    def refused(self, *args, stdin: bytes | None = b"", code: int = 1) -> str:
        r = self.ctl(*args, stdin=stdin)
        self.assertEqual(r.returncode, code,
                         f"ringctl {' '.join(args)}: want exit {code}: {r.stdout!r} {r.stderr!r}")
        err = r.stderr.decode()
        if code == 1:
            self.assertTrue(err.startswith("ringctl: ") or ":" in err, err)
        return err

    def add(self, address: str, password: str = "s3cret pass", *opts: str) -> str:
        return self.ok("user", "add", address, *opts, stdin=password.encode() + b"\n")

    def listing(self) -> list[str]:
        return self.ok("user", "list").splitlines()

    def stored_hashes(self) -> list[str]:
        path = os.path.join(self.d.data_dir, "users", "data.mdb")
        with open(path, "rb") as f:
            data = f.read()
        return sorted({m.group(0).decode() for m in CRYPT_RE.finditer(data)})

    def assert_stored_hash_verifies(self, password: str, prefix: str = "$y$"):
        if crypt is None:
            self.skipTest("Python crypt module missing: cannot cross-check hashes")
        hashes = [h for h in self.stored_hashes() if h.startswith(prefix)]
        self.assertTrue(any(crypt.crypt(password, h) == h for h in hashes),
                        f"no stored {prefix} hash verifies {password!r}: {hashes}")

    # --- tests --------------------------------------------------------------------------
    def test_add_and_list_format(self):
        self.assertEqual(self.add("Alice@Example.TEST", "pw one", "--alias", "al@example.test",
                                  "--alias", "A2@example.test"),
                         "added alice@example.test\n")
        self.assertEqual(self.add("bob@example.test", "pw two", "--quota", "1048576",
                                  "--disabled"),
                         "added bob@example.test\n")
        self.assertEqual(self.add("carol@example.test"), "added carol@example.test\n")
        self.assertEqual(self.listing(), [
            "alice@example.test enabled quota=unlimited "
            "aliases=al@example.test,a2@example.test scram=yes",
            "bob@example.test disabled quota=1048576 aliases=- scram=yes",
            "carol@example.test enabled quota=unlimited aliases=- scram=yes",
        ])
        # The stored hash is yescrypt of exactly the first line of stdin.
        self.assert_stored_hash_verifies("pw one")
        self.assert_stored_hash_verifies("pw two")

    def test_password_never_from_argv_and_never_empty(self):
        self.refused("user", "add", "dave@example.test", stdin=b"\n")
        self.refused("user", "add", "dave@example.test", stdin=b"")
        self.refused("user", "add", "dave@example.test", stdin=b"\r\n")
        self.assertEqual(self.listing(), [])
        # Only the first line counts; CR LF is stripped.
        self.ok("user", "add", "dave@example.test", stdin=b"first line\r\nsecond line\n")
        self.assert_stored_hash_verifies("first line")

    def test_duplicate_add_fails(self):
        self.add("alice@example.test", "pw", "--alias", "al@example.test")
        err = self.refused("user", "add", "ALICE@example.test", stdin=b"other\n")
        self.assertIn("alice@example.test already exists", err)
        err = self.refused("user", "add", "al@example.test", stdin=b"other\n")
        self.assertIn("alias of alice@example.test", err)
        err = self.refused("user", "add", "bob@example.test", "--alias", "al@example.test",
                           stdin=b"other\n")
        self.assertIn("al@example.test", err)
        self.assertEqual(len(self.listing()), 1)

    def test_bad_addresses_and_usage(self):
        for bad in ("alice", "a%b@example.test", "alice@[127.0.0.1]", '"a@b"@example.test'):
            self.refused("user", "add", bad, stdin=b"pw\n")
        self.refused("user", code=2)
        self.refused("user", "frobnicate", code=2)
        self.refused("user", "add", code=2)
        self.refused("user", "add", "x@example.test", "--bogus", stdin=b"pw\n", code=2)
        self.refused("user", "quota", "x@example.test", "lots", code=2)
        self.refused("user", "alias", "move", "x@example.test", "y@example.test", code=2)
        self.refused("user", "list", "extra", code=2)
        self.refused("user", "import", code=2)
        self.assertEqual(self.listing(), [])

    def test_passwd(self):
        self.add("alice@example.test", "old password")
        self.assertIn("alice@example.test", self.ok("user", "passwd", "Alice@example.test",
                                                    stdin=b"new password\r\n"))
        self.assert_stored_hash_verifies("new password")
        self.refused("user", "passwd", "nobody@example.test", stdin=b"x\n")
        self.refused("user", "passwd", "alice@example.test", stdin=b"\n")

    def test_alias_add_del(self):
        self.add("alice@example.test")
        self.add("bob@example.test")
        self.ok("user", "alias", "add", "alice@example.test", "Al@Example.test")
        self.assertIn("aliases=al@example.test ", self.listing()[0])
        # Taken: another user's alias, another user's address, already ours.
        self.refused("user", "alias", "add", "bob@example.test", "al@example.test")
        self.refused("user", "alias", "add", "bob@example.test", "alice@example.test")
        self.refused("user", "alias", "add", "alice@example.test", "al@example.test")
        self.refused("user", "alias", "add", "nobody@example.test", "n@example.test")
        self.refused("user", "alias", "del", "bob@example.test", "al@example.test")
        self.ok("user", "alias", "del", "alice@example.test", "al@example.test")
        self.assertIn("aliases=- ", self.listing()[0])
        # Freed: bob may take it now.
        self.ok("user", "alias", "add", "bob@example.test", "al@example.test")
        self.assertEqual(self.listing()[1],
                         "bob@example.test enabled quota=unlimited aliases=al@example.test "
                         "scram=yes")

    def test_enable_disable_quota(self):
        self.add("alice@example.test")
        self.ok("user", "disable", "alice@example.test")
        self.assertEqual(self.listing(),
                         ["alice@example.test disabled quota=unlimited aliases=- scram=yes"])
        self.ok("user", "enable", "alice@example.test")
        self.ok("user", "quota", "alice@example.test", "5000")
        self.assertEqual(self.listing(),
                         ["alice@example.test enabled quota=5000 aliases=- scram=yes"])
        self.ok("user", "quota", "alice@example.test", "0")
        self.assertIn("quota=unlimited", self.listing()[0])
        self.refused("user", "disable", "nobody@example.test")

    def test_del(self):
        self.add("alice@example.test", "pw", "--alias", "al@example.test")
        self.add("bob@example.test")
        self.ok("user", "del", "ALICE@example.test")
        self.assertEqual([line.split()[0] for line in self.listing()], ["bob@example.test"])
        self.refused("user", "del", "alice@example.test")
        # The alias went with it.
        self.ok("user", "alias", "add", "bob@example.test", "al@example.test")

    def test_import(self):
        lines = [
            "# exported from dovecot",                                          # 1
            f"sha@example.test:{{SHA512-CRYPT}}{SHA512}:1000:1000::/home/sha::"
            "userdb_quota_rule=*:storage=1M",                                   # 2
            f"blf@example.test:{{BLF-CRYPT}}{BCRYPT}",                          # 3
            f"yes@example.test:{{CRYPT}}{YESCRYPT}",                            # 4
            "plain@example.test:{PLAIN}plain secret",                           # 5
            "",                                                                 # 6
            f"bare@example.test:{SHA512}",                                      # 7
            f"md5@example.test:{{MD5-CRYPT}}{MD5}",                             # 8
            "ssha@example.test:{SSHA}c2FsdGVkaGFzaA==",                         # 9
            f"mismatch@example.test:{{SHA512-CRYPT}}{BCRYPT}",                  # 10
            "not-an-address:{PLAIN}x",                                          # 11
            "odd@example.test:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$x$y",    # 12
        ]
        path = os.path.join(self.d.tmp, "passwd")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = self.ctl("user", "import", path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout.decode(), "imported 5 users, skipped 5\n")
        err = r.stderr.decode().splitlines()
        self.assertEqual([e.split(":")[1] for e in err], ["8", "9", "10", "11", "12"], err)
        for e in err:
            self.assertTrue(e.startswith(path + ":"), e)
        self.assertIn("MD5", err[0])
        self.assertIn("SSHA", err[1])
        self.assertIn("$6$", err[2])
        self.assertIn("not-an-address", err[3])
        self.assertIn("ARGON2ID", err[4])

        self.assertEqual(self.listing(), [
            "bare@example.test enabled quota=unlimited aliases=- scram=no",
            "blf@example.test enabled quota=unlimited aliases=- scram=no",
            "plain@example.test enabled quota=unlimited aliases=- scram=yes",
            "sha@example.test enabled quota=1048576 aliases=- scram=no",
            "yes@example.test enabled quota=unlimited aliases=- scram=no",
        ])
        # Imported hashes are kept verbatim, so the old passwords keep working.
        stored = self.stored_hashes()
        for h in (SHA512, BCRYPT, YESCRYPT):
            self.assertIn(h, stored)
        self.assert_stored_hash_verifies("plain secret")

        # Again: every user exists now and is skipped (exit 0 when nothing was refused).
        good = os.path.join(self.d.tmp, "passwd.good")
        with open(good, "w") as f:
            f.write("\n".join(lines[:7]) + "\n")
        r = self.ctl("user", "import", good)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "imported 0 users, skipped 5\n")
        self.assertEqual(len(r.stderr.decode().splitlines()), 5)
        self.assertIn("exists", r.stderr.decode())

    def test_import_replace_from_stdin(self):
        self.add("alice@example.test", "old", "--alias", "al@example.test", "--quota", "77")
        text = f"alice@example.test:{{SHA512-CRYPT}}{SHA512}\nnew@example.test:{{PLAIN}}pw\n"
        r = self.ctl("user", "import", "-", stdin=text.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "imported 1 users, skipped 1\n")
        self.assertIn("alice@example.test exists", r.stderr.decode())
        self.assertIn("scram=yes", self.listing()[0])  # untouched
        r = self.ctl("user", "import", "--replace", "-", stdin=text.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), "imported 2 users, skipped 0\n")
        # Replaced: the imported hash, no SCRAM; aliases and quota kept.
        self.assertEqual(self.listing()[0],
                         "alice@example.test enabled quota=77 aliases=al@example.test scram=no")
        self.assertIn(SHA512, self.stored_hashes())

    def test_import_alias_conflict_is_refused(self):
        self.add("alice@example.test", "pw", "--alias", "al@example.test")
        r = self.ctl("user", "import", "-", stdin=b"al@example.test:{PLAIN}x\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("-:1: al@example.test is already an alias of alice@example.test",
                      r.stderr.decode())

    def test_while_daemon_runs(self):
        self.d.start()
        self.add("alice@example.test", "pw")
        self.ok("user", "alias", "add", "alice@example.test", "al@example.test")
        self.assertEqual(self.listing(),
                         ["alice@example.test enabled quota=unlimited aliases=al@example.test "
                          "scram=yes"])
        with self.d.session() as c:
            c.cmd("QUIT")
        self.ok("user", "del", "alice@example.test")
        self.assertEqual(self.listing(), [])


if __name__ == "__main__":
    unittest.main()
