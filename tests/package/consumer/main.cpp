// Uses only the public headers: a 2x2 GEMM with a bias and ReLU, checked by hand.
#include <engine/engine.hpp>

#include <cstdio>

int main() {
  const float a[4] = {1, 2, 3, 4}, b[4] = {1, -1, 2, 1}, bias[2] = {0.5f, -10};
  float c[4] = {};
  engine::gemm(2, 2, 2, a, 2, b, 2, engine::Transpose::no, c, 2, 0.0f, {bias, engine::Activation::relu});
  // [1 2; 3 4]·[1 -1; 2 1] = [5 1; 11 1]; + bias, ReLU -> [5.5 0; 11.5 0]
  const float want[4] = {5.5f, 0.0f, 11.5f, 0.0f};
  for (int i = 0; i < 4; ++i)
    if (c[i] != want[i]) {
      std::printf("consumer: c[%d] = %g, want %g\n", i, c[i], want[i]);
      return 1;
    }
  std::printf("consumer: engine %s on %s ok\n", engine::version(), engine::isa_name(engine::active_isa()));
  return 0;
}
