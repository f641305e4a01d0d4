#!/usr/bin/env bash
#> # A campaign, from a CSV file to an export
#>
#> A marketing team's campaign of codes for a list of users: a definition whose codes follow
#> a pattern, a generation job submitted from a CSV file with the command line (its progress,
#> its summary and the rows it refused), the job read over the API, and every code of the
#> campaign exported to a file; then printed store cards, a job of codes owned by no user,
#> and their export. This page is generated from [`campaign.sh`](campaign.sh)
#> (`make docs`), and `tests/e2e/test_walkthrough.py` runs that script against a stack
#> started as `make run` starts it: every command below runs as written.
#>
#> Start the service (`make run`), then from the repository root, with the same
#> `PHOENIX_DATA_DIR`: `bash docs/campaign.sh`. Helpers: [walk-lib.sh](walk-lib.sh). Outputs
#> shown are from a real run; ids and times differ in yours.
#>
#> ## 0. Setup

set -euo pipefail  # stop at the first failure (leave it out when pasting into your shell)

source docs/walk-lib.sh  # PY, BASE, TENANT, http, records
for _ in $(seq 120); do
  curl -sf "$BASE/readyz" >/dev/null && break
  sleep 0.5
done
KEY=$("$PY" -m phoenix_coupons api-key create --name campaign \
  --scopes coupons:read,coupons:write,rewards:write | jq -r .key)
export PHOENIX_API_KEY=$KEY PHOENIX_API_URL=$BASE  # what the `codes` commands use
ITEM=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/rewards" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "10% off", "reward_type": "discount", "payload": {"percent": 10}}' \
  | jq -r .item_id)
WORK=$(mktemp -d)  # the campaign's files

#> ## 1. A definition whose codes follow a pattern
#>
#> Printed cards want codes people can type: `CARD-` then four digits and four letters
#> (`code_pattern`, [api.md](api.md#code-patterns-and-character-sets)); the `unambiguous`
#> character set (the default) leaves out look-alikes (0/O, 1/I/L).

DEF=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Winter cards", "config": {"reward_item_id": "'"$ITEM"'", "code_format": "random",
       "code_pattern": "CARD-####-????", "usage_limit": {"limit_type": "per_user", "max_uses": 1}}}' \
  | jq -r .id)

#> ## 2. The list of users, as a CSV file
#>
#> One row per user, with a `metadata.<key>` column carried onto each coupon. Two rows are
#> wrong on purpose: a user listed twice and a blank user id.

{
  echo "user_id,metadata.store"
  for i in $(seq 1 500); do echo "member-$i,store-$((i % 7))"; done
  echo "member-42,store-0"
  echo " ,store-1"
} > "$WORK/members.csv"
wc -l < "$WORK/members.csv"

#> ```
#> 503
#> ```
#>
#> ## 3. The job, from the command line
#>
#> `codes generate` uploads the file as a generation job and follows it until it ends: a
#> progress bar on a terminal (generated / total, rate, time left), one line per change
#> otherwise (as here). It exits 1 when some rows were refused, listing them; the others'
#> coupons are made. Ctrl-C would leave the job running and say how to cancel it.

STATUS=0
"$PY" -m phoenix_coupons codes generate "$DEF" --tenant "$TENANT" --users "$WORK/members.csv" \
  > "$WORK/generate.out" 2>&1 || STATUS=$?
cat "$WORK/generate.out"
[[ $STATUS == 1 ]] || { echo "expected exit 1 (rows refused), got $STATUS" >&2; false; }
JOB=$(grep -o 'job [0-9a-f-]*' "$WORK/generate.out" | head -1 | cut -d' ' -f2)

