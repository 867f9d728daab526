defmodule ExESDB.ClusterRequestRetryTest do
  # A put or delete whose first try the leader applied but whose answer
  # the gateway never got, sent again by the gateway after another
  # writer's put of the same record landed: the resend must not be
  # applied again. Before, puts and deletes were resent unmarked, and
  # the resend overwrote the other writer's put (or deleted it). First
  # through the whole gateway (the leader's writer held in its flush
  # by build/esdb_io_shim.so, the try's process there killed); then each
  # kind of command with the gateway's tries handed to the leader as the
  # gateway sends them (submit_on_leader/5, as the silent-leader test
  # does), the first one's answer dropped. Three :peer nodes, raft over
  # TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Backend.Cluster, as: Gateway
  alias ExESDB.Schema.SnapshotRecord
  alias ExESDB.Test.{ClusterPeer, PeerCluster}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 300_000

  @store :rrtest

  @shim Path.expand("build/esdb_io_shim.so")

  # Every node under build/esdb_io_shim.so: while its hold file exists,
  # its writer waits in the flush of data.mdb with the commands it took.
  # No election while a writer is held (a long election timeout).
  setup do
    ctx = start_cluster()

    # the leader sends request ids once it knows every member's release
    # does (asked in the background: ExESDB.Backend.Cluster.knows_requests?/1)
    for n <- ctx.nodes do
      assert wait_until(
               fn -> :erpc.call(ctx.leader, ExESDB.Backend.Cluster, :knows_requests?, [n]) end,
               30_000
             )
    end

    ctx
  end

  defp start_cluster do
    PeerCluster.start(@store, 3,
      election_timeout: 4_000,
      heartbeat: 100,
      durability: :no_meta_sync,
      # a loaded machine: no call runs out of time (each answers its outcome)
      timeout: 30_000,
      env: fn ctx, i ->
        if File.exists?(@shim),
          do: [
            {~c"LD_PRELOAD", String.to_charlist(@shim)},
            {~c"ESDB_SHIM_HOLD_SYNC", String.to_charlist(hold(ctx, i))}
          ],
          else: []
      end
    )
  end

  defp hold(ctx, i), do: Path.join(ctx.dir, "hold#{i}")

  # The whole path: a put through a follower's gateway, applied (the
  # leader's writer held in its flush, the entry committed), the try's
  # process on the leader killed (its answer lost: the gateway resends,
  # marked), another writer's put queued on the leader before the
  # resend. Before: x ended with the first put's value, 1.
  @tag skip:
         (not cluster_support?() && "no raft in this build (make raft)") ||
           (not File.exists?(Path.expand("build/esdb_io_shim.so")) && "run make first")
  test "a put through the gateway whose answer is lost leaves a later writer's put", ctx do
    %{leader: l, follower: f} = ctx
    # connected, the leader known: the put's first try goes to it
    assert :ok = :erpc.call(f, ClusterPeer, :submit, [@store, {:checkpoint_put, "w", 0, ""}])
    # every member recorded (no put of theirs comes while the leader is held)
    for n <- ctx.nodes do
      assert wait_until(
               fn ->
                 map_size(elem(:erpc.call(n, ExESDB.Cluster, :member_nodes, [@store]), 1)) == 3
               end,
               30_000
             )
    end

    held = hold(ctx, PeerCluster.index_of(ctx, l))
    File.write!(held, "")

    a =
      Task.async(fn ->
        :erpc.call(f, ClusterPeer, :submit, [@store, {:checkpoint_put, "x", 1, "a"}], 60_000)
      end)

    # the leader's writer took it: committed, being applied
    assert wait_until(fn -> File.exists?(held <> ".held") end, 30_000)

    # another writer on the leader's node: queued behind it
    b =
      Task.async(fn ->
        :erpc.call(l, ClusterPeer, :submit, [@store, {:checkpoint_put, "x", 2, "b"}], 60_000)
      end)

    [{try_a, true}] =
      wait_until(
        fn ->
          w = :erpc.call(l, ClusterPeer, :waiting_submits, [])
          length(w) == 2 and Enum.filter(w, &elem(&1, 1))
        end,
        30_000
      )

    # the first try's answer lost: the gateway resends it, after b
    :erpc.call(l, Process, :exit, [try_a, :kill])
    File.rm!(held)
    assert :ok = Task.await(b, 60_000)
    assert :ok = Task.await(a, 60_000)
    assert checkpoints(ctx, "x") == [2]
  end

  test "a put resent after another writer's put leaves that put", ctx do
    # the scenario does provoke a double apply: resent unmarked (as
    # before), the first put overwrites the other writer's
    put_a = {:checkpoint_put, "x", 1, "a"}
    assert :ok = applied(ctx, put_a)
    assert :ok = other_writer(ctx, {:checkpoint_put, "x", 2, "b"})
    assert :ok = applied(ctx, put_a)
    assert checkpoints(ctx, "x") == [1]

    # the gateway's tries: the same request id, the resend marked
    first = :erpc.call(ctx.follower, Gateway, :request, [{:checkpoint_put, "y", 1, "a"}])
    assert {:request, <<_::binary-size(16)>>, false, _} = first
    assert :ok = applied(ctx, first)
    assert :ok = other_writer(ctx, {:checkpoint_put, "y", 2, "b"})
    assert :ok = applied(ctx, Gateway.resubmission(first))
    assert checkpoints(ctx, "y") == [2]

    # a snapshot put
    first = :erpc.call(ctx.follower, Gateway, :request, [snapshot_put("u", 5)])
    assert :ok = applied(ctx, first)
    assert :ok = other_writer(ctx, snapshot_put("u", 7))
    assert :ok = applied(ctx, Gateway.resubmission(first))
    assert snapshot_versions(ctx, "u") == [7]

    # a delete: the record put again since stays; the resend answers
    # :ok, as the first try did (before: :subscription_not_found, or the
    # record put since deleted)
    first = :erpc.call(ctx.follower, Gateway, :request, [{:checkpoint_delete, "y"}])
    assert :ok = applied(ctx, first)
    assert :ok = other_writer(ctx, {:checkpoint_put, "y", 3, "c"})
    assert :ok = applied(ctx, Gateway.resubmission(first))
    assert checkpoints(ctx, "y") == [3]

    # a resend whose first try never landed is applied
    first = :erpc.call(ctx.follower, Gateway, :request, [{:checkpoint_put, "z", 4, "d"}])
    assert :ok = applied(ctx, Gateway.resubmission(first))
    assert checkpoints(ctx, "z") == [4]
  end

  # A try handed to the leader as the gateway sends it, in the leader's
  # term; its reply. Refused as not the leader's (leadership moved on a
  # loaded machine) it was never applied: handed to the new leader.
  defp applied(ctx, command) do
    wait_until(
      fn ->
        l = PeerCluster.agreed_leader(ctx, ctx.nodes, 30_000)
        term = PeerCluster.info(ctx, l).term
        until = System.system_time(:millisecond) + 10_000
        args = [@store, command, 8_000, term, until]

        case :erpc.call(l, Gateway, :submit_on_leader, args, 30_000) do
          {:applied, _index, reply} -> {reply}
          {:error, :not_leader} -> false
          other -> flunk("try on #{l}: #{inspect(other)}")
        end
      end,
      60_000
    )
    |> elem(0)
  end

  # Another writer, through the gateway of the node that is neither the
  # leader nor the follower the tries come from.
  defp other_writer(ctx, command) do
    [n] = ctx.nodes -- [ctx.leader, ctx.follower]
    :erpc.call(n, ClusterPeer, :submit, [@store, command], 30_000)
  end

  defp snapshot_put(uuid, version), do: {:snapshot_put, uuid, version, "t", "d", ""}

  # the value on every node (after a barrier): one value when they agree
  defp checkpoints(ctx, name) do
    ctx.nodes
    |> Enum.map(&:erpc.call(&1, ClusterPeer, :checkpoint, [@store, name], 30_000))
    |> Enum.uniq()
  end

  defp snapshot_versions(ctx, uuid) do
    ctx.nodes
    |> Enum.map(fn n ->
      {:ok, %SnapshotRecord{source_version: v}} =
        :erpc.call(n, ExESDB.Snapshots, :read_snapshot, [@store, uuid, [consistency: :linearizable]])

      v
    end)
    |> Enum.uniq()
  end
end
