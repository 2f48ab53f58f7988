/* Unit tests for the git watcher's pure parts: libgit2 mirror operations on a
 * real repository made with git, glob matching, affected variants, webhooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/fsutil.h"
#include "git/affected.h"
#include "git/gitrepo.h"
#include "git/webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char tmp[64];

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void head_of(const char *dir, char out[41])
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "git -C %s rev-parse HEAD", dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, 41, f));
    pclose(f);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmp, "/tmp/kiln-git-XXXXXX");
    if (!mkdtemp(tmp)) return -1;
    kiln_git_init();
    return sh("set -e; cd %s; git init -q --bare origin.git; git init -q -b main work; cd work;"
              "git config user.email t@t; git config user.name t;"
              "mkdir -p .flox/pkgs/lib; echo a > .flox/pkgs/a.nix; echo b > .flox/pkgs/b.nix;"
              "echo lib > .flox/pkgs/lib/common.nix; echo readme > README.md;"
              "git add -A; git commit -qm one; git remote add origin ../origin.git; git push -q "
              "origin main",
              tmp);
}

static int teardown(void **state)
{
    (void)state;
    kiln_git_shutdown();
    return sh("rm -rf %s", tmp);
}

static void test_fetch_read_diff_ancestry(void **state)
{
    (void)state;
    char mirror[128], origin[128], work[128];
    snprintf(mirror, sizeof mirror, "%s/mirror.git", tmp);
    snprintf(origin, sizeof origin, "%s/origin.git", tmp);
    snprintf(work, sizeof work, "%s/work", tmp);
    struct kiln_error err = {0};
    assert_int_equal(kiln_git_fetch(mirror, origin, NULL, &err), KILN_OK);
    char c1[KILN_OID_HEX], c2[KILN_OID_HEX], c3[KILN_OID_HEX], head[41];
    assert_int_equal(kiln_git_resolve(mirror, "main", c1, &err), KILN_OK);
    head_of(work, head);
    assert_string_equal(c1, head);
    struct kiln_buf b = {0};
    assert_int_equal(kiln_git_read_file(mirror, c1, ".flox/pkgs/a.nix", 1024, &b, &err), KILN_OK);
    assert_string_equal(b.data, "a\n");
    kiln_buf_free(&b);
    /* checkout of a commit's tree into a plain directory, no work tree */
    char co[160], f[200];
    snprintf(co, sizeof co, "%s/co", tmp);
    assert_int_equal(kiln_git_checkout(mirror, c1, co, &err), KILN_OK);
    snprintf(f, sizeof f, "%s/.flox/pkgs/lib/common.nix", co);
    struct kiln_buf cb = {0};
    assert_int_equal(kiln_read_file(f, 0, &cb), KILN_OK);
    assert_string_equal(cb.data, "lib\n");
    kiln_buf_free(&cb);
    assert_int_equal(kiln_git_read_file(mirror, c1, "nope.txt", 1024, &b, &err), KILN_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope.txt"));
    kiln_buf_free(&b);

    assert_int_equal(sh("cd %s && echo lib2 > .flox/pkgs/lib/common.nix && git commit -qam two && "
                        "git push -q origin main",
                        work),
                     0);
    assert_int_equal(kiln_git_fetch(mirror, origin, NULL, &err), KILN_OK);
    assert_int_equal(kiln_git_resolve(mirror, "main", c2, &err), KILN_OK);
    json_t *changed = NULL;
    assert_int_equal(kiln_git_changed_files(mirror, c1, c2, &changed, &err), KILN_OK);
    assert_int_equal(json_array_size(changed), 1);
    assert_string_equal(json_string_value(json_array_get(changed, 0)), ".flox/pkgs/lib/common.nix");
    json_decref(changed);
    assert_int_equal(kiln_git_is_ancestor(mirror, c1, c2, &err), 1);

    /* force-push: rewrite history so c2 is no longer an ancestor */
    assert_int_equal(sh("cd %s && git reset -q --hard HEAD~1 && echo b2 > .flox/pkgs/b.nix && git "
                        "commit -qam three && git push -qf origin main",
                        work),
                     0);
    assert_int_equal(kiln_git_fetch(mirror, origin, NULL, &err), KILN_OK);
    assert_int_equal(kiln_git_resolve(mirror, "main", c3, &err), KILN_OK);
    assert_int_equal(kiln_git_is_ancestor(mirror, c2, c3, &err), 0);
    assert_int_equal(kiln_git_changed_files(mirror, c2, c3, &changed, &err), KILN_OK);
    assert_int_equal(json_array_size(changed), 2); /* lib reverted, b changed */
    json_decref(changed);
    json_t *br = NULL;
    assert_int_equal(kiln_git_branches(mirror, &br, &err), KILN_OK);
    assert_string_equal(json_string_value(json_object_get(br, "main")), c3);
    json_decref(br);
    assert_int_equal(kiln_git_fetch(mirror, "/nonexistent/repo.git", NULL, &err), KILN_ENET);
    assert_non_null(strstr(err.msg, "fetch from /nonexistent/repo.git failed"));
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(kiln_glob_match(".flox/pkgs/lib/**", ".flox/pkgs/lib/a/b.nix"));
    assert_true(kiln_glob_match(".flox/pkgs/lib/**", ".flox/pkgs/lib/x.nix"));
    assert_true(kiln_glob_match(".flox/pkgs/*.nix", ".flox/pkgs/a.nix"));
    assert_false(kiln_glob_match(".flox/pkgs/*.nix", ".flox/pkgs/lib/a.nix"));
    assert_true(kiln_glob_match("**/*.nix", "a/b/c.nix"));
    assert_true(kiln_glob_match("**/*.nix", "c.nix"));
    assert_true(kiln_glob_match("sm[0-9]?", "sm90"));
    assert_false(kiln_glob_match("README", "README.md"));
    /* pathological pattern stays fast */
    assert_false(
        kiln_glob_match("**a**a**a**a**a**a**a**a**b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static json_t *variant(const char *name, const char *cmd, const char *dep)
{
    char input[128];
    snprintf(input, sizeof input, ".flox/pkgs/%s.nix", name);
    json_t *v = json_pack("{s:s,s:s,s:[s,s],s:[]}", "name", name, "command", cmd, "inputs", input,
                          ".flox/pkgs/lib/**", "depends");
    if (dep) json_array_append_new(json_object_get(v, "depends"), json_string(dep));
    return v;
}

static void test_affected(void **state)
{
    (void)state;
    json_t *old = json_pack("[o,o,o]", variant("torch", "b", NULL), variant("a", "b", "torch"),
                            variant("b", "b", NULL));
    json_t *cur = json_deep_copy(old);
    json_t *files = json_pack("[s]", ".flox/pkgs/torch.nix"), *res = NULL;
    struct kiln_error err;
    assert_int_equal(kiln_affected(old, cur, files, &res, &err), KILN_OK);
    assert_int_equal(json_object_size(res), 2);
    assert_string_equal(json_string_value(json_object_get(res, "a")), "depends on torch");
    json_decref(res);
    json_decref(files);
    files = json_pack("[s]", "README.md");
    assert_int_equal(kiln_affected(old, cur, files, &res, &err), KILN_OK);
    assert_int_equal(json_object_size(res), 0);
    json_decref(res);
    json_decref(files);
    files = json_pack("[s]", ".flox/pkgs/lib/common.nix");
    assert_int_equal(kiln_affected(old, cur, files, &res, &err), KILN_OK);
    assert_int_equal(json_object_size(res), 3);
    json_decref(res);
    json_object_set_new(json_array_get(cur, 2), "command", json_string("c"));
    json_decref(files);
    files = json_array();
    assert_int_equal(kiln_affected(old, cur, files, &res, &err), KILN_OK);
    assert_int_equal(json_object_size(res), 1);
    assert_string_equal(json_string_value(json_object_get(res, "b")), "recipe changed: command");
    json_decref(res);
    json_decref(files);
    json_decref(old);
    json_decref(cur);
}

struct hdrs {
    const char *names[4];
    const char *values[4];
};

static const char *hget(void *arg, const char *name)
{
    struct hdrs *h = arg;
    for (int i = 0; i < 4 && h->names[i]; i++)
        if (!strcasecmp(h->names[i], name)) return h->values[i];
    return NULL;
}

static void test_webhook_github_known_vector(void **state)
{
    (void)state;
    /* GitHub's documented example: secret and payload -> signature. */
    char sig[128];
    const char *secret = "It's a Secret to Everybody";
    assert_int_equal(
        kiln_webhook_sign(KILN_FORGE_GITHUB, secret, "Hello, World!", 13, sig, sizeof sig),
        KILN_OK);
    assert_string_equal(sig,
                        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");

    const char *body =
        "{\"ref\":\"refs/heads/main\",\"after\":\"abc\",\"repository\":{\"clone_url\":\"https://x/"
        "r.git\",\"full_name\":\"o/r\"}}";
    kiln_webhook_sign(KILN_FORGE_GITHUB, "s3cret", body, strlen(body), sig, sizeof sig);
    struct hdrs h = {{"X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"},
                     {sig, "push", "d-1"}};
    struct kiln_webhook_event ev;
    struct kiln_error err;
    assert_int_equal(
        kiln_webhook_parse(KILN_FORGE_GITHUB, "s3cret", hget, &h, body, strlen(body), &ev, &err),
        KILN_OK);
    assert_true(ev.is_push);
    assert_string_equal(ev.branch, "main");
    assert_string_equal(ev.delivery, "d-1");
    assert_string_equal(ev.repo_url, "https://x/r.git");
    /* wrong secret, missing signature, tampered body */
    assert_int_equal(
        kiln_webhook_parse(KILN_FORGE_GITHUB, "other", hget, &h, body, strlen(body), &ev, &err),
        KILN_EAUTH);
    h.values[0] = NULL;
    h.names[0] = "X-Nothing";
    assert_int_equal(
        kiln_webhook_parse(KILN_FORGE_GITHUB, "s3cret", hget, &h, body, strlen(body), &ev, &err),
        KILN_EAUTH);
    assert_non_null(strstr(err.msg, "missing"));
}

static void test_webhook_gitlab_and_gitea(void **state)
{
    (void)state;
    const char *body = "{\"ref\":\"refs/heads/"
                       "dev\",\"checkout_sha\":\"abc\",\"project\":{\"git_http_url\":\"http://g/"
                       "r.git\",\"path_with_namespace\":\"o/r\"}}";
    struct hdrs h = {{"X-Gitlab-Token", "X-Gitlab-Event"}, {"tok", "Push Hook"}};
    struct kiln_webhook_event ev;
    struct kiln_error err;
    assert_int_equal(
        kiln_webhook_parse(KILN_FORGE_GITLAB, "tok", hget, &h, body, strlen(body), &ev, &err),
        KILN_OK);
    assert_string_equal(ev.branch, "dev");
    assert_string_equal(ev.repo_url, "http://g/r.git");
    assert_int_equal(
        kiln_webhook_parse(KILN_FORGE_GITLAB, "tok2", hget, &h, body, strlen(body), &ev, &err),
        KILN_EAUTH);
    char sig[128];
    kiln_webhook_sign(KILN_FORGE_GITEA, "k", "{}", 2, sig, sizeof sig);
    struct hdrs g = {{"X-Gitea-Signature", "X-Gitea-Event"}, {sig, "push"}};
    assert_int_equal(kiln_webhook_parse(KILN_FORGE_GITEA, "k", hget, &g, "{}", 2, &ev, &err),
                     KILN_OK);
    assert_false(ev.is_push);
    assert_int_equal(kiln_webhook_parse(KILN_FORGE_GITEA, "k", hget, &g, "{x", 2, &ev, &err),
                     KILN_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_read_diff_ancestry),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_affected),
        cmocka_unit_test(test_webhook_github_known_vector),
        cmocka_unit_test(test_webhook_gitlab_and_gitea),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