#> ```
#> job 1ebb5e37-48c6-5902-a932-eea4398d6160: 502 rows queued
#> queued: generated 0/502, failed 0, 0 rows/s, time left unknown
#> succeeded: generated 500/502, failed 2, 455 rows/s, 0 s left
#> job 1ebb5e37-48c6-5902-a932-eea4398d6160 succeeded: 500 generated, 2 failed of 502
#> row errors
#> ┏━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
#> ┃ line ┃ value     ┃ reason                                 ┃
#> ┡━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
#> │ 502  │ member-42 │ duplicate row: user_id repeats line 43 │
#> │ 503  │           │ user_id must not be blank              │
#> └──────┴───────────┴────────────────────────────────────────┘
#> ```
#>
#> The job as the API tells it (`GET .../generation-jobs/{job_id}`):

http 200 "$BASE/v1/tenants/$TENANT/coupons/$DEF/generation-jobs/$JOB" -H "X-API-Key: $KEY" \
  | jq -e -c 'select(.status == "succeeded" and .generated == 500 and .failed == 2)
              | {status, total, generated, failed, errors}'

#> ```json
#> {"status":"succeeded","total":502,"generated":500,"failed":2,"errors":[{"line":502,"value":"member-42","reason":"duplicate row: user_id repeats line 43"},{"line":503,"value":"","reason":"user_id must not be blank"}]}
#> ```
#>
#> ## 4. Every code, exported
#>
#> `codes export` downloads the definition's codes (CSV, or JSON Lines for a `.jsonl` file)
#> with a progress bar, into a file written whole or not at all:

"$PY" -m phoenix_coupons codes export "$DEF" --tenant "$TENANT" -o "$WORK/codes.csv" 2>&1 \
  | tail -1
head -3 "$WORK/codes.csv"
ROWS=$(($(wc -l < "$WORK/codes.csv") - 1))
PATTERNED=$(tail -n +2 "$WORK/codes.csv" | cut -d, -f1 | grep -cE '^CARD-[2-9]{4}-[A-Z]{4}$')
[[ $ROWS == 500 && $PATTERNED == 500 ]] || { echo "exported $ROWS, $PATTERNED patterned" >&2; false; }

#> ```
#> exported 500 codes of 2d1dd27a-d422-4050-a155-3b2a14c57fae to /tmp/tmp.CctKTcAN31/codes.csv (csv)
#> code,kind,user_id,status,starts_at,expires_at,uses,last_redeemed_at,metadata
#> CARD-3954-GKYC,issued,member-214,active,,,0,,"{""store"":""store-4""}"
#> CARD-5438-ZNZZ,issued,member-400,active,,,0,,"{""store"":""store-1""}"
#> ```
#>
#> The export is sorted newest first (then by coupon id); `uses` counts the redemptions held
#> against each code's limit ([api.md](api.md#exporting-a-definitions-codes)).
#>
#> ## 5. Printed cards: codes owned by no user
#>
#> Cards handed out in stores carry codes nobody owns yet: whoever presents one first
#> redeems it (`config.uses_per_code` times, 1 by default), and the definition's
#> `usage_limit` holds on top (here one card per person). `--count N` submits a job of N
#> unassigned codes ([api.md](api.md#generation-jobs)); no file is needed.

CARDS=$(http 201 -X POST "$BASE/v1/tenants/$TENANT/coupons" -H "X-API-Key: $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"name": "Winter store cards", "config": {"reward_item_id": "'"$ITEM"'",
       "code_format": "random", "code_pattern": "STORE-####-????",
       "usage_limit": {"limit_type": "per_user", "max_uses": 1}}}' \
  | jq -r .id)
"$PY" -m phoenix_coupons codes generate "$CARDS" --tenant "$TENANT" --count 300

#> ```
#> job 3708dc89-364a-503b-acea-01f744983c67: 300 unassigned codes queued
#> queued: generated 0/300, failed 0, 0 rows/s, time left unknown
#> succeeded: generated 300/300, failed 0, 560 rows/s, 0 s left
#> job 3708dc89-364a-503b-acea-01f744983c67 succeeded: 300 generated, 0 failed of 300
#> ```
#>
#> Their export: `kind` is `unassigned` and `user_id` empty (null in JSON Lines): no user
#> owns them.

