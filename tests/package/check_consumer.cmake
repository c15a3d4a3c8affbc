# Builds and runs tests/package/consumer the way an embedding project would:
#   MODE=find_package      install engine from ENGINE_BUILD_DIR into a prefix, then find_package(engine)
#   MODE=add_subdirectory  add_subdirectory(ENGINE_SOURCE_DIR) from the consumer
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(consumer ${ENGINE_SOURCE_DIR}/tests/package/consumer)
if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} --install ${ENGINE_BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCONSUMER_MODE=find_package)
else()
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/build -DCMAKE_BUILD_TYPE=Release
      -DCONSUMER_MODE=add_subdirectory -DENGINE_SOURCE_DIR=${ENGINE_SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build -j2)
run(${WORK_DIR}/build/consumer)
message(STATUS "consumer (${MODE}) built and ran")
