// MpscStack: lock-free many-producer, one-consumer hand-off between threads.
//
// Producers push single nodes; the one consumer takes everything at once and gets it
// back in push order. push() reports whether the stack was empty, so a producer only
// wakes the consumer (an eventfd write, a futex) on the empty -> non-empty edge.
// Nodes are intrusive: the stack never allocates. It lives in conf/ (the bottom of the
// dependency graph) because the queue committer and the loops both use it.
#pragma once

#include <atomic>

namespace ringmail {

struct MpscNode {
  MpscNode* mpsc_next = nullptr;
};

class MpscStack {
 public:
  // Returns true if the stack was empty before this push.
  bool push(MpscNode* n) {
    MpscNode* head = head_.load(std::memory_order_relaxed);
    do {
      n->mpsc_next = head;
    } while (!head_.compare_exchange_weak(head, n, std::memory_order_release,
                                          std::memory_order_relaxed));
    return head == nullptr;
  }

  // Takes every node, oldest first. Consumer thread only.
  MpscNode* take_all() {
    MpscNode* n = head_.exchange(nullptr, std::memory_order_acquire);
    MpscNode* reversed = nullptr;
    while (n) {
      MpscNode* next = n->mpsc_next;
      n->mpsc_next = reversed;
      reversed = n;
      n = next;
    }
    return reversed;
  }

  bool empty() const { return head_.load(std::memory_order_acquire) == nullptr; }
  std::atomic<MpscNode*>& head() { return head_; }

 private:
  std::atomic<MpscNode*> head_{nullptr};
};

}  // namespace ringmail
