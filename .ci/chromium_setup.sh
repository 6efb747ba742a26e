#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium, which tests/test_report.py drives to
# render report.html and check that every embedded plot loads. Idempotent: does
# nothing when chromium is already on the PATH.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
