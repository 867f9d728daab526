defmodule ExESDB.CNodeClusterRejoinTest do
  # A C node replica whose data directory was lost, started again with
  # its old --raft-id and --raft-member list and `--raft-wiped rejoin`:
  # instead of refusing (exit status 3, cnode_cluster_wiped_test.exs) it
  # comes back as a new member: the cluster removes its old raft id and
  # adds it under a new one (a spare), it pulls a copy of a member's
  # store, and it is made a voter. The cluster keeps writing meanwhile.
  # Started once more with the same arguments (its data now there), it
  # comes back as that new member, and so without the flag; wiped again, it refuses without the
  # flag and with it comes back as yet another new member. Real C nodes,
  # raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnrejoin")}
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)
  defp ev, do: {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}

  # An append through whichever C node leads among `cns`: its version.
  # One event, the same in every try: a try that timed out after it was
  # applied is recognised at the stream's tail, not written twice.
  defp append(cns, stream) do
    e = ev()

    wait_until(
      fn ->
        case call(CNodeCluster.leader(cns).name, {:append, stream, :any, [e]}) do
          {:ok, v, _} -> v
          _ -> nil
        end
      end,
      30_000
    )
  end

  defp members(cns) do
    wait_until(fn ->
      case call(CNodeCluster.leader(cns).name, {:cluster_members}) do
        {:ok, ms} -> ms
        _ -> nil
      end
    end)
  end

  test "a wiped replica started with --raft-wiped rejoin comes back as a new voter, " <>
         "catches up, and the cluster keeps writing",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    for _ <- 1..5, do: append(cns, "s")
    [f, g] = cns -- [l]

    # every member records itself once it has a leader
    for cn <- cns,
        do:
          wait_until(fn ->
            match?({:ok, _}, call(l.name, {:checkpoint_get, "ex_esdb:cnode:#{cn.id}"}))
          end)

    [store] = Path.wildcard(Path.join([dir, "cnodes*", "store#{f.id}"]))
    kill(f)
    File.rm_rf!(store)
    assert append([l, g], "s") == 6

    args = rejoin_args(f, store, cns)

    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args)
    CNodeCluster.kill_at_exit(os_pid)
    # before: exit status 3 (it refused to start as its old voter)
    assert {:ready, lines} = outcome(port, [])
    true = Node.connect(f.name)
    assert {:ok, 1} = call(f.name, {:hello, 1})
    f = %{f | os_pid: os_pid, port: port}

    # written while it rejoins
    for _ <- 1..5, do: append([l, g], "s")

    # its old id removed, a new one (same raft address) a voter
    new_id =
      showing_output(port, lines, fn ->
        wait_until(
          fn ->
            ms = members([l, g])

            case Enum.find(ms, fn {_id, a, _role} -> a == f.address end) do
              {id, _, :voter} when id != f.id -> if List.keymember?(ms, f.id, 0), do: nil, else: id
              _ -> nil
            end
          end,
          60_000
        )
      end)

    assert length(members([l, g])) == 3, inspect(lines)
    assert {:ok, %{id: ^new_id}} = call(f.name, {:cluster_info})

    # it holds every event, and counts in the quorum: with g stopped the
    # cluster (its leader and the rejoined one) still writes
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == 11 end, 60_000)
    pause_os_process!(g.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{g.os_pid}"]) end)
    assert append([l, f], "s") == 12
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == 12 end, 30_000)
    System.cmd("kill", ["-CONT", "#{g.os_pid}"])

    # started again with the same arguments, its data there: the new
    # member it became (not refused, not its old id)
    kill(f)
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args)
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, _} = outcome(port, [])
    assert {:ok, 1} = call(f.name, {:hello, 1})
    assert {:ok, %{id: ^new_id}} = call(f.name, {:cluster_info})
    assert append(cns, "s") == 13
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == 13 end, 30_000)
    assert Enum.sort(for {id, _, :voter} <- members(cns), do: id) == Enum.sort([l.id, g.id, new_id])

    # and without --raft-wiped rejoin (a normal member now, its raft
    # state there): it starts as that member too. Before: refused to
    # open (raft/node_id holds new_id, not --raft-id), exit, and the
    # launcher started it again in a loop
    f = %{f | os_pid: os_pid, port: port}
    kill(f)
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args -- ["--raft-wiped", "rejoin"])
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, _} = outcome(port, [])
    assert {:ok, 1} = call(f.name, {:hello, 1})
    assert {:ok, %{id: ^new_id}} = call(f.name, {:cluster_info})
    assert append(cns, "s") == 14
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == 14 end, 30_000)
    assert Enum.sort(for {id, _, :voter} <- members(cns), do: id) == Enum.sort([l.id, g.id, new_id])

    # lost a second time (the leader, started with the member list,
    # recorded the old id's name again at the named add). Without
    # --raft-wiped rejoin it refuses, as the first time
    f = %{f | os_pid: os_pid, port: port}
    kill(f)
    File.rm_rf!(store)
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args -- ["--raft-wiped", "rejoin"])
    CNodeCluster.kill_at_exit(os_pid)
    {status, lines} = outcome(port, [])
    out = Enum.join(lines, "\n")
    assert status == 3, "expected exit status 3, got #{inspect(status)}; it said:\n#{out}"
    assert out =~ "was a member"
    refute File.exists?(Path.join([store, "raft", "node_id"]))

    # with it, the same flags as every time: yet another new member, the
    # one it was (new_id) removed, three voters, writes go on
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args)
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, lines} = outcome(port, [])
    assert {:ok, 1} = call(f.name, {:hello, 1})
    assert {:ok, %{id: id2}} = call(f.name, {:cluster_info})
    assert id2 not in [f.id, new_id], inspect(lines)

    showing_output(port, lines, fn ->
      wait_until(
        fn ->
          ms = members([l, g])

          Enum.sort(for {id, _, :voter} <- ms, do: id) == Enum.sort([l.id, g.id, id2]) and
            length(ms) == 3
        end,
        60_000
      )
    end)

    assert append([l, g], "s") == 15
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == 15 end, 60_000)
  end

  test "lost again after a rejoin whose leader had no member list (its old id's record " <>
         "gone): refused without the flag, with it yet another new member, never its old id",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    # a member added at run time (no --raft-member, as docs/CLUSTER.md
    # has a replacement started), made a voter and the leader: its
    # named adds record no member list
    j = start_joiner(dir, 4)
    assert call(l.name, {:cluster_add, j.id, j.address, j.name}, 15_000) == :ok
    assert call(l.name, {:cluster_assign, j.id, :voter}, 30_000) == :ok
    assert call(l.name, {:cluster_transfer, j.id}, 15_000) == :ok
    all = [j | cns]
    assert CNodeCluster.leader(all).name == j.name
    for _ <- 1..3, do: append(all, "s")
    f = Enum.find(cns, &(&1.id != l.id))

    for cn <- all,
        do:
          wait_until(fn ->
            match?({:ok, _}, call(j.name, {:checkpoint_get, "ex_esdb:cnode:#{cn.id}"}))
          end)

    [store] = Path.wildcard(Path.join([dir, "cnodes*", "store#{f.id}"]))
    args = rejoin_args(f, store, cns)
    others = all -- [f]

    # lost once: back as a new member, its old id and that id's record
    # removed
    kill(f)
    File.rm_rf!(store)
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args)
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, lines} = outcome(port, [])
    true = Node.connect(f.name)
    assert {:ok, 1} = call(f.name, {:hello, 1})
    assert {:ok, %{id: new_id}} = call(f.name, {:cluster_info})
    assert new_id != f.id
    f = %{f | os_pid: os_pid, port: port}

    showing_output(port, lines, fn ->
      wait_until(fn -> voters(all) == Enum.sort([new_id | for(o <- others, do: o.id)]) end, 60_000)
    end)

    n = append(others, "s")
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == n end, 60_000)

    # lost again: without the flag it refuses (before: it started as id
    # 1, bootstrapping {1,2,3} on an empty log, no member of the cluster)
    kill(f)
    File.rm_rf!(store)
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args -- ["--raft-wiped", "rejoin"])
    CNodeCluster.kill_at_exit(os_pid)
    {status, lines} = outcome(port, [])
    out = Enum.join(lines, "\n")
    assert status == 3, "expected exit status 3, got #{inspect(status)}; it said:\n#{out}"
    assert out =~ "was a member"
    assert out =~ "raft id #{new_id}"
    refute File.exists?(Path.join([store, "raft", "node_id"]))

    # with it: yet another new member, the one it was removed, writes go on
    {port, os_pid} = CNodeCluster.open(CNodeCluster.bin(), args)
    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, lines} = outcome(port, [])
    assert {:ok, 1} = call(f.name, {:hello, 1})
    assert {:ok, %{id: id2}} = call(f.name, {:cluster_info})
    assert id2 not in [f.id, new_id], Enum.join(lines, "\n")

    showing_output(port, lines, fn ->
      wait_until(fn -> voters(all) == Enum.sort([id2 | for(o <- others, do: o.id)]) end, 60_000)
    end)

    assert length(members(others)) == 4
    n = append(others, "s")
    wait_until(fn -> length(CNodeCluster.stream_ids(f.name, "s")) == n end, 60_000)
  end

  # every member's id when all are voters, else nil
  defp voters(cns) do
    ms = members(cns)
    if Enum.all?(ms, &match?({_, _, :voter}, &1)), do: Enum.sort(for {id, _, _} <- ms, do: id)
  end

  defp kill(cn) do
    System.cmd("kill", ["-9", "#{cn.os_pid}"])
    wait_until(fn -> not File.exists?("/proc/#{cn.os_pid}") end)
  end

  defp rejoin_args(f, store, cns) do
    CNodeCluster.replica_args(f, store, cns, extra: ["--raft-wiped", "rejoin"])
  end

  # A C node with a raft id and address, no member list: a joiner.
  defp start_joiner(dir, id) do
    name = :"cnrj#{ExESDB.Test.Unique.id()}_#{id}@#{CNodeCluster.host()}"
    [p] = free_ports(1)
    address = "127.0.0.1:#{p}"

    {port, os_pid} =
      CNodeCluster.open(
        CNodeCluster.bin(),
        CNodeCluster.replica_args(
          %{id: id, address: address, name: name},
          Path.join(dir, "joiner#{id}"),
          []
        )
      )

    CNodeCluster.kill_at_exit(os_pid)
    assert {:ready, _} = outcome(port, [])
    true = Node.connect(name)
    {:ok, 1} = call(name, {:hello, 1})
    %{id: id, address: address, name: name, port: port, os_pid: os_pid}
  end

  # fun.(), and when it raises, what the C node said (why it did not rejoin)
  defp showing_output(port, lines, fun) do
    fun.()
  rescue
    e ->
      IO.puts(Enum.join(lines, "\n"))
      flush(port)
      reraise e, __STACKTRACE__
  end

  defp flush(port) do
    receive do
      {^port, {:data, {_, l}}} -> IO.puts(l) && flush(port)
    after
      0 -> :ok
    end
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
