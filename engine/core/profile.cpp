#include <atomic>
#include <chrono>

#include "engine/core/profile_scope.hpp"

namespace engine {
namespace {

thread_local ProfileCollector* t_collector = nullptr;
thread_local const char* t_stack = "model";
thread_local std::int32_t t_layer = -1;
std::atomic<std::int32_t> g_next_thread{0};
thread_local std::int32_t t_thread = -1;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct ProfileAccess {
  static std::vector<ProfileRecord>& records(ProfileCollector& c) { return c.records_; }
};

std::string ProfileRecord::layer_name() const {
  return layer < 0 ? std::string(stack) : std::string(stack) + ".layers." + std::to_string(layer);
}

ProfileCollector::ProfileCollector() : origin_ns_(steady_ns()), outer_(t_collector) {
  records_.reserve(1024);
  t_collector = this;
}

ProfileCollector::~ProfileCollector() { t_collector = outer_; }

double ProfileCollector::now_us() const { return static_cast<double>(steady_ns() - origin_ns_) * 1e-3; }

namespace profile {

ProfileCollector* active() { return t_collector; }

LayerScope::LayerScope(const char* stack, std::int32_t layer)
    : on_(t_collector != nullptr), outer_stack_(t_stack), outer_layer_(t_layer) {
  if (on_) {
    t_stack = stack;
    t_layer = layer;
  }
}

LayerScope::~LayerScope() {
  if (on_) {
    t_stack = outer_stack_;
    t_layer = outer_layer_;
  }
}

void OpScope::begin(const char* op, double flops, double bytes) {
  op_ = op;
  flops_ = flops;
  bytes_ = bytes;
  start_us_ = collector_->now_us();
}

void OpScope::end() {
  if (t_thread < 0) t_thread = g_next_thread.fetch_add(1);
  const double end_us = collector_->now_us();
  ProfileAccess::records(*collector_).push_back(
      ProfileRecord{t_stack, t_layer, op_, t_thread, start_us_, end_us - start_us_, flops_, bytes_});
}

}  // namespace profile
}  // namespace engine
