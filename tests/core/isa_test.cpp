// Instruction-set selection: names, what this machine offers, switching, and ENGINE_MAX_ISA parsing.
#include "engine/isa.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/core/cpu.hpp"
#include "engine/error.hpp"
#include "test_util.hpp"

namespace {

using engine::Isa;

TEST(IsaTest, Names) {
  EXPECT_STREQ(engine::isa_name(Isa::portable), "scalar");
  EXPECT_STREQ(engine::isa_name(Isa::avx2), "avx2");
  EXPECT_STREQ(engine::isa_name(Isa::avx512), "avx512");
}

TEST(IsaTest, AvailableIsasAreOrderedAndIncludeTheDetectedOne) {
  const std::vector<Isa> isas = engine::available_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::portable);
  EXPECT_EQ(isas.back(), engine::detected_isa());
  EXPECT_TRUE(std::is_sorted(isas.begin(), isas.end()));
  EXPECT_EQ(std::adjacent_find(isas.begin(), isas.end()), isas.end()) << "duplicates";
  EXPECT_NE(std::find(isas.begin(), isas.end(), engine::detected_isa()), isas.end());
  for (Isa isa : isas) EXPECT_LE(isa, engine::detected_isa());
  // Every level up to the detected one is offered (each one's features include the previous').
  EXPECT_EQ(isas.size(), static_cast<std::size_t>(engine::detected_isa()) + 1);
  EXPECT_LE(engine::active_isa(), engine::detected_isa());
}

TEST(IsaTest, SetActiveIsaSwitchesAndRestores) {
  const Isa before = engine::active_isa();
  for (Isa isa : engine::available_isas()) {
    engine::set_active_isa(isa);
    EXPECT_EQ(engine::active_isa(), isa) << engine::isa_name(isa);
  }
  engine::set_active_isa(before);
  EXPECT_EQ(engine::active_isa(), before);
  {
    engine::test::IsaScope scope(Isa::portable);
    EXPECT_EQ(engine::active_isa(), Isa::portable);
  }
  EXPECT_EQ(engine::active_isa(), before) << "IsaScope restores the previous choice";
}

TEST(IsaTest, SetActiveIsaAboveDetectedThrows) {
  if (engine::detected_isa() == Isa::avx512) GTEST_SKIP() << "this CPU runs every instruction set";
  const Isa before = engine::active_isa();
  const Isa above = static_cast<Isa>(static_cast<int>(engine::detected_isa()) + 1);
  try {
    engine::set_active_isa(above);
    FAIL() << "set_active_isa(" << engine::isa_name(above) << ") did not throw";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find(engine::isa_name(above)), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine::set_active_isa(Isa::avx512), engine::Error);
  EXPECT_EQ(engine::active_isa(), before) << "a refused switch leaves the choice alone";
}

TEST(IsaTest, TestIsasAreCappedByTheActiveIsa) {
  const std::vector<Isa> isas = engine::test::test_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::portable);
  for (Isa isa : isas) EXPECT_LE(isa, engine::active_isa());
}

TEST(IsaTest, ParseIsaNameAcceptsTheDocumentedValues) {
  EXPECT_EQ(engine::cpu::parse_isa_name("avx512"), Isa::avx512);
  EXPECT_EQ(engine::cpu::parse_isa_name("avx2"), Isa::avx2);
  EXPECT_EQ(engine::cpu::parse_isa_name("scalar"), Isa::portable);
  EXPECT_EQ(engine::cpu::parse_isa_name("portable"), Isa::portable);
  // Every name isa_name() prints parses back to the same ISA.
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512})
    EXPECT_EQ(engine::cpu::parse_isa_name(engine::isa_name(isa)), isa);
}

TEST(IsaTest, ParseIsaNameRejectsUnknownValuesNamingTheVariable) {
  try {
    engine::cpu::parse_isa_name("sse9");
    FAIL() << "\"sse9\" was accepted";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ENGINE_MAX_ISA"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sse9"), std::string::npos) << msg;
    for (const char* accepted : {"avx512", "avx2", "scalar"})
      EXPECT_NE(msg.find(accepted), std::string::npos) << "should list " << accepted << ": " << msg;
  }
  EXPECT_THROW(engine::cpu::parse_isa_name(""), engine::Error);
  EXPECT_THROW(engine::cpu::parse_isa_name("AVX2"), engine::Error);
  EXPECT_THROW(engine::cpu::parse_isa_name("avx2 "), engine::Error);
  EXPECT_THROW(engine::cpu::parse_isa_name("avx"), engine::Error);
}

TEST(IsaTest, CoreCountIsPositive) { EXPECT_GE(engine::cpu::core_count(), 1); }

}  // namespace
