/* isa.h - CPU ISA features and the recipe ISA names of seed 000.
 *
 * Contract: features are bits of a uint32_t. The worker detects them (cpuid,
 * HWCAP), recipes name an ISA level ("avx2", "armv9"...), and placement
 * checks kiln_isa_satisfies(host_features, level_features). Names are the
 * ones /proc/cpuinfo uses (avx512_bf16 and avx512_vnni with underscores).
 *
 *   avx        avx                                  (Sandy Bridge+)
 *   avx2       avx avx2 fma f16c                    (Haswell+)
 *   avx512     avx2 set + avx512f dq vl bw          (Skylake-SP+)
 *   avx512bf16 avx512 set + avx512_bf16             (Cooper Lake, SPR+)
 *   avx512vnni avx512 set + avx512_vnni             (Cascade Lake+)
 *   armv8_2    fphp asimddp                         (Neoverse N1: Altra)
 *   armv9      armv8_2 set + sve2 bf16 i8mm         (Neoverse V2: Grace)
 */
#ifndef KILN_ISA_H
#define KILN_ISA_H

#include <stddef.h>
#include <stdint.h>

enum {
    KILN_ISA_AVX = 1u << 0,
    KILN_ISA_AVX2 = 1u << 1,
    KILN_ISA_FMA = 1u << 2,
    KILN_ISA_F16C = 1u << 3,
    KILN_ISA_AVX512F = 1u << 4,
    KILN_ISA_AVX512DQ = 1u << 5,
    KILN_ISA_AVX512VL = 1u << 6,
    KILN_ISA_AVX512BW = 1u << 7,
    KILN_ISA_AVX512_BF16 = 1u << 8,
    KILN_ISA_AVX512_VNNI = 1u << 9,
    KILN_ISA_FPHP = 1u << 16,
    KILN_ISA_ASIMDDP = 1u << 17,
    KILN_ISA_SVE2 = 1u << 18,
    KILN_ISA_BF16 = 1u << 19,
    KILN_ISA_I8MM = 1u << 20,
};

/* Feature bit for a feature name ("avx512_bf16"), 0 if unknown. */
uint32_t kiln_isa_feature(const char *name);
/* Name of one feature bit, NULL if not a single known bit. */
const char *kiln_isa_feature_name(uint32_t bit);
/* Required features of a recipe ISA level ("avx512"); 0 if unknown level. */
uint32_t kiln_isa_level_features(const char *level);
/* "x86_64-linux" or "aarch64-linux" for a level, NULL if unknown. */
const char *kiln_isa_level_platform(const char *level);
/* Best (most demanding) levels the features satisfy, written as
 * space-separated names into out, e.g. "avx avx2 avx512 avx512vnni". */
int kiln_isa_levels_of(uint32_t features, char *out, size_t outlen);
/* Space-separated feature names of a mask. */
int kiln_isa_feature_list(uint32_t features, char *out, size_t outlen);
/* 1 if host has every feature in need. */
static inline int kiln_isa_satisfies(uint32_t host, uint32_t need)
{
    return (host & need) == need;
}
/* Parse "avx2,fma f16c" (comma/space separated) into a mask; unknown names
 * give KILN_EINVAL with the offending name copied to bad (if non-NULL). */
int kiln_isa_parse_features(const char *s, uint32_t *out, char *bad, size_t badlen);

#endif
