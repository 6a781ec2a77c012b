#pragma once

#include <libpq-fe.h>

#include "util/error.h"

namespace polyrun::store {

// The libpq functions the PostgreSQL store calls, from libpq.so.5 loaded at the store's first
// use. polyrun does not link libpq: the ~20 libraries it brings (Kerberos, LDAP, GnuTLS, whose
// constructors run when they load) cost every polyrun process ~4 ms at start, a one-shot
// `polyrun run` included, and only a server whose store is PostgreSQL calls any of them.
struct Libpq {
  decltype(&::PQclear) PQclear = nullptr;
  decltype(&::PQcmdTuples) PQcmdTuples = nullptr;
  decltype(&::PQconnectdbParams) PQconnectdbParams = nullptr;
  decltype(&::PQconninfoFree) PQconninfoFree = nullptr;
  decltype(&::PQconninfoParse) PQconninfoParse = nullptr;
  decltype(&::PQerrorMessage) PQerrorMessage = nullptr;
  decltype(&::PQexec) PQexec = nullptr;
  decltype(&::PQexecParams) PQexecParams = nullptr;
  decltype(&::PQfinish) PQfinish = nullptr;
  decltype(&::PQfreemem) PQfreemem = nullptr;
  decltype(&::PQgetlength) PQgetlength = nullptr;
  decltype(&::PQgetvalue) PQgetvalue = nullptr;
  decltype(&::PQntuples) PQntuples = nullptr;
  decltype(&::PQreset) PQreset = nullptr;
  decltype(&::PQresultErrorField) PQresultErrorField = nullptr;
  decltype(&::PQresultStatus) PQresultStatus = nullptr;
  decltype(&::PQsetNoticeProcessor) PQsetNoticeProcessor = nullptr;
  decltype(&::PQstatus) PQstatus = nullptr;
  decltype(&::PQtransactionStatus) PQtransactionStatus = nullptr;
};

// Loads libpq (once per process: later calls return the first outcome). An error names dlopen
// or dlsym and what the dynamic loader said, e.g. that libpq.so.5 is not installed.
Result<const Libpq*> LoadLibpq();

}  // namespace polyrun::store