"$PY" -m phoenix_coupons codes export "$CARDS" --tenant "$TENANT" -o "$WORK/cards.jsonl" 2>&1 \
  | tail -1
head -2 "$WORK/cards.jsonl"
jq -s -e -c 'select(length == 300 and all(.kind == "unassigned" and .user_id == null))
             | group_by(.kind) | map({kind: .[0].kind, codes: length})' "$WORK/cards.jsonl"

#> ```
#> exported 300 codes of d2e6cdcc-898d-489a-869e-dfabc7be120d to /tmp/tmp.uhpdeA88kr/cards.jsonl (jsonl)
#> {"code":"STORE-3587-JASA","kind":"unassigned","user_id":null,"status":"active","starts_at":null,"expires_at":null,"uses":0,"last_redeemed_at":null,"metadata":null}
#> {"code":"STORE-3424-RVHM","kind":"unassigned","user_id":null,"status":"active","starts_at":null,"expires_at":null,"uses":0,"last_redeemed_at":null,"metadata":null}
#> [{"kind":"unassigned","codes":300}]
#> ```
#>
#> Each card was announced once on `phoenix.coupons.issued` with `user_id` null, the record
#> keyed by its coupon id ([events.md](events.md#unassigned-codes)); the relay sends them
#> in batches, so the walk waits until all 300 are there.

for _ in $(seq 60); do
  ISSUED=$(records topic_coupons_issued \
    | jq -c --arg d "$CARDS" 'select(.definition_id == $d and .event_type == "coupon.issued")')
  [[ $(grep -c . <<<"$ISSUED") == 300 ]] && break
  sleep 0.5
done
head -1 <<<"$ISSUED" | jq -c '{key, event_type, user_id, kind, coupon_id, code}'
jq -s -e 'length == 300 and all(.key == .coupon_id and .user_id == null)
          and (map(.coupon_id) | unique | length == 300)' <<<"$ISSUED" >/dev/null

#> ```json
#> {"key":"027e6d13-f94f-5c07-8ebf-f511c0ebcb98","event_type":"coupon.issued","user_id":null,"kind":"unassigned","coupon_id":"027e6d13-f94f-5c07-8ebf-f511c0ebcb98","code":"STORE-2229-PSNA"}
#> ```

#>
#> ## 6. Redeeming a card
#>
#> Whoever presents a card first redeems it. The card is then used up for everyone
#> (`code_limit_reached`), and the definition's `per_user` limit keeps Ana from using a
#> second card ([api.md](api.md#redemption)). The stores' checkout has a key of its own,
#> with the one scope it needs.

CHECKOUT=$("$PY" -m phoenix_coupons api-key create --name store-checkout \
  --scopes coupons:redeem --tenant "$TENANT" | jq -r .key)
CARD1=$(jq -r -s '.[0].code' "$WORK/cards.jsonl")
CARD2=$(jq -r -s '.[1].code' "$WORK/cards.jsonl")
redeem() {
  http "$1" -X POST "$BASE/v1/tenants/$TENANT/coupons/redeem" -H "X-API-Key: $CHECKOUT" \
    -H 'Content-Type: application/json' -d '{"code": "'"$2"'", "user_id": "'"$3"'"}'
}
redeem 201 "$CARD1" ana | jq -c '{status, user_id, kind: .coupon.kind}'
redeem 409:code_limit_reached "$CARD1" ben | jq -c '{error}'
redeem 409:per_user_limit_reached "$CARD2" ana | jq -c '{error}'
redeem 201 "$CARD2" ben | jq -c '{status, user_id, kind: .coupon.kind}'

#> ```json
#> {"status":"redeemed","user_id":"ana","kind":"unassigned"}
#> {"error":"code_limit_reached"}
#> {"error":"per_user_limit_reached"}
#> {"status":"redeemed","user_id":"ben","kind":"unassigned"}
#> ```

rm -r "$WORK"
echo "campaign done: tenant $TENANT"
