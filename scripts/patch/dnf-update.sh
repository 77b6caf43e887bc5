#!/usr/bin/env bash
# Generated from scripts/patch/src/dnf.sh and scripts/patch/src/common.sh by
# scripts/dev/gen-scripts.ts. Do not edit: edit src/, then run `npm run gen:scripts`.
#
# dnf-update.sh — patch an RHEL 8+ / CentOS Stream 8+ / Fedora system with dnf 4 or dnf5. It serves the
# dnf and the yum families: on EL 8+ `yum` is dnf 4 under another name (both link to dnf-3).
#
#   dnf-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256.
#
# How each contract step maps onto dnf 4:
# - manager:  `dnf`; where there is none, `yum` — used only when `yum --version` says 4.x, i.e. it
#             is dnf 4 called as yum. yum 3 (EL 7) is refused with exit 3: its output differs
#             and is not proven (the agent refuses EL 7 at enrolment). dnf5 (Fedora 41+, where
#             `dnf` is dnf5) is driven with its own commands: the plan is the transaction it
#             stores with `upgrade --store` (docs/package-managers.md).
# - root:     --installroot DIR --config DIR/etc/dnf/dnf.conf (or DIR/etc/yum.conf)
#             --setopt=reposdir=DIR/etc/yum.repos.d. dnf 4 reads config and repos from the
#             installroot only when they exist there and silently falls back to the host's
#             otherwise; naming both explicitly makes a half-built root fail loudly instead.
# - refresh:  makecache --refresh with skip_if_unavailable=False, so a broken repository is a
#             refresh failure (exit 5), not a silently smaller plan.
# - plan:     the solver of `upgrade` itself: `upgrade --assumeno` (dry-run) and `upgrade -y`
#             (apply) run with -v, and the plan is read from the depsolve callback's fixed
#             one-line-per-element records ("---> Package NAME.ARCH EVR will be MODE", LC_ALL=C),
#             not from the transaction table. dnf 4 has no machine-readable transaction output;
#             `repoquery --upgrades` is machine-readable but is not the solver (it misses new
#             dependencies, obsoletes, and upgrades the solver skips with best=False), so it
#             only supplies what the records lack: the repository of each planned package.
#             The dry-run plan is therefore exactly the transaction that apply resolves.
# - exclude:  dnf --exclude (per invocation, globs native, added to the config's excludepkgs).
#             A pre-existing excludepkgs=/exclude= in dnf.conf or a versionlock entry is the
#             admin's hold: never edited, and respected by dnf itself.
# - held:     repoquery --upgrades --latest-limit 1 with the --exclude patterns as the query
#             (same matching as --exclude), without --exclude.
# - changed:  rpm -qa before and after the transaction (NEVRA sets), not log scraping.
# - reboot:   `needs-restarting -r` (dnf-utils / yum-utils) when present and the target is the
#             running system, not a container. With --root, in a container, or without
#             needs-restarting, the same rule needs-restarting applies: a core package (kernel*,
#             glibc, systemd, dbus*, linux-firmware, microcode_ctl) installed after the userland
#             started (PID 1's start: a container's own start, never its host's boot) needs a reboot.
# - lock:     exit_on_lock=True: dnf exits 200 ("RPMDB already locked by PID") instead of
#             waiting when another dnf holds ROOT/var/lib/dnf/rpmdb_lock.pid (or the metadata
#             lock during refresh). Reported as exit 4; dnf takes the rpmdb lock before the rpm
#             transaction starts, so nothing has changed.
set -euo pipefail

readonly SCRIPT=dnf-update.sh
readonly EXCLUDE_PATTERN='^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$'
readonly OPTIONS=' --root '
readonly USAGE='usage: dnf-update.sh (--dry-run | --apply) [--security-only] [--exclude PKG[,PKG...]] [--root DIR]'
readonly EVR_FORMAT='%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}'
readonly SOLVER_RECORD='^---> Package (.+)\.([^.[:space:]]+) ([^[:space:]]+) will be (.+)$'
readonly SNAPSHOT_FAILED='rpm -qa (reading the package database) failed'
manager=dnf
# dnf4 (dnf 4, also as yum) or dnf5: the commands differ, the contract does not.
flavour=dnf4

# ---------------------------------------------------------------------------------------------
# Shared by every patch script (scripts/patch/src/common.sh): arguments, exit paths, JSON output.
#
# The part that includes this defines, before the include:
#   SCRIPT            the served file name (apt-update.sh), for logs and messages
#   EXCLUDE_PATTERN   the family's legal package names (docs/script-contract.md)
#   OPTIONS           " --flag … " family flags that take one value; set_option FLAG VALUE
#                     stores each (called once per flag, after the value is present)
#   USAGE             the usage line
#   manager           the manager named in the JSON (the part may change it once it found one)
# and after it, the hooks the EXIT trap calls:
#   undo_exclusions   remove exactly the holds/locks this run added; on failure set
#                     undo_failure to a message naming them and return 1
#   report_on_exit    once the environment was checked (workdir exists): whatever is worth
#                     reporting however the run ended (changes of an interrupted apply, reboot)
#
# Package data travels as records, one a line, fields separated by FS (not whitespace, so `read`
# keeps empty fields; an empty field is JSON null): the part writes the plan to
# $workdir/packages and $workdir/held ("name arch current candidate repo action") and the apply's
# changes to $workdir/changed ("name arch from to"); emit_json turns them into the document.
# ---------------------------------------------------------------------------------------------

