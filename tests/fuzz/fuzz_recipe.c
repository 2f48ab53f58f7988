/* libFuzzer target for recipes: the YAML loader, compiler, expander,
 * checker and diff on arbitrary bytes. Every input must end in a variant
 * array or an error with a "name:line:col: error:" message, never a crash,
 * a leak or a hang. */
#include "recipes/recipe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The name has no directory part, so dependencies on other recipes
     * look in the current directory: the fuzzer never reads real recipes. */
    const char *name = "fuzz-input.yaml";
    json_t *v = NULL;
    struct kiln_error err = {0};
    int rc = kiln_recipe_expand_text(name, (const char *)data, size, NULL, NULL, &v, &err);
    if (rc == 0) {
        if (!json_is_array(v)) abort();
        json_t *d = NULL;
        if (kiln_recipe_diff(v, v, &d, &err) != 0) abort();
        if (json_array_size(json_object_get(d, "changed")) != 0) abort();
        json_decref(d);
        json_decref(v);
        v = NULL;
        rc = kiln_recipe_expand_text(name, (const char *)data, size, NULL, "sm=90,isa=avx2", &v,
                                     &err);
        json_decref(v);
    } else {
        if (v) abort();
        if (strncmp(err.msg, name, strlen(name)) != 0 && rc != KILN_ENOMEM) abort();
    }
    json_t *probs = NULL;
    kiln_recipe_check_text(name, (const char *)data, size, &probs, &err);
    json_decref(probs);
    return 0;
}
