/* json_out.h - JSON text written straight into a buffer.
 *
 * Contract: for answers too large to build as jansson objects first (all
 * 10,000 jobs of a queue: issue 18), the caller writes the structure and
 * these write the values. kiln_json_out_str() writes s as one JSON string
 * (NULL as null): '"', '\' and control characters escaped, valid UTF-8
 * copied, and each byte of an invalid UTF-8 sequence written as U+FFFD, so
 * the text is always valid JSON whatever the bytes. Returns what the
 * buffer's append returns (KILN_OK, KILN_ENOMEM, KILN_ELIMIT).
 */
#ifndef KILN_JSON_OUT_H
#define KILN_JSON_OUT_H

#include "common/buf.h"

int kiln_json_out_str(struct kiln_buf *b, const char *s);
/* An integer, without printf's cost per call. */
int kiln_json_out_int(struct kiln_buf *b, long long v);

#endif
