#!/usr/bin/env bash
#> # Walkthrough: the admin API, step by step
#>
#> The admin gateway's coupon guide ([admin-gateway-coupon-codes.txt](admin-gateway-coupon-codes.txt))
#> step by step, then the event worker, redemption and the coupon queries. This page is
#> generated from [`walkthrough.sh`](walkthrough.sh) (`make docs`), and
#> `tests/e2e/test_walkthrough.py` runs that script against a stack started as `make run`
#> starts it: every command below runs as written.
#>
#> Start the service in one terminal (`make run`), then in a second terminal, from the
#> repository root and with the same `PHOENIX_DATA_DIR` as the first (default `.phoenix`):
#>
#> ```sh
#> bash docs/walkthrough.sh            # the whole walk; or paste the blocks below one by one
#> ```
#>
#> Every id is captured from a response (`jq -r`), never pasted from another run. Each run
#> uses a tenant of its own (`TENANT`), so the walk can be repeated on the same data. The
#> helper `http` ([walk-lib.sh](walk-lib.sh), with the defaults of `PY`, `BASE` and `TENANT`)
#> runs `curl`, prints the response body and stops the walk unless the status (and, after a
#> colon, the `error` code) is the one given. Responses shown are from a real
#> run; ids and times differ in yours, long bodies are trimmed where marked.
#>
#> ## 0. Setup

set -euo pipefail  # stop at the first failure (leave it out when pasting into your shell)

# PY, BASE, TENANT (with their defaults) and the helpers `http` and `records`:
source docs/walk-lib.sh

#> **Is the service ready?** `GET /readyz` answers 200 `{"status": "ready"}` once MongoDB
#> answers and the worker has joined its consumer group (503 with the reasons before that);
#> `make run` also logs `worker_started`. Wait for it:

for _ in $(seq 120); do
  curl -sf "$BASE/readyz" >/dev/null && break
  sleep 0.5
done
http 200 "$BASE/readyz"

#> ```json
#> {"status":"ready"}
#> ```
#>
#> ## 1. An API key
#>
#> The CLI reads the servers' addresses from `$PHOENIX_DATA_DIR/services.env` (written by
#> `make run`, removed when it stops). The key needs `coupons:redeem` for the redemption
#> steps. Its plaintext `key` is printed once; the service keeps a hash (for look-up) and
#> the secret encrypted with `PHOENIX_SECRET_KEY` (to verify JWTs).

CREATED=$("$PY" -m phoenix_coupons api-key create --name walkthrough \
  --scopes coupons:read,coupons:write,coupons:redeem,rewards:read,rewards:write)
echo "$CREATED"
KEY_ID=$(jq -r .id <<<"$CREATED")
KEY=$(jq -r .key <<<"$CREATED")

#> ```json
#> {
#>   "id": "f83699a2-d019-44b5-a3ed-3117ed29226b",
#>   "key": "pk_Gkw4elZTBnMMOuIrYIr8lwhrZOdA4L9JZJSc4k2Uk6M",
#>   "name": "walkthrough",
#>   "scopes": ["coupons:read", "coupons:write", "coupons:redeem", "rewards:read", "rewards:write"],
#>   "tenant_id": null,
#>   "created_at": "2026-11-30T02:28:47.693000+00:00"
#> }
#> ```
#>
#> The requests below use both of the guide's credentials: `X-API-Key: $KEY`, and a Bearer
#> JWT signed with the key (HS256, claims `sub_type: "admin"`, `sub_id: <key id>`, `exp`;
#> PyJWT is in the venv):

