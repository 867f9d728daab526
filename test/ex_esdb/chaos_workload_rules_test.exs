defmodule ExESDB.ChaosWorkloadRulesTest do
  # Issue 14: what the chaos workload does around a store, checked against
  # a scripted target (ExESDB.ChaosWorkloadRulesTest.Scripted): an append
  # whose outcome was unknown is sent again marked `retry: true`, as the
  # documented client rule says; the final state is taken once every
  # replica holds the same events at the same positions and versions, not
  # just as many.
  use ExUnit.Case, async: false

  alias ExESDB.Chaos.Workload
  alias ExESDB.ChaosWorkloadRulesTest.Scripted

  setup do
    :ets.new(Scripted, [:named_table, :public, :duplicate_bag])
    :ok
  end

  test "an append with an unknown outcome is retried once, marked retry: true" do
    Workload.run(store: :scripted, target: Scripted, clients: 2, ops: 30, subscribers: 0)

    calls = for {:append, ids, opts} <- :ets.tab2list(Scripted), do: {ids, opts[:retry]}
    by_ids = Enum.group_by(calls, &elem(&1, 0), &elem(&1, 1))
    assert map_size(by_ids) > 10
    # the script answers outcome_unknown to the first try of every list
    for {_ids, marks} <- by_ids, do: assert(Enum.sort(marks) == [false, true])
  end

  test "settling waits until the replicas hold the same events, not just as many" do
    # node :b answers a state of the same size but another event at
    # position 2 for its first three reads
    :ets.insert(Scripted, {:diverge, :b, 3})
    replicas = Workload.settled([:a, :b], Scripted, :scripted, 5_000)
    assert replicas[:a] == replicas[:b]
    assert length(calls(:b)) == 4
  end

  defp calls(node), do: for({:final_state, ^node} = c <- :ets.tab2list(Scripted), do: c)

  defmodule Scripted do
    @moduledoc false
    @behaviour ExESDB.Chaos.Target

    @impl true
    def append(_node, _store, _stream, _expected, events, opts) do
      ids = Enum.map(events, & &1.event_id)
      :ets.insert(__MODULE__, {:append, ids, opts})
      if opts[:retry], do: {:ok, 1}, else: {:error, :outcome_unknown}
    end

    @impl true
    def read_stream(_node, _store, _stream), do: {:ok, []}

    @impl true
    def consistency, do: :local

    @impl true
    def final_state(node, _store) do
      :ets.insert(__MODULE__, {:final_state, node})
      second = if diverging?(node), do: event("y", 2), else: event("x", 2)
      %{all: [event("w", 1), second], streams: %{}}
    end

    defp diverging?(node) do
      case :ets.lookup(__MODULE__, :diverge) do
        [{:diverge, ^node, n}] when n > 0 ->
          :ets.delete(__MODULE__, :diverge)
          :ets.insert(__MODULE__, {:diverge, node, n - 1})
          true

        _ ->
          false
      end
    end

    defp event(id, pos), do: %{event_id: id, stream_id: "s", version: pos, position: pos}

    @impl true
    def subscribe(_node, _store, _name, _selector, _pid), do: {:ok, :sub}

    @impl true
    def ack(_node, _store, _sub, _event), do: :ok
  end
end
