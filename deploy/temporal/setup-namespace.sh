#!/bin/sh
# Once the cluster answers: registers patchnanny's namespace when missing and its search
# attributes (PatchHost, PatchPhase, PatchOutcome, PatchContainer: workflows/search-attributes.ts,
# which the cluster helper checks against the server after this ran; on
# PostgreSQL visibility they map onto the schema's pre-allocated Keyword columns, and adding
# an existing one is a no-op). Run by the compose init job (temporalio/admin-tools) and by
# scripts/dev/temporal-cluster.ts on this machine with the same `temporal` CLI commands.
#
# Environment: TEMPORAL_ADDRESS (a frontend, host:port), TEMPORAL_NAMESPACE (default),
#   TEMPORAL_NAMESPACE_RETENTION (30d: how long closed runs stay in Temporal; patchnanny's
#   own record of a run is in its database), TEMPORAL_CLI (temporal on PATH).
set -eu

cli="${TEMPORAL_CLI:-temporal}"
: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
namespace="${TEMPORAL_NAMESPACE:-default}"
retention="${TEMPORAL_NAMESPACE_RETENTION:-30d}"
export TEMPORAL_ADDRESS

# Bounded waits: a cluster that never comes up fails the job instead of hanging it.
retry() {
  what="$1"
  shift
  n=0
  until "$@" >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$n" -lt 120 ] || { echo "gave up waiting for $what" >&2; "$@"; return 1; }
    sleep 1
  done
}

retry "the cluster to serve" "$cli" operator cluster health
if "$cli" operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
  echo "namespace $namespace exists"
else
  "$cli" operator namespace create --namespace "$namespace" --retention "$retention"
  echo "namespace $namespace registered (retention $retention)"
fi
# A new namespace reaches every frontend's cache within ~10 s; until then this is refused.
retry "the namespace $namespace to be known" "$cli" operator search-attribute create --namespace "$namespace" \
  --name PatchHost --type Keyword --name PatchPhase --type Keyword --name PatchOutcome --type Keyword \
  --name PatchContainer --type Keyword
echo "search attributes PatchHost, PatchPhase, PatchOutcome, PatchContainer registered on $namespace"
