// auth: the user database, one LMDB environment under <data_dir>/users.
//
// Owns that environment and its sub-databases:
//   users    address (lower-cased)  -> user record (versioned binary, bounds-checked)
//   aliases  alias (lower-cased)    -> owning user's address
//   meta     "schema"               -> "1"
// An address is either one user's login address or one user's alias, never both and never
// twice; every write checks that inside its transaction, so the alias index cannot drift.
// It never hashes or checks passwords (password.h) and never decides policy. UserDb itself
// only lower-cases addresses; callers check their syntax first with
// normalize_user_address() below (ringctl and the passwd-file import do).
//
// Concurrency: open it once per process and share the handle (LMDB: two handles on one
// environment in one process break each other's locks). find() and find_owner() may be called
// from several threads at once (each runs its own read transaction, MDB_NOTLS) while
// another process (ringctl) writes: LMDB serialises writers across processes, readers see
// the last committed state. A lookup is a few B-tree page reads from the memory map; a
// damaged record is an Error, never a crash or a huge allocation.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "auth/user.h"
#include "conf/result.h"

namespace ringmail::auth {

// "Alice@Example.TEST" -> "alice@example.test" after checking it is a plain mailbox: it
// must parse as an RFC 5321 path (parse_path on "<ADDRESS>", UTF-8 allowed), with no
// source route, no address literal, no quoted local part and no '%' or '!' in the local
// part (the relay policy never treats those as local, so no user may own one).
// Lower-cases ASCII only. Errors carry EINVAL and a reason.
Result<std::string> normalize_user_address(std::string_view address);

class UserDb {
 public:
  struct Options {
    std::string dir;                         // <data_dir>/users, created (0700) if missing
    uint64_t initial_map_size = 1ULL << 30;  // sparse: costs address space, not disk
    uint64_t max_map_size = 16ULL << 30;     // MDB_MAP_FULL grows the map up to this
  };

  static Result<std::unique_ptr<UserDb>> open(const std::string& dir);
  static Result<std::unique_ptr<UserDb>> open(const Options& o);
  ~UserDb();
  UserDb(const UserDb&) = delete;
  UserDb& operator=(const UserDb&) = delete;

  // --- lookups (any thread, concurrently) ---------------------------------------------
  // The user whose login address this is (case-insensitive); nullopt when none.
  Result<std::optional<User>> find(std::string_view address) const;
  // The user whose address or alias this is; nullopt when none.
  Result<std::optional<User>> find_owner(std::string_view address) const;
  // Every user, sorted by address. fn runs after the read transaction has ended, so it
  // may call back into this UserDb.
  Status for_each(const std::function<void(const User&)>& fn) const;

  // --- writes (each its own write transaction; addresses are lower-cased) -------------
  // EEXIST if the address or any alias already is an address or an alias; EINVAL for an
  // empty or oversized address, or an alias equal to the address. Duplicate aliases in
  // u.aliases are stored once.
  Status add(const User& u);
  // Replaces the user with u.address. ENOENT if absent; EEXIST if a new alias belongs to
  // someone else (or is another user's address). Aliases dropped from u are freed.
  Status update(const User& u);
  // ENOENT if absent; frees its aliases too.
  Status remove(std::string_view address);

  uint64_t map_size() const;

 private:
  UserDb() = default;
  // Write transaction with MDB_MAP_FULL handling: runs body(txn) and commits; on a full
  // map it aborts, grows the map and runs body again (body must be idempotent).
  Status write(const std::function<Status(MDB_txn*)>& body);
  bool grow_map();
  Result<std::optional<User>> get_user(MDB_txn* txn, std::string_view key) const;

  MDB_env* env_ = nullptr;
  MDB_dbi users_ = 0, aliases_ = 0, meta_ = 0;
  mutable uint64_t map_size_ = 0;  // GUARDED_BY(map_mu_)
  uint64_t max_map_size_ = 0;
  // Shared by every open transaction of this process; exclusive only to change the map
  // size (mdb_env_set_mapsize requires that no transaction of this process is open).
  mutable std::shared_mutex map_mu_;
};

// The binary user record (exposed for tests of damaged records).
std::string encode_user(const User& u);
Result<User> decode_user(std::string_view data);

}  // namespace ringmail::auth
