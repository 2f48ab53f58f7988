#include "common/isa.h"

#include "common/err.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    uint32_t bit;
} features[] = {
    {"avx", KILN_ISA_AVX},
    {"avx2", KILN_ISA_AVX2},
    {"fma", KILN_ISA_FMA},
    {"f16c", KILN_ISA_F16C},
    {"avx512f", KILN_ISA_AVX512F},
    {"avx512dq", KILN_ISA_AVX512DQ},
    {"avx512vl", KILN_ISA_AVX512VL},
    {"avx512bw", KILN_ISA_AVX512BW},
    {"avx512_bf16", KILN_ISA_AVX512_BF16},
    {"avx512_vnni", KILN_ISA_AVX512_VNNI},
    {"fphp", KILN_ISA_FPHP},
    {"asimddp", KILN_ISA_ASIMDDP},
    {"sve2", KILN_ISA_SVE2},
    {"bf16", KILN_ISA_BF16},
    {"i8mm", KILN_ISA_I8MM},
};

#define X_AVX2 (KILN_ISA_AVX | KILN_ISA_AVX2 | KILN_ISA_FMA | KILN_ISA_F16C)
#define X_AVX512                                                                                   \
    (X_AVX2 | KILN_ISA_AVX512F | KILN_ISA_AVX512DQ | KILN_ISA_AVX512VL | KILN_ISA_AVX512BW)
#define A_V82 (KILN_ISA_FPHP | KILN_ISA_ASIMDDP)

static const struct {
    const char *name;
    uint32_t need;
    const char *platform;
} levels[] = {
    {"avx", KILN_ISA_AVX, "x86_64-linux"},
    {"avx2", X_AVX2, "x86_64-linux"},
    {"avx512", X_AVX512, "x86_64-linux"},
    {"avx512bf16", X_AVX512 | KILN_ISA_AVX512_BF16, "x86_64-linux"},
    {"avx512vnni", X_AVX512 | KILN_ISA_AVX512_VNNI, "x86_64-linux"},
    {"armv8_2", A_V82, "aarch64-linux"},
    {"armv9", A_V82 | KILN_ISA_SVE2 | KILN_ISA_BF16 | KILN_ISA_I8MM, "aarch64-linux"},
};

uint32_t kiln_isa_feature(const char *name)
{
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (!strcmp(name, features[i].name)) return features[i].bit;
    return 0;
}

const char *kiln_isa_feature_name(uint32_t bit)
{
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (features[i].bit == bit) return features[i].name;
    return NULL;
}

uint32_t kiln_isa_level_features(const char *level)
{
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(level, levels[i].name)) return levels[i].need;
    return 0;
}

const char *kiln_isa_level_platform(const char *level)
{
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(level, levels[i].name)) return levels[i].platform;
    return NULL;
}

static int append_word(char *out, size_t outlen, size_t *pos, const char *w)
{
    int n = snprintf(out + *pos, outlen - *pos, "%s%s", *pos ? " " : "", w);
    if (n < 0 || (size_t)n >= outlen - *pos) return KILN_ELIMIT;
    *pos += (size_t)n;
    return KILN_OK;
}

int kiln_isa_levels_of(uint32_t f, char *out, size_t outlen)
{
    size_t pos = 0;
    if (!outlen) return KILN_ELIMIT;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (kiln_isa_satisfies(f, levels[i].need)) {
            int rc = append_word(out, outlen, &pos, levels[i].name);
            if (rc) return rc;
        }
    return KILN_OK;
}

int kiln_isa_feature_list(uint32_t f, char *out, size_t outlen)
{
    size_t pos = 0;
    if (!outlen) return KILN_ELIMIT;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (f & features[i].bit) {
            int rc = append_word(out, outlen, &pos, features[i].name);
            if (rc) return rc;
        }
    return KILN_OK;
}

int kiln_isa_parse_features(const char *s, uint32_t *out, char *bad, size_t badlen)
{
    uint32_t mask = 0;
    char word[64];
    while (*s) {
        size_t n = strcspn(s, ", \t");
        if (n) {
            if (n >= sizeof word) n = sizeof word - 1;
            memcpy(word, s, n);
            word[n] = '\0';
            uint32_t b = kiln_isa_feature(word);
            if (!b) {
                if (bad && badlen) snprintf(bad, badlen, "%s", word);
                return KILN_EINVAL;
            }
            mask |= b;
        }
        s += strcspn(s, ", \t");
        s += strspn(s, ", \t");
    }
    *out = mask;
    return KILN_OK;
}
