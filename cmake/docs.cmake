# SPDX-License-Identifier: MIT
# docs.cmake - the API reference: Doxygen renders the public headers as HTML
# (build/docs/api/html) and as section-3 manual pages, one per header's
# function family plus one link page per function (MAN_LINKS), so that
# `man 3 mh_executor_map` opens the executor's page.
#
# `cmake --build build --target docs` builds it; without doxygen the target
# says so and does nothing else.  -DMH_DOCS_WERROR=ON makes every Doxygen
# warning (an undocumented function, member or parameter) an error, as CI
# runs it.  With MH_DEB the pages are built with everything else, compressed
# and installed by the dev component.

option(MH_DOCS_WERROR "Doxygen warnings (undocumented parameters too) fail the docs target" OFF)
find_package(Doxygen QUIET)
set(MH_API_OUT ${CMAKE_CURRENT_BINARY_DIR}/docs/api)

if(NOT DOXYGEN_FOUND)
  add_custom_target(docs
    COMMAND ${CMAKE_COMMAND} -E echo
            "docs: doxygen not found, the API reference is not built (apt-get install doxygen)")
  if(MH_DEB)
    message(FATAL_ERROR "MH_DEB needs doxygen for the section-3 pages (apt-get install doxygen)")
  endif()
  message(STATUS "doxygen not found: the 'docs' target (API reference) only says so")
  return()
endif()

if(MH_DOCS_WERROR)
  set(MH_DOXYGEN_WARN_AS_ERROR YES)
else()
  set(MH_DOXYGEN_WARN_AS_ERROR NO)
endif()
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/docs/Doxyfile.in
               ${CMAKE_CURRENT_BINARY_DIR}/Doxyfile @ONLY)
file(GLOB MH_PUBLIC_HEADERS CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_SOURCE_DIR}/include/manyhands.h
     ${CMAKE_CURRENT_SOURCE_DIR}/include/manyhands/*.h)

# The pages are rebuilt from scratch, so a page of a removed function never
# lingers; the stamp file is what the build tracks.
add_custom_command(OUTPUT ${MH_API_OUT}/stamp
  COMMAND ${CMAKE_COMMAND} -E rm -rf ${MH_API_OUT}/html ${MH_API_OUT}/man
  COMMAND ${CMAKE_COMMAND} -E make_directory ${MH_API_OUT}
  COMMAND ${DOXYGEN_EXECUTABLE} ${CMAKE_CURRENT_BINARY_DIR}/Doxyfile
  COMMAND ${CMAKE_COMMAND} -DDIR=${MH_API_OUT}/man/man3 -DGZIP=${MH_DEB}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/docs_man.cmake
  COMMAND ${CMAKE_COMMAND} -E touch ${MH_API_OUT}/stamp
  DEPENDS ${MH_PUBLIC_HEADERS} ${CMAKE_CURRENT_BINARY_DIR}/Doxyfile
          ${CMAKE_CURRENT_BINARY_DIR}/include/manyhands/version.h
          ${CMAKE_CURRENT_SOURCE_DIR}/cmake/docs_man.cmake
  COMMENT "Doxygen: API reference (HTML and section-3 pages)" VERBATIM)
if(MH_DEB)
  add_custom_target(docs ALL DEPENDS ${MH_API_OUT}/stamp)
else()
  add_custom_target(docs DEPENDS ${MH_API_OUT}/stamp)
endif()

# The pages are installed when built (always with MH_DEB); OPTIONAL, so a plain install
# without `--target docs` still works.
install(DIRECTORY ${MH_API_OUT}/man/man3 DESTINATION ${CMAKE_INSTALL_MANDIR}
        COMPONENT dev OPTIONAL)
# The HTML stays in the build tree (build/docs/api/html/index.html): it
# bundles Doxygen's jQuery, which a Debian package should not ship.
