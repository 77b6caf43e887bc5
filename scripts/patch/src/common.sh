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
