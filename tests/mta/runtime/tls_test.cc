// mta/runtime TLS: rt::Stream over BoringSSL on a real io_uring, both ends in one loop.
//
// The server end is the daemon's code path (start_tls as server, fill/consume/flush);
// the client end is the same Stream in client mode, so each test runs a real handshake
// over a socketpair with certificates made by the daemon's own self-signed generator.
#include "mta/runtime/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "mta/runtime/loop.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "mta/server/tls_setup.h"
#include "tests/support/temp_dir.h"

namespace ringmail::rt {
namespace {

using namespace std::chrono_literals;

struct Pair {
  int fd[2] = {-1, -1};
  Pair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
};

// A server context from a freshly made self-signed certificate.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.path() + "/cert.pem";
    key_ = dir_.path() + "/key.pem";
    auto s = server::make_self_signed("mx.example.test", cert_, key_);
    ASSERT_TRUE(s.ok()) << s.error().message;
    auto ctx = make_server_tls(cert_, key_);
    ASSERT_TRUE(ctx.ok()) << ctx.error().message;
    server_ctx_ = std::move(*ctx);
    client_ctx_ = make_client_tls();
  }
  testing::TempDir dir_;
  std::string cert_, key_;
  TlsContextPtr server_ctx_, client_ctx_;
};

// Runs both ends; stops the loop when both are done (or after a deadline).
struct Both {
  Loop& loop;
  int left = 2;
  Sleep* guard = nullptr;
  void done() {
    if (--left > 0) return;
    if (guard) guard->cancel();
    loop.stop();
  }
};

Task<void> guard(Loop& loop, Both& b) {
  Sleep s(loop, 10s);
  b.guard = &s;
  int r = co_await s;
  b.guard = nullptr;
  if (r == 0 && b.left > 0) {
    ADD_FAILURE() << "TLS test did not finish in time";
    loop.stop();
  }
}

// Reads until `want` bytes of plaintext are buffered (or EOF/error).
Task<std::string> read_exactly(Stream& s, size_t want) {
  std::string got;
  while (got.size() < want) {
    if (s.input().empty()) {
      int n = co_await s.fill(5s, 1 << 20);
      if (n <= 0) break;
    }
    auto in = s.input();
    size_t take = std::min(in.size(), want - got.size());
    got.append(in.substr(0, take));
    s.consume(take);
  }
  co_return got;
}

Task<void> server_side(Stream& s, SSL_CTX* ctx, Both& b, int& hs, std::string& got,
                       std::string reply) {
  hs = co_await s.start_tls(ctx, true, 5s);
  if (hs == 0) {
    got = co_await read_exactly(s, 5);
    s.write(reply);
    co_await s.flush(5s);
  }
  b.done();
}

Task<void> client_side(Stream& s, SSL_CTX* ctx, Both& b, int& hs, std::string& got,
                       size_t reply_size) {
  hs = co_await s.start_tls(ctx, false, 5s, "mx.example.test");
  if (hs == 0) {
    s.write("hello");
    co_await s.flush(5s);
    got = co_await read_exactly(s, reply_size);
  }
  b.done();
}

TEST_F(TlsTest, HandshakeAndDataBothWays) {
  Loop loop;
  Pair p;
  Stream srv(loop, p.fd[0]), cli(loop, p.fd[1]);
  Both b{loop};
  int hs_s = 1, hs_c = 1;
  std::string got_s, got_c;
  // 200 KB: many records, and reads that end in the middle of one.
  std::string big(200000, 'x');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  loop.spawn(guard(loop, b));
  loop.spawn(server_side(srv, server_ctx_.get(), b, hs_s, got_s, big));
  loop.spawn(client_side(cli, client_ctx_.get(), b, hs_c, got_c, big.size()));
  loop.run();
  EXPECT_EQ(hs_s, 0);
  EXPECT_EQ(hs_c, 0);
  EXPECT_EQ(got_s, "hello");
  EXPECT_EQ(got_c, big);
  ASSERT_NE(srv.tls(), nullptr);
  EXPECT_EQ(srv.tls()->version(), "TLSv1.3");
  EXPECT_FALSE(srv.tls()->cipher().empty());
  EXPECT_GE(srv.tls()->cipher_bits(), 128);
}

TEST_F(TlsTest, Tls12StillAccepted) {
  SSL_CTX_set_max_proto_version(client_ctx_.get(), TLS1_2_VERSION);
  Loop loop;
  Pair p;
  Stream srv(loop, p.fd[0]), cli(loop, p.fd[1]);
  Both b{loop};
  int hs_s = 1, hs_c = 1;
  std::string got_s, got_c;
  loop.spawn(guard(loop, b));
  loop.spawn(server_side(srv, server_ctx_.get(), b, hs_s, got_s, "ok"));
  loop.spawn(client_side(cli, client_ctx_.get(), b, hs_c, got_c, 2));
  loop.run();
  EXPECT_EQ(hs_s, 0);
  EXPECT_EQ(got_c, "ok");
  EXPECT_EQ(srv.tls()->version(), "TLSv1.2");
}

