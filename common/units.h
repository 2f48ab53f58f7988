/* units.h - sizes and durations for people: "64 GiB", "1.9 GiB", "2h13m".
 *
 * Contract: kiln_parse_size() accepts "1024" (bytes), "512M", "512MiB",
 * "64G", "64GiB", "1.5T" (binary units; K/M/G/T with optional "i"/"iB"/"B")
 * and returns bytes, or KILN_EINVAL. kiln_format_size() writes e.g.
 * "1 GiB", "1.9 GiB", "512 MiB", "12 KiB", "100 B".
 */
#ifndef KILN_UNITS_H
#define KILN_UNITS_H

#include <stddef.h>
#include <stdint.h>

int kiln_parse_size(const char *s, uint64_t *bytes);
void kiln_format_size(uint64_t bytes, char *out, size_t outlen);
/* "45s", "12m05s", "2h13m" */
void kiln_format_duration(double seconds, char *out, size_t outlen);

#endif
