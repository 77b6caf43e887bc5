#!/usr/bin/env bash
# dnf-update.sh — patch an RHEL 8+ / CentOS Stream 8+ / Fedora system with dnf 4.
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
#
#   dnf-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Self-contained on purpose: the agent downloads this one file and verifies its hash.
# yum-update.sh is this script with another manager (only the block marked MANAGER differs).
#
# How each contract step maps onto dnf 4:
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
#             running system. With --root, or without needs-restarting, the same rule
#             needs-restarting applies: a core package (kernel*, glibc, systemd, dbus*,
#             linux-firmware, microcode_ctl) installed after the last boot needs a reboot.
# - lock:     exit_on_lock=True: dnf exits 200 ("RPMDB already locked by PID") instead of
#             waiting when another dnf holds ROOT/var/lib/dnf/rpmdb_lock.pid (or the metadata
#             lock during refresh). Reported as exit 4; dnf takes the rpmdb lock before the rpm
#             transaction starts, so nothing has changed.
# - dnf 5 (Fedora 41+) has a different CLI and no depsolve records: refused with exit 3.
set -euo pipefail

# MANAGER: the only block that differs between dnf-update.sh and yum-update.sh.
readonly MANAGER=dnf
readonly USAGE='usage: dnf-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
find_manager() { command -v dnf || true; }
# end MANAGER

readonly EXCLUDE_PATTERN='^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$'
readonly EVR_FORMAT='%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}'
readonly SOLVER_RECORD='^---> Package (.+)\.([^.[:space:]]+) ([^[:space:]]+) will be (.+)$'

mode=''
root=''
manager_bin=''
exclusions=()
manager_cmd=()
rpm_cmd=()
workdir=''
transaction_log=''
plan_records=()

json_mode=null
json_packages=()
json_held=()
json_changed=()
reboot_required=false
reboot_reason=null
manager_exit_code=null
error_json=null
finished=false

log() { printf '%s-update: %s\n' "$MANAGER" "$*" >&2; }

json_string() {
  local s=$1 out='' c i
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  if [[ $s == *[$'\001'-$'\037']* ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [$'\001'-$'\037'] ]]; then
        printf -v c '\\u%04x' "'$c"
      fi
      out+=$c
    done
    s=$out
  fi
  printf '"%s"' "$s"
}

json_or_null() { if [[ -n $1 ]]; then json_string "$1"; else printf 'null'; fi; }

json_array() {
  local IFS=,
  printf '[%s]' "$*"
}

emit_json() {
  printf '{"contract":1,"manager":"%s","mode":%s,"packages":%s,"held":%s,"changed":%s,' \
    "$MANAGER" "$json_mode" "$(json_array "${json_packages[@]}")" \
    "$(json_array "${json_held[@]}")" "$(json_array "${json_changed[@]}")"
  printf '"reboot_required":%s,"reboot_reason":%s,"manager_exit_code":%s,"error":%s}\n' \
    "$reboot_required" "$reboot_reason" "$manager_exit_code" "$error_json"
}

