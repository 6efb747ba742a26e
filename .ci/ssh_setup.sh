#!/usr/bin/env bash
# Installs the OpenSSH server and client that tests/test_benchmark_ssh.py starts on
# 127.0.0.1 (its own sshd, config, host key and user key, on a free port). Idempotent;
# the system sshd service is not started.
set -euo pipefail
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd
