/* The reader the Keras loaders use for HDF5 files. libhdf5 is not hardened against hostile files
 * (fuzzing finds heap overflows and leaks inside it), so by default every libhdf5 call runs in a
 * forked child process that answers requests over a socket: a crash, a hang or garbage in the
 * child becomes a CN_ERR_FORMAT "damaged HDF5 file" here, never a crash of the caller. Replies
 * are length-prefixed, bounded, and validated as untrusted; dataset values are streamed in
 * bounded slabs straight into the caller's buffer.
 *
 * CONVNET_H5_INPROCESS=1 runs libhdf5 in this process instead (debugging, the fuzz target).
 * CONVNET_H5_TIMEOUT=<seconds> replaces the default deadline of a whole load (120 s plus 1 s per
 * 16 MB of file), after which the child is killed.
 *
 * Object paths are relative to the file's root; "" is the root. */
#ifndef CN_IO_H5_GUARD_H
#define CN_IO_H5_GUARD_H

#include "io/keras/internal.h"

typedef struct cn_h5src cn_h5src;

/* Opens path for reading, isolated unless CONVNET_H5_INPROCESS=1. Errors as cn_h5_open.
 * spare (may be NULL) is memory the caller will overwrite during the load, such as the model's
 * parameters: it is kept out of the child, so that writing it copies no pages. */
cn_status cn_h5src_open(const char *path, void *spare, size_t spare_bytes, cn_h5src **out);
/* Opens path with libhdf5 in this process whatever the environment. */
cn_status cn_h5src_open_inprocess(const char *path, cn_h5src **out);
/* Closes the file; reaps the child (no zombie is left). NULL is ignored. */
void cn_h5src_close(cn_h5src *src);
/* The file name given to open, for messages. */
const char *cn_h5src_file(const cn_h5src *src);

cn_status cn_h5src_exists(cn_h5src *src, const char *path, int *exists);
cn_status cn_h5src_has_attr(cn_h5src *src, const char *path, const char *name, int *has);
/* Reads a string attribute that holds exactly one string; *out = NULL when there is no such
 * attribute. */
cn_status cn_h5src_string_attr(cn_h5src *src, const char *path, const char *name, char **out);
/* Reads a string-array attribute, or its chunks name0, name1, ... as Keras writes them when the
 * list is too long for one attribute. An absent attribute or an empty non-string array gives an
 * empty list. */
cn_status cn_h5src_names_attr(cn_h5src *src, const char *path, const char *name, cn_strlist *out);
cn_status cn_h5src_group_members(cn_h5src *src, const char *path, cn_strlist *out);
cn_status cn_h5src_dataset_shape(cn_h5src *src, const char *path, const char *what,
                                 cn_shape *shape);
/* Reads numel values (the count cn_h5src_dataset_shape gave) into dst and refuses NaN and
 * infinity. */
cn_status cn_h5src_read_floats(cn_h5src *src, const char *path, const char *what, int64_t numel,
                               float *dst);

#endif