readonly CONTRACT_VERSION=1
readonly FS=$'\x1f'
# Inside a record's advisories field: AS between advisories, AF between an id and its severity.
readonly AS=$'\x1e'
readonly AF=$'\x1d'

mode=''
# --security-only: plan and apply only the security fixes (a part that cannot sets
# SECURITY_ONLY_UNSUPPORTED to the reason before the include).
security_only=false
exclusions=()
workdir=''
undo_failure=''
err_line=''
reboot_required=false
reboot_reason=''
manager_exit_code=''
result_exit=''
result_error_code=''
result_error_message=''
in_exit_trap=false

log() { printf '%s: %s\n' "${SCRIPT%.sh}" "$*" >&2; }

# json_quote VALUE — sets json_quoted to VALUE as a JSON string literal (no subshell).
json_quote() {
  local s=$1 i c hex
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  if [[ $s == *[[:cntrl:]]* ]]; then
    for ((i = 1; i < 32; i++)); do
      printf -v hex '%02x' "$i"
      printf -v c '%b' "\\x$hex"
      s=${s//"$c"/\\u00$hex}
    done
  fi
  json_quoted="\"$s\""
}

# json_nullable VALUE — like json_quote, but the empty string becomes null.
json_nullable() {
  if [[ -z $1 ]]; then json_quoted=null; else json_quote "$1"; fi
}

# advisories_to_json LIST — an advisories field (entries separated by AS, each "id AF severity")
# as a JSON array in json_advisories.
advisories_to_json() {
  local entry id severity sep="" rest=$1
  json_advisories="["
  while [[ -n $rest ]]; do
    entry=${rest%%"$AS"*}
    [[ $rest == *"$AS"* ]] && rest=${rest#*"$AS"} || rest=''
    id=${entry%%"$AF"*}
    severity=${entry#*"$AF"}
    [[ $entry == *"$AF"* ]] || severity=''
    json_quote "$id"; json_advisories+="$sep{\"id\":$json_quoted"
    json_nullable "$severity"; json_advisories+=",\"severity\":$json_quoted}"
    sep=","
  done
  json_advisories+="]"
}

# packages_to_json FILE — package records, sorted by name and arch, as a JSON array in json_array.
packages_to_json() {
  local name arch current candidate repo action security advisories item sep=""
  json_array="["
  while IFS=$FS read -r name arch current candidate repo action security advisories; do
    json_quote "$name"; item="{\"name\":$json_quoted"
    json_quote "$arch"; item+=",\"arch\":$json_quoted"
    json_nullable "$current"; item+=",\"current\":$json_quoted"
    json_nullable "$candidate"; item+=",\"candidate\":$json_quoted"
    json_quote "$repo"; item+=",\"repo\":$json_quoted"
    json_quote "$action"; item+=",\"action\":$json_quoted"
    case $security in
      true | false) item+=",\"security\":$security" ;;
      *) item+=",\"security\":null" ;;
    esac
    advisories_to_json "$advisories"
    item+=",\"advisories\":$json_advisories}"
    json_array+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  json_array+="]"
}

# classify_records FILE — add the security fields to the package records in FILE from the
# classification the part collected: `security_of[name.arch]` (true/false; unset: the
# manager's default, `security_default`: false when it has advisory data, empty = null when it
# has none) and `advisories_of[name.arch]` (the advisories field). Removals are never classified.
declare -A security_of=() advisories_of=()
security_default=''
classify_records() {
  local name arch current candidate repo action security advisories key
  [[ -f $1 ]] || return 0
  while IFS=$FS read -r name arch current candidate repo action _; do
    key=$name.$arch
    security=${security_of[$key]:-$security_default}
    advisories=${advisories_of[$key]:-}
    if [[ $action == remove ]]; then security='' advisories=''; fi
    record "$name" "$arch" "$current" "$candidate" "$repo" "$action" "$security" "$advisories"
  done <"$1" >"$1.classified"
  mv -- "$1.classified" "$1"
}

# changes_to_json FILE — change records, sorted by name and arch, as a JSON array in json_array.
changes_to_json() {
  local name arch from to item sep=""
  json_array="["
  while IFS=$FS read -r name arch from to; do
    json_quote "$name"; item="{\"name\":$json_quoted"
    json_quote "$arch"; item+=",\"arch\":$json_quoted"
    json_nullable "$from"; item+=",\"from\":$json_quoted"
    json_nullable "$to"; item+=",\"to\":$json_quoted}"
    json_array+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  json_array+="]"
}

# record FIELD... — one record line on stdout.
record() {
  local IFS=$FS
  printf '%s\n' "$*"
}

emit_json() {
  local json_mode json_manager json_reason packages='[]' held='[]' changed='[]' error=null code message
  json_nullable "$mode"; json_mode=$json_quoted
  json_quote "$manager"; json_manager=$json_quoted
  json_nullable "$reboot_reason"; json_reason=$json_quoted
  if [[ -n $workdir ]]; then
    if [[ -f $workdir/packages ]]; then packages_to_json "$workdir/packages"; packages=$json_array; fi
    if [[ -f $workdir/held ]]; then packages_to_json "$workdir/held"; held=$json_array; fi
    if [[ -f $workdir/changed ]]; then changes_to_json "$workdir/changed"; changed=$json_array; fi
  fi
  if [[ -n $result_error_code ]]; then
    json_quote "$result_error_code"; code=$json_quoted
    json_quote "$result_error_message"; message=$json_quoted
    error="{\"code\":$code,\"message\":$message}"
  fi
  printf '{"contract":%s,"manager":%s,"mode":%s,"packages":%s,"held":%s,"changed":%s,"reboot_required":%s,"reboot_reason":%s,"manager_exit_code":%s,"error":%s}\n' \
    "$CONTRACT_VERSION" "$json_manager" "$json_mode" "$packages" "$held" "$changed" \
    "$reboot_required" "$json_reason" "${manager_exit_code:-null}" "$error"
}

# ---------------------------------------------------------------------------------------------
# Exit paths: every run ends in on_exit, which undoes the exclusions and prints the one document
# ---------------------------------------------------------------------------------------------

# fail EXIT_CODE ERROR_CODE MESSAGE — end the run; the EXIT trap cleans up and prints the JSON.
# Never call it in a subshell ($(…), a pipeline): there `exit` would end only the subshell.
fail() {
  if [[ $in_exit_trap == true ]]; then
    # A failure while the trap reports (a signal, the package database unreadable) must not end
    # the script before the document is printed; the run's own result stands.
    log "while reporting: $2: $3 (the run's result stands)"
    return 1
  fi
  log "error ($2): $3"
  result_exit=$1
  result_error_code=$2
  result_error_message=$3
  exit "$1"
}

usage_error() {
  mode=''
  fail 2 usage "$1; $USAGE"
}

on_exit() {
  local rc=$?
  trap - EXIT
  set +e
  in_exit_trap=true
  if ! undo_exclusions; then
    # A hold or lock this script added is still there: the host is not as we found it, and
    # whoever reads the result must know, whatever the outcome of the run was.
    result_exit=3
    result_error_code=environment
    result_error_message=$undo_failure
  fi
  if [[ -z $result_exit ]]; then
    if ((rc == 0)); then
      result_exit=0
    else
      result_exit=3
      result_error_code=environment
      result_error_message="unexpected failure (exit $rc) at line ${err_line:-?} of $SCRIPT"
    fi
  fi
  if [[ -n $workdir ]]; then
    report_on_exit
  fi
  emit_json
  if [[ -n $workdir ]]; then
    rm -rf -- "$workdir"
  fi
  exit "$result_exit"
}

# set_traps — first thing in main: from here on every exit path prints the JSON document.
set_traps() {
  trap on_exit EXIT
  # errtrace: functions inherit the ERR trap, so an unexpected failure reports its line.
  set -o errtrace
  trap 'err_line=$LINENO' ERR
  # A signal ends the run through the EXIT trap too (after the running command returns).
  trap 'fail 3 environment "interrupted by SIGINT"' INT
  trap 'fail 3 environment "terminated by SIGTERM"' TERM
  trap 'fail 3 environment "hung up (SIGHUP)"' HUP
}

# make_workdir — the run's scratch directory (records, logs); the EXIT trap removes it.
make_workdir() {
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/${SCRIPT%.sh}.XXXXXX") || fail 3 environment "cannot create a temporary directory"
}

# ---------------------------------------------------------------------------------------------
# Arguments (validated before anything runs)
# ---------------------------------------------------------------------------------------------

parse_exclusions() {
  local rest=$1 entry
  # Split by expansion, not `read`, which would stop at a newline and drop the rest unchecked.
  while :; do
    entry=${rest%%,*}
    [[ $entry =~ $EXCLUDE_PATTERN ]] || usage_error "not a legal $manager package name in --exclude: '$entry'"
    exclusions+=("$entry")
    [[ $rest == *,* ]] || break
    rest=${rest#*,}
  done
}

parse_args() {
  local -A seen=()
  while (($# > 0)); do
    case $1 in
      --dry-run | --apply)
        [[ -z $mode ]] || usage_error "exactly one of --dry-run and --apply is required"
        mode=${1#--}
        ;;
      --security-only)
        [[ $security_only == false ]] || usage_error "--security-only may be given once"
        [[ -z ${SECURITY_ONLY_UNSUPPORTED:-} ]] || usage_error "--security-only: $SECURITY_ONLY_UNSUPPORTED"
        security_only=true
        ;;
      --exclude | --*)
        [[ $1 == --exclude || $OPTIONS == *" $1 "* ]] || usage_error "unknown argument: '$1'"
        (($# >= 2)) || usage_error "$1 needs a value"
        [[ -z ${seen[$1]:-} ]] || usage_error "$1 may be given once"
        seen[$1]=1
        if [[ $1 == --exclude ]]; then parse_exclusions "$2"; else set_option "$1" "$2"; fi
        shift
        ;;
      *) usage_error "unknown argument: '$1'" ;;
    esac
    shift
  done
  [[ -n $mode ]] || usage_error "exactly one of --dry-run and --apply is required"
}

# root_option DIR — the value of --root (dnf, zypper, pacman): a directory, never a flag.
root_option() {
  [[ -n $1 && $1 != -* ]] || usage_error "--root needs a directory"
  # shellcheck disable=SC2034 # apt takes no --root; the parts that do read it
  root=$1
}

# ---------------------------------------------------------------------------------------------
# Helpers every manager uses
# ---------------------------------------------------------------------------------------------

# run_manager LOGFILE COMMAND... — run COMMAND, stream its output to stderr, keep a copy in
# LOGFILE, record its exit status in manager_exit_code and return it.
run_manager() {
  local logfile=$1 rc=0
  shift
  log "running: $*"
  "$@" </dev/null 2>&1 | tee -- "$logfile" >&2 || rc=${PIPESTATUS[0]}
  manager_exit_code=$rc
  return "$rc"
}

# is_excluded NAME — whether NAME matches an --exclude entry (a simple `*` glob).
is_excluded() {
  local name=$1 pattern
  for pattern in "${exclusions[@]}"; do
    # shellcheck disable=SC2053 # the right side is a glob on purpose (`linux-image-*`)
    if [[ $name == $pattern ]]; then return 0; fi
  done
  return 1
}

# diff_snapshots BEFORE AFTER OUT — change records from two snapshots of "name arch version"
# records (extra fields ignored). Per name+arch, the versions that went away are paired in order
# with the versions that came (from → to); the rest are installs (from empty) and removals (to
# empty). Several versions of one name+arch (installonly kernels) are several records.
# record_changes — after a transaction: snapshot the package database again (each part's
# `snapshot`) and record what changed; a part that must add to the records defines
# `complete_changes`.
record_changes() {
  changes_recorded=true
  if ! snapshot "$workdir/after"; then
    fail 3 environment "$SNAPSHOT_FAILED after the transaction"
    return 1 # only inside the EXIT trap, where fail does not end the script
  fi
  diff_snapshots "$workdir/before" "$workdir/after" "$workdir/changed"
  if declare -F complete_changes >/dev/null; then complete_changes; fi
}

# report_on_exit — from the EXIT trap: an apply that ended early (failure, signal) may still have
# changed packages, so report them; and the reboot state is the host's, worth reporting after any
# run that got past the checks (each part's `detect_reboot`).
report_on_exit() {
  if [[ $apply_started == true && $changes_recorded == false ]]; then
    record_changes
  fi
  detect_reboot
}

diff_snapshots() {
  LC_ALL=C comm -3 <(cut -d "$FS" -f 1-3 -- "$1" | LC_ALL=C sort -u) <(cut -d "$FS" -f 1-3 -- "$2" | LC_ALL=C sort -u) |
    awk -v fs="$FS" '
      BEGIN { FS = fs; OFS = fs }
      {
        came = sub(/^\t/, "")
        key = $1 OFS $2
        keys[key] = 1
        if (came) to[key, ++ncame[key]] = $3; else from[key, ++ngone[key]] = $3
      }
      END {
        for (key in keys) {
          n = ncame[key] > ngone[key] ? ncame[key] : ngone[key]
          for (i = 1; i <= n; i++) print key, from[key, i], to[key, i]
        }
      }' >"$3"
}

root=''
dnf_cmd=()
rpm_cmd=()
exclude_opts=()
upgrade_opts=()
transaction_log=''
plan_records=()
apply_started=false
changes_recorded=false

set_option() { root_option "$2"; }

undo_exclusions() { :; } # --exclude is per invocation: nothing to undo

check_manager_version() {
  local bin=$1 version
  version=$("$bin" --version 2>/dev/null | head -n 1 || true)
  case $version in
    4.*) log "using $bin (dnf $version)" ;;
    'dnf5 version 5.'*)
      # Fedora 41+: `dnf` is dnf5 (Debian sid: a separate `dnf5`); its own commands, see below.
      flavour=dnf5
      manager=dnf5
      log "using $bin ($version)"
      ;;
    3.*) fail 3 environment "yum 3 (EL 7) is not supported: patchnanny needs dnf 4 (EL 8+); $bin --version: $version" ;;
    *) fail 3 environment "dnf 4 is required; $bin --version says: ${version:-nothing}" ;;
  esac
}

