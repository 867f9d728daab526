defmodule ExESDB.CNodeClusterUnknownIndexTest do
  # Read-your-writes on a cluster of C nodes when the C node that took a
  # write cannot say how far it applied once it answered (it fell silent
  # or went, or its connection here did, right after its reply): the
  # store's own C node (a follower, where reads go) cannot be waited for
  # that index, and the next read here must not answer a state without
  # the write. Before, nothing was marked and a get_subscriptions right
  # after a delete_subscription listed the name. The follower is held
  # behind (its raft port's packets dropped, nftables) and the leader's
  # relay here is gone (its connection process held, its relay killed)
  # while the leader takes the delete; the read runs once the relay is
  # back, and the follower is let catch up once the leader saw something
  # more than the delete (the read's wait) or the read answered.
  # Three C nodes, election timeout 5 s (the cut follower keeps its
  # leader meanwhile).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams, Subscriptions}
  alias ExESDB.Chaos.Partition
  alias ExESDB.Test.CNodeCluster

  @moduletag skip:
               (cond do
                  not cluster_support?() -> "no raft in this build (make raft)"
                  not Partition.available?() -> "no nft (root) here"
                  true -> false
                end)
  @moduletag timeout: 180_000

  setup do
    Partition.setup(%{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnunknown")})
  end

  defp applied(cn), do: elem(CNodeCluster.call(cn.name, {:cluster_info}), 1).applied
  defp raft_port(cn), do: cn.address |> String.split(":") |> List.last()

  test "a delete whose leader cannot say how far it applied: the next read still sees it", ctx do
    cns = CNodeCluster.start(ctx.dir, "nosync", extra: ["--raft-election-timeout-ms", "5000"])
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    store = :"cnunknown_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, ctx.dir, f, cns) ++ [timeout: 30_000]
    start_supervised!({ExESDB.System, opts})
    relay = :"exesdb_cnode_relay_#{store}@#{l.name}"

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    {:ok, _} = Subscriptions.subscribe_to(store, "gone", {:by_event_type, "t"})
    assert {:ok, [%{name: "gone"}]} = Subscriptions.get_subscriptions(store)

    # the reader last wrote at the leader (its next tries go there first)
    test = self()

    reader =
      Task.async(fn ->
        {:ok, 1} = Streams.append_events(store, "r", :any, [NewEvent.new(event_type: "t", data: 1)])
        send(test, :written)
        receive do: (:read -> Subscriptions.get_subscriptions(store))
      end)

    assert_receive :written, 30_000

    Partition.cut_port(ctx, raft_port(f))
    conn = Process.whereis(:"exesdb_cnode_conn_#{store}@#{l.name}")
    :erlang.suspend_process(conn)
    Process.exit(Process.whereis(relay), :kill)
    assert wait_until(fn -> Process.whereis(relay) == nil end)

    assert :ok = Subscriptions.delete_subscription(store, "gone")

    :erlang.resume_process(conn)
    assert wait_until(fn -> Process.whereis(relay) end, 30_000)
    taken = applied(l)
    send(reader.pid, :read)

    assert wait_until(fn -> not Process.alive?(reader.pid) or applied(l) > taken end, 30_000)
    Partition.heal(ctx)
    assert {:ok, []} = Task.await(reader, 60_000)
  end
end
