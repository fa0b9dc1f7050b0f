# SPDX-License-Identifier: MIT
# package.cmake - Debian packages from this build: `cpack -G DEB` in a tree
# configured with -DMH_DEB=ON -DCMAKE_INSTALL_PREFIX=/usr.
#
# One package per install component (see the install section of
# CMakeLists.txt):
#   runtime  -> libmanyhands0.2       the shared object; named after its soname
#   dev      -> libmanyhands-dev      headers, libmanyhands.a, .so link, .pc,
#                                     CMake package, section-3 API pages
#   cli      -> manyhands             the command and manyhands(1)
#   mpi_cli  -> manyhands-mpi         the MPI command (with MPI only)
#   mpi_dev  -> libmanyhands-mpi-dev  libmanyhands_mpi.a, manyhands/mpi.h,
#                                     manyhands-mpi.pc (with MPI only)
# Library dependencies are computed by dpkg-shlibdeps; the runtime package
# ships a shlibs file, so packages built against it depend on >= 0.2.0.
# Every package carries /usr/share/doc/<pkg>/copyright and a compressed
# changelog.Debian.gz, as Debian policy asks.

if(NOT MH_DEB)
  return()
endif()

set(MH_DEB_RUNTIME libmanyhands${MH_SOVERSION})
set(MH_DEB_COMPONENTS runtime dev cli)
if(TARGET manyhands_mpi)
  list(APPEND MH_DEB_COMPONENTS mpi_dev)
endif()
if(TARGET manyhands_mpi_cli)
  list(APPEND MH_DEB_COMPONENTS mpi_cli)
endif()
set(MH_DEB_NAME_runtime ${MH_DEB_RUNTIME})
set(MH_DEB_NAME_dev libmanyhands-dev)
set(MH_DEB_NAME_cli manyhands)
set(MH_DEB_NAME_mpi_cli manyhands-mpi)
set(MH_DEB_NAME_mpi_dev libmanyhands-mpi-dev)

find_program(MH_GZIP gzip REQUIRED)
set(MH_DEB_STAGE ${CMAKE_CURRENT_BINARY_DIR}/deb)
set(MH_DEB_REVISION 1)
string(TIMESTAMP MH_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(MH_DEB_MAINTAINER "manyhands authors <manyhands@users.noreply.github.com>")

# The commands' pages, compressed (-n: no name or time stamp, reproducible).
set(MH_DEB_OUTPUTS)
set(MH_DEB_PAGES "manyhands cli")
if(TARGET manyhands_mpi_cli)
  list(APPEND MH_DEB_PAGES "manyhands-mpi mpi_cli")
endif()
foreach(pair ${MH_DEB_PAGES})
  separate_arguments(pair)
  list(GET pair 0 page)
  list(GET pair 1 comp)
  add_custom_command(OUTPUT ${MH_DEB_STAGE}/${page}.1.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MH_DEB_STAGE}
    COMMAND ${MH_GZIP} -9n -c ${CMAKE_CURRENT_SOURCE_DIR}/docs/${page}.1
            > ${MH_DEB_STAGE}/${page}.1.gz
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/${page}.1 VERBATIM)
  list(APPEND MH_DEB_OUTPUTS ${MH_DEB_STAGE}/${page}.1.gz)
  install(FILES ${MH_DEB_STAGE}/${page}.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
          COMPONENT ${comp})
endforeach()

