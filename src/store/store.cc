#include "store/store.h"

#include "store/postgres_store.h"
#include "store/sqlite_store.h"

namespace polyrun::store {

Result<std::unique_ptr<Store>> OpenStore(const std::string& location) {
  if (location.empty()) return Fail(Errc::kParse, "store location is empty");
  if (location.starts_with("postgresql://") || location.starts_with("postgres://")) {
    return OpenPostgresStore(location);
  }
  // Any other scheme is a mistake, not a file named "mysql:" in a directory "/host".
  if (location.find("://") != std::string::npos) {
    return Fail(Errc::kParse, "store location \"" + location.substr(0, location.find("://")) +
                                  "://…\": expected postgresql://, postgres:// or a file path");
  }
  return OpenSqliteStore(location);
}

}  // namespace polyrun::store
