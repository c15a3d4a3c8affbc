// Our SGEMM against oneDNN's f32 matmul on the workload GEMM shapes (both must agree with each
// other to float rounding: |ours - onednn| <= max(1e-4, 1e-4·|onednn|) for K <= 3072 on [-1, 1] data).
#include <gtest/gtest.h>

#include <cmath>
#include <dnnl.hpp>
#include <vector>

#include "engine/ops.hpp"
#include "test_util.hpp"

namespace engine::test {
namespace {

struct Shape {
  const char* name;
  std::int64_t M, N, K;
  bool trans_b;
};

class GemmVsOneDnn : public ::testing::TestWithParam<Shape> {};

TEST_P(GemmVsOneDnn, AgreesOnWorkloadShape) {
  const Shape s = GetParam();
  using namespace dnnl;
  using tag = memory::format_tag;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  stream strm(eng);
  memory::desc a_md({s.M, s.K}, memory::data_type::f32, tag::ab);
  memory::desc b_md({s.K, s.N}, memory::data_type::f32, s.trans_b ? tag::ba : tag::ab);
  memory::desc c_md({s.M, s.N}, memory::data_type::f32, tag::ab);
  matmul prim(matmul::primitive_desc(matmul::desc(a_md, b_md, c_md), eng));
  auto A = random_vector(static_cast<std::size_t>(s.M * s.K), 11);
  auto B = random_vector(static_cast<std::size_t>(s.K * s.N), 12);
  std::vector<float> C_dnnl(static_cast<std::size_t>(s.M * s.N)), C_ours(C_dnnl.size());
  memory a_mem(a_md, eng, A.data()), b_mem(b_md, eng, B.data()), c_mem(c_md, eng, C_dnnl.data());
  prim.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
  strm.wait();
  for (Isa isa : test_isas()) {
    IsaScope scope(isa);
    gemm(s.M, s.N, s.K, A.data(), s.K, B.data(), s.trans_b ? s.K : s.N, s.trans_b ? Transpose::yes : Transpose::no,
         C_ours.data(), s.N);
    std::vector<double> want(C_dnnl.begin(), C_dnnl.end());
    EXPECT_TRUE(all_close(C_ours.data(), want.data(), want.size(), 1e-4, 1e-4)) << s.name << " on " << isa_name(isa);
  }
}

INSTANTIATE_TEST_SUITE_P(Workloads, GemmVsOneDnn,
                         ::testing::Values(Shape{"lin_m128_n768_k768", 128, 768, 768, false},
                                           Shape{"lin_m128_n768_k3072", 128, 768, 3072, false},
                                           Shape{"qkt_s128", 128, 128, 64, true},
                                           Shape{"pv_s128", 128, 64, 128, false},
                                           Shape{"qkt_s1024", 1024, 1024, 64, true},
                                           Shape{"pv_s1024", 1024, 64, 1024, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace engine::test