# copyright (the machine-readable format), changelog.Debian.gz and the
# upstream changelog (NEWS.md) for each package.
file(READ ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE MH_LICENSE_TEXT)
string(REGEX REPLACE "\n\n" "\n.\n" MH_LICENSE_DEB "${MH_LICENSE_TEXT}")
string(REGEX REPLACE "\n([^\n])" "\n \\1" MH_LICENSE_DEB "${MH_LICENSE_DEB}")
foreach(comp ${MH_DEB_COMPONENTS})
  set(pkg ${MH_DEB_NAME_${comp}})
  set(dir ${MH_DEB_STAGE}/${pkg})
  file(WRITE ${dir}/copyright
"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: manyhands
Source: https://github.com/manyhands/manyhands

Files: *
Copyright: 2026 the manyhands authors
License: Expat

License: Expat
 ${MH_LICENSE_DEB}")
  file(WRITE ${dir}/changelog.Debian
"${pkg} (${PROJECT_VERSION}-${MH_DEB_REVISION}) unstable; urgency=medium

  * Package built by the project's own build (CPack); see NEWS.md.

 -- ${MH_DEB_MAINTAINER}  ${MH_DEB_DATE}
")
  add_custom_command(OUTPUT ${dir}/changelog.Debian.gz ${dir}/changelog.gz
    COMMAND ${MH_GZIP} -9n -c ${dir}/changelog.Debian > ${dir}/changelog.Debian.gz
    COMMAND ${MH_GZIP} -9n -c ${CMAKE_CURRENT_SOURCE_DIR}/NEWS.md > ${dir}/changelog.gz
    DEPENDS ${dir}/changelog.Debian ${CMAKE_CURRENT_SOURCE_DIR}/NEWS.md VERBATIM)
  list(APPEND MH_DEB_OUTPUTS ${dir}/changelog.Debian.gz ${dir}/changelog.gz)
  install(FILES ${dir}/copyright ${dir}/changelog.Debian.gz ${dir}/changelog.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${pkg} COMPONENT ${comp})
endforeach()
add_custom_target(deb_files ALL DEPENDS ${MH_DEB_OUTPUTS})

# ---- CPack -----------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME manyhands)
set(CPACK_PACKAGE_VENDOR "the manyhands authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${MH_DEB_MAINTAINER})
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: each package's description starts
# with its own summary line.
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL ${MH_DEB_COMPONENTS})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${MH_DEB_REVISION})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/manyhands/manyhands")
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
# dpkg-shlibdeps must find the runtime's soname inside this build.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_CURRENT_BINARY_DIR})

set(mh_long "manyhands is a C11 library and command for doing many things at once:
threads, locks, queues, thread and process pools with futures, processes
and shared memory, shaped like Python's threading, queue,
concurrent.futures and multiprocessing.")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${MH_DEB_RUNTIME})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# The shlibs file (packages built against the library depend on >= this
# version; only the runtime has a shared object, so only it gets one) and an
# ldconfig trigger, as policy wants of a library package.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
file(WRITE ${MH_DEB_STAGE}/control/triggers "activate-noawait ldconfig\n")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${MH_DEB_STAGE}/control/triggers)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "threads, queues, pools and processes for C (library)
${mh_long}

This package holds the shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libmanyhands-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS runtime)
set(CPACK_COMPONENT_DEV_DESCRIPTION "threads, queues, pools and processes for C (development files)
${mh_long}

This package holds the headers, the static library, the pkg-config file,
the CMake package and the API reference as section-3 manual pages.")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME manyhands)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_CLI_DESCRIPTION "estimate pi by Monte Carlo on every core, with manyhands
${mh_long}

This package holds the manyhands command: the Monte Carlo pi job on
threads or processes, with repeats, speedup sweeps and JSON output.")

set(CPACK_DEBIAN_MPI_CLI_PACKAGE_NAME manyhands-mpi)
set(CPACK_DEBIAN_MPI_CLI_PACKAGE_SECTION science)
set(CPACK_COMPONENT_MPI_CLI_DESCRIPTION "estimate pi by Monte Carlo over MPI ranks, with manyhands
${mh_long}

This package holds manyhands-mpi, the manyhands command built with the
MPI backend: the pi job over MPI ranks times threads, under mpirun.")

set(CPACK_DEBIAN_MPI_DEV_PACKAGE_NAME libmanyhands-mpi-dev)
set(CPACK_DEBIAN_MPI_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_MPI_DEV_DEPENDS dev)
set(CPACK_DEBIAN_MPI_DEV_PACKAGE_DEPENDS "libopenmpi-dev | mpi-default-dev")
set(CPACK_COMPONENT_MPI_DEV_DESCRIPTION "threads, queues, pools and processes for C (MPI backend)
${mh_long}

This package holds the MPI backend: libmanyhands_mpi.a, manyhands/mpi.h
and the manyhands-mpi pkg-config file.")

include(CPack)
