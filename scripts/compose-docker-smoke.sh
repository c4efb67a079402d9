#!/usr/bin/env bash
# docker-compose.yml with a real Docker engine (CI's image job; our own machines have none):
# brings the topology up with an already built image, waits for the API to be healthy, scales
# the workers to 2, creates the first admin token and a token for its account as the compose
# file's header says (`docker compose run --rm -T migrate token create ...`), posts a request
# with it and produces one to Kafka with an `authorization: Bearer` header, and waits for both
# to be COMPLETED. The project and its volumes are removed at the end, also on failure.
#
#   DNSORCH_IMAGE=dnsorch:local scripts/compose-docker-smoke.sh
#
# Needs docker with the compose plugin, curl and python3 on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DNSORCH_IMAGE:?set DNSORCH_IMAGE to the image to run}"
export DNSORCH_IMAGE
project="dnsorch-smoke-$$"
compose() { docker compose --project-name "$project" "$@"; }

# The compose file has no default passwords: fresh ones unless the caller set them.
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
REDIS_PASSWORD="${REDIS_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
export POSTGRES_PASSWORD REDIS_PASSWORD

cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then
        compose ps -a || true
        compose logs --no-color --tail 200 || true
    fi
    compose down --volumes --remove-orphans || true
    exit "$status"
}
trap cleanup EXIT

# Waits up to $2 seconds for $1 to succeed.
wait_until() {
    local what="$1" bound="$2" started=$SECONDS
    shift 2
    until "$@"; do
        if [ $((SECONDS - started)) -ge "$bound" ]; then
            echo "$what: not within $bound s" >&2
            return 1
        fi
        sleep 2
    done
}

healthy() {
    local id
    id="$(compose ps -q "$1" | head -n1)"
    [ -n "$id" ] && [ "$(docker inspect --format '{{.State.Health.Status}}' "$id")" = healthy ]
}

status_of() {
    curl -fsS -H "Authorization: Bearer $token" "http://$api/api/v1/dns/requests/$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])'
}

completed() { [ "$(status_of "$1")" = COMPLETED ]; }

kafka_request_completed() {
    local id
    id="$(curl -fsS -H "Authorization: Bearer $token" "http://$api/api/v1/dns/requests?domain=$kafka_domain" \
        | python3 -c 'import json, sys; items = json.load(sys.stdin)["items"]; print(items[0]["request_id"] if items else "")')"
    [ -n "$id" ] && completed "$id"
}

echo "==> docker compose up ($DNSORCH_IMAGE)"
compose up -d --no-build
wait_until "api healthy" 300 healthy api
wait_until "consumer healthy" 120 healthy consumer
compose up -d --no-build --scale worker=2
api="$(compose port api 8000)"
echo "api on $api"
[ "$(docker inspect --format '{{.State.ExitCode}}' "$(compose ps -a -q migrate)")" = 0 ]

# serve creates no token: the first one as the compose file's header says, then the smoke's.
admin_token="$(compose run --rm -T migrate token create --account admin --name ops --admin)"
token="$(compose run --rm -T migrate token create --account acct-smoke --name smoke --policy example.test=read,create)"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$api/api/v1/dns/create")" = 401 ]
echo "created the admin token and the smoke's token; the API refuses a request without one"

domain="compose-$$.example.test"
request_id="$(curl -fsS -X POST "http://$api/api/v1/dns/create" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $token" \
    -d "{\"context\": {\"account_id\": \"acct-smoke\"}, \"resource\": {\"record_type\": \"A\", \"domain\": \"$domain\", \"target\": \"192.0.2.53\"}}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')"
echo "posted request $request_id"

kafka_domain="kafka-$domain"
# parse.headers: `authorization:Bearer <token>`, a tab, then the value.
printf 'authorization:Bearer %s\t%s\n' "$token" \
    "{\"context\": {\"account_id\": \"acct-smoke\"}, \"resource\": {\"record_type\": \"A\", \"domain\": \"$kafka_domain\", \"target\": \"192.0.2.54\"}}" \
    | compose exec -T kafka /opt/kafka/bin/kafka-console-producer.sh --bootstrap-server kafka:9092 --topic dns_requests \
        --property parse.headers=true
echo "produced a request for $kafka_domain"

# The dev profile's simulated backend takes 10 s per request.
wait_until "request $request_id COMPLETED" 120 completed "$request_id"
wait_until "the Kafka request COMPLETED" 120 kafka_request_completed
curl -fsS "http://$api/readyz"
echo
curl -fsS -H "Authorization: Bearer $admin_token" "http://$api/metrics" | grep '^dnsorch_requests{status="COMPLETED"}'

echo "compose topology with Docker: ok"
