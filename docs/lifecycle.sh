#!/usr/bin/env bash
#> # The coupon lifecycle, step by step
#>
#> What happens to a coupon between its issuance and its end: validity counted from
#> issuance, an issuance budget, holds during a checkout, a rollback that keeps the use,
#> expiry reminders and the expiry event, the code's timeline, and the records each step
#> leaves on the topics. This page is generated from [`lifecycle.sh`](lifecycle.sh)
#> (`make docs`), and `tests/e2e/test_walkthrough.py` runs that script against a stack
#> started as `make run` starts it: every command below runs as written.
#>
#> Start the service (`make run`), then from the repository root, with the same
#> `PHOENIX_DATA_DIR`:
#>
#> ```sh
#> bash docs/lifecycle.sh
#> ```
#>
#> The helpers `http` (runs `curl`, prints the body, stops the walk unless the status and
#> `error` are the ones given) and `records` (prints this run's records on the topics named)
#> are in [walk-lib.sh](walk-lib.sh), as for the [walkthrough](walkthrough.md). Bodies shown
#> are from a real run, shortened where marked; ids and times differ in yours.
#>
#> ## 0. Setup

set -euo pipefail  # stop at the first failure (leave it out when pasting into your shell)

source docs/walk-lib.sh  # PY, BASE, TENANT, http, records
for _ in $(seq 120); do
  curl -sf "$BASE/readyz" >/dev/null && break
  sleep 0.5
done
KEY=$("$PY" -m phoenix_coupons api-key create --name lifecycle \
  --scopes coupons:read,coupons:write,coupons:redeem,rewards:write | jq -r .key)
ITEM=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/rewards" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Free coffee", "reward_type": "item", "payload": {"sku": "COFFEE"}}' \
  | jq -r .item_id)

#> ## 1. A definition with a lifecycle
#>
#> A week-long streak reward: each coupon is valid 7 days from its issuance (`valid_for`),
#> its user is reminded 3 days and 1 day before it ends (`remind_before`), the campaign
#> issues at most 2 coupons (`issuance_limit`), and a cancelled order does not give the use
#> back (`rollback_restores_use: false`). Each setting: [api.md](api.md#lifecycle-settings-of-a-definition).

WEEK=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Streak week", "config": {"reward_item_id": "'"$ITEM"'", "code_format": "random",
       "code_prefix": "WEEK-", "usage_limit": {"limit_type": "per_user", "max_uses": 1},
       "valid_for": "P7D", "remind_before": ["P3D", "PT24H"],
       "issuance_limit": {"max_coupons": 2}, "rollback_restores_use": false}}' | jq -r .id)

#> ## 2. Issuance, within the budget
#>
#> Bulk generation for two users, with `metadata` carried onto each coupon and its
#> `coupon.issued` event. Each coupon's window starts at its issuance and ends 7 days later:

CODES=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$WEEK/generate" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H 'X-Request-Id: campaign-wave-1' \
  -d '{"user_ids": ["ana", "ben"], "metadata": {"campaign": "winter"}}')
ANA=$(jq -r '.coupons[0].code' <<<"$CODES")
BEN=$(jq -r '.coupons[1].code' <<<"$CODES")
http 200 "$BASE/v1/tenants/$TENANT/codes/$ANA" -H "X-API-Key: $KEY" \
  | jq -c '.coupon | {code, user_id, issued_at, starts_at, expires_at}'

#> ```json
#> {"code":"WEEK-KDYJ3E84","user_id":"ana","issued_at":"2026-11-30T07:31:00.714000Z",
#>  "starts_at":"2026-11-30T07:31:00.714000Z","expires_at":"2026-12-07T07:31:00.714000Z"}
#> ```
#>
#> The budget is spent: the definition shows `issued` and `remaining`, and a third coupon is
#> refused whole (nothing generated; `conflicts` says what is left):

http 200 "$BASE/v1/tenants/$TENANT/coupons/$WEEK" -H "X-API-Key: $KEY" \
  | jq -e -c 'select(.issued == 2 and .remaining == 0) | {issued, remaining}'
http 409:issuance_limit_reached -X POST "$BASE/v1/tenants/$TENANT/coupons/$WEEK/generate" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"user_ids": ["cleo"]}'

#> ```json
#> {"issued":2,"remaining":0}
#> {"error":"issuance_limit_reached","message":"0 coupon(s) left of the definition's issuance_limit.max_coupons (2); the request asks for 1: nothing was generated","details":[],"conflicts":[{"field":"user_ids","requested":1,"remaining":0,"max_coupons":2}]}
#> ```
#>
#> ## 3. A hold during checkout
#>
#> Ana's checkout holds her use while the payment runs (`ttl_seconds`: the hold ends by
#> itself if the checkout crashes). While held, the use is taken: a validate says so. The
#> payment succeeds and the checkout confirms: the hold becomes a redemption.

