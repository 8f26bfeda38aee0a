// MailStore: where mail for local users ends up (DESIGN "Mailbox store").
//
// The interface the delivery side hands local mail to, and the built-in LMDB store
// behind it (<data_dir>/mail). What exists so far is the delivery half: append a
// message to a user's INBOX with a UID, UIDVALIDITY and the mailbox's byte count
// (quota), plus listing and reading for `ringctl mailbox` and tests. Folders, flags,
// MODSEQ and the POP3/IMAP sessions arrive with the mailbox issue and extend this
// interface; the record layout below leaves room for them (the mailbox name is part of
// every key). It never resolves addresses (the caller passes the account) and never
// talks to the network. All calls block on LMDB: call them from a worker thread.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace ringmail::store {

struct MessageInfo {
  uint32_t uid = 0;
  uint64_t size = 0;
  int64_t internal_date = 0;  // unix seconds
};

class MailStore {
 public:
  virtual ~MailStore() = default;
  // Appends `message` to `account`'s INBOX and commits it to disk; returns its UID.
  // `quota` (bytes, 0 = none) is checked against the mailbox's size first.
  // Errors: code 452 = over quota (a temporary failure: the user may make room), any
  // other code = local failure (temporary too).
  virtual Result<uint32_t> deliver(std::string_view account, std::string_view message,
                                   uint64_t quota, int64_t now) = 0;
  virtual Result<std::vector<MessageInfo>> list(std::string_view account) = 0;
  virtual Result<std::string> read(std::string_view account, uint32_t uid) = 0;
};

// Keys: "mailbox": account \0 "INBOX" -> {uidvalidity, uidnext, count, bytes}
//       "message": account \0 "INBOX" \0 uid (4 bytes BE) -> internal date + message
class LmdbMailStore final : public MailStore {
 public:
  static Result<std::unique_ptr<LmdbMailStore>> open(const std::string& dir,
                                                     uint64_t max_map_size = 64ULL << 30);
  ~LmdbMailStore() override;
  Result<uint32_t> deliver(std::string_view account, std::string_view message, uint64_t quota,
                           int64_t now) override;
  Result<std::vector<MessageInfo>> list(std::string_view account) override;
  Result<std::string> read(std::string_view account, uint32_t uid) override;

 private:
  LmdbMailStore() = default;
  bool grow_map();

  MDB_env* env_ = nullptr;
  MDB_dbi mailbox_ = 0, message_ = 0;
  uint64_t map_size_ = 0, max_map_size_ = 0;
};

}  // namespace ringmail::store
