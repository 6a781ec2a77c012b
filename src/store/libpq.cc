#include "store/libpq.h"

#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace polyrun::store {

namespace {

// libpq's soname: the ABI its declarations in <libpq-fe.h> describe.
constexpr const char* kLibpqSoname = "libpq.so.5";

Result<const Libpq*> Load() {
  // Never closed: the store's connections and results live until the process ends.
  void* lib = ::dlopen(kLibpqSoname, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    return Fail(Errc::kUnsupported, std::string("postgresql: dlopen ") + kLibpqSoname + ": " +
                                        (why != nullptr ? why : "unknown error") +
                                        " (install libpq5)");
  }
  static Libpq table;
  // Each function under the name <libpq-fe.h> gives it; the first one missing is named.
  size_t resolved = 0;
  const char* missing = nullptr;
  auto get = [&](const char* name, auto& fn) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, name));
    if (fn != nullptr) {
      ++resolved;
    } else if (missing == nullptr) {
      missing = name;
    }
  };
#define POLYRUN_LIBPQ_GET(fn) get(#fn, table.fn)
  POLYRUN_LIBPQ_GET(PQclear);
  POLYRUN_LIBPQ_GET(PQcmdTuples);
  POLYRUN_LIBPQ_GET(PQconnectdbParams);
  POLYRUN_LIBPQ_GET(PQconninfoFree);
  POLYRUN_LIBPQ_GET(PQconninfoParse);
  POLYRUN_LIBPQ_GET(PQerrorMessage);
  POLYRUN_LIBPQ_GET(PQexec);
  POLYRUN_LIBPQ_GET(PQexecParams);
  POLYRUN_LIBPQ_GET(PQfinish);
  POLYRUN_LIBPQ_GET(PQfreemem);
  POLYRUN_LIBPQ_GET(PQgetlength);
  POLYRUN_LIBPQ_GET(PQgetvalue);
  POLYRUN_LIBPQ_GET(PQntuples);
  POLYRUN_LIBPQ_GET(PQreset);
  POLYRUN_LIBPQ_GET(PQresultErrorField);
  POLYRUN_LIBPQ_GET(PQresultStatus);
  POLYRUN_LIBPQ_GET(PQsetNoticeProcessor);
  POLYRUN_LIBPQ_GET(PQstatus);
  POLYRUN_LIBPQ_GET(PQtransactionStatus);
#undef POLYRUN_LIBPQ_GET
  if (missing != nullptr) {
    const char* why = ::dlerror();
    return Fail(Errc::kUnsupported, std::string("postgresql: dlsym ") + missing + " in " +
                                        kLibpqSoname + ": " + (why != nullptr ? why : "not found"));
  }
  // Every member of Libpq is a function pointer, and each must have been set above.
  if (resolved * sizeof(void*) != sizeof(Libpq)) {
    return Fail(Errc::kInternal, "postgresql: libpq.cc resolves " + std::to_string(resolved) +
                                     " of the " + std::to_string(sizeof(Libpq) / sizeof(void*)) +
                                     " functions of Libpq");
  }
  return &table;
}

}  // namespace

Result<const Libpq*> LoadLibpq() {
  static const Result<const Libpq*> loaded = Load();
  return loaded;
}

}  // namespace polyrun::store
