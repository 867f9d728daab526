defmodule ExESDB.CNodeLauncherClusterTest do
  # Three systems in this VM on the C node backend, each launching its
  # own C node (ExESDB.CNode.Launcher) as a raft replica of one store:
  # `cnode_cluster` names the three, numbered and addressed as cluster
  # mode's seeds (`raft_addresses`). Writes go through the backend; a
  # launched replica killed with -9 is started again by its launcher and
  # catches up; one whose directory was lost refuses to come back as its
  # old voter (exit status 3) and is not started again; with
  # cnode_wiped: :rejoin it comes back as a new member, and stays that
  # member when its system starts again without the option. Real OS
  # processes, distribution and raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams}
  alias ExESDB.CNode.Launcher
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  defp host, do: CNodeCluster.host()

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_cnl_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp event(i), do: %NewEvent{event_type: "t", data: %{i: i}}

  # [%{store, name}]: three systems, their C nodes launched as replicas.
  defp start_replicas(dir, opts \\ []) do
    u = ExESDB.Test.Unique.id()
    stores = for i <- 1..3, do: {:"cnl#{u}_#{i}", :"cnl#{u}_#{i}@#{host()}"}
    names = Enum.map(stores, &elem(&1, 1))
    addresses = Map.new(Enum.zip(names, free_ports(3)), fn {n, p} -> {n, "127.0.0.1:#{p}"} end)

    for {store, name} <- stores do
      system = [
        store_id: store,
        data_dir: Path.join(dir, "#{store}"),
        durability: :nosync,
        backend: :cnode,
        cnode_name: name,
        cnode_cluster: names,
        raft_addresses: addresses,
        election_timeout: 500,
        heartbeat: 20,
        timeout: 10_000
      ]

      start_supervised!({ExESDB.System, system ++ opts}, id: store)
      %{store: store, name: name, system: system}
    end
  end

  defp version(name, stream) do
    case CNodeCluster.call(name, {:stream_info, stream}) do
      {:ok, v, _, _} -> v
      _ -> nil
    end
  end

  test "three launched C node replicas: writes through the backend; a replica killed is " <>
         "started again by its launcher and catches up",
       %{dir: dir} do
    rs = start_replicas(dir)
    l = CNodeCluster.leader(rs)
    assert l != nil, "the launched C nodes formed no cluster"
    [f | _] = rs -- [l]

    # writes through a follower's system follow not_leader to the leader
    for i <- 1..20, do: assert({:ok, ^i} = Streams.append_events(f.store, "s", i - 1, [event(i)]))
    for r <- rs, do: wait_until(fn -> version(r.name, "s") == 20 end, 10_000)

    # kill -9 of the leader's C node: its launcher starts it again
    old = Launcher.os_pid(l.store)
    System.cmd("kill", ["-9", "#{old}"])

    for i <- 21..40,
        do: assert({:ok, ^i} = Streams.append_events(f.store, "s", i - 1, [event(i)]))

    wait_until(fn -> (p = Launcher.os_pid(l.store)) != nil and p != old end, 20_000)
    # the restarted replica caught up, and its own system reads from it
    wait_until(fn -> version(l.name, "s") == 40 end, 20_000)
    assert {:ok, 40} = Streams.get_version(l.store, "s")
    assert {:ok, %{node: node, id: _}} = CNodeCluster.call(l.name, {:cluster_info})
    assert node == l.name
  end

  test "a launched replica whose data directory was lost is not started again as its old " <>
         "voter, nor in a loop",
       %{dir: dir} do
    rs = start_replicas(dir)
    l = CNodeCluster.leader(rs)
    [f | _] = rs -- [l]
    assert {:ok, 1} = Streams.append_events(l.store, "s", 0, [event(1)])

    # every member recorded itself (a replica wiped before that is not
    # recognised: docs/CLUSTER.md)
    for id <- 1..3,
        do:
          wait_until(fn ->
            match?({:ok, _}, CNodeCluster.call(l.name, {:checkpoint_get, "ex_esdb:cnode:#{id}"}))
          end)

    old = Launcher.os_pid(f.store)
    launcher = Process.whereis(:"exesdb_cnode_launcher_#{f.store}")

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        # stopped while its directory goes, then killed: the launcher
        # starts it again on an empty directory
        System.cmd("kill", ["-STOP", "#{old}"])
        File.rm_rf!(Path.join(dir, "#{f.store}"))
        System.cmd("kill", ["-9", "#{old}"])

        wait_until(
          fn ->
            # (its state once it has handled the exit and the restart)
            %{port: port, starts: starts} = :sys.get_state(launcher)

            port == nil and starts > 0 and
              not Enum.member?(elem(Process.info(launcher, :messages), 1), :restart) and
              File.exists?(Path.join(dir, "#{f.store}"))
          end,
          20_000
        )

        # (a start it had taken the :restart for when the above looked
        # is over once it answers again; a loop has queued the next)
        _ = :sys.get_state(launcher)
        refute Enum.member?(elem(Process.info(launcher, :messages), 1), :restart)
      end)

    assert log =~ "was a raft member and lost its data directory"
    # the C node said why once: it was started once, not in a loop
    assert length(String.split(log, "was a member of this cluster")) == 2
    assert Launcher.os_pid(f.store) == nil
    refute File.exists?(Path.join([dir, "#{f.store}", "#{f.store}", "raft", "node_id"]))
    # the other two go on
    assert {:ok, 2} = Streams.append_events(l.store, "s", 1, [event(2)])
  end

  test "a launched replica whose store directory holds another member's raft state " <>
         "is not started again, nor in a loop",
       %{dir: dir} do
    rs = start_replicas(dir)
    l = CNodeCluster.leader(rs)
    [f, g] = rs -- [l]
    assert {:ok, 1} = Streams.append_events(l.store, "s", 0, [event(1)])
    {:ok, %{id: g_id}} = CNodeCluster.call(g.name, {:cluster_info})
    old = Launcher.os_pid(f.store)
    launcher = Process.whereis(:"exesdb_cnode_launcher_#{f.store}")
    node_id = Path.join([dir, "#{f.store}", "#{f.store}", "raft", "node_id"])

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        # stopped while its raft/node_id is made g's, then killed: the
        # launcher starts it again under its own --raft-id
        System.cmd("kill", ["-STOP", "#{old}"])
        File.write!(node_id, "#{g_id}\n")
        System.cmd("kill", ["-9", "#{old}"])

        # before: exit 1, started again every second
        wait_until(
          fn ->
            %{port: port, starts: starts} = :sys.get_state(launcher)

            port == nil and starts > 0 and
              not Enum.member?(elem(Process.info(launcher, :messages), 1), :restart)
          end,
          20_000
        )

        # (a start it had taken the :restart for when the above looked
        # is over once it answers again; a loop has queued the next)
        _ = :sys.get_state(launcher)
        refute Enum.member?(elem(Process.info(launcher, :messages), 1), :restart)
      end)

    assert log =~ "holds another raft member's state", log
    # the C node said why once: it was started once, not in a loop
    assert length(String.split(log, "holds the raft state of member raft id #{g_id}")) == 2, log
    assert Launcher.os_pid(f.store) == nil
    assert File.read!(node_id) == "#{g_id}\n"
    # the other two go on
    assert {:ok, 2} = Streams.append_events(l.store, "s", 1, [event(2)])
  end

  test "with cnode_wiped: :rejoin, a launched replica whose data directory was lost is " <>
         "started again and comes back as a new voter; its system reads and writes",
       %{dir: dir} do
    rs = start_replicas(dir, cnode_wiped: :rejoin)
    l = CNodeCluster.leader(rs)
    [f | _] = rs -- [l]
    for i <- 1..5, do: assert({:ok, ^i} = Streams.append_events(l.store, "s", i - 1, [event(i)]))

    for id <- 1..3,
        do:
          wait_until(fn ->
            match?({:ok, _}, CNodeCluster.call(l.name, {:checkpoint_get, "ex_esdb:cnode:#{id}"}))
          end)

    {:ok, %{id: old_id}} = CNodeCluster.call(f.name, {:cluster_info})
    old = Launcher.os_pid(f.store)
    System.cmd("kill", ["-STOP", "#{old}"])
    File.rm_rf!(Path.join(dir, "#{f.store}"))
    System.cmd("kill", ["-9", "#{old}"])

    # started again by its launcher (before: exit status 3, not again)
    wait_until(fn -> (p = Launcher.os_pid(f.store)) != nil and p != old end, 30_000)

    new_id =
      wait_until(
        fn ->
          case CNodeCluster.call(f.name, {:cluster_info}) do
            {:ok, %{id: id}} when id != old_id -> id
            _ -> nil
          end
        end,
        30_000
      )

    wait_until(
      fn ->
        {:ok, ms} = CNodeCluster.call(CNodeCluster.leader(rs -- [f]).name, {:cluster_members})

        {new_id, :voter} in Enum.map(ms, fn {id, _, role} -> {id, role} end) and
          not List.keymember?(ms, old_id, 0)
      end,
      60_000
    )

    # its own system writes through it and reads its writes there
    assert {:ok, 6} = Streams.append_events(f.store, "s", 5, [event(6)])
    wait_until(fn -> version(f.name, "s") == 6 end, 20_000)
    assert {:ok, 6} = Streams.get_version(f.store, "s")

    # a normal member now: its system started again without cnode_wiped
    # (the launcher passes --raft-wiped refuse) runs it as that member.
    # Before: it refused to open (raft/node_id holds the new id), and the
    # launcher started it again in a loop
    stop_supervised!(f.store)

    log =
      ExUnit.CaptureLog.capture_log(fn ->
        start_supervised!({ExESDB.System, f.system}, id: f.store)
        assert {:ok, 7} = Streams.append_events(f.store, "s", 6, [event(7)])
        wait_until(fn -> version(f.name, "s") == 7 end, 20_000)
        assert {:ok, 7} = Streams.get_version(f.store, "s")
      end)

    assert {:ok, %{id: ^new_id}} = CNodeCluster.call(f.name, {:cluster_info})
    refute log =~ "starting it again", log
  end
end
