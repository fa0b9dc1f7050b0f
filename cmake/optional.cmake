# SPDX-License-Identifier: MIT
# optional.cmake - parts of manyhands built only when their dependency is
# found.  Included by CMakeLists.txt after the core library is defined.
#
# MPI: when CMake finds MPI (and MH_WITH_MPI is ON) we build manyhands_mpi
# (src/mpi/, a static library on top of manyhands_static), the MPI-enabled
# command manyhands-mpi, and the MPI tests run under mpiexec with 2 ranks.
# Without MPI everything else builds, and the MPI tests report themselves
# skipped (exit code 77, see SKIP_RETURN_CODE in CMakeLists.txt).

set(MH_HAVE_MPI 0)
set(MH_MPIEXEC "")
set(MH_MPIEXEC_NUMPROC_FLAG "-n")
set(MH_MPIEXEC_EXTRA "")
if(MH_WITH_MPI)
  find_package(MPI COMPONENTS C)
endif()

if(MH_WITH_MPI AND MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  set(MH_HAVE_MPI 1)
  # One unit: the core (start-up, sentinel, watchdog), the map protocol and
  # executor backend on top of it, pi over ranks, and mpi.c on top of all:
  # mh_mpi_init / mh_mpi_finalize, which register the backend with the
  # executor (no weak symbol: the base library never names this one's).
  # Built twice like the core: manyhands_mpi (installed, no test hooks) and
  # manyhands_mpi_test on manyhands_test (the tests' manyhands-mpi reads the
  # MH_MPI_TEST_* hooks).
  set(MH_MPI_SOURCES src/mpi/mpi.c src/mpi/mpi_core.c src/mpi/mpi_map.c src/mpi/mpi_pi.c
    src/mpi/mpi_trace.c)
  set(mh_mpi_variants manyhands_mpi manyhands_static)
  if(MH_BUILD_TESTS)
    list(APPEND mh_mpi_variants manyhands_mpi_test manyhands_test)
  endif()
  while(mh_mpi_variants)
    list(POP_FRONT mh_mpi_variants lib base)
    add_library(${lib} STATIC ${MH_MPI_SOURCES})
    set_target_properties(${lib} PROPERTIES C_VISIBILITY_PRESET hidden
                          POSITION_INDEPENDENT_CODE ON)
    target_compile_definitions(${lib} PRIVATE _GNU_SOURCE)
    if(NOT MH_TRACE_HOOKS)
      target_compile_definitions(${lib} PRIVATE MH_NO_TRACE_HOOKS)
    endif()
    target_compile_definitions(${lib} PUBLIC MH_WITH_MPI=1)
    target_compile_options(${lib} PRIVATE ${MH_WARNINGS})
    target_include_directories(${lib} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${lib} PUBLIC ${base} MPI::MPI_C)
  endwhile()
  add_library(manyhands::manyhands_mpi ALIAS manyhands_mpi)
  target_include_directories(manyhands_mpi PUBLIC
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  # Installed and exported as the package's "mpi" component:
  # find_package(manyhands COMPONENTS mpi) gives manyhands::manyhands_mpi
  # (and finds MPI for it); pkg-config's name is manyhands-mpi.  It is a
  # static library only: it uses the library's internals, which the shared
  # object does not export, so it links libmanyhands.a, not the .so.
  install(TARGETS manyhands_mpi EXPORT manyhandsMpiTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT mpi_dev)
  install(EXPORT manyhandsMpiTargets NAMESPACE manyhands::
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/manyhands COMPONENT mpi_dev)
  install(FILES include/manyhands/mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/manyhands
          COMPONENT mpi_dev)
  # The .pc file names MPI's own flags as CMake found them: MPI
  # implementations do not agree on a pkg-config name of their own.
  set(MH_PC_MPI_CFLAGS "")
  foreach(dir ${MPI_C_INCLUDE_DIRS})
    string(APPEND MH_PC_MPI_CFLAGS " -I${dir}")
  endforeach()
  set(MH_PC_MPI_LIBS "")
  foreach(lib ${MPI_C_LIBRARIES})
    string(APPEND MH_PC_MPI_LIBS " ${lib}")
  endforeach()
  configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/manyhands-mpi.pc.in
                 ${CMAKE_CURRENT_BINARY_DIR}/manyhands-mpi.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/manyhands-mpi.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT mpi_dev)

  # The MPI-enabled command: the same cli/*.c built with MH_WITH_MPI (from
  # manyhands_mpi's interface), so cli/pi_mpi.c hooks --backend mpi in.  The
  # tests run their own copy, build/test/manyhands-mpi, with the test hooks.
  if(MH_BUILD_CLI)
    set(mh_cli_variants manyhands_mpi_cli manyhands_mpi)
    if(MH_BUILD_TESTS)
      list(APPEND mh_cli_variants manyhands_mpi_cli_test manyhands_mpi_test)
    endif()
    while(mh_cli_variants)
      list(POP_FRONT mh_cli_variants exe lib)
      add_executable(${exe} ${MH_CLI_SOURCES})
      set_target_properties(${exe} PROPERTIES OUTPUT_NAME manyhands-mpi)
      target_compile_definitions(${exe} PRIVATE _GNU_SOURCE)
      target_compile_options(${exe} PRIVATE ${MH_WARNINGS})
      target_link_libraries(${exe} PRIVATE ${lib})
    endwhile()
    if(MH_BUILD_TESTS)
      set_target_properties(manyhands_mpi_cli_test PROPERTIES
                            RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/test)
    endif()
    install(TARGETS manyhands_mpi_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
            COMPONENT mpi_cli)
    if(NOT MH_DEB)  # MH_DEB: cmake/package.cmake installs it compressed
      install(FILES docs/manyhands-mpi.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
              COMPONENT mpi_cli)
    endif()
  endif()

  set(MH_MPIEXEC ${MPIEXEC_EXECUTABLE})
  if(MPIEXEC_NUMPROC_FLAG)
    set(MH_MPIEXEC_NUMPROC_FLAG ${MPIEXEC_NUMPROC_FLAG})
  endif()
  # Open MPI refuses more ranks than cores without --oversubscribe (and root
  # without OMPI_ALLOW_RUN_AS_ROOT*, which the tests set in the environment).
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version
                  OUTPUT_VARIABLE mh_mpiexec_version ERROR_QUIET)
  if(mh_mpiexec_version MATCHES "Open MPI|OpenRTE")
    set(MH_MPIEXEC_EXTRA "--oversubscribe")
  endif()
  message(STATUS "MPI found: manyhands_mpi, manyhands-mpi and the MPI tests "
                 "(${MPIEXEC_EXECUTABLE} ${MH_MPIEXEC_NUMPROC_FLAG} 2 ${MH_MPIEXEC_EXTRA})")
else()
  message(STATUS "MPI not found (or MH_WITH_MPI=OFF): the MPI parts are not "
                 "built and their tests are reported as skipped")
endif()

# What the MPI tests need to know (test/test-mpi.c, test/test-mpi-pi.c).
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/mpi_config.h.in
               ${CMAKE_CURRENT_BINARY_DIR}/include/mh_mpi_config.h @ONLY)
