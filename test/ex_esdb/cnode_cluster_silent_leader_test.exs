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

  defp ids(cn, stream), do: CNodeCluster.stream_ids(cn.name, stream)

  defp signal(cn, sig), do: {_, 0} = System.cmd("kill", ["-#{sig}", "#{cn.os_pid}"])

  test "a write whose leader is stopped goes on at the new leader well before its timeout; " <>
         "no duplicate once the old leader runs again",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    store = :"cnsilent_#{ExESDB.Test.Unique.id()}"
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

  # A cluster of three C nodes and a store whose own C node is a
  # follower; the relays of the others up.
  defp cluster_store(dir, name) do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    store = :"#{name}_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, dir, f, cns) ++ [timeout: @timeout]
    start_supervised!({ExESDB.System, opts})

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    {cns, l, f, store}
  end

  defp append(store, stream, data) do
    {us, reply} =
      :timer.tc(fn ->
        Streams.append_events(store, stream, :any, [NewEvent.new(event_type: "t", data: data)])
      end)

    {div(us, 1000), reply}
  end

  # A long-lived caller: its writes remember the leader that took the
  # last one (the process dictionary).
  defp writer(store) do
    receive do
      {:append, from, stream, data} ->
        send(from, {:appended, self(), append(store, stream, data)})
        writer(store)
    end
  end

  defp append_from(pid, stream, data) do
    send(pid, {:append, self(), stream, data})

    receive do
      {:appended, ^pid, answer} -> answer
    after
      2 * @timeout -> flunk("no answer from writer #{inspect(pid)}")
    end
  end

  defp fresh_append(store, stream, data),
    do: Task.async(fn -> append(store, stream, data) end) |> Task.await(2 * @timeout)

  # After SIGCONT: every C node has `n` events in `stream`, each once.
  defp assert_once_everywhere(cns, stream, n) do
    for cn <- cns do
      assert wait_until(fn -> length(ids(cn, stream)) >= n end, 60_000)
      got = ids(cn, stream)
      assert length(got) == n and Enum.uniq(got) == got, "#{cn.name}: #{inspect(got)}"
    end
  end

  test "a second long-lived writer whose remembered leader is stopped goes on too, " <>
         "after another writer moved on",
       %{dir: dir} do
    {cns, l, _f, store} = cluster_store(dir, "cnsilent2")
    p1 = spawn_link(fn -> writer(store) end)
    p2 = spawn_link(fn -> writer(store) end)
    # both remember the leader
    assert {_, {:ok, 1}} = append_from(p1, "s2", 0)
    assert {_, {:ok, 2}} = append_from(p2, "s2", 1)

    pause_os_process!(l.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{l.os_pid}"]) end)

    {ms1, r1} = append_from(p1, "s2", 2)
    assert r1 == {:ok, 3}, "p1: #{inspect(r1)} after #{ms1} ms"
    # before: p2 asked the stopped leader its term (p1's move had reset
    # it) and waited out its whole timeout: {:error, :timeout}
    {ms2, r2} = append_from(p2, "s2", 3)
    assert r2 == {:ok, 4}, "p2: #{inspect(r2)} after #{ms2} ms"
    assert ms2 < div(@timeout, 2), "p2 took #{ms2} ms with a #{@timeout} ms timeout"

    signal(l, "CONT")
    assert_once_everywhere(cns, "s2", 4)
  end

  test "a write whose own C node (a follower) is stopped goes to the leader " <>
         "well before its timeout",
       %{dir: dir} do
    {cns, _l, f, store} = cluster_store(dir, "cnsilenthome")
    # the own C node refused it (not_leader) and named the leader
    assert {_, {:ok, 1}} = append(store, "sh", 0)

    pause_os_process!(f.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{f.os_pid}"]) end)

    # a fresh process starts at the own C node; before: it asked the
    # stopped one its term and waited out its whole timeout
    {ms, reply} = fresh_append(store, "sh", 1)
    assert reply == {:ok, 2}, "#{inspect(reply)} after #{ms} ms"
    assert ms < div(@timeout, 2), "took #{ms} ms with a #{@timeout} ms timeout"

    signal(f, "CONT")
    assert_once_everywhere(cns, "sh", 2)
  end

  test "a first write whose own C node (a follower) is stopped before any write " <>
         "goes to the leader well before its timeout",
       %{dir: dir} do
    {cns, _l, f, store} = cluster_store(dir, "cnsilentfirst")
    pause_os_process!(f.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{f.os_pid}"]) end)

    # no term known for the own C node yet: it is asked, within a slice
    {ms, reply} = fresh_append(store, "sf", 0)
    assert reply == {:ok, 1}, "#{inspect(reply)} after #{ms} ms"
    assert ms < div(@timeout, 2), "took #{ms} ms with a #{@timeout} ms timeout"

    signal(f, "CONT")
    assert_once_everywhere(cns, "sf", 1)
  end
end
