// Small RAII and view helpers over the LMDB C API, shared by the LMDB environments of
// the queue (store.cc, admin.cc) and the mailbox store (mta/store/). Header-only; no
// policy: what to do with MDB_MAP_FULL or a damaged record stays with the caller.
#pragma once

#include <lmdb.h>

#include <string_view>

namespace ringmail::lmdb {

inline MDB_val val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// Read transaction that always ends. Follows a map another process (or this one) has
// grown meanwhile (MDB_MAP_RESIZED).
class ReadTxn {
 public:
  explicit ReadTxn(MDB_env* env) {
    rc_ = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn_);
    if (rc_ == MDB_MAP_RESIZED) {
      mdb_env_set_mapsize(env, 0);
      rc_ = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn_);
    }
  }
  ~ReadTxn() {
    if (rc_ == 0) mdb_txn_abort(txn_);
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  int rc() const { return rc_; }
  MDB_txn* get() { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = mdb_cursor_open(txn, dbi, &c_); }
  ~Cursor() {
    if (rc_ == 0) mdb_cursor_close(c_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  int rc() const { return rc_; }
  MDB_cursor* get() { return c_; }

 private:
  MDB_cursor* c_ = nullptr;
  int rc_;
};

}  // namespace ringmail::lmdb
