defmodule ExESDB.ReadConsistencyTest do
  # The reads' `consistency` option (`:local`, the default, or
  # `:linearizable`) and its `timeout` on a single-node store: a
  # linearizable read is the local read there; a wrong value is refused
  # before anything is read. (On a cluster:
  # cluster_linearizable_read_test.exs.)
  use ExUnit.Case, async: true

  alias ExESDB.Schema.SnapshotRecord
  alias ExESDB.{NewEvent, Snapshots, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  setup %{store: s} do
    evs = for i <- 1..3, do: NewEvent.new(event_type: "t", data: i)
    {:ok, 3} = Streams.append_events(s, "s-1", :any, evs)
    :ok = Snapshots.record_snapshot(s, %SnapshotRecord{source_uuid: "s-1", source_version: 3})
    :ok
  end

  defp ids({:ok, evs}), do: Enum.map(evs, & &1.event_id)
  defp ids({:ok, evs, _next}), do: Enum.map(evs, & &1.event_id)

  test "a linearizable read on a single node is the local read", %{store: s} do
    for opts <- [[consistency: :linearizable], [consistency: :linearizable, timeout: 0]] do
      local = ids(Streams.get_events(s, "s-1", 1, 10))
      assert length(local) == 3
      assert ids(Streams.get_events(s, "s-1", 1, 10, :forward, opts)) == local
      assert ids(Streams.get_events(s, "s-1", :end, 10, :backward, opts)) == Enum.reverse(local)
      assert ids(Streams.read_page(s, "s-1", 1, 10, :forward, opts)) == local
      assert ids(Streams.get_all_events(s, 1, 10, :forward, opts)) == local
      assert ids(Streams.get_events_by_type(s, "t", 1, 10, opts)) == local
      assert {:ok, st} = Streams.stream_forward(s, "s-1", 1, 2, opts)
      assert Enum.map(st, & &1.event_id) == local
      assert {:ok, st} = Streams.stream_backward(s, "s-1", :end, 2, opts)
      assert Enum.map(st, & &1.event_id) == Enum.reverse(local)
      assert {:ok, st} = Streams.all_forward(s, 1, 2, opts)
      assert Enum.map(st, & &1.event_id) == local
      assert {:ok, st} = Streams.all_backward(s, :end, 2, opts)
      assert Enum.map(st, & &1.event_id) == Enum.reverse(local)
      assert {:ok, 3} = Streams.get_version(s, "s-1", opts)
      assert {:ok, %SnapshotRecord{source_version: 3}} = Snapshots.read_snapshot(s, "s-1", opts)
    end

    assert {:ok, 3} = Streams.get_version(s, "s-1", consistency: :local)
    assert {:ok, 3} = Streams.get_version(s, "s-1", consistency: :local, timeout: 10)
  end

  test "a wrong consistency or timeout is refused", %{store: s} do
    bad = {:consistency, :strong}
    assert {:error, {:invalid_option, ^bad}} = Streams.get_events(s, "s-1", 1, 10, :forward, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.read_page(s, "s-1", 1, 10, :forward, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.get_all_events(s, 1, 10, :forward, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.get_events_by_type(s, "t", 1, 10, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.stream_forward(s, "s-1", 1, 2, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.all_backward(s, :end, 2, [bad])
    assert {:error, {:invalid_option, ^bad}} = Streams.get_version(s, "s-1", [bad])
    assert {:error, {:invalid_option, ^bad}} = Snapshots.read_snapshot(s, "s-1", [bad])

    assert {:error, {:invalid_option, {:consistency, "linearizable"}}} =
             Streams.get_version(s, "s-1", consistency: "linearizable")

    assert {:error, {:invalid_timeout, -1}} =
             Streams.get_events(s, "s-1", 1, 10, :forward, consistency: :linearizable, timeout: -1)

    # a version or a snapshot has nothing to decode
    assert {:error, {:invalid_option, {:decode, false}}} =
             Streams.get_version(s, "s-1", decode: false)

    assert {:error, {:invalid_timeout, :soon}} = Snapshots.read_snapshot(s, "s-1", timeout: :soon)

    assert {:error, {:invalid_options, :linearizable}} =
             Streams.get_version(s, "s-1", :linearizable)
  end
end
