/* src/io/native: the safetensors container, the .cnm model file and the file form of checkpoints.
 *
 * The native model file (.cnm, docs/formats.md): a safetensors file holding a model's parameters
 * as "<layer>/<param>" and its graph, class names, input spec and name as metadata. Checkpoints
 * reuse it with a different "format" and extra tensors / metadata of their own. */
#ifndef CN_IO_NATIVE_INTERNAL_H
#define CN_IO_NATIVE_INTERNAL_H

#include "io/io.h"

#include <cjson/cJSON.h>

#include "model/model.h"
#include "io/native/safetensors.h"
#include "ops/ops.h"

#define CN_NATIVE_FORMAT "convnet-model"
#define CN_NATIVE_VERSION "1"
/* Files with shared layers (a node's "shares" field); written only when the model has them. */
#define CN_NATIVE_VERSION_SHARED "2"

/* ---- attributes (cnm_attrs.c): one table per attrs struct, shared by writer and reader ---- */

/* CN_OK when every op of cn_all_ops with attributes has a description covering every byte of its
 * struct but padding (so a field added to a struct and not to its table is caught by the tests);
 * else the message names the struct. */
cn_status cn_native_check_tables(void);
/* 1 when op is in cn_all_ops and its attrs struct has a description of the same size. */
int cn_native_op_supported(const cn_op *op);
/* The attrs of a node as a JSON object of named fields (enums by name, +-infinity as "inf" /
 * "-inf"); NULL on failure (error set). */
cJSON *cn_native_attrs_to_json(const cn_op *op, const void *attrs);
/* Fills attrs (op->attrs_size bytes, zeroed first) from such an object. Every value is type and
 * range checked; unknown and repeated fields are refused by name; an absent field is 0 when 0 is
 * in its range, else an error. Messages start with "where: ". */
cn_status cn_native_attrs_from_json(const cn_op *op, const cJSON *json, const char *where,
                                    void *attrs);
/* The same for the input spec. */
cJSON *cn_native_spec_to_json(const cn_input_spec *spec);
cn_status cn_native_spec_from_json(const cJSON *json, const char *where, cn_input_spec *spec);

/* ---- whole models (cnm.c) ---- */

/* Writes m to path as format (CN_NATIVE_FORMAT for a .cnm) with extra tensors and metadata, whose
 * names must differ from the model's ("<layer>/<param>"; format, version, name, graph, classes,
 * input_spec). */
cn_status cn_native_write(cn_model *m, const char *path, const char *format,
                          const cn_st_tensor *extra, int n_extra, const cn_st_meta *extra_meta,
                          int n_extra_meta);
/* Builds the model an open file describes, checking that its "format" is format. With
 * allow_extra 0, tensors and metadata keys that are not the model's are refused by name; with 1
 * they are left for the caller (a checkpoint's optimizer state). */
cn_status cn_native_read(const cn_safetensors *f, const char *format, int allow_extra,
                         cn_model **out);

#endif
