/* fsutil.h - small file-system helpers with crash-safe writes.
 *
 * Contract: kiln_write_file_atomic() writes to a temporary file in the same
 * directory, fsyncs it, renames it over the target and fsyncs the directory,
 * so after a crash the target holds either the old or the new content.
 * kiln_read_file() refuses files larger than max bytes (KILN_ELIMIT).
 */
#ifndef KILN_FSUTIL_H
#define KILN_FSUTIL_H

#include "common/buf.h"

#include <stddef.h>
#include <sys/types.h>

int kiln_mkdir_p(const char *path, mode_t mode);
int kiln_read_file(const char *path, size_t max, struct kiln_buf *out);
int kiln_write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);
int kiln_fsync_dir_of(const char *path);
/* Join a and b with one '/', into out (size outlen); KILN_ELIMIT if too long. */
int kiln_path_join(char *out, size_t outlen, const char *a, const char *b);

#endif