HOLD=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/reserve" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: cart-ana-1' \
  -d '{"code": "'"$ANA"'", "user_id": "ana", "ttl_seconds": 120, "metadata": {"cart": "ana-1"}}' \
  | jq -r .reservation_id)
http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/validate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$ANA"'", "user_id": "ana"}' \
  | jq -e -c 'select(.reason == "per_user_limit_reached") | {valid, reason}'
REDEMPTION=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/reservations/$HOLD/confirm" \
  -H "X-API-Key: $KEY" | jq -r .redemption_id)

#> ```json
#> {"valid":false,"reason":"per_user_limit_reached"}
#> ```
#>
#> Ben's checkout is abandoned: the release frees his use at once, and the released hold
#> cannot be confirmed any more:

BEN_HOLD=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/reserve" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$BEN"'", "user_id": "ben"}' \
  | jq -r .reservation_id)
http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/reservations/$BEN_HOLD/release" \
  -H "X-API-Key: $KEY" | jq -c '{reservation_id, status}'
http 409:reservation_released -X POST \
  "$BASE/v1/tenants/$TENANT/coupons/reservations/$BEN_HOLD/confirm" -H "X-API-Key: $KEY"

#> ```json
#> {"reservation_id":"307f3603-15ac-4c19-a7fc-5ef14551d4d7","status":"released"}
#> {"error":"reservation_released","message":"the reservation was released","details":[]}
#> ```
#>
#> ## 4. A cancelled order
#>
#> Ana's order is cancelled. The rollback takes a reason; this definition keeps the use
#> (`"use_kept": true`), so she cannot redeem the coupon again:

http 200 -X POST "$BASE/v1/tenants/$TENANT/coupons/redemptions/$REDEMPTION/rollback" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"reason": "order cancelled"}' \
  | jq -e -c 'select(.use_kept) | {status, rollback_reason, use_kept}'
http 409:per_user_limit_reached -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" \
  -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d '{"code": "'"$ANA"'", "user_id": "ana"}'

#> ```json
#> {"status":"rolled_back","rollback_reason":"order cancelled","use_kept":true}
#> ```
#>
#> ## 5. The code's timeline
#>
#> Support staff see the code's story in one place, oldest first, each step with its actor:
#> the bulk request that issued it (with its `X-Request-Id`), the hold, its confirmation, the
#> redemption, the rollback with its reason.

http 200 "$BASE/v1/tenants/$TENANT/codes/$ANA/history" -H "X-API-Key: $KEY" \
  | jq -c '.events[] | {type, actor: .actor.type, details}'
STEPS=$(http 200 "$BASE/v1/tenants/$TENANT/codes/$ANA/history" -H "X-API-Key: $KEY" \
  | jq -r '[.events[].type] | join(",")')
[[ $STEPS == issued,reserved,*redeemed*,rolled_back ]] || { echo "steps: $STEPS" >&2; false; }

#> ```json
#> {"type":"issued","actor":"api_key","details":{"source":"bulk","kind":"issued","definition_id":"e99a3a0a-f136-4805-86ac-ff22a8ad0410","user_id":"ana","request_id":"campaign-wave-1"}}
#> {"type":"reserved","actor":"api_key","details":{"user_id":"ana","expires_at":"2026-11-30T07:33:00.908000+00:00","metadata":{"cart":"ana-1"}}}
#> {"type":"redeemed","actor":"api_key","details":{"user_id":"ana","metadata":{"cart":"ana-1"},"reservation_id":"4227e4a2-f0e3-5ee0-bac9-366c2bf54b3c"}}
#> {"type":"released","actor":"api_key","details":{"reason":"confirmed","redemption_id":"c4f29cbb-be7b-5208-9eca-2d7667e15739"}}
#> {"type":"rolled_back","actor":"api_key","details":{"reason":"order cancelled","use_kept":true}}
#> ```
#>
#> ## 6. The records on the topics
#>
#> Every step above was announced (through the outbox, so a crash loses none): the issued
#> topic carries the two coupons and the budget's exhaustion, the redemptions topic the
#> holds, the redemption and the rollback. Consumers deduplicate on `event_id`
#> ([events.md](events.md)).

wait_for_records() {  # COUNT TOPIC_SETTING...: until this run has COUNT records on them
  local count=$1 found=""
  shift
  for _ in $(seq 90); do
    found=$(records "$@")
    [[ $(grep -c . <<<"$found") -ge $count ]] && break
    sleep 0.5
  done
  jq -c '{topic, key, event_type} + (if .reason then {reason} else {} end)' <<<"$found"
}
wait_for_records 9 topic_coupons_issued topic_coupons_redeemed

