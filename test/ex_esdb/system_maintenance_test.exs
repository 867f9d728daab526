defmodule ExESDB.SystemMaintenanceTest do
  # Issue 10 item 21: stats, verify and backup from the public API.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "stats, verify and a backup that opens as a store", %{store: s, data_dir: dir} do
    {:ok, 2} =
      Streams.append_events(s, "a", :no_stream, [
        %NewEvent{event_type: "t", data: 1},
        %NewEvent{event_type: "t", data: 2}
      ])

    assert {:ok, %{events: 2, streams: 1, store_failed: nil}} = ExESDB.System.stats(s)
    assert :ok = ExESDB.System.verify(s)

    dest = Path.join(dir, "copy")
    assert :ok = ExESDB.System.backup(s, dest)
    assert :ok = ExESDB.System.backup(s, Path.join([dir, "new", "parents", "copy"]))
    {:ok, h} = :ex_esdb.open(dest, %{create: false})
    assert {:ok, 2} = :ex_esdb.stream_version(h, "a")
    :ok = :ex_esdb.close(h)
    # not into a store that is there already
    assert {:error, _} = ExESDB.System.backup(s, dest)
  end

  test "a store that is not running, and bad arguments" do
    assert {:error, :store_not_started} = ExESDB.System.stats(:no_such_store)
    assert {:error, :store_not_started} = ExESDB.System.verify(:no_such_store)
    assert {:error, :store_not_started} = ExESDB.System.backup(:no_such_store, "/tmp/x")
    assert {:error, {:invalid_store, "x"}} = ExESDB.System.stats("x")
    assert {:error, {:invalid_path, 42}} = ExESDB.System.backup(:any, 42)
  end
end

defmodule ExESDB.ErlangDocsTest do
  # Issue 10 item 23: the Erlang API has its docs where h/1 finds them.
  use ExUnit.Case, async: true

  test "the Erlang modules carry their EDoc" do
    assert {:docs_v1, _, :erlang, "application/erlang+html", %{"en" => [_ | _]}, _, docs} =
             Code.fetch_docs(:ex_esdb)

    assert Enum.any?(docs, &match?({{:function, :append, 4}, _, _, %{"en" => _}, _}, &1))
  end
end
