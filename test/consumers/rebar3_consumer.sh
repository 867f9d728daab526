#!/usr/bin/env bash
# ex_esdb as a rebar3 dependency: copy this working tree (without build
# output) into _checkouts/ of a throwaway rebar3 app, build it there (the
# pre_hook must build the NIF from scratch), then open a store, append and
# read back through the consumer's code. Downloads nothing. Exits nonzero
# on failure; the last line says PASS or FAIL. KEEP_TMP=1 keeps the dir.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ex_esdb_rebar3_consumer.XXXXXX")"
STEP="setup"

finish() {
  local rc=$?
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  if [ $rc -eq 0 ]; then
    echo "rebar3 consumer: PASS"
  else
    echo "rebar3 consumer: FAIL at step '$STEP' (exit $rc)"
  fi
  exit $rc
}
trap finish EXIT

# No hex registry, no caller's build dir: a checkout dep must suffice.
export REBAR_OFFLINE=1
unset REBAR_BASE_DIR REBAR_PROFILE ERL_LIBS

STEP="copy ex_esdb"
APP="$WORK/consumer"
mkdir -p "$APP/src" "$APP/_checkouts/ex_esdb"
# Build output is left behind so the copy proves the NIF builds.
tar -C "$REPO" -cf - \
  --exclude=./.git --exclude=./_build --exclude=./build --exclude=./deps \
  --exclude=./data --exclude='./priv/*.so' --exclude=./priv/ex_esdb_ctl \
  --exclude=./rebar.lock . | tar -C "$APP/_checkouts/ex_esdb" -xf -

STEP="write consumer"
cat >"$APP/rebar.config" <<'EOF'
{erl_opts, [debug_info, warnings_as_errors]}.
{deps, [ex_esdb]}.
EOF
cat >"$APP/src/consumer.app.src" <<'EOF'
{application, consumer,
 [{description, "ex_esdb rebar3 consumer check"},
  {vsn, "0.0.1"},
  {applications, [kernel, stdlib, ex_esdb]}]}.
EOF
cat >"$APP/src/consumer.erl" <<'EOF'
-module(consumer).
-export([check/1]).

%% Open a store in Dir, append two events, read them back and reopen.
-spec check(file:filename()) -> {ok, [binary()]}.
check(Dir) ->
    {ok, S} = ex_esdb:open(Dir, #{durability => sync}),
    {ok, #{version := 2, position := 1}} =
        ex_esdb:append(S, <<"account-1">>, no_stream,
                       [#{event_type => <<"opened">>, data => <<"hello">>},
                        #{event_type => <<"deposited">>, data => <<"world">>}]),
    ok = ex_esdb:close(S),
    {ok, S2} = ex_esdb:open(Dir, #{create => false}),
    {ok, Events} = ex_esdb:read_stream(S2, <<"account-1">>, 0, 10, forward),
    ok = ex_esdb:close(S2),
    {ok, [D || #{data := D} <- Events]}.
EOF

STEP="rebar3 compile"
(cd "$APP" && rebar3 compile)

STEP="NIF built by the pre_hook"
test -f "$APP/_checkouts/ex_esdb/priv/ex_esdb_nif.so"

STEP="run"
OUT="$(cd "$APP" && ERL_LIBS="$APP/_build/default/checkouts:$APP/_build/default/lib" \
  erl -noshell -eval '
    {ok, _} = application:ensure_all_started(consumer),
    io:format("~p~n", [consumer:check("'"$WORK"'/store")]),
    halt().')"
echo "$OUT"

STEP="check output"
[ "$OUT" = '{ok,[<<"hello">>,<<"world">>]}' ]
