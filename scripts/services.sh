#!/usr/bin/env bash
# Makes the PostgreSQL and MariaDB servers the live-database tests need available on this machine.
#
#   scripts/services.sh
#
# - installs `postgresql` / `mariadb-server` with apt-get when they (or the server binaries the
#   tests use to spin throwaway servers: initdb, pg_ctl, mariadb-install-db, mariadbd) are missing;
# - installs `pgbouncer` when /usr/sbin/pgbouncer is missing (the PgBouncer tests start their own
#   throwaway instance in transaction pooling mode; no PgBouncer service is configured or needed);
# - starts a server that is installed but not running (no systemd needed);
# - waits (bounded) until both accept TCP connections on 127.0.0.1;
# - on a fresh PostgreSQL install only: trust authentication for 127.0.0.1 and ::1;
# - makes sure PostgreSQL has the superuser roles `postgres` and `root` and a database `test`, and
#   MariaDB has a database `test` that root@localhost and root@127.0.0.1 reach over TCP with an
#   empty password.
#
# Idempotent and non-interactive; when everything is already up it only checks (well under a
# second). Environment: POOL_SERVICES_WAIT (seconds to wait for each server, default 30).
# Exit status 0 when both servers are usable, 1 otherwise (with the reason on stderr).

set -euo pipefail

readonly PG_PORT=5432
readonly MY_PORT=3306
readonly WAIT_SECS="${POOL_SERVICES_WAIT:-30}"

export DEBIAN_FRONTEND=noninteractive
export PGCONNECT_TIMEOUT=5