check_root_dir() {
  local dbpath config=''
  [[ -d $root ]] || fail 3 environment "--root is not a directory: $root"
  root=$(cd -- "$root" && pwd -P) || fail 3 environment "--root is not accessible: $root"
  [[ $root != / ]] || { root=''; return 0; }
  # rpm and dnf read the same _dbpath macro (Fedora: /usr/lib/sysimage/rpm, RHEL: /var/lib/rpm).
  dbpath=$(rpm --eval '%{_dbpath}')
  [[ -d $root$dbpath ]] || fail 3 environment "--root has no rpm database at $root$dbpath"
  if [[ -f $root/etc/dnf/dnf.conf ]]; then
    config=$root/etc/dnf/dnf.conf
  elif [[ -f $root/etc/yum.conf ]]; then
    config=$root/etc/yum.conf
  else
    fail 3 environment "--root has neither etc/dnf/dnf.conf nor etc/yum.conf: $root"
  fi
  dnf_cmd+=(--installroot "$root" --config "$config" "--setopt=reposdir=$root/etc/yum.repos.d")
  rpm_cmd+=(--root "$root")
}

check_environment() {
  local bin
  # dnf, else yum: check_manager_version lets a yum through only when it is dnf 4
  bin=$(command -v dnf || command -v yum) || fail 3 environment "neither dnf nor yum is installed"
  manager=${bin##*/}
  command -v rpm >/dev/null || fail 3 environment 'rpm is not installed'
  [[ $(id -u) == 0 ]] || fail 3 environment 'must run as root'
  # LC_ALL=C: the depsolve records and "Operation aborted." are read in their untranslated form.
  dnf_cmd=(env LC_ALL=C "$bin" --setopt=exit_on_lock=True --setopt=skip_if_unavailable=False)
  rpm_cmd=(rpm)
  check_manager_version "$bin"
  [[ -z $root ]] || check_root_dir
  if ((${#exclusions[@]})); then
    local IFS=,
    exclude_opts=(--exclude "${exclusions[*]}")
  fi
  # --security-only: the upgrade takes only packages with an applicable security advisory.
  if [[ $security_only == true ]]; then upgrade_opts=(--security); fi
  make_workdir
  transaction_log=$workdir/transaction.log
}

# run_dnf LOGFILE ARGS... — dnf with the run's options; output to the human log and LOGFILE.
run_dnf() {
  local logfile=$1
  shift
  run_manager "$logfile" "${dnf_cmd[@]}" "$@"
}

# The holder dnf names when it exits 200 ("RPMDB already locked by PID").
lock_message() {
  local message
  message=$(grep -m 1 'already locked by' "$1" || true)
  printf '%s' "${message:-$manager lock held by another process}"
}

# The first "Error..." line of a failed run and the line after it (dnf puts the cause there).
manager_error() {
  local message
  message=$(sed -n '/^Error/{N;s/\n[[:space:]]*/ /;p;q}' "$1")
  printf '%s' "${message:-$2}"
}

refresh_metadata() {
  local code=0
  local refresh=(makecache --refresh)
  # dnf5 (5.4.6): `makecache --refresh` kept a changed repository's old metadata; expiring the
  # cache does refresh it.
  [[ $flavour == dnf4 ]] || refresh=(--setopt=metadata_expire=0 makecache)
  run_dnf "$workdir/refresh.log" -y "${refresh[@]}" || code=$?
  ((code == 0)) && return 0
  ((code == 200)) && fail 4 lock "$(lock_message "$workdir/refresh.log")"
  fail 5 refresh "$(manager_error "$workdir/refresh.log" "$manager makecache --refresh failed with exit $code")"
}

# snapshot FILE — installed packages as "name arch evr installtime" records (gpg-pubkey entries
# are keys, not packages).
snapshot() {
  "${rpm_cmd[@]}" -qa --qf "%{NAME}$FS%{ARCH}$FS$EVR_FORMAT$FS%{INSTALLTIME}\n" |
    { grep -v "^gpg-pubkey$FS" || true; } | LC_ALL=C sort >"$1"
}

# installed_evr NAME ARCH — the most recently installed version (installonly packages have several).
installed_evr() {
  awk -F "$FS" -v n="$1" -v a="$2" '$1 == n && $2 == a && $4 >= t { t = $4; v = $3 } END { print v }' \
    "$workdir/before"
}

# solver_records LOGFILE — "kind name arch evr" records, one for each depsolve record.
solver_records() {
  local line
  while IFS= read -r line; do
    [[ $line =~ $SOLVER_RECORD ]] || continue
    record "${BASH_REMATCH[4]}" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
  done <"$1"
}

# repo_of NAME ARCH EVR — the repository the solver's package comes from.
repo_of() {
  awk -F '\t' -v k="$1.$2" -v e="$3" '$1 == k && $2 == e { print $3; exit }' "$workdir/repos"
}

lookup_repos() {
  local entry kind name arch evr nevras=()
  : >"$workdir/repos"
  for entry in "${plan_records[@]}"; do
    IFS=$FS read -r kind name arch evr <<<"$entry"
    [[ $kind == 'an upgrade' || $kind == 'a downgrade' || $kind == installed || $kind == obsoleting ]] || continue
    nevras+=("$name-$evr.$arch")
  done
  ((${#nevras[@]})) || return 0
  run_dnf "$workdir/repoquery.log" -q repoquery --qf '%{name}.%{arch}\t%{evr}\t%{repoid}' -- "${nevras[@]}" ||
    fail 6 transaction "$(manager_error "$workdir/repoquery.log" "$manager repoquery failed with exit $manager_exit_code")"
  grep $'\t' "$workdir/repoquery.log" >"$workdir/repos" || true
}

# split_nevra NEVRA — sets nevra_name, nevra_arch, nevra_evr (name-[epoch:]version-release.arch).
split_nevra() {
  local rest=${1%.*} release
  nevra_arch=${1##*.}
  release=${rest##*-}
  rest=${rest%-*}
  nevra_evr=${rest##*-}-$release
  nevra_name=${rest%-*}
}

# stored_records FILE — dnf5: the "kind name arch evr" records of a transaction stored with
# `upgrade --store` (transaction.json, one key a line as dnf5 writes it), the kinds named as
# dnf 4's depsolve records; the repository of each new package goes to $workdir/repos.
stored_records() {
  local line nevra='' action='' repo='' key value
  local -a rpms=()
  local -A replacing=()
  : >"$workdir/repos"
  [[ -f $1 ]] || return 0 # nothing to do: nothing stored
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*\"(nevra|action|repo_id)\":\"(.*)\",?$ ]]; then
      key=${BASH_REMATCH[1]}
      value=${BASH_REMATCH[2]}
      case $key in
        nevra) nevra=$value ;;
        action) action=$value ;;
        repo_id) repo=$value ;;
      esac
    elif [[ $line =~ ^[[:space:]]*\}  && -n $nevra ]]; then
      rpms+=("$action$FS$nevra$FS$repo")
      split_nevra "$nevra"
      case $action in Upgrade | Downgrade) replacing[$nevra_name]=$action ;; esac
      nevra='' action='' repo=''
    fi
  done <"$1"
  local entry kind
  for entry in "${rpms[@]}"; do
    IFS=$FS read -r action nevra repo <<<"$entry"
    split_nevra "$nevra"
    case $action in
      Upgrade) kind='an upgrade' ;;
      Downgrade) kind='a downgrade' ;;
      Install) kind=installed ;;
      Remove) kind=erased ;;
      Replaced)
        case ${replacing[$nevra_name]:-} in
          Upgrade) kind=upgraded ;;
          Downgrade) kind=downgraded ;;
          *) kind=obsoleted ;;
        esac
        ;;
      *) continue ;;
    esac
    record "$kind" "$nevra_name" "$nevra_arch" "$nevra_evr"
    if [[ $kind == 'an upgrade' || $kind == 'a downgrade' || $kind == installed ]]; then
      repo=${repo#@stored_transaction(}
      printf '%s\t%s\t%s\n' "$nevra_name.$nevra_arch" "$nevra_evr" "${repo%)}" >>"$workdir/repos"
    fi
  done
}

