/* The builder's net (convnet/layers.h) as its source files share it: src/model/layers.c holds the
 * layers, src/model/layers_math.c the math and losses. */
#ifndef CN_MODEL_NET_H
#define CN_MODEL_NET_H

#include "convnet/layers.h"
#include "core/op.h"
#include "model/model.h"

enum { MAX_MERGE = 64 };

struct cn_net {
  char *name;
  uint32_t id;
  cn_graph *g;
  cn_status status;
  char error[512]; /* the first failure's message, restored for cn_net_build */
  cn_name_counters names;
};

/* Records the first failure (the message cn_fail just set) and returns the invalid symbol. */
cn_sym cn_net_failed(cn_net *net, cn_status st);
/* A symbol made by this net for one of its layers. */
int cn_net_valid(const cn_net *net, cn_sym s);
/* Adds a node of op reading xs; a NULL name takes the automatic name of base. Does nothing after
 * a failure. */
cn_sym cn_net_add_node(cn_net *net, const cn_op *op, const char *name, const char *base,
                       const cn_sym *xs, int n, const void *attrs);

#endif