log() { printf 'services.sh: %s\n' "$*"; }
die() {
    printf 'services.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# Root is needed to install and start servers; use sudo when we are not root and it is available.
SUDO=()
if [[ ${EUID} -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    fi
fi
as_root() { "${SUDO[@]}" "$@"; }

# Runs a command as another system user (the database's owner), from root or through sudo.
as_user() {
    local user=$1
    shift
    if [[ ${EUID} -eq 0 ]] && command -v runuser >/dev/null 2>&1; then
        runuser -u "${user}" -- "$@"
    elif [[ ${#SUDO[@]} -gt 0 ]]; then
        "${SUDO[@]}" -u "${user}" "$@"
    else
        "$@"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $*: apt-get not found (not a Debian-like system?)"
    if [[ ${APT_UPDATED} -eq 0 ]]; then
        log "apt-get update"
        as_root apt-get update -q
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    as_root apt-get install -y -q --no-install-recommends "$@"
}

# Waits until "$@" succeeds, at most WAIT_SECS seconds.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "${what} did not accept connections within ${WAIT_SECS} s"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

pg_bin_ok() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null &&
        compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null &&
        command -v pg_ctlcluster >/dev/null 2>&1 &&
        command -v psql >/dev/null 2>&1 &&
        command -v pg_isready >/dev/null 2>&1
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "${PG_PORT}"; }

# The highest-versioned subdirectory name of $1 (empty when there is none).
newest_subdir() {
    [[ -d $1 ]] || return 0
    find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1
}

# The newest PostgreSQL version with a cluster configuration (/etc/postgresql/<version>).
pg_version() {
    newest_subdir /etc/postgresql
}

# Runs SQL as the `postgres` superuser: over TCP first (trust), else over the Unix socket
# as the system user postgres (peer authentication, the Debian default).
pg_sql() {
    local db=$1 sql=$2
    psql -h 127.0.0.1 -p "${PG_PORT}" -U postgres -d "${db}" -w -XAtq -v ON_ERROR_STOP=1 -c "${sql}" 2>/dev/null ||
        as_user postgres psql -p "${PG_PORT}" -d "${db}" -XAtq -v ON_ERROR_STOP=1 -c "${sql}"
}

pg_trust_localhost() {
    local version=$1
    local hba="/etc/postgresql/${version}/main/pg_hba.conf"
    [[ -f ${hba} ]] || die "fresh PostgreSQL install but ${hba} is missing"
    if grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "${hba}"; then
        return
    fi
    log "fresh install: trust authentication for 127.0.0.1 and ::1 in ${hba}"
    # pg_hba.conf is read top-down and the first match wins: put the trust lines first.
    local tmp
    tmp=$(mktemp)
    {
        echo '# Added by scripts/services.sh (test machine): trust local TCP connections.'
        echo 'host    all             all             127.0.0.1/32            trust'
        echo 'host    all             all             ::1/128                 trust'
        as_root cat "${hba}"
    } >"${tmp}"
    as_root cp "${tmp}" "${hba}"
    rm -f "${tmp}"
    if pg_ready >/dev/null 2>&1; then
        as_root pg_ctlcluster --skip-systemctl-redirect "${version}" main reload
    fi # else the start below reads the new file
}

setup_postgres() {
    local fresh=0
    if ! pg_bin_ok; then
        apt_install postgresql
        fresh=1
        pg_bin_ok || die "PostgreSQL binaries still missing after installing postgresql"
    fi

    local version
    version=$(pg_version)
    if [[ -z ${version} ]]; then
        # Installed without a cluster (e.g. create_main_cluster = false): create the default one.
        version=$(newest_subdir /usr/lib/postgresql)
        log "creating PostgreSQL cluster ${version}/main"
        as_root pg_createcluster "${version}" main
        fresh=1
    fi

    if [[ ${fresh} -eq 1 ]]; then
        pg_trust_localhost "${version}"
    fi

    if ! pg_ready; then
        log "starting PostgreSQL ${version}/main"
        # Exit status 2 means "already running" (e.g. still starting up); the wait below decides.
        as_root pg_ctlcluster --skip-systemctl-redirect "${version}" main start || [[ $? -eq 2 ]]
        wait_for "PostgreSQL on 127.0.0.1:${PG_PORT}" pg_ready
        log "PostgreSQL accepts connections on 127.0.0.1:${PG_PORT}"
    fi

    local state
    state=$(pg_sql postgres "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'postgres' AND rolsuper AND rolcanlogin)
        || ',' || (SELECT count(*) FROM pg_roles WHERE rolname = 'root' AND rolsuper AND rolcanlogin)
        || ',' || (SELECT count(*) FROM pg_database WHERE datname = 'test')") ||
        die "cannot run SQL on PostgreSQL as the postgres superuser"
    IFS=, read -r has_postgres has_root has_test <<<"${state}"
    if [[ ${has_postgres} != 1 ]]; then
        log "PostgreSQL: making role postgres a login superuser"
        pg_sql postgres "DO \$\$BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'postgres') THEN ALTER ROLE postgres LOGIN SUPERUSER;
            ELSE CREATE ROLE postgres LOGIN SUPERUSER; END IF; END\$\$" >/dev/null
    fi
    if [[ ${has_root} != 1 ]]; then
        log "PostgreSQL: creating role root (login superuser)"
        pg_sql postgres "DO \$\$BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN ALTER ROLE root LOGIN SUPERUSER;
            ELSE CREATE ROLE root LOGIN SUPERUSER; END IF; END\$\$" >/dev/null
    fi
    if [[ ${has_test} != 1 ]]; then
        log "PostgreSQL: creating database test"
        pg_sql postgres "CREATE DATABASE test" >/dev/null
    fi

    local user
    for user in postgres root; do
        psql -h 127.0.0.1 -p "${PG_PORT}" -U "${user}" -d test -w -XAtq -c 'SELECT 1' >/dev/null ||
            die "PostgreSQL: ${user}@127.0.0.1:${PG_PORT}/test cannot log in without a password (pg_hba.conf of a pre-existing install is left alone)"
    done
    log "PostgreSQL ready: postgres://postgres@127.0.0.1:${PG_PORT}/test (and user root)"
}

# ---------------------------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------------------------

my_bin_ok() {
    [[ -x /usr/sbin/mariadbd ]] &&
        command -v mariadb-install-db >/dev/null 2>&1 &&
        command -v mariadb >/dev/null 2>&1 &&
        command -v mariadb-admin >/dev/null 2>&1
}

# `mariadb-admin ping` exits 0 whenever the server answers, even with "access denied".
my_ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P "${MY_PORT}" --connect-timeout=2 ping; }

# Administrative SQL as the MariaDB root user over the Unix socket (unix_socket authentication for
# the system root on a fresh Debian install; an empty password on an already configured one).
my_admin_sql() { as_root mariadb --protocol=socket -u root -N -B -e "$1"; }

# Can `root` log in over TCP with an empty password and use database `test`?
my_tcp_ok() {
    mariadb --protocol=tcp -h "$1" -P "${MY_PORT}" -u root --password= --connect-timeout=5 -D test -N -B -e 'SELECT 1' >/dev/null 2>&1
}

setup_mariadb() {
    if ! my_bin_ok; then
        apt_install mariadb-server mariadb-client
        my_bin_ok || die "MariaDB binaries still missing after installing mariadb-server"
    fi

    if ! my_ready >/dev/null 2>&1; then
        if [[ ! -d /var/lib/mysql/mysql ]]; then
            log "initialising the MariaDB data directory /var/lib/mysql"
            as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        fi
        log "starting MariaDB (mariadbd)"
        as_root mkdir -p /run/mysqld
        as_root chown mysql:mysql /run/mysqld
        # --pidfile as well as --exec: a throwaway mariadbd of the tests must not count as "running".
        as_root start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid \
            --exec /usr/sbin/mariadbd -- --user=mysql
        wait_for "MariaDB on 127.0.0.1:${MY_PORT}" my_ready
        log "MariaDB accepts connections on 127.0.0.1:${MY_PORT}"
    fi

    # Fast path: everything already in place.
    if my_tcp_ok 127.0.0.1 && [[ $(mariadb --protocol=tcp -h 127.0.0.1 -P "${MY_PORT}" -u root --password= -N -B -e \
        "SELECT COUNT(*) FROM mysql.user WHERE User = 'root' AND Host IN ('localhost', '127.0.0.1') AND plugin IN ('mysql_native_password', '') AND authentication_string = ''" 2>/dev/null) == 2 ]]; then
        log "MariaDB ready: mysql://root@127.0.0.1:${MY_PORT}/test"
        return
    fi

    log "MariaDB: creating database test; root@localhost and root@127.0.0.1 with an empty password"
    my_admin_sql "CREATE DATABASE IF NOT EXISTS test;
        ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
        ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        FLUSH PRIVILEGES;" ||
        die "MariaDB: cannot run administrative SQL as root over the Unix socket"

    my_tcp_ok 127.0.0.1 || die "MariaDB: root@127.0.0.1:${MY_PORT}/test cannot log in with an empty password"
    log "MariaDB ready: mysql://root@127.0.0.1:${MY_PORT}/test"
}

# ---------------------------------------------------------------------------------------------
# PgBouncer (binary only: tests/src/pgbouncer.rs starts a throwaway instance per test)
# ---------------------------------------------------------------------------------------------

setup_pgbouncer() {
    if [[ ! -x /usr/sbin/pgbouncer ]]; then
        apt_install pgbouncer
        [[ -x /usr/sbin/pgbouncer ]] || die "/usr/sbin/pgbouncer still missing after installing pgbouncer"
    fi
    log "PgBouncer ready: $(/usr/sbin/pgbouncer --version | head -n 1)"
}

setup_postgres
setup_mariadb
setup_pgbouncer

# The TLS tests generate their server certificate with the openssl CLI (Debian's postgresql
# usually pulls it in through ssl-cert; make sure).
if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl
fi
