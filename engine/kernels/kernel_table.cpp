#include "engine/kernels/kernel_table.hpp"

#include "engine/error.hpp"

namespace engine::kernels {

const KernelTable& table_for(Isa isa) {
  if (isa > detected_isa()) fail("kernels: this CPU cannot run ", isa_name(isa));
  switch (isa) {
    case Isa::avx512: return avx512_table();
    case Isa::avx2: return avx2_table();
    case Isa::portable: break;
  }
  return portable_table();
}

const KernelTable& active() { return table_for(active_isa()); }

}  // namespace engine::kernels
