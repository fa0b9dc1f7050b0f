# optional.cmake - parts of manyhands built only when their dependency is
# found.  Included by CMakeLists.txt after the core library is defined.
#
# MPI: when CMake finds MPI (and MH_WITH_MPI is ON) we build manyhands_mpi
# (src/mpi/*.c, a static library on top of manyhands_static), the MPI-enabled
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
  # executor backend on top of it (mh_mpi_finalize lives there, so a program
  # that finalizes links the backend), and pi over ranks.
  add_library(manyhands_mpi STATIC
    src/mpi/mpi_core.c
    src/mpi/mpi_map.c
    src/mpi/mpi_pi.c)
  set_target_properties(manyhands_mpi PROPERTIES C_VISIBILITY_PRESET hidden
                        POSITION_INDEPENDENT_CODE ON)
  target_compile_definitions(manyhands_mpi PRIVATE _GNU_SOURCE)
  target_compile_definitions(manyhands_mpi PUBLIC MH_WITH_MPI=1)
  target_compile_options(manyhands_mpi PRIVATE ${MH_WARNINGS})
  target_include_directories(manyhands_mpi PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(manyhands_mpi PUBLIC manyhands_static MPI::MPI_C)
  add_library(manyhands::manyhands_mpi ALIAS manyhands_mpi)
  # Not in the exported package: a consumer would also need find_package(MPI).
  install(TARGETS manyhands_mpi
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES include/manyhands/mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/manyhands)

  # The MPI-enabled command: the same cli/*.c built with MH_WITH_MPI (from
  # manyhands_mpi's interface), so cli/pi_mpi.c hooks --backend mpi in.
  file(GLOB MH_CLI_MPI_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cli/*.c)
  if(MH_BUILD_CLI AND MH_CLI_MPI_SOURCES)
    add_executable(manyhands_mpi_cli ${MH_CLI_MPI_SOURCES})
    set_target_properties(manyhands_mpi_cli PROPERTIES OUTPUT_NAME manyhands-mpi)
    target_compile_definitions(manyhands_mpi_cli PRIVATE _GNU_SOURCE)
    target_compile_options(manyhands_mpi_cli PRIVATE ${MH_WARNINGS})
    target_link_libraries(manyhands_mpi_cli PRIVATE manyhands_mpi)
    install(TARGETS manyhands_mpi_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
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

# What the MPI tests need to know (test/test-mpi.c).
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/mpi_config.h.in
               ${CMAKE_CURRENT_BINARY_DIR}/include/mh_mpi_config.h @ONLY)