TEST_F(TlsTest, Tls11IsRefused) {
  SSL_CTX_set_min_proto_version(client_ctx_.get(), TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(client_ctx_.get(), TLS1_1_VERSION);
  Loop loop;
  Pair p;
  Stream srv(loop, p.fd[0]), cli(loop, p.fd[1]);
  Both b{loop};
  int hs_s = 1, hs_c = 1;
  std::string got_s, got_c;
  loop.spawn(guard(loop, b));
  loop.spawn(server_side(srv, server_ctx_.get(), b, hs_s, got_s, "ok"));
  loop.spawn(client_side(cli, client_ctx_.get(), b, hs_c, got_c, 2));
  loop.run();
  EXPECT_EQ(hs_s, -EPROTO);
  EXPECT_NE(hs_c, 0);
  EXPECT_FALSE(srv.tls()->error().empty());
}

Task<void> garbage_client(int fd, Both& b) {
  // An HTTP request where a ClientHello should be.
  EXPECT_GT(::write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 0);
  b.done();
  co_return;
}

TEST_F(TlsTest, GarbageInsteadOfClientHelloFails) {
  Loop loop;
  Pair p;
  Stream srv(loop, p.fd[0]);
  Both b{loop};
  int hs_s = 1;
  std::string got_s;
  loop.spawn(guard(loop, b));
  loop.spawn(server_side(srv, server_ctx_.get(), b, hs_s, got_s, "ok"));
  loop.spawn(garbage_client(p.fd[1], b));
  loop.run();
  ::close(p.fd[1]);
  EXPECT_EQ(hs_s, -EPROTO);
}

// STARTTLS (RFC 3207 / CVE-2011-0411): plaintext pipelined behind the STARTTLS command is
// already in the server's buffer when the handshake starts; it must never come out of
// input() afterwards.
// Written with named results: GCC 12 miscompiled `if (co_await a == 0) x = co_await b;`
// in this coroutine (the resumed frame hit a trap), so the code keeps co_await out of
// conditions that guard another co_await.
Task<void> starttls_server(Stream& s, SSL_CTX* ctx, Both& b, std::string& before,
                           std::string& after) {
  for (int i = 0; i < 20; ++i) {
    if (s.input().find("INJECTED\r\n") != std::string_view::npos) break;
    int n = co_await s.fill(5s, 4096);
    if (n <= 0) break;
  }
  before = std::string(s.input());
  s.consume(10);  // "STARTTLS\r\n"; the injected line stays buffered
  s.write("220 go ahead\r\n");
  int f = co_await s.flush(5s);
  EXPECT_EQ(f, 0);
  int hs = co_await s.start_tls(ctx, true, 5s);
  EXPECT_EQ(hs, 0);
  std::string got = co_await read_exactly(s, 6);
  after = got;
  b.done();
}

Task<void> starttls_client(Loop& loop, Stream& s, int raw, SSL_CTX* ctx, Both& b) {
  EXPECT_EQ(::write(raw, "STARTTLS\r\nINJECTED\r\n", 20), 20);
  // The reply, read as plaintext.
  std::string r = co_await read_exactly(s, 14);
  EXPECT_EQ(r, "220 go ahead\r\n");
  if (co_await s.start_tls(ctx, false, 5s) == 0) {
    s.write("EHLO\r\n");
    co_await s.flush(5s);
  }
  Sleep settle(loop, 50ms);  // let the server read before the socket closes
  co_await settle;
  b.done();
}

TEST_F(TlsTest, StartTlsDiscardsPlaintextBufferedBeforeTheHandshake) {
  Loop loop;
  Pair p;
  Stream srv(loop, p.fd[0]), cli(loop, p.fd[1]);
  Both b{loop};
  std::string before, after;
  loop.spawn(guard(loop, b));
  loop.spawn(starttls_server(srv, server_ctx_.get(), b, before, after));
  loop.spawn(starttls_client(loop, cli, p.fd[1], client_ctx_.get(), b));
  loop.run();
  EXPECT_EQ(before, "STARTTLS\r\nINJECTED\r\n");
  EXPECT_EQ(after, "EHLO\r\n");
}

TEST_F(TlsTest, ServerContextChecksItsFiles) {
  auto missing = make_server_tls(dir_.path() + "/nope.pem", key_);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("nope.pem"), std::string::npos);
  // A key that belongs to another certificate.
  std::string cert2 = dir_.path() + "/c2.pem", key2 = dir_.path() + "/k2.pem";
  ASSERT_TRUE(server::make_self_signed("other.test", cert2, key2).ok());
  auto mismatch = make_server_tls(cert_, key2);
  ASSERT_FALSE(mismatch.ok());
  // BoringSSL notices while loading the key (KEY_VALUES_MISMATCH); the message names it.
  EXPECT_NE(mismatch.error().message.find("k2.pem"), std::string::npos) << mismatch.error().message;
}

}  // namespace
}  // namespace ringmail::rt