TOKEN=$("$PY" -c 'import jwt, sys, time
print(jwt.encode({"sub_type": "admin", "sub_id": sys.argv[1], "exp": int(time.time()) + 3600},
                 sys.argv[2], algorithm="HS256"))' "$KEY_ID" "$KEY")

#> Without a credential, or with a token that is not a JWT, the answer is 401 with the reason
#> (every reason: [api.md](api.md#authentication)):

http 401:missing_credentials "$BASE/v1/tenants/$TENANT/coupons"
http 401:malformed_token "$BASE/v1/tenants/$TENANT/coupons" -H "Authorization: Bearer not-a-jwt"

#> ```json
#> {"error":"missing_credentials","message":"send an X-API-Key header or an Authorization: Bearer JWT","details":[]}
#> {"error":"malformed_token","message":"the bearer token is not a JWT: Not enough segments","details":[]}
#> ```
#>
#> ## 2. A reward item (the prerequisite)

ITEM=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/rewards" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"name": "100 Bonus Points", "description": "Grants 100 bonus points to the user",
       "reward_type": "points", "payload": {"amount": 100}}' | jq -r .item_id)
echo "reward item $ITEM"

#> ```json
#> {"item_id": "87203699-2948-493b-a4b6-ec80f0c5c377", "tenant_id": "acme-20261130022845",
#>  "name": "100 Bonus Points", "description": "Grants 100 bonus points to the user",
#>  "reward_type": "points", "payload": {"amount": 100},
#>  "created_at": "2026-11-30T02:28:49.355000Z", "updated_at": "2026-11-30T02:28:49.355000Z"}
#> ```
#>
#> `GET`, `PUT` (partial) and `DELETE .../rewards/{item_id}` and the paginated list
#> `GET .../rewards?limit=&offset=` (`{"rewards": [...], "total": n}`) complete the set.
#>
#> ## 3. The guide's three definitions
#>
#> A random-code welcome bonus, a custom promotional code and an auto-generated streak
#> reward (201 each; each answer is the stored definition, defaults filled in):

WELCOME=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Welcome Bonus", "description": "Welcome bonus for new users",
       "config": {"reward_item_id": "'"$ITEM"'", "code_format": "random", "code_prefix": "WELCOME",
                  "code_length": 8, "usage_limit": {"limit_type": "per_user", "max_uses": 1}}}' \
  | jq -r .id)

#> ```json
#> {"id": "813094cb-7999-48b7-b113-4b6011dc36b0", "tenant_id": "acme-20261130022845",
#>  "name": "Welcome Bonus", "description": "Welcome bonus for new users",
#>  "config": {"reward_item_id": "87203699-2948-493b-a4b6-ec80f0c5c377", "code_format": "random",
#>             "code_prefix": "WELCOME", "code_length": 8, "case_sensitive": false,
#>             "usage_limit": {"limit_type": "per_user", "max_uses": 1}},
#>  "status": "active",
#>  "created_at": "2026-11-30T02:28:49.448000Z", "updated_at": "2026-11-30T02:28:49.448000Z"}
#> ```

PROMO=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "New Year 2025 Promo", "description": "Special New Year promotion",
       "config": {"reward_item_id": "'"$ITEM"'", "code_format": "custom", "custom_code": "NEWYEAR2025",
                  "starts_at": "2025-01-01T00:00:00Z", "expires_at": "2025-01-31T23:59:59Z",
                  "usage_limit": {"limit_type": "unlimited"}}}' | jq -r .id)

STREAK=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "7-Day Streak Reward", "description": "Reward for maintaining a 7-day streak",
       "config": {"reward_item_id": "'"$ITEM"'", "code_format": "random", "code_prefix": "STREAK7",
                  "code_length": 8, "usage_limit": {"limit_type": "per_user", "max_uses": 1},
                  "auto_generate": {"enabled": true, "trigger": "streak_milestone",
                    "trigger_config": {"streak_id": "770e8400-e29b-41d4-a716-446655440002",
                                       "milestone_threshold": 7}}}}' | jq -r .id)
echo "definitions: welcome $WELCOME, promo $PROMO, streak $STREAK"

#> Every rule of the guide's validation table answers 422 naming each broken field:

http 422:validation_error -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Broken", "config": {"reward_item_id": "not-a-uuid", "code_format": "random",
       "code_length": 3, "usage_limit": {"limit_type": "per_user"},
       "auto_generate": {"enabled": true}}}'

