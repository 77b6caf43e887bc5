#!/usr/bin/env bash
# dnf-update.sh — patch an RHEL 8+ / CentOS Stream 8+ / Fedora system with dnf 4. It serves the
# dnf and the yum families: on EL 8+ `yum` is dnf 4 under another name (both link to dnf-3).
#
#   dnf-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256.
#
# How each contract step maps onto dnf 4:
# - manager:  `dnf`; where there is none, `yum` — used only when `yum --version` says 4.x, i.e. it
#             is dnf 4 called as yum. yum 3 (EL 7) and dnf 5 (Fedora 41+) are refused with exit 3:
#             their output differs and is not proven (the agent refuses EL 7 at enrolment).
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
readonly USAGE='usage: dnf-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
readonly EVR_FORMAT='%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}'
readonly SOLVER_RECORD='^---> Package (.+)\.([^.[:space:]]+) ([^[:space:]]+) will be (.+)$'
readonly SNAPSHOT_FAILED='rpm -qa (reading the package database) failed'
manager=dnf

# @include common.sh

root=''
dnf_cmd=()
rpm_cmd=()
exclude_opts=()
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
    *dnf5* | 5.*) fail 3 environment "dnf 5 is not supported yet ($bin --version: $version)" ;;
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
  run_dnf "$workdir/refresh.log" -y makecache --refresh || code=$?
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

# build_plan — package records of the solved transaction: each new package paired with the
# installed one it replaces.
build_plan() {
  local entry kind name arch evr i current action repo olds=() old_kind old_name old_arch old_evr
  mapfile -t plan_records < <(solver_records "$transaction_log")
  lookup_repos
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

compute_held() {
  local name arch evr repo
  ((${#exclusions[@]})) || return 0
  run_dnf "$workdir/held.log" -q repoquery --upgrades --latest-limit 1 \
    --qf '%{name}\t%{arch}\t%{evr}\t%{repoid}' -- "${exclusions[@]}" ||
    fail 6 transaction "$(manager_error "$workdir/held.log" "$manager repoquery --upgrades failed with exit $manager_exit_code")"
  while IFS=$'\t' read -r name arch evr repo; do
    [[ -n $repo ]] || continue
    record "$name" "$arch" "$(installed_evr "$name" "$arch")" "$evr" "$repo" upgrade
  done < <(grep $'\t' "$workdir/held.log" | LC_ALL=C sort -u) >"$workdir/held"
}

plan_dry_run() {
  local code=0
  run_dnf "$transaction_log" -v --assumeno "${exclude_opts[@]}" upgrade || code=$?
  # --assumeno answers the confirmation with "no": exit 1 and "Operation aborted." after a
  # successful resolution; exit 0 when there is nothing to do. Anything else is a solver failure.
  if ((code == 0)) || { ((code == 1)) && grep -qx 'Operation aborted.' "$transaction_log"; }; then
    build_plan
    return 0
  fi
  ((code == 200)) && fail 4 lock "$(lock_message "$transaction_log")"
  fail 6 transaction "$(manager_error "$transaction_log" "$manager upgrade (solving) failed with exit $code")"
}

apply_upgrade() {
  local code=0
  apply_started=true
  run_dnf "$transaction_log" -v -y "${exclude_opts[@]}" upgrade || code=$?
  record_changes
  build_plan
  manager_exit_code=$code # the upgrade's status, not the repository lookup's
  ((code == 0)) && return 0
  ((code == 200)) && fail 4 lock "$(lock_message "$transaction_log")"
  fail 6 transaction "$(manager_error "$transaction_log" "$manager upgrade failed with exit $code")"
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
  compute_held
  if [[ $mode == apply ]]; then
    apply_upgrade
  else
    plan_dry_run
  fi
}

main "$@"
