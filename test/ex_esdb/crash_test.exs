defmodule ExESDB.CrashTest do
  # kill -9 of a whole BEAM node while it appends durably: every append it
  # acknowledged is in the store afterwards, whole and in order.
  use ExUnit.Case, async: false

  alias ExESDB.Streams

  @moduletag timeout: 120_000
  @kills 3
  @writers 4

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_crash_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp collect(acc) do
    receive do
      {:acked, stream, from, ids} -> collect([{stream, from, ids} | acc])
    after
      500 -> acc
    end
  end

  test "acknowledged appends survive kill -9 of the node", %{dir: dir} do
    opts = [store_id: :crash_store, data_dir: dir, durability: :sync]
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    acks =
      Enum.flat_map(1..@kills, fn round ->
        {:ok, _peer, node} =
          ExESDB.Test.Peer.start(%{
            name: :"crash_peer_#{round}_#{ExESDB.Test.Unique.id()}",
            args: args
          })

        os_pid = :erpc.call(node, :os, :getpid, [])
        :ok = :erpc.call(node, ExESDB.Test.CrashWriters, :run, [opts, self(), round, @writers])
        Process.sleep(300 + :rand.uniform(700))
        {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])
        collect([])
      end)

    assert length(acks) > 10

    start_supervised!({ExESDB.System, Keyword.put(opts, :durability, :nosync)})

    for {stream, from, ids} <- acks do
      {:ok, events} = Streams.get_events(:crash_store, stream, from + 1, length(ids))
      assert Enum.map(events, & &1.event_id) == ids, "acknowledged batch of #{stream} lost"
    end

    {:ok, all} = Streams.get_all_events(:crash_store, 1, 1_000_000)
    assert Enum.map(all, & &1.position) == Enum.to_list(1..length(all))
    # every batch is whole: its events are consecutive versions of one stream
    for {stream, events} <- Enum.group_by(all, & &1.stream_id) do
      assert Enum.map(events, & &1.event_number) == Enum.to_list(1..length(events)),
             "#{stream} has a gap"
    end

    {:ok, store} = ExESDB.Store.fetch(:crash_store)
    assert :ok = :ex_esdb.verify(store.handle)
  end
end
