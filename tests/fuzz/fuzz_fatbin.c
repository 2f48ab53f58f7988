/* libFuzzer target for kernels-selftest/fatbin and elfsym: any byte string
 * is an ELF / cubin / fatbin candidate; it must parse or fail cleanly. */
#include "kernels-selftest/elfsym.h"
#include "kernels-selftest/fatbin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int sym_cb(void *ctx, const struct kiln_elfsym *s)
{
    size_t *n = ctx;
    *n += strlen(s->name);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so reads past the end are caught exactly. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    struct kiln_fatbin_list l;
    struct kiln_error err;
    if (kiln_fatbin_inspect(copy, size, &l, &err) == KILN_OK) {
        struct kiln_buf b = {0};
        kiln_fatbin_summary(&l, &b);
        kiln_buf_free(&b);
        char how[96];
        kiln_fatbin_check_sm(&l, 90, how, sizeof how, &err);
        kiln_fatbin_check_sm(&l, 121, how, sizeof how, &err);
        kiln_fatbin_list_free(&l);
    }
    memset(&l, 0, sizeof l);
    if (kiln_fatbin_parse(copy, size, 0, "fuzz", &l, &err) == KILN_OK || l.n)
        kiln_fatbin_list_free(&l);
    struct kiln_elf e;
    if (kiln_elf_open(&e, copy, size, &err) == KILN_OK) {
        size_t n = 0;
        kiln_elfsym_foreach(&e, sym_cb, &n, &err);
        char *pats[] = {"vadd", "scaled_fp4*"};
        int found[2] = {0, 0};
        char *match[2] = {0, 0};
        kiln_elfsym_expect(&e, pats, 2, found, match, &err);
        free(match[0]);
        free(match[1]);
        uint64_t off;
        kiln_elf_vaddr_to_offset(&e, 0x1000, 16, &off);
    }
    /* Text side: symbol patterns and SM names. */
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = 0;
        unsigned sm;
        kiln_fatbin_parse_sm(s, &sm);
        kiln_elfsym_match(s, "_Z16scaled_fp4_quantRN2at6TensorE");
        kiln_elfsym_match("scaled_fp4_quant", s);
        free(s);
    }
    free(copy);
    return 0;
}
