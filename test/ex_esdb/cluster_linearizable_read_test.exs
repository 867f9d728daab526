defmodule ExESDB.ClusterLinearizableReadTest do
  # Issue 12, read-your-writes: a read chooses `consistency: :local` (the
  # default) or `:linearizable` per call. A follower kept behind (its VM
  # SIGSTOPped while the leader takes a load of writes, then resumed)
  # reads linearizably and sees every write acknowledged at the leader
  # before the read was invoked, through each read function; a node left
  # alone (the two others killed) answers :no_quorum, while its local
  # read still answers. Three :peer nodes, raft over TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.Cluster
  alias ExESDB.Schema.SnapshotRecord
  alias ExESDB.{NewEvent, Snapshots, Streams}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 300_000

  @store :lintest
  @lin [consistency: :linearizable]
  # writes taken by the leader while the follower is stopped (4 KiB each:
  # enough that it is still catching up when it runs again)
  @behind 100

  setup do
    Cluster.start(@store, 3)
  end

  defp on(node, m, f, a), do: :erpc.call(node, m, f, a, 60_000)

  defp event(i), do: NewEvent.new(event_type: "t", data: {i, :binary.copy("d", 4096)})

  # The follower stopped while the leader acknowledges @behind appends to
  # `stream` (and a snapshot of `stream`), then resumed: the last version.
  defp leave_behind(ctx, follower, stream) do
    Cluster.pause(ctx, follower)

    last =
      for i <- 1..@behind, reduce: 0 do
        _ ->
          {:ok, v} = on(ctx.leader, Streams, :append_events, [@store, stream, :any, [event(i)]])
          v
      end

    snap = %SnapshotRecord{source_uuid: stream, source_version: last, data: last}
    :ok = on(ctx.leader, Snapshots, :record_snapshot, [@store, snap])
    Cluster.resume(ctx, follower)
    last
  end

  test "a follower behind reads linearizably what the leader acknowledged; alone, :no_quorum",
       ctx do
    [f, g] = ctx.nodes -- [ctx.leader]

    # every read function, each right after the follower was left behind
    reads = [
      {"v", fn s -> on(f, Streams, :get_version, [@store, s, @lin]) end, &{:ok, &1}},
      {"e",
       fn s ->
         {:ok, evs} = on(f, Streams, :get_events, [@store, s, 1, 10_000, :forward, @lin])
         {:ok, length(evs)}
       end, &{:ok, &1}},
      {"b",
       fn s ->
         {:ok, [e]} = on(f, Streams, :get_events, [@store, s, :end, 1, :backward, @lin])
         {:ok, e.event_number}
       end, &{:ok, &1}},
      {"p",
       fn s ->
         {:ok, evs, _} = on(f, Streams, :read_page, [@store, s, 1, 10_000, :forward, @lin])
         {:ok, length(evs)}
       end, &{:ok, &1}},
      {"a",
       fn _s ->
         {:ok, evs} = on(f, Streams, :get_all_events, [@store, :end, 1, :backward, @lin])
         {:ok, hd(evs).stream_id}
       end, fn _ -> {:ok, "a"} end},
      {"snap",
       fn s ->
         {:ok, snap} = on(f, Snapshots, :read_snapshot, [@store, s, @lin])
         {:ok, snap.source_version}
       end, &{:ok, &1}}
    ]

    for {stream, read, expect} <- reads do
      last = leave_behind(ctx, f, stream)
      assert read.(stream) == expect.(last), "#{stream}: #{inspect(read.(stream))}"
    end

    # the default is local; a linearizable read with a timeout of its own
    assert {:ok, @behind} = on(f, Streams, :get_version, [@store, "v"])

    assert {:ok, @behind} =
             on(f, Streams, :get_version, [@store, "v", [consistency: :local, timeout: 5_000]])

    # f alone: a minority answers :no_quorum within the read's timeout;
    # its local read still answers
    for n <- [ctx.leader, g], do: Cluster.kill(ctx, n)
    for n <- [ctx.leader, g], do: Cluster.await_down(n)

    assert {:error, :no_quorum} =
             on(f, Streams, :get_version, [
               @store,
               "v",
               [consistency: :linearizable, timeout: 3_000]
             ])

    assert {:ok, @behind} = on(f, Streams, :get_version, [@store, "v"])
  end
end
