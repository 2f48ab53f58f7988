/* elfsym.h - ELF symbol tables (.symtab, .dynsym) and expected-symbol checks.
 *
 * Contract: kiln_elfsym_foreach() walks every symbol of .symtab and .dynsym
 * of an ELF opened with kiln_elf_open() (fatbin.h), bounds-checking each
 * entry and its name; malformed tables give KILN_EPARSE with a sentence.
 * Seed 003's failure (NVFP4 kernels silently not compiled, `dir(vllm._C)`
 * without fp4 functions) is caught by asking for the functions by name.
 *
 * Matching (kiln_elfsym_match), for a pattern P and a symbol S:
 *   - S == P (C names, extern "C" kernels, exact mangled names), or
 *   - S is an Itanium C++ mangled name (starts with "_Z") that contains P as
 *     one source-name component, i.e. the text "<strlen(P)>P" not preceded by
 *     a digit: "scaled_fp4_quant" matches
 *     "_Z16scaled_fp4_quantRN2at6TensorE..." and
 *     "_ZN4vllm16scaled_fp4_quantEv" but not "_Z20scaled_fp4_quant_oldv";
 *   - P may end with '*' for a prefix match on S or on a component:
 *     "cutlass_scaled_fp4*" matches "_Z25cutlass_scaled_fp4_mm_sm120v".
 * Only defined symbols count (st_shndx != SHN_UNDEF): a library that merely
 * references cutlass_scaled_fp4_mm does not provide it.
 */
#ifndef KILN_ELFSYM_H
#define KILN_ELFSYM_H

#include "kernels-selftest/fatbin.h"

#include <stddef.h>
#include <stdint.h>

struct kiln_elfsym {
    const char *name;  /* NUL-terminated inside the file */
    const char *table; /* ".symtab" or ".dynsym" */
    uint8_t type;      /* STT_FUNC 2, STT_OBJECT 1... */
    uint8_t bind;      /* STB_GLOBAL 1, STB_WEAK 2... */
    int defined;
    uint64_t value, size;
};

/* cb returns 0 to go on, anything else stops the walk and is returned. */
typedef int (*kiln_elfsym_cb)(void *ctx, const struct kiln_elfsym *sym);

#define KILN_ELFSYM_MAX 50000000 /* symbols per table */

int kiln_elfsym_foreach(const struct kiln_elf *e, kiln_elfsym_cb cb, void *ctx,
                        struct kiln_error *err);

/* 1 if sym satisfies pattern (rules above). */
int kiln_elfsym_match(const char *pattern, const char *sym);

/* Split "a,b, c" into n patterns (malloc'ed array of malloc'ed strings);
 * empty items are an error. */
int kiln_elfsym_split(const char *list, char ***out, size_t *n, struct kiln_error *err);
void kiln_elfsym_split_free(char **v, size_t n);

/* For each pattern, set found[i] = 1 when some defined symbol of e matches
 * it and copy that symbol's name into match[i] (may be NULL; each a malloc'ed
 * string the caller frees). Patterns already found stay found, so several
 * files (a host .so and its cubins) can be checked in turn. */
int kiln_elfsym_expect(const struct kiln_elf *e, char *const *patterns, size_t n, int *found,
                       char **match, struct kiln_error *err);

#endif
