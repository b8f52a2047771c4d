#!/usr/bin/env bash
# Creates a Ray authentication token file once (mode 0600) and prints its path,
# never the token: every launcher hands this file (or a Kubernetes Secret made
# from it) to its nodes, so the token is never typed, logged or committed.
#
#   cluster/new-token.sh                 # ~/.ray/fgvc-cluster-token
#   cluster/new-token.sh /path/to/file   # another file (kept if it already holds a token)
set -euo pipefail
file="${1:-$HOME/.ray/fgvc-cluster-token}"
if [ ! -s "$file" ]; then
  mkdir -p "$(dirname "$file")"
  # 256 random bits, hex, no newline: the format `ray get-auth-token --generate` writes.
  (umask 077 && python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(32))' > "$file.new.$$")
  mv "$file.new.$$" "$file"
fi
chmod 600 "$file"
echo "$file"
