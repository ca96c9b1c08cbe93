# sdw_install.cmake: libsdw for programs that embed it (included by the top
# CMakeLists.txt after the sdw object library): libsdw.so.MAJOR with only
# the functions of include/sdw.h exported, and the install rules for it,
# libsdw.a, the header and the pkg-config file sdw.pc (`make install`).
include(GNUInstallDirs)

# The version, from the header (#define SDW_VERSION "0.1.0"); the soname
# carries its major number.
file(STRINGS ${CMAKE_SOURCE_DIR}/include/sdw.h SDW_VERSION_LINE REGEX "^#define SDW_VERSION \"")
string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" SDW_VERSION "${SDW_VERSION_LINE}")
string(REGEX MATCH "^[0-9]+" SDW_SOVERSION "${SDW_VERSION}")

# The exported symbols: every function sdw.h declares (a line with
# "name(" outside comments and the header's static inline initialisers),
# nothing else; the internal sdw_* functions the CLI and tests reach stay
# local to the .so. The script is rewritten only when the list changes.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/sdw.h)
file(STRINGS ${CMAKE_SOURCE_DIR}/include/sdw.h SDW_HEADER_LINES REGEX "sdw_[a-z0-9_]+\\(")
set(SDW_EXPORTS "")
foreach(line IN LISTS SDW_HEADER_LINES)
  if(line MATCHES "^static inline" OR line MATCHES "^[ \t]*[/*]")
    continue()
  endif()
  string(REGEX REPLACE "/\\*.*$" "" line "${line}")   # a comment after a field may name a function
  if(line MATCHES "[ *](sdw_[a-z0-9_]+)\\(")
    string(APPEND SDW_EXPORTS "    ${CMAKE_MATCH_1};\n")
  endif()
endforeach()
set(SDW_VERSION_SCRIPT ${CMAKE_BINARY_DIR}/libsdw.map)
file(WRITE ${SDW_VERSION_SCRIPT}.new "SDW_${SDW_SOVERSION} {\n  global:\n${SDW_EXPORTS}  local: *;\n};\n")
configure_file(${SDW_VERSION_SCRIPT}.new ${SDW_VERSION_SCRIPT} COPYONLY)

add_library(sdw_shared SHARED $<TARGET_OBJECTS:sdw_objects>)
target_link_libraries(sdw_shared PRIVATE sdw_usage)
target_link_options(sdw_shared PRIVATE -Wl,--version-script=${SDW_VERSION_SCRIPT} -Wl,--no-undefined)
set_target_properties(sdw_shared PROPERTIES OUTPUT_NAME sdw VERSION ${SDW_VERSION} SOVERSION ${SDW_SOVERSION}
  LINK_DEPENDS ${SDW_VERSION_SCRIPT})

# sdw.pc: what a static link needs goes in Libs.private / Requires.private
# (pkg-config --static); a shared link needs only -lsdw.
set(SDW_PC_REQUIRES_PRIVATE "libcjson libutf8proc libpcre2-8 yaml-0.1 libcrypto libpng libjpeg libwebp libwebpmux zlib")
get_filename_component(SDW_DNNL_DIR ${DNNL_LIBRARY} DIRECTORY)
set(SDW_PC_LIBS_PRIVATE "-L${SDW_DNNL_DIR} -ldnnl")
if(SENTENCEPIECE_FOUND)
  string(APPEND SDW_PC_REQUIRES_PRIVATE " sentencepiece")
else()
  get_filename_component(SDW_SPM_DIR ${SENTENCEPIECE_LIBRARY} DIRECTORY)
  string(APPEND SDW_PC_LIBS_PRIVATE " -L${SDW_SPM_DIR} -lsentencepiece")
endif()
# OpenMP (libgomp with gcc), and libstdc++ for the SentencePiece shim.
string(APPEND SDW_PC_LIBS_PRIVATE " ${OpenMP_C_FLAGS} -lstdc++ -lpthread -lm")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(SDW_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(SDW_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
# The prefix is known only at install time (cmake --install --prefix): the
# file is configured twice, the second time by the install step.
set(SDW_PC_PREFIX "@SDW_PC_PREFIX@")
configure_file(${CMAKE_SOURCE_DIR}/cmake/sdw.pc.in ${CMAKE_BINARY_DIR}/sdw.pc.stage @ONLY)

install(TARGETS sdw sdw_shared
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/sdw.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(CODE "set(SDW_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${CMAKE_BINARY_DIR}/sdw.pc.stage\" \"${CMAKE_BINARY_DIR}/sdw.pc\" @ONLY)")
install(FILES ${CMAKE_BINARY_DIR}/sdw.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