# build_plan — package records of the solved transaction: each new package paired with the
# installed one it replaces.
build_plan() {
  local entry kind name arch evr i current action repo olds=() old_kind old_name old_arch old_evr
  if [[ $flavour == dnf5 ]]; then
    mapfile -t plan_records < <(stored_records "$workdir/store/transaction.json")
  else
    mapfile -t plan_records < <(solver_records "$transaction_log")
    lookup_repos
  fi
  for entry in "${plan_records[@]}"; do
    IFS=$FS read -r kind name arch evr <<<"$entry"
    if [[ $kind == upgraded || $kind == downgraded || $kind == erased || $kind == obsoleted ]]; then olds+=("$entry"); fi
  done
  for entry in "${plan_records[@]}"; do
    IFS=$FS read -r kind name arch evr <<<"$entry"
    current=''
    case $kind in
      'an upgrade' | 'a downgrade')
        action=${kind##* }
        # the replaced package: same name.arch, else same name (an arch change such as i686 → noarch)
        for i in "${!olds[@]}"; do
          IFS=$FS read -r old_kind old_name old_arch old_evr <<<"${olds[i]}"
          [[ $old_kind == "${action}d" && $old_name == "$name" && $old_arch == "$arch" ]] || continue
          current=$old_evr && unset 'olds[i]' && break
        done
        if [[ -z $current ]]; then
          for i in "${!olds[@]}"; do
            IFS=$FS read -r old_kind old_name old_arch old_evr <<<"${olds[i]}"
            [[ $old_kind == "${action}d" && $old_name == "$name" ]] || continue
            current=$old_evr && unset 'olds[i]' && break
          done
        fi
        ;;
      installed | obsoleting) action=install ;;
      *) continue ;;
    esac
    repo=$(repo_of "$name" "$arch" "$evr")
    record "$name" "$arch" "$current" "$evr" "${repo:-unknown}" "$action"
  done >"$workdir/packages"
  for entry in "${olds[@]}"; do
    IFS=$FS read -r kind name arch evr <<<"$entry"
    [[ $kind == erased || $kind == obsoleted ]] || continue
    record "$name" "$arch" "$evr" '' '@System' remove
  done >>"$workdir/packages"
}

