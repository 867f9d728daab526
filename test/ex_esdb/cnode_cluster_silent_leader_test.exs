defmodule ExESDB.CNodeClusterSilentLeaderTest do
  # A write through the C node backend whose leading C node falls silent
  # (SIGSTOP) while the try is out: once another C node of the cluster
  # reports a newer term with another leader, the try is given up and
  # sent again, marked, to that leader; before, the backend waited for
  # the silent one up to the caller's whole timeout and answered
  # :outcome_unknown. The old try is fenced with the old term: after
  # SIGCONT it is refused or cannot commit, so the event is there once.
  # Three C nodes (priv/ex_esdb_cnode --raft-*, election timeout 500 ms).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams}
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @timeout 30_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnsilent")}
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)
  defp info(cn), do: elem(call(cn.name, {:cluster_info}), 1)

  defp ids(cn, stream) do
    case call(cn.name, {:read_stream, stream, 0, 100, :forward}) do
      {:ok, tuples, _} -> Enum.map(tuples, &elem(&1, 3))
      {:error, :stream_not_found} -> []
    end
  end

  defp signal(cn, sig), do: {_, 0} = System.cmd("kill", ["-#{sig}", "#{cn.os_pid}"])

  test "a write whose leader is stopped goes on at the new leader well before its timeout; " <>
         "no duplicate once the old leader runs again",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    store = :"cnsilent_#{System.unique_integer([:positive])}"
    opts = CNodeCluster.system_opts(store, dir, f, cns) ++ [timeout: @timeout]
    start_supervised!({ExESDB.System, opts})

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    # a first write: this caller's next try goes to the leader
    assert {:ok, 1} =
             Streams.append_events(store, "silent", :any, [NewEvent.new(event_type: "t", data: 0)])

    term = info(l).term
    ev = NewEvent.new(event_type: "t", data: 1)
    {:ok, id} = ExESDB.UUID.to_binary(ev.event_id)
    pause_os_process!(l.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{l.os_pid}"]) end)

    {us, reply} = :timer.tc(fn -> Streams.append_events(store, "silent", :any, [ev]) end)
    ms = div(us, 1000)

    # before: {:error, :outcome_unknown} after the whole @timeout
    assert reply == {:ok, 2}, "#{inspect(reply)} after #{ms} ms"
    assert ms < div(@timeout, 2), "took #{ms} ms with a #{@timeout} ms timeout"

    new = CNodeCluster.leader(cns -- [l])
    assert info(new).term > term

    # the old leader runs again: it reads the old try (and its cancel),
    # learns the new term and catches up
    signal(l, "CONT")
    target = info(new).applied

    assert wait_until(fn -> match?(%{applied: a} when a >= target, info(l)) end, 60_000)

    # one more write through the cluster: every C node has it and the
    # event of the stopped try once
    assert {:ok, 3} =
             Streams.append_events(store, "silent", :any, [NewEvent.new(event_type: "t", data: 2)])

    for cn <- cns do
      assert wait_until(fn -> length(ids(cn, "silent")) >= 3 end, 60_000)
      got = ids(cn, "silent")
      assert length(got) == 3 and Enum.uniq(got) == got, "#{cn.name}: #{inspect(got)}"
      assert Enum.count(got, &(&1 == id)) == 1
    end
  end
end
