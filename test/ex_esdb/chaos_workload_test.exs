defmodule ExESDB.ChaosWorkloadTest do
  # Issue 14: the workload against the real single-node store, checked.
  # The store must pass; the same history against a final state missing
  # one acknowledged event must not. Scaled by ESDB_CHAOS_CLIENTS,
  # ESDB_CHAOS_OPS (per client) or ESDB_CHAOS_SECONDS; ESDB_CHAOS_RESULTS
  # names a directory to keep the results in (`make chaos`).
  use ExUnit.Case, async: true

  alias ExESDB.Chaos.{Checker, Workload}
  alias ExESDB.Test.NifBackend

  @moduletag timeout: :infinity

  setup context, do: NifBackend.start_store(context)

  test "a workload on the single-node store passes the checker", %{store: store} = ctx do
    results = Path.join(ctx.data_dir, "results")

    opts =
      [store: store, clients: 4, ops: 60, subscribers: 2, results_dir: results, label: "single"]
      |> Keyword.merge(Workload.env_opts())

    %{verdict: v, history: ops, replicas: replicas, results: path} = Workload.run(opts)

    assert v.valid?, inspect(v.anomalies, pretty: true, limit: 20)
    assert v.stats.lost == 0 and v.stats.duplicates == 0
    assert v.stats.acknowledged > 0 and v.stats.reads > 0
    assert v.stats.deliveries >= 2 * v.stats.events[node()]

    # every expected-version kind acknowledged, and refused, at least once
    acked = for %{type: :append, outcome: :ok, expected: e} <- ops, do: kind(e)
    assert Enum.sort(Enum.uniq(acked)) == [:any, :exact, :no_stream, :stream_exists]
    refused = for %{type: :append, outcome: :fail, result: {:error, r}} <- ops, do: r
    assert :wrong_expected_version in refused

    # an acknowledged event dropped from the final state is caught
    %{event_ids: [id | _]} = Enum.find(ops, &(&1.type == :append and &1.outcome == :ok))
    lost = Map.new(replicas, fn {n, s} -> {n, drop(s, id)} end)
    bad = Checker.check(ops, lost)
    refute bad.valid?
    assert :lost_event in Map.keys(bad.counts)

    for f <- ["history.jsonl", "anomalies.jsonl", "summary.jsonl"],
        do: assert(File.exists?(Path.join(path, f)))

    summary = File.read!(Path.join(path, "summary.jsonl"))
    assert summary =~ ~s("valid":true) and summary =~ ~s("lost":0)

    assert length(File.read!(Path.join(path, "history.jsonl")) |> String.split("\n", trim: true)) ==
             length(ops)

    if dir = System.get_env("ESDB_CHAOS_RESULTS") do
      IO.puts("chaos results: #{path} (#{dir})")
    end
  end

  defp kind(e) when is_integer(e), do: :exact
  defp kind(e), do: e

  # the state without the event `id` (positions and versions left as read)
  defp drop(state, id) do
    keep = &Enum.reject(&1, fn e -> e.event_id == id end)
    %{all: keep.(state.all), streams: Map.new(state.streams, fn {s, evs} -> {s, keep.(evs)} end)}
  end
end
