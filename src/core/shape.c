#include <stdio.h>

#include "convnet/core.h"

int64_t cn_shape_numel(const cn_shape *shape) {
  int64_t n = 1;
  for (int i = 0; i < shape->rank; i++) {
    if (shape->dim[i] < 0 || __builtin_mul_overflow(n, shape->dim[i], &n)) return -1;
  }
  return n;
}

char *cn_shape_format(const cn_shape *shape, char *buf, size_t cap) {
  size_t used = 0;
  if (cap == 0) return buf;
  buf[0] = '\0';
  used += (size_t)snprintf(buf + used, cap - used, "(");
  for (int i = 0; i < shape->rank && used < cap; i++) {
    used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? "," : "",
                             (long long)shape->dim[i]);
  }
  if (used < cap) snprintf(buf + used, cap - used, shape->rank == 1 ? ",)" : ")");
  return buf;
}