#> ```json
#> {"error": "validation_error", "message": "invalid coupon config",
#>  "details": [{"field": "config.reward_item_id", "reason": "must be a valid UUID"},
#>              {"field": "config.code_length", "reason": "must be between 4 and 32"},
#>              {"field": "config.usage_limit.max_uses", "reason": "is required for limit_type 'per_user'"},
#>              {"field": "config.auto_generate.trigger", "reason": "is required when enabled is true"}]}
#> ```
#>
#> `reward_item_id` must also name a reward item of the same tenant, the trigger's own
#> `trigger_config` fields are required, and a `custom_code` is unique in the tenant ignoring
#> case:

http 409:custom_code_taken -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Copy", "config": {"reward_item_id": "'"$ITEM"'", "code_format": "custom",
       "custom_code": "newyear2025", "usage_limit": {"limit_type": "unlimited"}}}'

#> ```json
#> {"error": "custom_code_taken",
#>  "message": "custom_code 'newyear2025' is already used in this tenant (case is ignored)",
#>  "details": [], "conflicts": [{"field": "config.custom_code", "code": "newyear2025"}]}
#> ```
#>
#> ## 4. Bulk generation, random codes
#>
#> 1 to 10,000 `user_ids` (`PHOENIX_BULK_MAX_USERS`). With an `Idempotency-Key`, the same
#> key and body within 24 h (`PHOENIX_IDEMPOTENCY_TTL_SECONDS`) answer the first response
#> again and generate nothing new:

FIRST=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/generate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-batch-1' \
  -d '{"user_ids": ["user_123", "user_456", "user_789"]}')
echo "$FIRST"

#> ```json
#> {"generated": 3, "coupons": [{"user_id": "user_123", "code": "WELCOMEXK5KC98A"},
#>                              {"user_id": "user_456", "code": "WELCOMEQAYZ485U"},
#>                              {"user_id": "user_789", "code": "WELCOME8UYF584D"}]}
#> ```

AGAIN=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/generate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-batch-1' \
  -d '{"user_ids": ["user_123", "user_456", "user_789"]}')
[[ $AGAIN == "$FIRST" ]] || { echo "the replay answered another body" >&2; false; }

#> The same key with another body:

http 422:idempotency_key_reused -X POST "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/generate" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-batch-1' \
  -d '{"user_ids": ["user_999"]}'

#> ```json
#> {"error": "idempotency_key_reused",
#>  "message": "this Idempotency-Key was used with a different request body",
#>  "details": [{"field": "Idempotency-Key", "reason": "already used with another body"}]}
#> ```
#>
#> Random codes are the prefix plus `code_length` characters drawn by a cryptographically
#> secure generator from `ABCDEFGHJKMNPQRSTUVWXYZ23456789` (no 0/O, 1/I/L), unique in the
#> tenant ignoring case. A request that would fill more than half of the code space of its
#> prefix and length answers 422 `code_space_exhausted` before generating anything.
#>
#> ## 5. Bulk generation, custom codes
#>
#> For a custom-format definition: one code per user, in order.

http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$PROMO/generate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: vip-batch-1' \
  -d '{"user_ids": ["user_123", "user_456"], "custom_codes": ["VIP-USER-123", "VIP-USER-456"]}'

#> ```json
#> {"generated": 2, "coupons": [{"user_id": "user_123", "code": "VIP-USER-123"},
#>                              {"user_id": "user_456", "code": "VIP-USER-456"}]}
#> ```
#>
#> A code already used in the tenant (ignoring case) or repeated in the request answers 409
#> with the conflicts, and nothing is generated:

http 409:custom_codes_conflict -X POST "$BASE/v1/tenants/$TENANT/coupons/$PROMO/generate" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d '{"user_ids": ["user_777", "user_888"], "custom_codes": ["vip-user-123", "VIP-USER-888"]}'

#> ```json
#> {"error": "custom_codes_conflict", "message": "1 custom code(s) conflict; nothing was generated",
#>  "details": [],
#>  "conflicts": [{"code": "vip-user-123", "user_id": "user_777", "reason": "already used in this tenant"}]}
#> ```
#>
#> ## 6. List and get
#>
#> Lists are paginated (`limit` 1 to 500, default 50; `offset`), newest first, filterable by
#> `status`, and leave archived definitions out unless `include_archived=true`:

