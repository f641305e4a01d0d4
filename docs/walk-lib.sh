# Shared by docs/walkthrough.sh and docs/lifecycle.sh (sourced, never run alone): where the
# service is, a tenant of the run's own, and two helpers.

PY=${PY:-.venv/bin/python}              # the project's venv (`make run` creates it)
BASE=${BASE:-http://127.0.0.1:${PHOENIX_API_PORT:-8080}}
TENANT=${TENANT:-acme-$(date +%Y%m%d%H%M%S)}
export PHOENIX_DATA_DIR=${PHOENIX_DATA_DIR:-.phoenix}  # where `make run` wrote services.env

# http STATUS[:ERROR] CURL-ARGS...: print the response body; fail unless the status (and the
# body's `error` code) is the one expected.
http() {
  local want=$1 response status body
  shift
  response=$(curl -sS --max-time 30 -w '\n%{http_code}' "$@")
  status=${response##*$'\n'}
  body=${response%$'\n'*}
  printf '%s\n' "$body"
  if [[ $status != "${want%%:*}" ]]; then
    echo "expected HTTP ${want%%:*}, got $status: $body" >&2
    return 1
  fi
  if [[ $want == *:* && $(jq -r .error <<<"$body") != "${want#*:}" ]]; then
    echo "expected error ${want#*:}, got: $body" >&2
    return 1
  fi
}

# records TOPIC_SETTING...: this run's records on the topics named by those settings (e.g.
# topic_coupons_issued), one JSON line each with the record's key, read from the start to
# the topics' current ends. Kafka is found as the CLI finds it (services.env).
records() {
  "$PY" - "$TENANT" "$@" <<'PY'
import asyncio, json, sys

from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_coupons.settings import Settings, load_services_env

settings = load_services_env(Settings())
tenant, names = sys.argv[1], [getattr(settings, name) for name in sys.argv[2:]]


async def main() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(*tps, timeout_ms=500)).values():
                for r in batch:
                    event = json.loads(r.value)
                    if r.offset < end[TopicPartition(r.topic, r.partition)] and \
                            event.get("tenant_id") == tenant:
                        print(json.dumps({"topic": r.topic, "key": r.key.decode(), **event}))
    finally:
        await consumer.stop()


asyncio.run(main())
PY
}
