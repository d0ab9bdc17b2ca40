#!/usr/bin/env bash
# Make sure the machine's PostgreSQL server has PostGIS, installing Debian's package where we can.
# Used by `make setup` when DATABASE_URL is not set (the project then runs its own cluster).
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1 || true)
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v initdb)")
fi

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  echo "installing $* with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  if can_apt; then
    apt_install postgresql postgresql-contrib
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -t/ -k5 -n | tail -n 1)
  else
    echo "PostgreSQL server binaries not found. Run as root: apt-get install postgresql postgresql-15-postgis-3" >&2
    echo "or set DATABASE_URL to an existing PostGIS server." >&2
    exit 1
  fi
fi

major=$("$bindir/postgres" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$major")
if [ -f "$sharedir/extension/postgis.control" ]; then
  exit 0
fi
if can_apt; then
  apt_install "postgresql-$major-postgis-3"
  [ -f "$sharedir/extension/postgis.control" ] && exit 0
fi
echo "PostGIS is missing for PostgreSQL $major. Run as root: apt-get install -y postgresql-$major-postgis-3" >&2
echo "(or set DATABASE_URL to an existing PostGIS server)." >&2
exit 1
