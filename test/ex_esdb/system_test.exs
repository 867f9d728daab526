defmodule ExESDB.SystemTest do
  use ExUnit.Case, async: true
  doctest ExESDB.System
  doctest ExESDB.UUID

  alias ExESDB.{NewEvent, Streams}

  defp opts(context) do
    store = :"sys_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    Keyword.merge([store_id: store, data_dir: dir, durability: :nosync], context[:extra] || [])
  end

  defp ev(n), do: %NewEvent{event_type: "t", data: n}

  # Issue 10 item 13: data_dir means one thing in Elixir, Erlang and the
  # CLI: the directory stores live in; the store is data_dir/store_id.
  test "the store of data_dir and store_id is the same for Erlang and the CLI" do
    o = opts(%{})
    pid = start_supervised!({ExESDB.System, o})
    assert {:ok, 1} = Streams.append_events(o[:store_id], "s", 0, [ev(1)])
    ref = Process.monitor(pid)
    stop_supervised!(ExESDB.System.system_name(o[:store_id]))
    assert_receive {:DOWN, ^ref, :process, _, _}

    store_dir = ExESDB.Options.store_path(ExESDB.Options.resolve(o))
    assert store_dir == Path.join(o[:data_dir], Atom.to_string(o[:store_id]))
    {:ok, h} = :ex_esdb.open(store_dir, %{create: false})
    assert {:ok, 1} = :ex_esdb.stream_version(h, "s")
    :ok = :ex_esdb.close(h)

    ctl = Path.expand("priv/ex_esdb_ctl")
    args = ["--data-dir", o[:data_dir], "--store-id", Atom.to_string(o[:store_id]), "stats"]
    assert {out, 0} = System.cmd(ctl, args, stderr_to_stdout: true)
    assert out =~ ~r/events:\s+1/
    assert {_, 0} = System.cmd(ctl, ["--store", store_dir, "stats"], stderr_to_stdout: true)
  end

  # Issue 10 item 16: the error says which path is in the way.
  test "a data_dir that is a file (or runs through one) is named in the error" do
    o = opts(%{})
    file = o[:data_dir]
    File.mkdir_p!(Path.dirname(file))
    File.write!(file, "not a directory")
    Process.flag(:trap_exit, true)

    for data_dir <- [file, Path.join(file, "below")] do
      assert {:error, {:shutdown, {:failed_to_start_child, ExESDB.Store, reason}}} =
               ExESDB.System.start_link(Keyword.put(o, :data_dir, data_dir))

      assert {:cannot_open_store, _path, {:not_a_directory, ^file}} = reason
    end
  end

  test "stores in one VM are isolated" do
    a = opts(%{})
    b = opts(%{})
    start_supervised!({ExESDB.System, a}, id: :a)
    start_supervised!({ExESDB.System, b}, id: :b)
    assert {:ok, 1} = Streams.append_events(a[:store_id], "s", 0, [ev(1)])
    assert {:ok, 0} = Streams.get_version(b[:store_id], "s")
    assert {:ok, []} = Streams.get_streams(b[:store_id])
  end

  test "data survives a restart of the system" do
    o = opts(%{})
    pid = start_supervised!({ExESDB.System, o})
    assert {:ok, 2} = Streams.append_events(o[:store_id], "s", 0, [ev(1), ev(2)])
    ref = Process.monitor(pid)
    stop_supervised!(ExESDB.System.system_name(o[:store_id]))
    assert_receive {:DOWN, ^ref, :process, _, _}
    assert {:error, :store_not_started} = Streams.get_version(o[:store_id], "s")
    start_supervised!({ExESDB.System, o})
    assert {:ok, events} = Streams.get_events(o[:store_id], "s", 1, 10)
    assert Enum.map(events, & &1.data) == [1, 2]
  end

  test "a store directory can be open once" do
    o = opts(%{})
    start_supervised!({ExESDB.System, o})
    path = Path.join(o[:data_dir], Atom.to_string(o[:store_id]))
    assert {:error, :already_open} = :ex_esdb_nif.open(path, %{})
    # a second system under the same store id is refused by name
    assert {:error, {{:already_started, _}, _}} = start_supervised({ExESDB.System, o}, id: :twin)
  end

  test "calls on a store that is not running say so" do
    assert {:error, :store_not_started} = Streams.append_events(:never_started, "s", :any, [ev(1)])
    assert {:error, :store_not_started} = ExESDB.Snapshots.read_snapshot(:never_started, "x")
    refute Streams.stream_exists?(:never_started, "s")
  end

  test "a store's serializer decides the bytes" do
    o = opts(%{extra: [serializer: ExESDB.Test.PrefixSerializer]})
    start_supervised!({ExESDB.System, o})
    store = o[:store_id]

    assert {:ok, 1} =
             Streams.append_events(store, "s", 0, [
               %NewEvent{event_type: "t", data: [1, 2], metadata: %{a: 1}}
             ])

    assert {:ok, [e]} = Streams.get_events(store, "s", 1, 1)
    assert e.data == {[1, 2], "t"}
    assert e.metadata == {%{a: 1}, "t"}
    {:ok, handle} = ExESDB.Store.fetch(store)
    {:ok, [raw], _next} = :ex_esdb_nif.read_stream(handle.handle, "s", 1, 1, :forward)
    assert "P:" <> _ = elem(raw, 5)

    snap = %ExESDB.Schema.SnapshotRecord{
      source_uuid: "x",
      source_version: 1,
      source_type: "T",
      data: :snap
    }

    assert :ok = ExESDB.Snapshots.record_snapshot(store, snap)
    assert {:ok, %{data: {:snap, "T"}}} = ExESDB.Snapshots.read_snapshot(store, "x")
  end

  test "the default serializer hands back bytes it did not write" do
    o = opts(%{})
    start_supervised!({ExESDB.System, o})
    {:ok, store} = ExESDB.Store.fetch(o[:store_id])
    ref = make_ref()

    :ok =
      :ex_esdb_nif.append(store.handle, ref, "raw", :any, [
        {<<7::128>>, "t", "plain bytes", "", nil, nil}
      ])

    # (the writer's answer; the bound only ends a failure)
    assert_receive {^ref, {:ok, 1, 1}}, 10_000

    assert {:ok, [%{data: "plain bytes", metadata: nil}]} =
             Streams.get_events(o[:store_id], "raw", 1, 1)
  end

  test "invalid options stop start-up with the key and value" do
    assert_raise ArgumentError, ~r/:map_size: 10/, fn ->
      ExESDB.System.start_link(opts(%{extra: [map_size: 10]}))
    end
  end
