// Builds DNS messages in wire format by hand, for tests of the answer reader and the
// classification: uncompressed names unless a test writes its own pointers.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::testing {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

inline void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}

// "mx1.example.test" -> 3mx1 7example 4test 0; "" is the root.
inline Bytes wire_name(std::string_view dotted) {
  Bytes b;
  while (!dotted.empty()) {
    size_t dot = dotted.find('.');
    std::string_view label = dotted.substr(0, dot);
    b.push_back(static_cast<uint8_t>(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  b.push_back(0);
  return b;
}

inline Bytes mx_rdata(uint16_t pref, std::string_view host) {
  Bytes b;
  put16(b, pref);
  Bytes n = wire_name(host);
  b.insert(b.end(), n.begin(), n.end());
  return b;
}

inline Bytes a_rdata(const char* text) {
  Bytes b(4);
  inet_pton(AF_INET, text, b.data());
  return b;
}

inline Bytes aaaa_rdata(const char* text) {
  Bytes b(16);
  inet_pton(AF_INET6, text, b.data());
  return b;
}

inline Bytes soa_rdata(std::string_view mname, std::string_view rname, uint32_t minimum) {
  Bytes b = wire_name(mname);
  Bytes r = wire_name(rname);
  b.insert(b.end(), r.begin(), r.end());
  for (uint32_t v : {1u, 3600u, 600u, 86400u}) put32(b, v);  // serial, refresh, retry, expire
  put32(b, minimum);
  return b;
}

class Packet {
 public:
  explicit Packet(uint8_t rcode = 0, uint16_t id = 0x1234) : rcode_(rcode), id_(id) {}

  Packet& question(std::string_view name, uint16_t type) {
    q_ = wire_name(name);
    put16(q_, type);
    put16(q_, 1);
    qd_ = 1;
    return *this;
  }
  Packet& answer(std::string_view name, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    rr(an_, wire_name(name), type, ttl, rdata);
    ++ancount_;
    return *this;
  }
  Packet& authority(std::string_view name, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    rr(ns_, wire_name(name), type, ttl, rdata);
    ++nscount_;
    return *this;
  }
  Packet& not_a_response() {
    qr_ = false;
    return *this;
  }

  Bytes build() const {
    Bytes b;
    put16(b, id_);
    b.push_back(static_cast<uint8_t>((qr_ ? 0x80 : 0) | 0x04 /* AA */ | 0x01 /* RD */));
    b.push_back(static_cast<uint8_t>(0x80 /* RA */ | rcode_));
    put16(b, qd_);
    put16(b, ancount_);
    put16(b, nscount_);
    put16(b, 0);
    b.insert(b.end(), q_.begin(), q_.end());
    b.insert(b.end(), an_.begin(), an_.end());
    b.insert(b.end(), ns_.begin(), ns_.end());
    return b;
  }

 private:
  static void rr(Bytes& out, const Bytes& name, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    out.insert(out.end(), name.begin(), name.end());
    put16(out, type);
    put16(out, 1);
    put32(out, ttl);
    put16(out, static_cast<uint16_t>(rdata.size()));
    out.insert(out.end(), rdata.begin(), rdata.end());
  }

  uint8_t rcode_;
  uint16_t id_;
  bool qr_ = true;
  uint16_t qd_ = 0, ancount_ = 0, nscount_ = 0;
  Bytes q_, an_, ns_;
};

}  // namespace ringmail::testing
