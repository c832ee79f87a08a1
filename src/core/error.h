/* Internal error reporting: every failure path calls cn_fail once, where the cause is known. */
#ifndef CN_CORE_ERROR_H
#define CN_CORE_ERROR_H

#include "convnet/core.h"

/* Records a printf-style message for cn_last_error() and returns status, so that failure paths
 * read `return cn_fail(CN_ERR_FORMAT, "%s: truncated", path);`. */
cn_status cn_fail(cn_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (adding context on the way up); returns status. */
cn_status cn_fail_context(cn_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cn_clear_error(void);

#endif
