#!/usr/bin/env bash
# The chaos suite's bounded form (tests/chaos/, issue 16) in the integration
# step: 5 SIGKILLs of kiln serve during 24 builds. `make chaos` runs the full form.
exec bash "$(dirname "$0")/../chaos/test_chaos_serve.sh" "$@"
