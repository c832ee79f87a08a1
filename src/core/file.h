/* Reading a whole input file into memory, for the readers that parse from a buffer. */
#ifndef CN_CORE_FILE_H
#define CN_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "convnet/core.h"

/* Reads path (a regular file, or a stream such as a pipe or /dev/stdin; "-" is standard input) into
 * *data (malloc'd, free it with free) and *size. A folder is refused ("is a folder"), and so is a
 * file of more than max_bytes; `what` names the kind of file in that message ("an IDX file").
 * Memory grows with the bytes actually read, never with a size the file claims. */
cn_status cn_file_read_all(const char *path, size_t max_bytes, const char *what, uint8_t **data,
                           size_t *size);

#endif