#> ```json
#> {"topic":"phoenix.coupons.issued","key":"ana","event_type":"coupon.issued"}
#> {"topic":"phoenix.coupons.issued","key":"e99a3a0a-f136-4805-86ac-ff22a8ad0410","event_type":"coupon.definition_exhausted"}
#> {"topic":"phoenix.coupons.issued","key":"ben","event_type":"coupon.issued"}
#> {"topic":"phoenix.coupons.redeemed","key":"ben","event_type":"coupon.reserved"}
#> {"topic":"phoenix.coupons.redeemed","key":"ben","event_type":"coupon.reservation_released","reason":"released"}
#> {"topic":"phoenix.coupons.redeemed","key":"ana","event_type":"coupon.reserved"}
#> {"topic":"phoenix.coupons.redeemed","key":"ana","event_type":"coupon.redeemed"}
#> {"topic":"phoenix.coupons.redeemed","key":"ana","event_type":"coupon.reservation_released","reason":"confirmed"}
#> {"topic":"phoenix.coupons.redeemed","key":"ana","event_type":"coupon.redemption_rolled_back","reason":"order cancelled"}
#> ```
#>
#> (Records of one key keep their order; the topics' partitions interleave the users. The
#> definition's exhaustion is keyed by the definition id.)
#>
#> ## 7. Reminders and expiry
#>
#> A flash reward valid 40 seconds from issuance, with a reminder 35 seconds before it ends.
#> The expiry scheduler (in the worker process of `make run`, or alone as
#> `phoenix-coupons scheduler`) publishes `coupon.expiring` at `expires_at - remind_before`
#> and `coupon.expired` at `expires_at` if the coupon still has uses left, on
#> `phoenix.coupons.expiry`, each within `PHOENIX_EXPIRY_SWEEP_SECONDS` (30 s by default) of
#> its time: this step takes up to a minute and a half with the defaults. (Of several steps
#> due at once, only the last is sent: a reminder is moot once the coupon has expired.)

VALID_FOR=${FLASH_VALID_FOR:-PT40S} REMIND_BEFORE=${FLASH_REMIND_BEFORE:-PT35S}  # the test's: shorter

FLASH=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Flash", "config": {"reward_item_id": "'"$ITEM"'", "code_format": "random",
       "usage_limit": {"limit_type": "per_user", "max_uses": 1},
       "valid_for": "'"$VALID_FOR"'", "remind_before": ["'"$REMIND_BEFORE"'"]}}' | jq -r .id)
DANA=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons/$FLASH/generate" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"user_ids": ["dana"]}' | jq -r '.coupons[0].code')
wait_for_records 2 topic_coupons_expiry

#> ```json
#> {"topic":"phoenix.coupons.expiry","key":"dana","event_type":"coupon.expiring"}
#> {"topic":"phoenix.coupons.expiry","key":"dana","event_type":"coupon.expired"}
#> ```
#>
#> The reminder as published (an expired event has the same fields but `remind_before`):

records topic_coupons_expiry | jq 'select(.event_type == "coupon.expiring") | del(.topic)'

#> ```json
#> {
#>   "key": "dana",
#>   "event_id": "5b9be92f-22eb-5efe-81ab-c19936dc20d3",
#>   "occurred_at": "2026-11-30T07:32:58.920000Z",
#>   "tenant_id": "acme-lifecycle2",
#>   "user_id": "dana",
#>   "coupon_id": "8ff6cc30-54d0-5dc3-8242-c721fa8bfa2d",
#>   "code": "NH5KUAQ8",
#>   "definition_id": "638b1191-02d6-4058-a60d-2e2d800673ef",
#>   "reward_item_id": "bb5cdc23-1051-41a6-bd07-c61155433b93",
#>   "expires_at": "2026-11-30T07:33:04.820000Z",
#>   "event_type": "coupon.expiring",
#>   "remind_before": "PT35S"
#> }
#> ```
#>
#> Both steps are in the code's timeline, by the scheduler, and the coupon is expired:

http 200 "$BASE/v1/tenants/$TENANT/codes/$DANA/history" -H "X-API-Key: $KEY" \
  | jq -e -c '[.events[] | {type, actor: .actor.type}] | select(length == 3)'
http 409:expired -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"code": "'"$DANA"'", "user_id": "dana"}'

#> ```json
#> [{"type":"issued","actor":"api_key"},{"type":"expiring","actor":"scheduler"},{"type":"expired","actor":"scheduler"}]
#> {"error":"expired","message":"the coupon has expired","details":[]}
#> ```

echo "lifecycle done: tenant $TENANT"