http 200 "$BASE/v1/tenants/$TENANT/coupons?status=active&limit=1&offset=0" \
  -H "Authorization: Bearer $TOKEN" | jq -e '.total == 3 and (.definitions | length) == 1' >/dev/null

#> ```json
#> {"definitions": [{"id": "9ffed903-839a-4874-802e-fbfd39577f93", "name": "7-Day Streak Reward", "...": "trimmed"}],
#>  "total": 3}
#> ```

http 200 "$BASE/v1/tenants/$TENANT/coupons/$WELCOME" -H "Authorization: Bearer $TOKEN"
http 404:definition_not_found "$BASE/v1/tenants/$TENANT/coupons/00000000-0000-4000-8000-000000000000" \
  -H "Authorization: Bearer $TOKEN"

#> ## 7. Update
#>
#> Name, description and config (the config is a JSON merge patch of the stored one,
#> validated whole):

http 200 -X PUT "$BASE/v1/tenants/$TENANT/coupons/$WELCOME" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Updated Name", "description": "Updated description"}'

#> ```json
#> {"id": "813094cb-7999-48b7-b113-4b6011dc36b0", "tenant_id": "acme-20261130022845",
#>  "name": "Updated Name", "description": "Updated description", "config": {"...": "unchanged"},
#>  "status": "active", "created_at": "2026-11-30T02:28:49.448000Z", "updated_at": "2026-11-30T02:28:51.053000Z"}
#> ```
#>
#> Any other field answers 422:

http 422:validation_error -X PUT "$BASE/v1/tenants/$TENANT/coupons/$WELCOME" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"status": "paused"}'

#> ```json
#> {"error": "validation_error", "message": "the request is not valid",
#>  "details": [{"field": "status", "reason": "unknown field: not accepted here"}]}
#> ```
#>
#> ## 8. Status: `active` and `paused`

http 200 -X PUT "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/status" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"status": "paused"}'

#> A paused definition generates nothing:

http 409:definition_paused -X POST "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/generate" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-batch-2' \
  -d '{"user_ids": ["user_321"]}'

#> ```json
#> {"error": "definition_paused",
#>  "message": "coupon definition 813094cb-7999-48b7-b113-4b6011dc36b0 is paused; only active definitions generate coupons",
#>  "details": []}
#> ```
#>
#> A replay is not a new generation: step 4's key and body still answer their stored 201
#> (the same codes), paused or not.

REPLAY=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/generate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: welcome-batch-1' \
  -d '{"user_ids": ["user_123", "user_456", "user_789"]}')
[[ $REPLAY == "$FIRST" ]] || { echo "the replay answered another body" >&2; false; }

#> ## 9. Archive (soft delete, final)
#>
#> 204; the definition no longer changes, generates or redeems:

http 204 -X DELETE "$BASE/v1/tenants/$TENANT/coupons/$PROMO" -H "Authorization: Bearer $TOKEN"
http 409:definition_archived -X PUT "$BASE/v1/tenants/$TENANT/coupons/$PROMO" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name": "Too late"}'
http 409:definition_archived -X PUT "$BASE/v1/tenants/$TENANT/coupons/$PROMO/status" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"status": "active"}'

#> ```json
#> {"error": "definition_archived",
#>  "message": "coupon definition 092e72a9-169a-4ad9-adb7-ced30904573b is archived and cannot change",
#>  "details": []}
#> ```
#>
#> ## 10. All tenants' definitions
#>
#> Only with an `X-API-Key` of a key bound to no tenant (filters: `tenant_id`, `status`,
#> `include_archived`, `limit`, `offset`):

http 200 "$BASE/v1/coupons?tenant_id=$TENANT" -H "X-API-Key: $KEY" | jq -e '.total == 2' >/dev/null

#> ```json
#> {"definitions": [{"id": "9ffed903-839a-4874-802e-fbfd39577f93", "tenant_id": "acme-20261130022845", "...": "trimmed"},
#>                  {"id": "813094cb-7999-48b7-b113-4b6011dc36b0", "tenant_id": "acme-20261130022845", "...": "trimmed"}],
#>  "total": 2}
#> ```
#>
#> The same with a JWT answers 403 `api_key_required`; with a tenant-bound key, 403
#> `tenant_bound_key`:

