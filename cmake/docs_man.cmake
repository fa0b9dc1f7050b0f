# SPDX-License-Identifier: MIT
# docs_man.cmake - tidy Doxygen's section-3 pages (run by cmake/docs.cmake):
# keep the pages a reader looks up (the function families, the types and one
# link page per function), drop the per-file pages that repeat the family
# pages under a path name, and with GZIP compress them as Debian wants.
file(GLOB pages ${DIR}/*.3)
foreach(page ${pages})
  get_filename_component(name ${page} NAME)
  # Doxygen names a header's page after the file ("thread.h.3"), and links
  # each struct member's bare name ("timeout.3") to its struct: the family
  # (group) pages and the mh_ / MH_ names say it all without them.
  if(name MATCHES "\\.h\\.3$" OR NOT name MATCHES "^(mh_|MH_)")
    file(REMOVE ${page})
  endif()
endforeach()
if(GZIP)
  find_program(gzip_exe gzip REQUIRED)
  file(GLOB pages ${DIR}/*.3)
  foreach(page ${pages})
    execute_process(COMMAND ${gzip_exe} -9nf ${page} RESULT_VARIABLE rc)
    if(rc)
      message(FATAL_ERROR "gzip ${page} failed")
    endif()
  endforeach()
endif()
