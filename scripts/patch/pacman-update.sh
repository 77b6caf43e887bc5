#!/usr/bin/env bash
# Generated from scripts/patch/src/pacman.sh and scripts/patch/src/common.sh by
# scripts/dev/gen-scripts.ts. Do not edit: edit src/, then run `npm run gen:scripts`.
#
# pacman-update.sh — patch an Arch Linux system with pacman.
#
#   pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256.
#
# How each contract step maps onto pacman:
# - refresh:  pacman -Syy. A plain -Sy skips a database whose timestamp looks current and
#             can miss a changed repository; -Syy always downloads.
# - plan:     pacman -Sup --print-format '%n %v %r %l' — the same -Su transaction, printed.
#             Current versions come from pacman -Q. pacman 6.0 has no %a, so the arch is read
#             from the package file name in %l (name-version-arch.pkg.tar.*).
# - exclude:  pacman --ignore (transient, nothing to undo). A pre-existing IgnorePkg in
#             pacman.conf is the admin's hold and is never edited.
# - held:     installed packages matched by --exclude whose sync candidate (pacman -Sp NAME)
#             is newer (vercmp).
# - changed:  pacman -Q before and after the transaction.
# - reboot:   the running kernel (uname -r) against the kernels installed under
#             ROOT/usr/lib/modules/<kver>/vmlinuz (what Arch kernel packages ship). If kernels
#             are installed but none matches the running one, its modules are gone: reboot.
# - lock:     pacman refuses with exit 1 while ROOT/var/lib/pacman/db.lck exists; a failure with
#             that file present is reported as a lock (exit 4).
# Removals caused by replaces/conflicts are not printed by --print; they show up in `changed`.
set -euo pipefail

readonly SCRIPT=pacman-update.sh
readonly EXCLUDE_PATTERN='^[a-z0-9@_+*][a-z0-9@._+*-]*$'
readonly SECURITY_ONLY_UNSUPPORTED='pacman has no advisory data, so it cannot tell a security fix from any other update'
readonly OPTIONS=' --root '
readonly USAGE='usage: pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
readonly SNAPSHOT_FAILED='pacman -Q (reading the local package database) failed'
manager=pacman

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
pacman_cmd=()
ignore_opts=()
declare -A installed=()
apply_started=false
changes_recorded=false

set_option() { root_option "$2"; }

undo_exclusions() { :; } # --ignore is per invocation: nothing to undo