# collect_advisories — the security classification (issue 16) from the repositories' updateinfo,
# before anything is applied: the advisories the manager lists as applicable to what is
# installed (dnf 4 `updateinfo list`, dnf5 `advisory list --json`), by name.arch. A package with
# an applicable advisory of type security is a security fix (`upgrade --security` takes it); with
# none it is not — unless no repository publishes updateinfo at all: then null, never a guess.
collect_advisories() {
  local line id type severity nevra count=0 key
  local -a found=()
  if [[ $flavour == dnf5 ]]; then
    run_dnf "$workdir/advisories.log" -q advisory list --json ||
      fail_dnf "$workdir/advisories.log" "$manager_exit_code" "$manager advisory list failed with exit $manager_exit_code"
    id='' type='' severity='' nevra=''
    while IFS= read -r line; do
      if [[ $line =~ ^[[:space:]]*\"(name|type|severity|nevra)\":\"(.*)\",?$ ]]; then
        case ${BASH_REMATCH[1]} in
          name) id=${BASH_REMATCH[2]} ;;
          type) type=${BASH_REMATCH[2]} ;;
          severity) severity=${BASH_REMATCH[2]} ;;
          nevra) nevra=${BASH_REMATCH[2]} ;;
        esac
      elif [[ $line =~ ^[[:space:]]*\} && -n $id && -n $nevra ]]; then
        found+=("$id$FS$type$FS$severity$FS$nevra")
        id='' type='' severity='' nevra=''
      fi
    done <"$workdir/advisories.log"
  else
    run_dnf "$workdir/advisories.log" -q updateinfo list ||
      fail_dnf "$workdir/advisories.log" "$manager_exit_code" "$manager updateinfo list failed with exit $manager_exit_code"
    # "ID SEVERITY/Sec. NEVRA" for a security advisory, "ID TYPE NEVRA" for the others.
    while read -r id type nevra _; do
      [[ -n $nevra && $nevra == *.* && $id != *:*' '* ]] || continue
      severity=''
      if [[ $type == */Sec. ]]; then
        severity=${type%/Sec.}
        type=security
      fi
      found+=("$id$FS$type$FS$severity$FS$nevra")
    done < <(grep -E '^[[:space:]]*[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+\.[^.[:space:]]+[[:space:]]*$' "$workdir/advisories.log" || true)
  fi
  for line in "${found[@]}"; do
    IFS=$FS read -r id type severity nevra <<<"$line"
    case $severity in None | none | Unknown | unknown) severity='' ;; esac
    split_nevra "$nevra"
    key=$nevra_name.$nevra_arch
    count=$((count + 1))
    [[ $AS${advisories_of[$key]:-}$AS != *"$AS$id$AF"* ]] || continue
    advisories_of[$key]=${advisories_of[$key]:+${advisories_of[$key]}$AS}$id$AF$severity
    if [[ $type == security ]]; then security_of[$key]=true; fi
  done
  if ((count > 0)); then security_default=false; fi
  log "updateinfo: $count advisory entries apply to installed packages"
}

