defmodule ExESDB.CNodeClusterStoreFailedTest do
  # A C node whose raft replica failed (fail-stop: here its store's
  # flush fails with EIO, build/esdb_io_shim.so's ESDB_SHIM_FAIL_SYNC_IF,
  # as a dying disk does; a full disk fails it the same way, chaos
  # disk_full) refuses writes with {:error, {:store_failed, cause}}
  # before proposing them, and refuses reads of its (stale) store
  # likewise. A client of the C node backend homed on it writes and
  # reads through the others: the write is sent on with the same event
  # ids, the read goes to the leader. When the failed C node led, the
  # others elect a leader and the client reaches it. Three real C nodes
  # (--durability sync, the shim preloaded), raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams}
  alias ExESDB.Test.CNodeCluster

  @shim Path.expand("build/esdb_io_shim.so")

  @moduletag skip:
               (not cluster_support?() && "no raft in this build (make raft)") ||
                 (not File.exists?(@shim) && "run make first (build/esdb_io_shim.so)") ||
                 (System.get_env("ESDB_CNODE_BIN") != nil &&
                    "the shim is not preloaded into another C node build (ASan)")
  @moduletag timeout: 180_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnfail")}
  end

  # Each C node's data.mdb flushes fail while <store>.fail exists.
  defp start_cluster(dir) do
    env = fn _id, store ->
      [
        {~c"LD_PRELOAD", String.to_charlist(@shim)},
        {~c"ESDB_SHIM_FAIL_SYNC_IF", String.to_charlist(store <> ".fail")}
      ]
    end

    cns = CNodeCluster.start(dir, "sync", env: env)
    for cn <- cns, do: Map.put(cn, :store, store_of(dir, cn))
  end

  defp store_of(dir, cn) do
    [store] = Path.wildcard(Path.join([dir, "cnodes*", "store#{cn.id}"]))
    store
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)

  defp event, do: %NewEvent{event_type: "t", event_id: ExESDB.UUID.uuid4(), data: %{}}

  # A store of this node homed on `home`, its relays to every C node up.
  defp store_on(dir, home, cns) do
    store = :"cnfail_#{ExESDB.Test.Unique.id()}"

    start_supervised!(
      {ExESDB.System,
       store_id: store,
       data_dir: dir,
       cnode: home.name,
       cnode_cluster: Enum.map(cns, & &1.name),
       timeout: 10_000}
    )

    for cn <- cns -- [home],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    store
  end

  # `cn`'s replica failed: an entry written at the leader is applied
  # there, and its flush fails (the leader's own: the append's outcome
  # unknown to its caller).
  defp fail(cn, leader) do
    File.touch!(cn.store <> ".fail")
    e = {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}
    call(leader.name, {:append, "other", :any, [e]})

    wait_until(
      fn ->
        match?({:ok, %{failure: {_, _}}}, call(cn.name, {:cluster_info}))
      end,
      30_000
    )
  end

  # An append from a process of its own (no leader remembered: its
  # first try goes to the store's own C node).
  defp fresh_append(store, stream) do
    Task.async(fn -> Streams.append_events(store, stream, :any, [event()]) end)
    |> Task.await(30_000)
  end

  test "a client homed on a follower whose replica failed writes through the leader " <>
         "and reads what it wrote",
       %{dir: dir} do
    cns = start_cluster(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    store = store_on(dir, f, cns)
    assert {:ok, 1} = fresh_append(store, "s")

    fail(f, l)
    # the C node says so itself: a write and a read refused there
    e = {ExESDB.UUID.uuid4_binary(), "t", "d", "m", nil, nil}
    assert {:error, {:store_failed, _}} = call(f.name, {:append, "s", :any, [e]})
    assert {:error, {:store_failed, _}} = call(f.name, {:read_stream, "s", 0, 10, :forward})
    assert {:ok, %{store_failed: _}} = call(f.name, {:stats})

    # before: {:error, {:store_failed, :io_error}} for every write and
    # the C node's old state for every read
    for v <- 2..6, do: assert({:ok, ^v} = fresh_append(store, "s"))
    assert {:ok, events} = Streams.get_events(store, "s", 0, 100)
    assert length(events) == 6
    assert {:ok, 6} = Streams.get_version(store, "s")

    # the others hold each event once
    for cn <- [l, g],
        do: wait_until(fn -> length(CNodeCluster.stream_ids(cn.name, "s")) == 6 end, 30_000)
  end

  test "when the failed C node led, the others elect a leader and the client reaches it",
       %{dir: dir} do
    cns = start_cluster(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    store = store_on(dir, f, cns)
    # this process's writes go where its last one was taken: the leader
    assert {:ok, 1} = Streams.append_events(store, "s", :any, [event()])

    fail(l, l)
    assert {:ok, %{leader: false}} = call(l.name, {:cluster_info})
    # before: {:error, {:store_failed, :io_error}}, its last try at l
    assert {:ok, 2} = Streams.append_events(store, "s", :any, [event()])
    assert {:ok, 3} = fresh_append(store, "s")
    new = CNodeCluster.leader([f, g])
    assert new.name != l.name
    assert {:ok, 3} = Streams.get_version(store, "s")
  end
end
