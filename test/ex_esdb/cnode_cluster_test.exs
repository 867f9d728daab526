defmodule ExESDB.CNodeClusterTest do
  # Three C nodes (priv/ex_esdb_cnode --raft-*), each owning a replica of
  # one store, raft on loopback; this VM uses them through the C node
  # backend connected to a follower (cnode_cluster: all three). Real OS
  # processes, real distribution, kill -9. Out of the valgrind run (C
  # tests only); under ASan in make asan-cnode. ~6 s in all.
  # ESDB_CNC_WRITERS (16) concurrent writers; ESDB_CNC_DURABILITY
  # (nosync) the C nodes' --durability.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams}
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnc")}
  end

  defp start_cluster(dir),
    do: CNodeCluster.start(dir, System.get_env("ESDB_CNC_DURABILITY", "nosync"))

  # A store of this node homed on a follower of a new cluster of C
  # nodes, its relay to the leader up: %{cns:, l: leader, f: follower, store:,
  # relay:}.
  defp on_a_follower(dir, prefix) do
    cns = start_cluster(dir)
    l = leader(cns)
    [f | _] = cns -- [l]
    store = :"#{prefix}_#{ExESDB.Test.Unique.id()}"

    start_supervised!(
      {ExESDB.System,
       store_id: store,
       data_dir: dir,
       cnode: f.name,
       cnode_cluster: Enum.map(cns, & &1.name),
       timeout: 10_000}
    )

    relay = :"exesdb_cnode_relay_#{store}@#{l.name}"
    wait_until(fn -> Process.whereis(relay) end)
    %{cns: cns, l: l, f: f, store: store, relay: relay}
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)
  defp leader(cns), do: CNodeCluster.leader(cns)

  defp event(id), do: %NewEvent{event_type: "t", event_id: id, data: %{id: id}}

  test "a follower answers a write {:error, {:not_leader, leader}}; cluster_info and " <>
         "cluster_members are served",
       %{dir: dir} do
    cns = start_cluster(dir)
    l = leader(cns)
    [f | _] = cns -- [l]
    e = {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}
    assert {:error, {:not_leader, name}} = call(f.name, {:append, "s", :any, [e]})
    assert name == l.name
    assert {:ok, 1, _} = call(l.name, {:append, "s", :any, [e]})

    assert {:ok, %{node: node, leader: false, leader_node: ^name, id: id}} =
             call(f.name, {:cluster_info})

    assert node == f.name and id == f.id
    assert {:ok, ms} = call(f.name, {:cluster_members})
    assert Enum.sort(ms) == for(cn <- cns, do: {cn.id, cn.address, :voter})
  end

  test "a client connected to a follower keeps writing through a kill -9 of the leader; " <>
         "every acknowledged append is on both survivors exactly once, at the same positions",
       %{dir: dir} do
    cns = start_cluster(dir)
    l = leader(cns)
    [f | _] = cns -- [l]
    store = :"cnc_#{ExESDB.Test.Unique.id()}"

    start_supervised!(
      {ExESDB.System,
       store_id: store,
       data_dir: dir,
       cnode: f.name,
       cnode_cluster: Enum.map(cns, & &1.name),
       timeout: 10_000}
    )

    # the connections to the other two are up before the load starts
    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    test = self()
    writers = String.to_integer(System.get_env("ESDB_CNC_WRITERS", "16"))

    pids =
      for w <- 1..writers do
        spawn_link(fn -> write_loop(test, store, "w#{w}", 0) end)
      end

    acked = collect(%{}, 200)
    System.cmd("kill", ["-9", "#{l.os_pid}"])
    killed_at = map_size(acked)
    # the client goes on: as many acknowledgements again after the kill
    acked = collect(acked, killed_at + 300)
    for p <- pids, do: send(p, :stop)
    acked = drain(acked, writers)

    unknown = for {id, :unknown} <- acked, do: id
    acks = for {id, {:ok, stream, v}} <- acked, do: {id, stream, v}
    assert length(acks) >= killed_at + 300

    survivors = cns -- [l]
    new_leader = leader(survivors)
    assert new_leader.name != l.name

    # both survivors applied everything the leader committed
    wait_until(
      fn ->
        infos = for cn <- survivors, {:ok, i} = call(cn.name, {:cluster_info}), do: i.applied
        length(Enum.uniq(infos)) == 1
      end,
      20_000
    )

    [a, b] = for cn <- survivors, do: read_all(cn.name)
    assert a == b, "the survivors' $all differ"
    by_id = Enum.group_by(a, &ExESDB.UUID.to_string(elem(&1, 3)))

    for {id, stream, v} <- acks do
      found = Map.get(by_id, id, [])

      assert [{_pos, ^stream, ^v}] = Enum.map(found, &{elem(&1, 0), elem(&1, 1), elem(&1, 2)}),
             "acknowledged #{stream}@#{v} present #{length(found)} times"
    end

    # an unknown outcome is there at most once; nothing else was written
    for id <- unknown, do: assert(length(Map.get(by_id, id, [])) <= 1)
    assert map_size(by_id) == length(a)
  end

  test "a write whose reply was lost after the leader applied it is tried again marked: " <>
         "it answers its first result and is stored once",
       %{dir: dir} do
    %{l: l, store: store, relay: relay} = on_a_follower(dir, "cnc")
    assert {:ok, 1} = Streams.append_events(store, "r", :any, [event(ExESDB.UUID.uuid4())])

    # the reply from the leader is held in its relay, which then dies:
    # the caller cannot know the write was applied
    pid = Process.whereis(relay)
    :erlang.suspend_process(pid)
    id = ExESDB.UUID.uuid4()
    task = Task.async(fn -> Streams.append_events(store, "r", :any, [event(id)]) end)

    wait_until(fn ->
      match?({:ok, [_, _], _}, call(l.name, {:read_stream, "r", 0, 10, :forward}))
    end)

    # another write after it: the event is no longer the stream's last
    # (an unmarked retry is deduplicated only at the tail)
    other = {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}
    assert {:ok, 3, _} = call(l.name, {:append, "r", :any, [other]})
    Process.exit(pid, :kill)
    assert {:ok, 2} = Task.await(task, 15_000)
    assert {:ok, events, _} = call(l.name, {:read_stream, "r", 0, 10, :forward})
    assert length(events) == 3
  end

  test "a put whose reply was lost after the leader applied it is not applied again by " <>
         "its resend: another writer's put made meanwhile stays",
       %{dir: dir} do
    %{cns: cns, l: l, store: store, relay: relay} = on_a_follower(dir, "cnp")
    {:ok, s} = ExESDB.Store.fetch(store)
    # a write first: the leader's term is known (a try is fenced with it)
    assert :ok = s.backend.submit(s, {:checkpoint_put, "w", 0, ""}, [])

    # the reply from the leader is held in its relay, which then dies
    pid = Process.whereis(relay)
    :erlang.suspend_process(pid)
    task = Task.async(fn -> s.backend.submit(s, {:checkpoint_put, "x", 1, "a"}, []) end)
    wait_until(fn -> match?({:ok, {"x", 1, _, _}}, call(l.name, {:checkpoint_get, "x"})) end)

    # another writer's put of the same checkpoint lands before the resend
    assert :ok = call(l.name, {:checkpoint_put, "x", 2, "b"})
    Process.exit(pid, :kill)
    # the resend answers as the first try did, and leaves the other put
    # (before: resent unmarked, it overwrote it: 1)
    assert :ok = Task.await(task, 15_000)

    for cn <- cns do
      assert wait_until(fn ->
               match?({:ok, {"x", 2, "b", _}}, call(cn.name, {:checkpoint_get, "x"}))
             end)
    end
  end

  test "a write with no leader answers :no_quorum, also when its time ran out in a pause " <>
         "between tries",
       %{dir: dir} do
    cns = start_cluster(dir)
    l = leader(cns)
    [f, g] = cns -- [l]
    for cn <- [l, g], do: System.cmd("kill", ["-9", "#{cn.os_pid}"])
    wait_until(fn -> match?({:ok, %{leader_node: nil}}, call(f.name, {:cluster_info})) end, 20_000)
    store = :"cnc_#{ExESDB.Test.Unique.id()}"

    start_supervised!(
      {ExESDB.System,
       store_id: store,
       data_dir: dir,
       cnode: f.name,
       cnode_cluster: Enum.map(cns, & &1.name),
       timeout: 500}
    )

    assert {:error, :no_quorum} =
             Streams.append_events(store, "s", :any, [event(ExESDB.UUID.uuid4())])

    # the writer held past its deadline, almost surely in a pause between
    # tries (each a C node round trip), as a loaded machine may hold it
    test = self()

    writer =
      spawn(fn ->
        send(test, {:reply, Streams.append_events(store, "s", :any, [event(ExESDB.UUID.uuid4())])})
      end)

    Process.sleep(100)
    true = :erlang.suspend_process(writer)
    Process.sleep(600)
    true = :erlang.resume_process(writer)
    assert_receive {:reply, {:error, :no_quorum}}, 5_000
  end

  test "membership and transfer are served on the leader; a follower names it", %{dir: dir} do
    cns = start_cluster(dir)
    l = leader(cns)
    [f, g] = cns -- [l]
    assert {:error, {:not_leader, name}} = call(f.name, {:cluster_transfer, f.id})
    assert name == l.name
    assert :ok = call(l.name, {:cluster_transfer, f.id}, 15_000)
    assert leader(cns).name == f.name

    # a spare that does not exist yet, made a standby, then removed
    [port] = free_ports(1)
    addr = "127.0.0.1:#{port}"
    assert :ok = call(f.name, {:cluster_add, 9, addr}, 15_000)
    assert {:ok, ms} = call(f.name, {:cluster_members})
    assert {9, addr, :spare} in ms
    assert {:error, :invalid_argument} = call(f.name, {:cluster_add, 9, addr}, 15_000)
    assert :ok = call(f.name, {:cluster_assign, 9, :standby}, 15_000)
    assert {:ok, ms} = call(f.name, {:cluster_members})
    assert {9, addr, :standby} in ms
    assert {:error, {:invalid_request, :cluster_assign}} = call(f.name, {:cluster_assign, 9, :boss})
    assert :ok = call(f.name, {:cluster_remove, 9}, 15_000)
    assert {:ok, ms} = call(f.name, {:cluster_members})
    assert Enum.sort(ms) == Enum.sort(for cn <- [l, f, g], do: {cn.id, cn.address, :voter})
  end

  test "bad raft options are refused, saying which", %{dir: dir} do
    cookie = Path.join(dir, "cookie")
    File.write!(cookie, Atom.to_string(Node.get_cookie()))
    File.chmod!(cookie, 0o400)
    bin = CNodeCluster.bin()
    base = ["--name", "cncbad@localhost", "--store", Path.join(dir, "s"), "--cookie-file", cookie]

    for {args, says} <- [
          {["--raft-member", "1,127.0.0.1:7000"], "ID,IP:PORT,NAME@HOST"},
          {["--raft-member", "0,127.0.0.1:7000,a@h"], "nonzero"},
          {["--raft-address", "127.0.0.1"], "IP:PORT"},
          {["--raft-id", "x"], "number"},
          {["--raft-heartbeat-ms", "700000"], "number"},
          {["--raft-nope", "1"], "unknown raft option"},
          {["--raft-id", "1"], "--raft-address"}
        ] do
      {out, rc} = System.cmd(bin, base ++ args, stderr_to_stdout: true)
      assert rc != 0 and out =~ says, "#{inspect(args)}: #{rc} #{out}"
    end
  end

  # Appends one event at a time to `stream` until told to stop; reports
  # each answer: {:ack, id, reply}.
  defp write_loop(test, store, stream, n) do
    receive do
      :stop -> send(test, {:done, self()})
    after
      0 ->
        id = ExESDB.UUID.uuid4()

        reply =
          case Streams.append_events(store, stream, :any, [event(id)]) do
            {:ok, v} -> {:ok, stream, v}
            {:error, :outcome_unknown} -> :unknown
            other -> {:other, other}
          end

        send(test, {:ack, id, reply})
        write_loop(test, store, stream, n + 1)
    end
  end

  # Answers until `n` are acknowledged (60 s at most); any answer other
  # than ok or outcome_unknown fails the test.
  defp collect(acked, n) do
    if Enum.count(acked, fn {_, r} -> match?({:ok, _, _}, r) end) >= n do
      acked
    else
      receive do
        {:ack, id, {:other, other}} -> flunk("write #{id} answered #{inspect(other)}")
        {:ack, id, reply} -> collect(Map.put(acked, id, reply), n)
      after
        60_000 -> flunk("no write answered in 60 s (#{map_size(acked)} so far)")
      end
    end
  end

  defp drain(acked, 0), do: acked

  defp drain(acked, left) do
    receive do
      {:ack, id, {:other, other}} -> flunk("write #{id} answered #{inspect(other)}")
      {:ack, id, reply} -> drain(Map.put(acked, id, reply), left)
      {:done, _} -> drain(acked, left - 1)
    after
      30_000 -> flunk("writers did not stop")
    end
  end

  defp read_all(node), do: CNodeCluster.read_all(node)
end
