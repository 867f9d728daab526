defmodule ExESDB.CNodeClusterMemberNameTest do
  # A C node added to a cluster of C nodes at run time, named in
  # {cluster_add, Id, Address, Name}: every member names it (its name is
  # replicated), and it names the others though it was started with no
  # --raft-member list; {:not_leader, node} points at it when it leads
  # and from it when it does not. Real OS processes, raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @bin CNodeCluster.bin()

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnm")}
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)
  defp host, do: CNodeCluster.host()

  # A C node with a raft id and address, no member list: a joiner.
  defp start_joiner(dir, id) do
    name = :"cnm#{ExESDB.Test.Unique.id()}_#{id}@#{host()}"
    [p] = free_ports(1)
    address = "127.0.0.1:#{p}"

    {port, os_pid} =
      CNodeCluster.open(
        @bin,
        CNodeCluster.replica_args(
          %{id: id, address: address, name: name},
          Path.join(dir, "joiner#{id}"),
          []
        )
      )

    CNodeCluster.kill_at_exit(os_pid)
    await_ready(port)
    true = Node.connect(name)
    {:ok, 1} = call(name, {:hello, 1})
    %{id: id, address: address, name: name, port: port, os_pid: os_pid}
  end

  defp await_ready(port) do
    receive do
      {^port, {:data, {:eol, "ready " <> _}}} -> :ok
      {^port, {:data, _}} -> await_ready(port)
      {^port, {:exit_status, s}} -> flunk("joiner exited #{s}")
    after
      15_000 -> flunk("joiner: no ready line")
    end
  end

  defp event, do: {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}

  test "a member added with its name is named by every member, and names them",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    j = start_joiner(dir, 4)

    assert call(l.name, {:cluster_add, j.id, j.address, j.name}, 15_000) == :ok
    assert call(l.name, {:cluster_assign, j.id, :voter}, 30_000) == :ok

    # the joiner leads: the others' not_leader names it
    assert call(l.name, {:cluster_transfer, j.id}, 15_000) == :ok
    all = [j | cns]
    assert CNodeCluster.leader(all).name == j.name

    for cn <- cns do
      wait_until(fn ->
        call(cn.name, {:append, "s", :any, [event()]}) == {:error, {:not_leader, j.name}}
      end)
    end

    assert {:ok, 1, _} = call(j.name, {:append, "s", :any, [event()]})

    # and back: the joiner's not_leader names a member it was not told of
    [o | _] = cns
    assert call(j.name, {:cluster_transfer, o.id}, 15_000) == :ok
    assert CNodeCluster.leader(all).name == o.name

    wait_until(fn ->
      call(j.name, {:append, "s", :any, [event()]}) == {:error, {:not_leader, o.name}}
    end)

    # an add with a name that is no node name is refused
    assert call(o.name, {:cluster_add, 5, "127.0.0.1:1", :nonode}) ==
             {:error, {:invalid_request, :cluster_add}}
  end

  # The name a member's record ("ex_esdb:cnode:<id>") holds, on node.
  defp record(node, id) do
    case call(node, {:checkpoint_get, "ex_esdb:cnode:#{id}"}) do
      {:ok, {_, _, name, _}} -> name
      {:error, :not_found} -> nil
      other -> flunk("checkpoint_get: #{inspect(other)}")
    end
  end

  test "an add the replica refuses names nothing; a removed member's name goes",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    j = start_joiner(dir, 4)
    assert call(l.name, {:cluster_add, j.id, j.address, j.name}, 15_000) == :ok
    # a standby: the joiner receives the log
    assert call(l.name, {:cluster_assign, j.id, :standby}, 30_000) == :ok
    jname = Atom.to_string(j.name)

    # the joiner (no member list) names the leader from its record
    lname = l.name
    wait_until(fn -> match?({:ok, %{leader_node: ^lname}}, call(j.name, {:cluster_info})) end)

    # an existing id, under a new name: refused, every name as it was
    bogus = :"bogus@#{host()}"
    assert {:error, _} = call(l.name, {:cluster_add, l.id, "127.0.0.1:1", bogus}, 15_000)
    assert {:error, _} = call(l.name, {:cluster_add, j.id, "127.0.0.1:2", bogus}, 15_000)
    # a new id at a taken address: refused, no record
    assert {:error, _} = call(l.name, {:cluster_add, 9, j.address, bogus}, 15_000)
    # a write after them, through raft: the joiner applied anything before
    assert {:ok, 1, _} = call(l.name, {:append, "s", :any, [event()]})
    wait_until(fn -> match?({:ok, 1, _, _}, call(j.name, {:stream_info, "s"})) end)

    for cn <- [j | cns] do
      assert record(cn.name, j.id) == jname
      assert record(cn.name, 9) == nil
      assert record(cn.name, l.id) in [nil, Atom.to_string(l.name)]
    end

    assert {:ok, %{leader_node: ln}} = call(j.name, {:cluster_info})
    assert ln == l.name

    # removed: its record goes, on every member
    assert call(l.name, {:cluster_remove, j.id}, 15_000) == :ok

    for cn <- cns do
      wait_until(fn -> record(cn.name, j.id) == nil end)
    end
  end

  test "a client's write of the store's own ex_esdb: records is refused", %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [o | _] = cns -- [l]
    key = "ex_esdb:cnode:#{o.id}"

    assert call(l.name, {:checkpoint_put, key, 0, "evil@host"}) ==
             {:error, {:invalid_subscription_name, key}}

    assert call(l.name, {:checkpoint_put, "ex_esdb:x", 0, ""}) ==
             {:error, {:invalid_subscription_name, "ex_esdb:x"}}

    assert call(l.name, {:checkpoint_delete, key}) ==
             {:error, {:invalid_subscription_name, key}}

    # the barrier's delete, a no-op (no such record), still goes through
    assert call(l.name, {:checkpoint_delete, "ex_esdb:barrier"}) == {:error, :not_found}
    assert record(l.name, o.id) == nil

    # other names are clients' own
    assert call(l.name, {:checkpoint_put, "sub", 1, ""}) == :ok
  end
end
