/* Drawing parameters from their initializers (Keras's formulas, convnet's seeded streams). */
#ifndef CN_MODEL_INIT_H
#define CN_MODEL_INIT_H

#include "core/graph.h"

/* Keras's fans of a weight shape: (in, out) for a matrix, in/out channels times the receptive
 * field (the product of the leading dims) for a convolution kernel, the length for a vector. */
void cn_init_fans(const cn_shape *shape, double *fan_in, double *fan_out);
/* The initializer Keras gives a weight of this name by default: glorot_uniform for kernels,
 * ones for gamma and moving_variance, zeros for the rest. */
cn_init cn_init_default(const char *param_name);
cn_init cn_init_glorot_uniform(void);
/* Keras's initializer of this class ("HeNormal") or string name ("he_normal") with its default
 * configuration into *out; 0 when Keras has none of that name. */
int cn_init_by_name(const char *name, cn_init *out);
/* Fills p from its initializer (CN_INIT_DEFAULT: the default for its name) with the stream of
 * `key`; fails naming the layer when the initializer is not supported. */
cn_status cn_param_init(cn_param *p, const char *layer, uint64_t key);
/* Every parameter of g, each with a key made from seed and its "<layer>/<param>" name (so the
 * values do not depend on node order). */
cn_status cn_graph_init_params(cn_graph *g, uint64_t seed);

#endif
