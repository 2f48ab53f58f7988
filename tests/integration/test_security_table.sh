#!/usr/bin/env bash
# Runs the security table (tests/security/) as part of the integration step.
exec bash "$(dirname "$0")/../security/test_security_table.sh" "$@"
