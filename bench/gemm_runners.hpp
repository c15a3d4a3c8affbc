// One GEMM shape prepared four ways, each a callable that runs C = A·op(B) once:
// ours (B packed per call), ours with prepacked weights, oneDNN matmul with plain B, and oneDNN
// with B reordered ahead of time (format_tag::any). Primitives and packs are made once, outside timing.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/ops.hpp"
#include "workloads.hpp"
#ifdef ENGINE_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace engine::bench {

enum class GemmImpl { ours, ours_packed, onednn, onednn_packed };

inline const char* impl_name(GemmImpl impl) {
  switch (impl) {
    case GemmImpl::ours: return "engine";
    case GemmImpl::ours_packed: return "engine_prepacked";
    case GemmImpl::onednn: return "onednn";
    case GemmImpl::onednn_packed: return "onednn_prepacked";
  }
  return "?";
}

inline bool impl_available(GemmImpl impl) {
#ifdef ENGINE_WITH_ONEDNN
  (void)impl;
  return true;
#else
  return impl == GemmImpl::ours || impl == GemmImpl::ours_packed;
#endif
}

// Owns the operands of one shape; make() returns the runner for one implementation.
class GemmProblem {
 public:
  explicit GemmProblem(const GemmShape& s)
      : shape_(s), a_(static_cast<std::size_t>(s.M * s.K)), b_(static_cast<std::size_t>(s.K * s.N)),
        c_(static_cast<std::size_t>(s.M * s.N)) {
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (float& x : a_) x = dist(rng);
    for (float& x : b_) x = dist(rng);
  }

  double flops() const { return 2.0 * static_cast<double>(shape_.M) * static_cast<double>(shape_.N) * static_cast<double>(shape_.K); }

  std::function<void()> make(GemmImpl impl) {
    const GemmShape s = shape_;
    const std::int64_t ldb = s.trans_b ? s.K : s.N;
    const Transpose t = s.trans_b ? Transpose::yes : Transpose::no;
    switch (impl) {
      case GemmImpl::ours:
        return [this, s, ldb, t] { gemm(s.M, s.N, s.K, a_.data(), s.K, b_.data(), ldb, t, c_.data(), s.N); };
      case GemmImpl::ours_packed: {
        auto packed = std::make_shared<PackedMatrix>(pack_matrix(s.K, s.N, b_.data(), ldb, t));
        return [this, s, packed] { gemm_packed(s.M, a_.data(), s.K, *packed, c_.data(), s.N); };
      }
      case GemmImpl::onednn:
      case GemmImpl::onednn_packed:
#ifdef ENGINE_WITH_ONEDNN
        return make_onednn(impl == GemmImpl::onednn_packed);
#else
        break;
#endif
    }
    return {};
  }

 private:
#ifdef ENGINE_WITH_ONEDNN
  std::function<void()> make_onednn(bool packed) {
    using namespace dnnl;
    using tag = memory::format_tag;
    const GemmShape s = shape_;
    auto eng = std::make_shared<dnnl::engine>(dnnl::engine::kind::cpu, 0);
    auto strm = std::make_shared<stream>(*eng);
    memory::desc a_md({s.M, s.K}, memory::data_type::f32, tag::ab);
    memory::desc b_user_md({s.K, s.N}, memory::data_type::f32, s.trans_b ? tag::ba : tag::ab);
    memory::desc c_md({s.M, s.N}, memory::data_type::f32, tag::ab);
    memory::desc b_md = packed ? memory::desc({s.K, s.N}, memory::data_type::f32, tag::any) : b_user_md;
    matmul::primitive_desc pd(matmul::desc(a_md, b_md, c_md), *eng);
    auto prim = std::make_shared<matmul>(pd);
    memory a_mem(a_md, *eng, a_.data()), b_user(b_user_md, *eng, b_.data()), c_mem(c_md, *eng, c_.data());
    memory b_mem = b_user;
    if (pd.weights_desc() != b_user_md) {
      b_mem = memory(pd.weights_desc(), *eng);
      reorder(b_user, b_mem).execute(*strm, b_user, b_mem);
      strm->wait();
    }
    return [eng, strm, prim, a_mem, b_mem, c_mem] {
      prim->execute(*strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
      strm->wait();
    };
  }
#endif

  GemmShape shape_;
  std::vector<float> a_, b_, c_;
};

}  // namespace engine::bench