# finish CODE [ERROR_CODE MESSAGE] — print the one JSON document and exit.
finish() {
  local code=$1
  if (($# > 1)); then
    error_json="{\"code\":$(json_string "$2"),\"message\":$(json_string "$3")}"
    log "error ($2): $3"
  fi
  finished=true
  emit_json
  exit "$code"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
  local code=$?
  [[ -n $workdir ]] && rm -rf -- "$workdir"
  if [[ $finished == false ]]; then
    finished=true
    error_json="{\"code\":\"environment\",\"message\":$(json_string "unexpected failure (exit $code)")}"
    emit_json
    exit 3
  fi
}

usage() { finish 2 usage "$1; $USAGE"; }

parse_exclusions() {
  local list=$1 name
  [[ -n $list ]] || usage '--exclude needs at least one package name'
  [[ $list != *, && $list != ,* && $list != *,,* ]] || usage "--exclude has an empty entry: $list"
  IFS=, read -r -a exclusions <<<"$list"
  for name in "${exclusions[@]}"; do
    [[ $name =~ $EXCLUDE_PATTERN ]] || usage "not a legal $MANAGER package name: $name"
  done
}

parse_args() {
  local exclude_seen=false root_seen=false
  while (($#)); do
    case $1 in
      --dry-run | --apply)
        [[ -z $mode ]] || usage 'exactly one of --dry-run or --apply is allowed'
        mode=${1#--}
        ;;
      --exclude)
        (($# >= 2)) || usage '--exclude needs a value'
        [[ $exclude_seen == false ]] || usage '--exclude may be given once'
        exclude_seen=true
        parse_exclusions "$2"
        shift
        ;;
      --root)
        (($# >= 2)) || usage '--root needs a directory'
        [[ $root_seen == false ]] || usage '--root may be given once'
        root_seen=true
        root=$2
        [[ -n $root && $root != -* ]] || usage '--root needs a directory'
        shift
        ;;
      *) usage "unknown argument: $1" ;;
    esac
    shift
  done
  [[ -n $mode ]] || usage 'one of --dry-run or --apply is required'
  json_mode=$(json_string "$mode")
}

check_manager_version() {
  local version
  version=$("$manager_bin" --version 2>/dev/null | head -n 1 || true)
  case $version in
    4.*) log "using $manager_bin (dnf $version)" ;;
    *dnf5* | 5.*) finish 3 environment "dnf 5 is not supported yet ($manager_bin --version: $version)" ;;
    *) finish 3 environment "dnf 4 is required; $manager_bin --version says: ${version:-nothing}" ;;
  esac
}

check_root_dir() {
  local dbpath config=''
  [[ -d $root ]] || finish 3 environment "--root is not a directory: $root"
  root=$(cd -- "$root" && pwd -P) || finish 3 environment "--root is not accessible: $root"
  [[ $root != / ]] || { root=''; return; }
  # rpm and dnf read the same _dbpath macro (Fedora: /usr/lib/sysimage/rpm, RHEL: /var/lib/rpm).
  dbpath=$(rpm --eval '%{_dbpath}')
  [[ -d $root$dbpath ]] || finish 3 environment "--root has no rpm database at $root$dbpath"
  if [[ -f $root/etc/dnf/dnf.conf ]]; then
    config=$root/etc/dnf/dnf.conf
  elif [[ -f $root/etc/yum.conf ]]; then
    config=$root/etc/yum.conf
  else
    finish 3 environment "--root has neither etc/dnf/dnf.conf nor etc/yum.conf: $root"
  fi
  manager_cmd+=(--installroot "$root" --config "$config" "--setopt=reposdir=$root/etc/yum.repos.d")
  rpm_cmd+=(--root "$root")
}

check_environment() {
  manager_bin=$(find_manager)
  [[ -n $manager_bin ]] || finish 3 environment "$MANAGER is not installed"
  command -v rpm >/dev/null || finish 3 environment 'rpm is not installed'
  [[ $(id -u) == 0 ]] || finish 3 environment 'must run as root'
  # LC_ALL=C: the depsolve records and "Operation aborted." are read in their untranslated form.
  manager_cmd=(env LC_ALL=C "$manager_bin" --setopt=exit_on_lock=True --setopt=skip_if_unavailable=False)
  rpm_cmd=(rpm)
  check_manager_version
  [[ -z $root ]] || check_root_dir
  workdir=$(mktemp -d)
  transaction_log=$workdir/transaction.log
}

# run_manager LOGFILE ARGS... — the manager's output goes to the human log (stderr) and LOGFILE.
run_manager() {
  local logfile=$1 code=0
  shift
  log "running: $MANAGER $*"
  "${manager_cmd[@]}" "$@" 2>&1 | tee "$logfile" >&2 || code=$?
  manager_exit_code=$code
  return "$code"
}

# The holder dnf names when it exits 200 ("RPMDB already locked by PID").
lock_message() {
  local message
  message=$(grep -m 1 'already locked by' "$1" || true)
  printf '%s' "${message:-$MANAGER lock held by another process}"
}

# The first "Error..." line of a failed run and the line after it (dnf puts the cause there).
manager_error() {
  local message
  message=$(sed -n '/^Error/{N;s/\n[[:space:]]*/ /;p;q}' "$1")
  printf '%s' "${message:-$2}"
}

refresh_metadata() {
  local code=0
  run_manager "$workdir/refresh.log" -y makecache --refresh || code=$?
  ((code == 0)) && return
  ((code == 200)) && finish 4 lock "$(lock_message "$workdir/refresh.log")"
  finish 5 refresh "$(manager_error "$workdir/refresh.log" "$MANAGER makecache --refresh failed with exit $code")"
}

# snapshot FILE — installed packages as "name<TAB>arch<TAB>evr<TAB>installtime", sorted.
snapshot() {
  "${rpm_cmd[@]}" -qa --qf "%{NAME}\t%{ARCH}\t$EVR_FORMAT\t%{INSTALLTIME}\n" | LC_ALL=C sort >"$1"
}

# installed_evr NAME ARCH — the most recently installed version (installonly packages have several).
installed_evr() {
  awk -F '\t' -v n="$1" -v a="$2" '$1 == n && $2 == a && $4 >= t { t = $4; v = $3 } END { print v }' \
    "$workdir/before"
}

exclude_args() {
  ((${#exclusions[@]})) || return 0
  local IFS=,
  printf '%s\0' --exclude "${exclusions[*]}"
}

package_json() { # name arch current candidate repo action
  printf '{"name":%s,"arch":%s,"current":%s,"candidate":%s,"repo":%s,"action":%s}' \
    "$(json_string "$1")" "$(json_string "$2")" "$(json_or_null "$3")" "$(json_or_null "$4")" \
    "$(json_string "$5")" "$(json_string "$6")"
}

# solver_records LOGFILE — "kind<TAB>name<TAB>arch<TAB>evr" for each depsolve record.
solver_records() {
  local line
  while IFS= read -r line; do
    [[ $line =~ $SOLVER_RECORD ]] || continue
    printf '%s\t%s\t%s\t%s\n' "${BASH_REMATCH[4]}" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"
  done <"$1"
}

# repo_of NAME ARCH EVR — the repository the solver's package comes from.
repo_of() {
  awk -F '\t' -v k="$1.$2" -v e="$3" '$1 == k && $2 == e { print $3; exit }' "$workdir/repos"
}

lookup_repos() {
  local record kind name arch evr nevras=()
  : >"$workdir/repos"
  for record in "${plan_records[@]}"; do
    IFS=$'\t' read -r kind name arch evr <<<"$record"
    [[ $kind == 'an upgrade' || $kind == 'a downgrade' || $kind == installed || $kind == obsoleting ]] || continue
    nevras+=("$name-$evr.$arch")
  done
  ((${#nevras[@]})) || return 0
  run_manager "$workdir/repoquery.log" -q repoquery --qf '%{name}.%{arch}\t%{evr}\t%{repoid}' -- "${nevras[@]}" ||
    finish 6 transaction "$(manager_error "$workdir/repoquery.log" "$MANAGER repoquery failed with exit $manager_exit_code")"
  grep $'\t' "$workdir/repoquery.log" >"$workdir/repos" || true
}

# Pairs each new package of the solved transaction with the installed one it replaces.
build_plan() {
  local record kind name arch evr i current action repo olds=() old_kind old_name old_arch old_evr
  mapfile -t plan_records < <(solver_records "$transaction_log")
  lookup_repos
  for record in "${plan_records[@]}"; do
    IFS=$'\t' read -r kind name arch evr <<<"$record"
    [[ $kind == upgraded || $kind == downgraded || $kind == erased || $kind == obsoleted ]] && olds+=("$record")
  done
  for record in "${plan_records[@]}"; do
    IFS=$'\t' read -r kind name arch evr <<<"$record"
    current=''
    case $kind in
      'an upgrade' | 'a downgrade')
        action=${kind##* }
        # the replaced package: same name.arch, else same name (an arch change such as i686 → noarch)
        for i in "${!olds[@]}"; do
          IFS=$'\t' read -r old_kind old_name old_arch old_evr <<<"${olds[i]}"
          [[ $old_kind == "${action}d" && $old_name == "$name" && $old_arch == "$arch" ]] || continue
          current=$old_evr && unset 'olds[i]' && break
        done
        if [[ -z $current ]]; then
          for i in "${!olds[@]}"; do
            IFS=$'\t' read -r old_kind old_name old_arch old_evr <<<"${olds[i]}"
            [[ $old_kind == "${action}d" && $old_name == "$name" ]] || continue
            current=$old_evr && unset 'olds[i]' && break
          done
        fi
        ;;
      installed | obsoleting) action=install ;;
      *) continue ;;
    esac
    repo=$(repo_of "$name" "$arch" "$evr")
    printf '%s\t%s\n' "$name" "$(package_json "$name" "$arch" "$current" "$evr" "${repo:-unknown}" "$action")"
  done >"$workdir/plan"
  for record in "${olds[@]}"; do
    IFS=$'\t' read -r kind name arch evr <<<"$record"
    [[ $kind == erased || $kind == obsoleted ]] || continue
    printf '%s\t%s\n' "$name" "$(package_json "$name" "$arch" "$evr" '' '@System' remove)"
  done >>"$workdir/plan"
  mapfile -t json_packages < <(LC_ALL=C sort -t $'\t' -k1,1 -s "$workdir/plan" | cut -f 2-)
}

compute_held() {
  local name arch evr repo
  ((${#exclusions[@]})) || return 0
  run_manager "$workdir/held.log" -q repoquery --upgrades --latest-limit 1 \
    --qf '%{name}\t%{arch}\t%{evr}\t%{repoid}' -- "${exclusions[@]}" ||
    finish 6 transaction "$(manager_error "$workdir/held.log" "$MANAGER repoquery --upgrades failed with exit $manager_exit_code")"
  while IFS=$'\t' read -r name arch evr repo; do
    [[ -n $repo ]] || continue
    json_held+=("$(package_json "$name" "$arch" "$(installed_evr "$name" "$arch")" "$evr" "$repo" upgrade)")
  done < <(grep $'\t' "$workdir/held.log" | LC_ALL=C sort -u)
}

plan_dry_run() {
  local code=0 exclude=()
  mapfile -d '' -t exclude < <(exclude_args)
  run_manager "$transaction_log" -v --assumeno "${exclude[@]}" upgrade || code=$?
  # --assumeno answers the confirmation with "no": exit 1 and "Operation aborted." after a
  # successful resolution; exit 0 when there is nothing to do. Anything else is a solver failure.
  if ((code == 0)) || { ((code == 1)) && grep -qx 'Operation aborted.' "$transaction_log"; }; then
    build_plan
    return
  fi
  ((code == 200)) && finish 4 lock "$(lock_message "$transaction_log")"
  finish 6 transaction "$(manager_error "$transaction_log" "$MANAGER upgrade (solving) failed with exit $code")"
}

compute_changed() {
  local removed=() added=() record name arch evr i from to old_name old_arch old_evr
  cut -f 1-3 "$workdir/before" | LC_ALL=C sort -u >"$workdir/before.nevra"
  cut -f 1-3 "$workdir/after" | LC_ALL=C sort -u >"$workdir/after.nevra"
  mapfile -t removed < <(LC_ALL=C comm -23 "$workdir/before.nevra" "$workdir/after.nevra")
  mapfile -t added < <(LC_ALL=C comm -13 "$workdir/before.nevra" "$workdir/after.nevra")
  for record in "${added[@]}"; do
    IFS=$'\t' read -r name arch evr <<<"$record"
    from=''
    for i in "${!removed[@]}"; do
      IFS=$'\t' read -r old_name old_arch old_evr <<<"${removed[i]}"
      [[ $old_name == "$name" && $old_arch == "$arch" ]] || continue
      from=$old_evr && unset 'removed[i]' && break
    done
    printf '%s\t%s\t%s\t%s\n' "$name" "$arch" "$from" "$evr"
  done >"$workdir/changed"
  for record in "${removed[@]}"; do
    IFS=$'\t' read -r name arch evr <<<"$record"
    printf '%s\t%s\t%s\t\n' "$name" "$arch" "$evr"
  done >>"$workdir/changed"
  json_changed=()
  while IFS=$'\t' read -r name arch from to; do
    json_changed+=("$(printf '{"name":%s,"arch":%s,"from":%s,"to":%s}' "$(json_string "$name")" \
      "$(json_string "$arch")" "$(json_or_null "$from")" "$(json_or_null "$to")")")
  done < <(LC_ALL=C sort -t $'\t' -k1,1 -s "$workdir/changed")
}

apply_upgrade() {
  local code=0 exclude=()
  mapfile -d '' -t exclude < <(exclude_args)
  run_manager "$transaction_log" -v -y "${exclude[@]}" upgrade || code=$?
  snapshot "$workdir/after"
  compute_changed
  build_plan
  # a failed transaction may still have left a reboot due (an earlier kernel update)
  check_reboot "$workdir/after"
  manager_exit_code=$code # the upgrade's status, not the repository lookup's
  ((code == 0)) && return
  ((code == 200)) && finish 4 lock "$(lock_message "$transaction_log")"
  finish 6 transaction "$(manager_error "$transaction_log" "$MANAGER upgrade failed with exit $code")"
}

is_reboot_package() {
  case $1 in
    kernel-headers | kernel-devel* | kernel-tools* | kernel-doc | kernel-srpm-macros) return 1 ;;
    kernel | kernel-* | glibc | systemd | dbus | dbus-broker | dbus-daemon | linux-firmware | microcode_ctl) return 0 ;;
    *) return 1 ;;
  esac
}

check_reboot() {
  local snapshot_file=$1 code=0 output boot name arch evr installed found=()
  if [[ -z $root ]] && command -v needs-restarting >/dev/null; then
    output=$(needs-restarting -r 2>&1) || code=$?
    printf '%s\n' "$output" >&2
    case $code in
      0) return 0 ;;
      1)
        reboot_required=true
        reboot_reason=$(json_string "needs-restarting -r: $(head -n 1 <<<"$output")")
        return 0
        ;;
      *) log "needs-restarting -r failed with exit $code; using the core-package rule" ;;
    esac
  fi
  boot=$(awk '$1 == "btime" { print $2 }' /proc/stat)
  while IFS=$'\t' read -r name arch evr installed; do
    is_reboot_package "$name" && ((installed > boot)) && found+=("$name-$evr.$arch")
  done <"$snapshot_file"
  ((${#found[@]})) || return 0
  reboot_required=true
  local IFS=,
  reboot_reason=$(json_string "core packages installed after the last boot: ${found[*]}")
}

main() {
  trap on_exit EXIT
  parse_args "$@"
  check_environment
  snapshot "$workdir/before"
  refresh_metadata
  compute_held
  if [[ $mode == apply ]]; then
    apply_upgrade
  else
    plan_dry_run
    check_reboot "$workdir/before"
  fi
  finish 0
}

main "$@"
