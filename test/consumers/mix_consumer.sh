#!/usr/bin/env bash
# Proves ex_esdb works as a Mix path dependency: a throwaway application
# depends on this checkout, compiles it (which builds the NIF through
# make) and uses a store. Needs nothing from the network.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mix new consumer >/dev/null
cd consumer
cat > mix.exs <<MIX
defmodule Consumer.MixProject do
  use Mix.Project
  def project, do: [app: :consumer, version: "0.1.0", elixir: "~> 1.14", deps: deps()]
  def application, do: [extra_applications: [:logger]]
  defp deps, do: [{:ex_esdb, path: "$repo"}]
end
MIX
mix compile >/dev/null
out=$(mix run -e '
  {:ok, _} = ExESDB.System.start_link(store_id: :consumer, data_dir: "data", durability: :nosync)
  {:ok, 1} = ExESDB.Streams.append_events(:consumer, "s", 0, [%ExESDB.NewEvent{event_type: "t", data: %{ok: true}}])
  {:ok, [e]} = ExESDB.Streams.get_events(:consumer, "s", 1, 10)
  IO.puts("consumer read #{e.stream_id} v#{e.event_number} #{inspect(e.data)}")
')
echo "$out"
[[ "$out" == *"consumer read s v1 %{ok: true}"* ]] || { echo "mix consumer: FAILED"; exit 1; }
echo "mix consumer: ok"
