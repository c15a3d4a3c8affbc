// The GEMM shapes of ../shared/workloads.json ("gemm.shapes"), built in so that our numbers sit
// beside the peers' on exactly the same work.
#pragma once

#include <array>
#include <cstdint>

namespace engine::bench {

struct GemmShape {
  const char* name;
  std::int64_t M, N, K;
  bool trans_b;  // B stored [N, K]
};

inline constexpr std::array<GemmShape, 11> kGemmShapes{{
    {"lin_m128_n768_k768", 128, 768, 768, false},
    {"lin_m128_n3072_k768", 128, 3072, 768, false},
    {"lin_m128_n768_k3072", 128, 768, 3072, false},
    {"lin_m1024_n768_k768", 1024, 768, 768, false},
    {"lin_m1024_n3072_k768", 1024, 3072, 768, false},
    {"lin_m1024_n768_k3072", 1024, 768, 3072, false},
    {"sq_2048", 2048, 2048, 2048, false},
    {"qkt_s128", 128, 128, 64, true},
    {"pv_s128", 128, 64, 128, false},
    {"qkt_s1024", 1024, 1024, 64, true},
    {"pv_s1024", 1024, 64, 1024, false},
}};

}  // namespace engine::bench
