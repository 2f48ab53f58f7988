/* libFuzzer target: publish request bodies (JSON metadata, nix info, names,
 * digests) against a real catalog in a temp dir, plus the S3 XML reply
 * reader. Each input is one publish attempt of a fixed blob. */
#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "catalog/s3.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct kiln_catalog *cat;
static char digest[KILN_DIGEST_STR];
static char dir[] = "/tmp/kiln-fuzz-cat-XXXXXX";

static void cleanup(void)
{
    char cmd[64];
    kiln_catalog_close(cat);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return;
}

static void setup(void)
{
    if (!mkdtemp(dir)) abort();
    atexit(cleanup);
    if (kiln_catalog_open(dir, &cat, NULL) != KILN_OK) abort();
    struct kiln_catalog_upload *u;
    uint64_t size;
    if (kiln_catalog_upload_begin(cat, NULL, -1, &u, NULL) != KILN_OK) abort();
    kiln_catalog_upload_write(u, "fuzz", 4, NULL);
    if (kiln_catalog_upload_finish(u, digest, &size, NULL) != KILN_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cat) setup();
    char val[256];
    kiln_s3_xml_value((const char *)data, size, "UploadId", val, sizeof val);
    /* Range headers and publish templates are parsers too. */
    char text[512];
    size_t tn = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, tn);
    text[tn] = 0;
    uint64_t ra, rb;
    if (kiln_catalog_parse_range(text, 1000, &ra, &rb) == 1 && (ra > rb || rb >= 1000)) abort();
    json_t *vars = json_pack("{s:s,s:i}", "name", "n'x", "size", 3);
    struct kiln_buf tb = {0};
    kiln_publish_template(text, vars, 1, &tb, NULL);
    kiln_buf_free(&tb);
    json_decref(vars);
    json_t *in = json_loadb((const char *)data, size, 0, NULL);
    if (!in) return 0;
    const char *d = json_string_value(json_object_get(in, "digest"));
    json_t *meta = json_object_get(in, "meta");
    struct kiln_error err = {0};
    int64_t id;
    if (kiln_catalog_publish(cat, meta ? meta : in, d ? d : digest, &id, NULL, &err) == KILN_OK) {
        json_t *e;
        if (kiln_catalog_get(cat, id, &e, NULL) == KILN_OK) {
            kiln_catalog_entry_signature_ok(cat, e);
            json_decref(e);
        }
    }
    json_decref(in);
    return 0;
}
