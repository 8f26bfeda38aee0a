// A real authoritative DNS server for tests: NSD (Debian package `nsd`) in the
// foreground, as the current user, serving zone files from a private temp dir on
// 127.0.0.1:<free port>. Nothing under /etc is read or changed and no system service is
// involved. Tests call NsdServer::binary() first and GTEST_SKIP when it is empty.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/dns_packet.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace ringmail::testing {

class NsdServer {
 public:
  using Zones = std::vector<std::pair<std::string, std::string>>;  // origin, zone file text

  // The nsd binary: $RINGMAIL_NSD, else /usr/sbin/nsd; "" when there is none.
  static std::string binary() {
    if (const char* e = std::getenv("RINGMAIL_NSD"); e && *e) return access(e, X_OK) == 0 ? e : "";
    for (const char* p : {"/usr/sbin/nsd", "/usr/local/sbin/nsd"})
      if (access(p, X_OK) == 0) return p;
    return "";
  }

  NsdServer() : dir_("ringmail-nsd") {}
  ~NsdServer() { stop(); }
  NsdServer(const NsdServer&) = delete;
  NsdServer& operator=(const NsdServer&) = delete;

  // Writes the zones and starts NSD on a free port; true once it answers a query.
  // `why` says what went wrong otherwise (with NSD's own log).
  bool start(const Zones& zones, std::string* why) {
    for (const auto& [origin, text] : zones)
      std::ofstream(dir_.path() + "/" + origin + ".zone") << text;
    // Another test may take the port between our probe and NSD's bind: try a few.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (port_ == 0) continue;
      write_config(zones);
      if (launch() && wait_ready(zones.front().first)) return true;
      stop();
    }
    *why = "nsd did not start; its log:\n" + log();
    return false;
  }

  void stop() {
    if (pid_ <= 0) return;
    // NSD forks its server and xfrd processes; they share the group we gave it.
    ::kill(-pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(-pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const {
    std::ifstream in(dir_.path() + "/nsd.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  static uint16_t free_port() {
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(u, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      // NSD also listens on TCP (truncated answers): the port must be free there too.
      int t = socket(AF_INET, SOCK_STREAM, 0);
      if (bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) port = ntohs(a.sin_port);
      ::close(t);
    }
    ::close(u);
    return port;
  }

  void write_config(const Zones& zones) {
    const std::string& d = dir_.path();
    std::ofstream c(d + "/nsd.conf");
    c << "server:\n"
      << "  ip-address: 127.0.0.1@" << port_ << "\n"
      << "  port: " << port_ << "\n"
      << "  username: \"\"\n"
      << "  chroot: \"\"\n"
      << "  zonesdir: \"" << d << "\"\n"
      << "  pidfile: \"" << d << "/nsd.pid\"\n"
      << "  database: \"\"\n"
      << "  xfrdfile: \"" << d << "/xfrd.state\"\n"
      << "  zonelistfile: \"" << d << "/zone.list\"\n"
      << "  xfrdir: \"" << d << "\"\n"
      << "  logfile: \"" << d << "/nsd.log\"\n"
      << "  server-count: 1\n"
      << "  ip4-only: yes\n"
      << "  verbosity: 1\n"
      << "remote-control:\n"
      << "  control-enable: no\n";
    for (const auto& z : zones)
      c << "zone:\n  name: " << z.first << "\n  zonefile: " << z.first << ".zone\n";
  }

  bool launch() {
    std::string bin = binary();
    std::string conf = dir_.path() + "/nsd.conf";
    std::string out = dir_.path() + "/nsd.out";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::vector<char*> argv = {const_cast<char*>("nsd"), const_cast<char*>("-d"),
                               const_cast<char*>("-c"), conf.data(), nullptr};
    int r = posix_spawn(&pid_, bin.c_str(), &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (r != 0) pid_ = -1;
    return r == 0;
  }

  // Asks for the SOA of `zone` until an answer comes, NSD exits, or 20 s pass (a loaded
  // CI machine can be slow to start it).
  bool wait_ready(const std::string& zone) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    timeval tv{0, 100000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    Bytes q = Packet(0, 0x4242).question(zone, 6).not_a_response().build();
    bool ok = false;
    for (int i = 0; i < 200 && !ok; ++i) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      sendto(s, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
      uint8_t buf[512];
      ok = recv(s, buf, sizeof buf, 0) > 0;
    }
    ::close(s);
    return ok;
  }

  TempDir dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace ringmail::testing
