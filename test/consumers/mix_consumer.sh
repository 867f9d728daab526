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

# An application with both ex_esdb and Commanded, in either order, gets
# the adapter with its behaviour: ex_esdb declares Commanded as an optional
# dependency, so Mix compiles Commanded first. Commanded comes from Hex,
# which is not reachable here: a stub with its name, version and behaviour
# module stands in for Commanded, and a small SCM registered by the
# application's mix.exs stands in for Hex (it resolves the version-only
# dependency {:commanded, "~> 1.4"} to the stub).
mkdir -p "$work/commanded/lib"
cat > "$work/commanded/mix.exs" <<'MIX'
defmodule Commanded.MixProject do
  use Mix.Project
  def project, do: [app: :commanded, version: "1.4.9", elixir: "~> 1.14", deps: []]
end
MIX
cat > "$work/commanded/lib/adapter.ex" <<'EX'
defmodule Commanded.EventStore.Adapter do
  @callback child_spec(module(), keyword()) :: {:ok, [term()], map()}
end
EX
for order in "ex_esdb commanded" "commanded ex_esdb"; do
  app="$work/with_commanded_${order// /_}"
  mkdir -p "$app/lib"
  deps=""
  for d in $order; do
    case $d in
      ex_esdb) deps="$deps{:ex_esdb, path: \"$repo\"}, " ;;
      commanded) deps="$deps{:commanded, \"~> 1.4\"}, " ;;
    esac
  done
  cat > "$app/mix.exs" <<MIX
defmodule StandInHex do
  @behaviour Mix.SCM
  def fetchable?, do: false
  def format(_), do: "stand-in hex"
  def format_lock(_), do: nil
  def accepts_options(:commanded, opts) do
    if Enum.any?([:path, :git], &Keyword.has_key?(opts, &1)),
      do: nil,
      else: Mix.SCM.Path.accepts_options(:commanded, Keyword.put(opts, :path, "$work/commanded"))
  end
  def accepts_options(_, _), do: nil
  defdelegate checked_out?(opts), to: Mix.SCM.Path
  defdelegate lock_status(opts), to: Mix.SCM.Path
  defdelegate equal?(a, b), to: Mix.SCM.Path
  defdelegate managers(opts), to: Mix.SCM.Path
  defdelegate checkout(opts), to: Mix.SCM.Path
  defdelegate update(opts), to: Mix.SCM.Path
end
unless StandInHex in Mix.SCM.available(), do: Mix.SCM.prepend(StandInHex)

defmodule WithCommanded.MixProject do
  use Mix.Project
  def project, do: [app: :with_commanded, version: "0.1.0", elixir: "~> 1.14", deps: [${deps%, }]]
end
MIX
  out=$(cd "$app" && mix run -e '
    behaviours = ExESDB.Commanded.Adapter.module_info(:attributes)[:behaviour] || []
    IO.puts("adapter behaviours: #{inspect(behaviours)}")
  ')
  echo "$out"
  [[ "$out" == *"[Commanded.EventStore.Adapter]"* ]] ||
    { echo "mix consumer ($order): FAILED, no behaviour"; exit 1; }
done
echo "mix consumer with Commanded: ok"
