defmodule ExESDB.CNodeClusterWipedTest do
  # A C node replica whose data directory was lost (kill -9, rm -rf) and
  # that is started again with its old --raft-id and --raft-member list
  # must not come back as that voter with an empty log and term 0 (it
  # could vote twice in a term): it asks the other members, finds a
  # cluster, and refuses to start (exit status 3, a line saying why).
  # Real C nodes, raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  @bin CNodeCluster.bin()

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cncw")}
  end

  test "a replica killed and wiped refuses to start as its old voter while the others " <>
         "run the cluster",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    e = {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}
    assert {:ok, 1, _} = CNodeCluster.call(l.name, {:append, "s", :any, [e]})
    [f | _] = cns -- [l]

    # every member records itself once it has a leader (a node wiped
    # before that is not recognised: docs/CLUSTER.md)
    for cn <- cns,
        do:
          wait_until(fn ->
            match?({:ok, _}, CNodeCluster.call(l.name, {:checkpoint_get, "ex_esdb:cnode:#{cn.id}"}))
          end)

    [store] = Path.wildcard(Path.join([dir, "cnodes*", "store#{f.id}"]))
    ref = Port.monitor(f.port)
    System.cmd("kill", ["-9", "#{f.os_pid}"])
    assert_receive {:DOWN, ^ref, :port, _, _}, 10_000
    wait_until(fn -> not File.exists?("/proc/#{f.os_pid}") end)
    File.rm_rf!(store)

    args = CNodeCluster.replica_args(f, store, cns)

    {port, os_pid} = CNodeCluster.open(@bin, args)
    CNodeCluster.kill_at_exit(os_pid)

    {status, lines} = outcome(port, [])
    out = Enum.join(lines, "\n")

    assert status == 3, "expected exit status 3, got #{inspect(status)}; it said:\n#{out}"
    assert out =~ "was a member"
    assert out =~ "new member"
    # it left no raft state behind to come back as the old voter later
    refute File.exists?(Path.join([store, "raft", "node_id"]))

    # the other two go on
    assert {:ok, 2, _} =
             CNodeCluster.call(
               CNodeCluster.leader(cns -- [f]).name,
               {:append, "s", :any, [{ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}]}
             )
  end

  test "a replica started under another member's --raft-id (its raft/node_id names a " <>
         "member of the list: another's store, or the list reordered) refuses once, exit 4",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    [store] = Path.wildcard(Path.join([dir, "cnodes*", "store#{f.id}"]))
    ref = Port.monitor(f.port)
    System.cmd("kill", ["-9", "#{f.os_pid}"])
    assert_receive {:DOWN, ^ref, :port, _, _}, 10_000
    wait_until(fn -> not File.exists?("/proc/#{f.os_pid}") end)

    # before: the replica refused to open (exit 1, "invalid argument"),
    # which a launcher starts again in a loop
    args = CNodeCluster.replica_args(%{f | id: g.id}, store, cns)
    {port, os_pid} = CNodeCluster.open(@bin, args)
    CNodeCluster.kill_at_exit(os_pid)
    {status, lines} = outcome(port, [])
    out = Enum.join(lines, "\n")
    assert status == 4, "expected exit status 4, got #{inspect(status)}; it said:\n#{out}"
    assert out =~ "raft id #{f.id}"
    assert out =~ "--raft-id #{g.id}"
    assert File.read!(Path.join([store, "raft", "node_id"])) == "#{f.id}\n"

    # under its own id it starts, as the member it is
    {port, os_pid} = CNodeCluster.open(@bin, CNodeCluster.replica_args(f, store, cns))
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, _} = outcome(port, [])
    assert {:ok, 1} = CNodeCluster.call(f.name, {:hello, 1})
    assert {:ok, %{id: id}} = CNodeCluster.call(f.name, {:cluster_info})
    assert id == f.id
  end

  # {exit status | :ready, lines said}
  defp outcome(port, lines) do
    receive do
      {^port, {:data, {:eol, "ready " <> _ = l}}} -> {:ready, Enum.reverse([l | lines])}
      {^port, {:data, {_, l}}} -> outcome(port, [l | lines])
      {^port, {:exit_status, s}} -> {s, Enum.reverse(lines)}
    after
      30_000 -> {:timeout, Enum.reverse(lines)}
    end
  end
end