compute_held() {
  local name arch evr repo
  ((${#exclusions[@]})) || return 0
  # Real tabs and newline: dnf5 prints a query format's characters as they are (no \t, no
  # newline of its own); dnf 4 adds a newline, which leaves empty lines.
  run_dnf "$workdir/held.log" -q repoquery --upgrades --latest-limit 1 \
    --qf $'%{name}\t%{arch}\t%{evr}\t%{repoid}\n' -- "${exclusions[@]}" ||
    fail 6 transaction "$(manager_error "$workdir/held.log" "$manager repoquery --upgrades failed with exit $manager_exit_code")"
  while IFS=$'\t' read -r name arch evr repo; do
    [[ -n $repo ]] || continue
    record "$name" "$arch" "$(installed_evr "$name" "$arch")" "$evr" "$repo" upgrade
  done < <(grep $'\t' "$workdir/held.log" | LC_ALL=C sort -u) >"$workdir/held"
}

# store_transaction — dnf5: solve the upgrade and store the transaction (JSON, and its packages
# downloaded) in the run's work directory instead of running it. dnf5 has no depsolve records;
# the stored transaction is the solver's machine-readable answer. Not `replay`ed: a replay
# skips the OpenPGP checks of the stored packages, so apply runs the same upgrade itself.
store_transaction() {
  local code=0
  run_dnf "$workdir/store.log" -y "${exclude_opts[@]}" upgrade "${upgrade_opts[@]}" "--store=$workdir/store" || code=$?
  ((code == 0)) && return 0
  fail_dnf "$workdir/store.log" "$code" "$manager upgrade --store (solving) failed with exit $code"
}

# fail_dnf LOGFILE CODE MESSAGE — a failed dnf run: exit 4 when another process has the lock
# (dnf 4: exit 200; dnf5 says so), else exit 6.
fail_dnf() {
  if (($2 == 200)) || grep -qiE 'already locked|locked by (another|PID)|Failed to obtain.*lock' "$1"; then
    fail 4 lock "$(lock_message "$1")"
  fi
  fail 6 transaction "$(manager_error "$1" "$3")"
}

plan_dry_run() {
  local code=0
  if [[ $flavour == dnf5 ]]; then
    store_transaction
    build_plan
    classify_records "$workdir/packages"
    return 0
  fi
  run_dnf "$transaction_log" -v --assumeno "${exclude_opts[@]}" upgrade "${upgrade_opts[@]}" || code=$?
  # --assumeno answers the confirmation with "no": exit 1 and "Operation aborted." after a
  # successful resolution; exit 0 when there is nothing to do. Anything else is a solver failure.
  if ((code == 0)) || { ((code == 1)) && grep -qx 'Operation aborted.' "$transaction_log"; }; then
    build_plan
    classify_records "$workdir/packages"
    return 0
  fi
  ((code == 200)) && fail 4 lock "$(lock_message "$transaction_log")"
  fail 6 transaction "$(manager_error "$transaction_log" "$manager upgrade (solving) failed with exit $code")"
}

apply_upgrade() {
  local code=0
  [[ $flavour == dnf4 ]] || store_transaction
  apply_started=true
  local verbose=(-v) # dnf 4's depsolve records; dnf5 has none (and no -v)
  [[ $flavour == dnf4 ]] || verbose=()
  run_dnf "$transaction_log" "${verbose[@]}" -y "${exclude_opts[@]}" upgrade "${upgrade_opts[@]}" || code=$?
  record_changes
  build_plan
  classify_records "$workdir/packages"
  manager_exit_code=$code # the upgrade's status, not the repository lookup's
  ((code == 0)) && return 0
  fail_dnf "$transaction_log" "$code" "$manager upgrade failed with exit $code"
}

is_reboot_package() {
  case $1 in
    kernel-headers | kernel-devel* | kernel-tools* | kernel-doc | kernel-srpm-macros) return 1 ;;
    kernel | kernel-* | glibc | systemd | dbus | dbus-broker | dbus-daemon | linux-firmware | microcode_ctl) return 0 ;;
    *) return 1 ;;
  esac
}

