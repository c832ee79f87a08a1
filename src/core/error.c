#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { CN_ERROR_CAP = 1024 };
static _Thread_local char last_error[CN_ERROR_CAP];

const char *cn_last_error(void) { return last_error; }

void cn_clear_error(void) { last_error[0] = '\0'; }

cn_status cn_fail(cn_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

cn_status cn_fail_context(cn_status status, const char *fmt, ...) {
  char prefix[CN_ERROR_CAP], joined[CN_ERROR_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  snprintf(joined, sizeof joined, "%s: %s", prefix, last_error);
  memcpy(last_error, joined, sizeof last_error);
  return status;
}

static const char *const status_names[CN_STATUS_COUNT] = {
    [CN_OK] = "ok",
    [CN_ERR_ARG] = "invalid argument",
    [CN_ERR_IO] = "i/o error",
    [CN_ERR_FORMAT] = "bad format",
    [CN_ERR_UNSUPPORTED] = "unsupported",
    [CN_ERR_SHAPE] = "shape mismatch",
    [CN_ERR_NOMEM] = "out of memory",
    [CN_ERR_LIMIT] = "over a safety limit",
    [CN_ERR_NETWORK] = "network error",
    [CN_ERR_CHECKSUM] = "checksum mismatch",
};
_Static_assert(CN_STATUS_COUNT == 10, "status_names must name every status");

const char *cn_status_name(cn_status status) {
  if ((unsigned)status >= CN_STATUS_COUNT) return "unknown status";
  return status_names[status];
}