http 403:api_key_required "$BASE/v1/coupons" -H "Authorization: Bearer $TOKEN"

#> ## 11. The event worker
#>
#> A `streak_milestone` event for `user_123` reaching the streak definition's threshold
#> issues a `STREAK7` coupon. Upstream services produce such events to the inbound topics
#> (contracts: [events.md](events.md)); here a small producer in the venv does it. It finds
#> Kafka as the CLI does (`KAFKA_BOOTSTRAP_SERVERS`, else the `services.env` of
#> `PHOENIX_DATA_DIR`) and the topic from `PHOENIX_TOPIC_STREAKS`. The record's key is the
#> user id, hashed by aiokafka's default partitioner (murmur2, like the Java client's).

produce_streak_event() {  # USER STREAK_LENGTH
  "$PY" - "$TENANT" "$1" "$2" <<'PY'
import asyncio, json, sys, uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from phoenix_coupons.settings import Settings, load_services_env

settings = load_services_env(Settings())
tenant, user, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
event = {"event_id": str(uuid.uuid4()), "event_type": "streak_milestone", "tenant_id": tenant,
         "user_id": user, "occurred_at": datetime.now(UTC).isoformat(),
         "data": {"streak_id": "770e8400-e29b-41d4-a716-446655440002", "streak_length": length}}


async def main() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_streaks, json.dumps(event).encode(),
                                     key=user.encode())
    finally:
        await producer.stop()


asyncio.run(main())
print(f"produced {event['event_id']} to {settings.topic_streaks}")
PY
}

#> The worker reloads the active auto-generate definitions every
#> `PHOENIX_DEFINITIONS_REFRESH_SECONDS` (2 s): an event that arrives before it has seen a new
#> definition matches nothing. So the walk sends the event, looks for the coupon in the
#> user's wallet for a few seconds, and sends it again (a new event of the same occurrence:
#> never a second coupon) until the coupon is there.

STREAK_CODE=""
for _ in $(seq 10); do
  produce_streak_event user_123 7
  for _ in $(seq 15); do
    STREAK_CODE=$(http 200 "$BASE/v1/tenants/$TENANT/users/user_123/coupons" -H "X-API-Key: $KEY" \
      | jq -r --arg d "$STREAK" '.coupons[] | select(.definition_id == $d) | .code')
    [[ -n $STREAK_CODE ]] && break 2
    sleep 0.2
  done
done
[[ -n $STREAK_CODE ]] || { echo "the worker issued no streak coupon" >&2; false; }
echo "the worker issued $STREAK_CODE to user_123"

#> The coupon is also announced on `phoenix.coupons.issued` (`source: "event"`, key
#> `user_123`; the event: [events.md](events.md#the-couponissued-event)).
#>
#> ## 12. Redemption
#>
#> `validate` consumes nothing: 200 with `valid` and, when false, the `reason` a redeem
#> would get. Codes are matched ignoring case unless the definition is case-sensitive.

http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/validate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_123"}' \
  | jq -e '.valid == true' >/dev/null

#> ```json
#> {"valid": true, "reason": null,
#>  "coupon": {"id": "1efa5d77-0fd4-5536-9cca-40c8b7bcf65c", "tenant_id": "acme-20261130022845",
#>             "definition_id": "9ffed903-839a-4874-802e-fbfd39577f93",
#>             "reward_item_id": "87203699-2948-493b-a4b6-ec80f0c5c377", "code": "STREAK7WG3E9FA8",
#>             "kind": "issued", "source": "event", "user_id": "user_123", "status": "active",
#>             "issued_at": "2026-11-30T02:28:53.118000Z", "starts_at": null, "expires_at": null,
#>             "revoked_at": null},
#>  "reward": {"item_id": "87203699-2948-493b-a4b6-ec80f0c5c377", "name": "100 Bonus Points",
#>             "reward_type": "points", "payload": {"amount": 100}, "...": "trimmed"}}
#> ```
#>
#> The promotional code of step 3 cannot be used any more: its definition was archived in
#> step 9 (and its window ended on 2025-01-31):