# in_container — LXC (and systemd-nspawn, podman) put container= in PID 1's environment; systemd
# inside writes /run/systemd/container. A container shares its host's kernel: the kernel's boot
# time (and needs-restarting -r, which may use it) is the host's, not this system's.
in_container() {
  [[ -s /run/systemd/container ]] || grep -qaz '^container=' /proc/1/environ 2>/dev/null
}

# userland_boot_time — when this system's userland started (epoch seconds): the start of PID 1 as
# this PID namespace sees it (in an LXC container: the container's start; on a host: the boot).
# lxcfs may virtualise /proc/uptime or btime, so the latest candidate not in the future wins.
userland_boot_time() {
  local now btime ticks start best uptime
  now=$(date +%s)
  btime=$(awk '$1 == "btime" { print $2 }' /proc/stat)
  best=$btime
  ticks=$(getconf CLK_TCK 2>/dev/null) || ticks=100
  # /proc/1/stat is "pid (comm) state …": comm may hold spaces; starttime is field 22 (ticks after boot).
  start=$(sed 's/^.*) //' /proc/1/stat 2>/dev/null | awk '{ print $20 }') || start=''
  if [[ $start =~ ^[0-9]+$ && $ticks =~ ^[1-9][0-9]*$ ]]; then
    start=$((btime + start / ticks))
    if ((start <= now && start > best)); then best=$start; fi
  fi
  uptime=$(awk '{ printf "%d", $1 }' /proc/uptime 2>/dev/null) || uptime=''
  if [[ $uptime =~ ^[0-9]+$ ]] && ((now - uptime > best)); then best=$((now - uptime)); fi
  printf '%s\n' "$best"
}