check_environment() {
  command -v pacman >/dev/null || fail 3 environment 'pacman is not installed'
  command -v vercmp >/dev/null || fail 3 environment 'vercmp (part of pacman) is not installed'
  [[ $(id -u) == 0 ]] || fail 3 environment 'must run as root'
  pacman_cmd=(pacman --noconfirm)
  if [[ -n $root ]]; then
    root=${root%/}
    [[ -d $root/ ]] || fail 3 environment "--root is not a directory: $root/"
    [[ -f $root/etc/pacman.conf && -d $root/var/lib/pacman ]] ||
      fail 3 environment "--root has no etc/pacman.conf and var/lib/pacman: $root/"
  fi
  make_workdir
  if [[ -n $root ]]; then
    # Everything pacman reads or writes lives under ROOT, so the host is never touched.
    pacman_cmd+=(--root "$root/" --dbpath "$root/var/lib/pacman/"
      --cachedir "$root/var/cache/pacman/pkg/" --config "$root/etc/pacman.conf"
      --gpgdir "$(root_dir_or_empty etc/pacman.d/gnupg)/" --hookdir "$(root_dir_or_empty etc/pacman.d/hooks)/"
      --logfile "$root/var/log/pacman.log")
  fi
  if ((${#exclusions[@]})); then
    local IFS=,
    ignore_opts=(--ignore "${exclusions[*]}")
  fi
}

# root_dir_or_empty DIR — ROOT/DIR when it exists, else an empty directory of the run: pacman 7
# refuses a --gpgdir or --hookdir that does not exist (6.0 accepted one), and a root without a
# keyring or hooks must not borrow the host's. An empty gpgdir verifies nothing: a repository
# that requires signatures then fails, as it would on that system.
root_dir_or_empty() {
  if [[ -d $root/$1 ]]; then
    printf '%s' "$root/$1"
  else
    mkdir -p -- "$workdir/empty/$1" && printf '%s' "$workdir/empty/$1"
  fi
}

lock_is_held() { [[ -e $root/var/lib/pacman/db.lck ]]; }

# snapshot FILE — "name arch version" records of the local package database; the arch is left
# empty (pacman -Q has none) and looked up for the changed packages only.
snapshot() {
  local name version output
  output=$("${pacman_cmd[@]}" -Q) || { manager_exit_code=$? && return 1; }
  while read -r name version; do
    if [[ -n $name ]]; then record "$name" '' "$version"; fi
  done <<<"$output" >"$1"
}

# installed_arch NAME VERSION — the arch in the package's local database entry.
installed_arch() {
  local desc="$root/var/lib/pacman/local/$1-$2/desc"
  [[ -f $desc ]] && sed -n '/^%ARCH%$/{n;p;q}' "$desc"
}

# arch_from_location NAME VERSION LOCATION — name-version-arch.pkg.tar.* → arch
arch_from_location() {
  local file=${3##*/} arch
  arch=${file#"$1-$2-"}
  arch=${arch%%.pkg.tar*}
  if [[ $arch == "$file" || -z $arch || $arch == */* ]]; then arch=unknown; fi
  printf '%s' "$arch"
}

refresh_metadata() {
  log 'refreshing package databases (pacman -Syy)'
  local code=0
  "${pacman_cmd[@]}" -Syy --noprogressbar >&2 || code=$?
  manager_exit_code=$code
  ((code == 0)) && return 0
  lock_is_held && fail 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  fail 5 refresh "pacman -Syy failed with exit $code"
}

action_for() { # current candidate
  [[ -n $1 ]] || { printf 'install'; return; }
  local cmp
  cmp=$(vercmp "$2" "$1")
  if ((cmp < 0)); then printf 'downgrade'; else printf 'upgrade'; fi
}

compute_plan() {
  local name version repo location current output code=0
  output=$("${pacman_cmd[@]}" -Sup --print-format '%n %v %r %l' "${ignore_opts[@]}") || code=$?
  if ((code != 0)); then
    manager_exit_code=$code
    fail 6 transaction "pacman -Sup (planning the upgrade) failed with exit $code"
  fi
  while read -r name version repo location; do
    [[ -n $name && -n $location ]] || continue
    current=${installed[$name]:-}
    record "$name" "$(arch_from_location "$name" "$version" "$location")" \
      "$current" "$version" "$repo" "$(action_for "$current" "$version")"
  done <<<"$output" >"$workdir/packages"
}

compute_held() {
  local name version repo location current
  ((${#exclusions[@]})) || return 0
  while read -r current; do
    is_excluded "$current" || continue
    # An explicit target is printed even when ignored; a name in no repository is skipped.
    while read -r name version repo location; do
      [[ $name == "$current" ]] || continue
      (($(vercmp "$version" "${installed[$name]}") > 0)) || continue
      record "$name" "$(arch_from_location "$name" "$version" "$location")" \
        "${installed[$name]}" "$version" "$repo" upgrade
    done < <("${pacman_cmd[@]}" -Sp --print-format '%n %v %r %l' "$current" 2>/dev/null || true)
  done < <(printf '%s\n' "${!installed[@]}" | LC_ALL=C sort) >"$workdir/held"
}

# complete_changes — pacman's snapshot records no arch: add each changed package's from the
# package database (record_changes in common.sh calls this when a part defines it).
complete_changes() {
  local name arch from to
  mv -- "$workdir/changed" "$workdir/changes"
  while IFS=$FS read -r name arch from to; do
    arch=$(installed_arch "$name" "${to:-$from}" || true)
    record "$name" "${arch:-unknown}" "$from" "$to"
  done <"$workdir/changes" >"$workdir/changed"
}

apply_upgrade() {
  local code=0
  apply_started=true
  log "upgrading (pacman -Su ${ignore_opts[*]})"
  "${pacman_cmd[@]}" -Su --noprogressbar "${ignore_opts[@]}" >&2 || code=$?
  manager_exit_code=$code
  record_changes
  ((code == 0)) && return 0
  lock_is_held && fail 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  fail 6 transaction "pacman -Su failed with exit $code"
}

detect_reboot() {
  local modules="$root/usr/lib/modules" running dir kernels=()
  running=$(uname -r)
  for dir in "$modules"/*/; do
    [[ -f ${dir}vmlinuz ]] || continue
    dir=${dir%/}
    kernels+=("$(cat "$dir/pkgbase" 2>/dev/null || printf 'kernel') ${dir##*/}")
  done
  ((${#kernels[@]})) || return 0
  [[ -f $modules/$running/vmlinuz ]] && return 0
  reboot_required=true
  local IFS=,
  reboot_reason="running kernel $running is no longer installed; installed: ${kernels[*]}"
}

main() {
  local name version
  set_traps
  parse_args "$@"
  check_environment
  snapshot "$workdir/before" || fail 3 environment "$SNAPSHOT_FAILED"
  while IFS=$FS read -r name _ version; do installed[$name]=$version; done <"$workdir/before"
  refresh_metadata
  compute_held
  compute_plan
  if [[ $mode == apply ]]; then
    apply_upgrade
  fi
}

main "$@"