http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/validate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "newyear2025", "user_id": "user_123"}' \
  | jq -e '.valid == false and .reason == "definition_archived"' >/dev/null

#> `redeem` consumes one use (201). The same `Idempotency-Key` and body again answer the same
#> redemption with 200 and consume nothing more:

REDEMPTION=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: order-42' \
  -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_123"}' | jq -r .redemption_id)
http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: order-42' \
  -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_123"}' \
  | jq -e --arg r "$REDEMPTION" '.redemption_id == $r' >/dev/null

#> ```json
#> {"redemption_id": "5b06a893-4105-55a1-bb78-fc539d110590", "status": "redeemed",
#>  "user_id": "user_123", "redeemed_at": "2026-11-30T02:28:53.778000Z", "rolled_back_at": null,
#>  "coupon": {"code": "STREAK7WG3E9FA8", "...": "as above"},
#>  "reward": {"item_id": "87203699-2948-493b-a4b6-ec80f0c5c377", "name": "100 Bonus Points",
#>             "reward_type": "points", "payload": {"amount": 100}, "...": "trimmed"}}
#> ```
#>
#> The `reward` is a snapshot of the reward item at the time of the redemption. The
#> definition allows one use per user (`per_user`, `max_uses: 1`), so another redeem is
#> refused, and another user may not use a code issued to `user_123`:

http 409:per_user_limit_reached -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H 'Idempotency-Key: order-43' \
  -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_123"}'
http 409:not_owner -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_456"}'

#> ```json
#> {"error": "per_user_limit_reached", "message": "the user has used this coupon as often as allowed", "details": []}
#> ```
#>
#> A rollback gives the use back, once:

http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/redemptions/$REDEMPTION/rollback" \
  -H "X-API-Key: $KEY" | jq -e '.status == "rolled_back"' >/dev/null
http 409:already_rolled_back -X POST \
  "$BASE/v1/tenants/$TENANT/coupons/redemptions/$REDEMPTION/rollback" -H "X-API-Key: $KEY"

#> ## 13. Coupon queries
#>
#> A definition's codes (paginated, newest first; `user_id=` filters), a user's wallet (each
#> code with `remaining_uses`, null when unlimited) and one code's state with its
#> redemption history:

http 200 "$BASE/v1/tenants/$TENANT/coupons/$WELCOME/codes?limit=10" -H "X-API-Key: $KEY" \
  | jq -e '.total == 3' >/dev/null
http 200 "$BASE/v1/tenants/$TENANT/users/user_123/coupons" -H "X-API-Key: $KEY" \
  | jq -e --arg c "$STREAK_CODE" '.coupons[] | select(.code == $c) | .remaining_uses == 1' >/dev/null
http 200 "$BASE/v1/tenants/$TENANT/codes/$STREAK_CODE" -H "X-API-Key: $KEY" \
  | jq -e '.redemptions | length == 1' >/dev/null

#> Revoking a code (scope `coupons:write`) makes every later redeem of it fail:

http 200 -X POST "$BASE/v1/tenants/$TENANT/codes/$STREAK_CODE/revoke" -H "X-API-Key: $KEY"
http 409:coupon_revoked -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$STREAK_CODE"'", "user_id": "user_123"}'

#> The code's timeline tells its story oldest first (`limit`, `offset`, `after` as the other
#> lists), each step with its time, its actor and its details: issued by the streak event
#> (`actor.id` is its `event_id`), then the redemption and its rollback, and last the
#> revocation by this key:

http 200 "$BASE/v1/tenants/$TENANT/codes/$STREAK_CODE/history" -H "X-API-Key: $KEY" \
  | jq -e --arg key "$KEY_ID" '(.events[0] | .type == "issued" and .actor.type == "event")
      and (.events[-1] | .type == "revoked" and .actor.id == $key)' >/dev/null

echo "walkthrough done: tenant $TENANT"