# reboot_from_snapshot SNAPSHOT — needs-restarting -r on the running system, else the core-package rule.
reboot_from_snapshot() {
  local snapshot_file=$1 code=0 output boot name arch evr installed found=()
  if [[ -z $root ]] && ! in_container && command -v needs-restarting >/dev/null; then
    output=$(needs-restarting -r 2>&1) || code=$?
    printf '%s\n' "$output" >&2
    case $code in
      0) return 0 ;;
      1)
        reboot_required=true
        reboot_reason="needs-restarting -r: $(head -n 1 <<<"$output")"
        return 0
        ;;
      *) log "needs-restarting -r failed with exit $code; using the core-package rule" ;;
    esac
  fi
  [[ -f $snapshot_file ]] || return 0
  boot=$(userland_boot_time)
  while IFS=$FS read -r name arch evr installed; do
    if is_reboot_package "$name" && ((installed > boot)); then found+=("$name-$evr.$arch"); fi
  done <"$snapshot_file"
  ((${#found[@]})) || return 0
  reboot_required=true
  local IFS=,
  reboot_reason="core packages installed after the last boot: ${found[*]}"
}

# detect_reboot — after the transaction when there was one, else on the state the run found.
detect_reboot() {
  if [[ -f $workdir/after ]]; then reboot_from_snapshot "$workdir/after"; else reboot_from_snapshot "$workdir/before"; fi
}

main() {
  set_traps
  parse_args "$@"
  check_environment
  snapshot "$workdir/before" || fail 3 environment "$SNAPSHOT_FAILED"
  refresh_metadata
  collect_advisories
  compute_held
  if [[ $mode == apply ]]; then
    apply_upgrade
  else
    plan_dry_run
  fi
}

main "$@"