end

defmodule ExESDB.StoreRestartTest do
  # The process owning a store's handle dying without its terminate/2
  # (killed) left the handle open and published: the restarted Store got
  # :already_open, the whole system went down, could not be started again
  # in this VM, and the API kept writing through the orphaned handle.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams}
  import ExESDB.Test.SubscriptionHelpers, only: [wait_until: 1]

  test "a killed Store process is restarted with the store reopened" do
    Process.flag(:trap_exit, true)
    id = :"restart_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{id}")
    on_exit(fn -> File.rm_rf(dir) end)
    {:ok, sys} = ExESDB.System.start_link(store_id: id, data_dir: dir, durability: :nosync)
    {:ok, 1} = Streams.append_events(id, "a", :any, [NewEvent.new(event_type: "t")])
    {:ok, old} = ExESDB.Store.fetch(id)

    store = Process.whereis(:"exesdb_store_#{id}")
    ref = Process.monitor(store)
    Process.exit(store, :kill)
    assert_receive {:DOWN, ^ref, :process, ^store, :killed}

    # the supervisor restarts it; the system stays up
    assert wait_until(fn ->
             match?({:ok, %{handle: h}} when h != old.handle, ExESDB.Store.fetch(id))
           end)

    refute_received {:EXIT, ^sys, _}
    assert {:error, :closed} = :ex_esdb_nif.stats(old.handle)
    assert {:ok, 2} = Streams.append_events(id, "a", :any, [NewEvent.new(event_type: "t")])
    :ok = Supervisor.stop(sys)
  end
end
