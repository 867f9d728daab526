defmodule ExESDB.ClusterOutOfTimeTest do
  # A write on a seed with no leader runs out of time while the gateway
  # sleeps between tries (a loaded machine wakes it late): the answer is
  # still the documented one for "no leader" (docs/CLUSTER.md), not
  # :timeout. Found under load in cluster_test ("a node alone refuses
  # writes" answered :timeout).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Test.ClusterPeer

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"

  @store :oottest

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_oot_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    # the other two seeds' VMs run but never start the store: no leader,
    # ever (a seed without raft state bootstraps only when the other
    # seeds answer, ExESDB.Cluster.Seeding)
    u = ExESDB.Test.Unique.id()
    names = [:"oot_absent1_#{u}", :"oot_absent2_#{u}"]

    for name <- names do
      args = [~c"-connect_all", ~c"false"] ++ Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
      {:ok, peer, _} = ExESDB.Test.Peer.start(%{name: name, args: args, wait_boot: 60_000})
      on_exit(fn -> :peer.stop(peer) end)
    end

    nodes = [node() | Enum.map(names, &:"#{&1}@#{host}")]
    addrs = Map.new(Enum.zip(nodes, free_ports(3)), fn {n, p} -> {n, "127.0.0.1:#{p}"} end)

    start_supervised!(
      {ExESDB.System,
       store_id: @store,
       data_dir: dir,
       db_type: :cluster,
       seed_nodes: nodes,
       raft_addresses: addrs,
       election_timeout: 200,
       heartbeat: 20,
       durability: :nosync}
    )

    on_exit(fn -> File.rm_rf(dir) end)
    :ok
  end

  test "a write whose time runs out during the gateway's backoff answers :no_quorum" do
    test = self()

    writer =
      spawn(fn ->
        send(test, {:reply, ClusterPeer.timed_append(@store, "s", 500)})
      end)

    # the writer is held past its deadline, almost surely in a backoff
    # sleep (each try only asks the replica who leads), as the scheduler
    # of a loaded machine may hold it
    Process.sleep(100)
    true = :erlang.suspend_process(writer)
    Process.sleep(600)
    true = :erlang.resume_process(writer)

    assert_receive {:reply, {_ms, reply}}, 5_000
    assert reply == {:error, :no_quorum}
  end
end
