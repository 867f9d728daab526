defmodule ExESDB.ProtocolTableTest do
  # c_src/proto's operation table is the protocol every binding serves:
  # the NIF's function table, the Erlang stubs and docs/PROTOCOL.md must
  # name the same functions, no more, no fewer.
  use ExUnit.Case, async: true

  alias ExESDB.EventRecord

  @table :ex_esdb_nif.protocol_table()
  @protocol_md Path.expand("../../docs/PROTOCOL.md", __DIR__)

  defp operations, do: for({name, arity, _, _, _} <- @table.operations, do: {name, arity})

  test "every operation has an argument kind per argument" do
    for {name, arity, sched, reply, args} <- @table.operations do
      assert length(args) == arity, "#{name}/#{arity}: #{inspect(args)}"
      assert sched in [:normal, :dirty_io, :adaptive], "#{name}/#{arity}"
      assert reply in [:direct, :async, :subscription], "#{name}/#{arity}"
    end

    assert operations() == Enum.uniq(operations())
  end

  test "the NIF's function table is the protocol's operation table" do
    nif = for {name, arity, _} <- @table.nif_functions, do: {name, arity}
    assert Enum.sort(nif) -- Enum.sort(operations()) == [], "NIF functions not in c_src/proto"
    assert Enum.sort(operations()) -- Enum.sort(nif) == [], "operations the NIF does not have"
  end

  test "each NIF function runs where the protocol says" do
    for {{name, arity, sched, _, _}, {name, arity, flag}} <-
          Enum.zip(Enum.sort(@table.operations), Enum.sort(@table.nif_functions)) do
      # adaptive: called on a normal scheduler, moves itself to a dirty one
      expected = if sched == :dirty_io, do: :dirty_io, else: :normal
      assert flag == expected, "#{name}/#{arity}: #{flag}, protocol says #{sched}"
    end
  end

  test "the Erlang stubs export exactly the protocol's operations" do
    exports = :ex_esdb_nif.module_info(:exports) -- [module_info: 0, module_info: 1]
    assert Enum.sort(exports) -- Enum.sort(operations()) == [], "stubs not in c_src/proto"
    assert Enum.sort(operations()) -- Enum.sort(exports) == [], "operations without a stub"
  end

  test "docs/PROTOCOL.md writes down every operation and the version" do
    doc = File.read!(@protocol_md)
    assert doc =~ "Protocol version: #{@table.version}"

    for {name, arity} <- operations() do
      assert doc =~ "### #{name}/#{arity}", "docs/PROTOCOL.md has no section for #{name}/#{arity}"
    end
  end

  test "c_src/core and c_src/proto include no Erlang, ei, libuv or raft header" do
    root = Path.expand("../..", __DIR__)

    for dir <- ["c_src/core", "c_src/proto"],
        file <- Path.wildcard(Path.join([root, dir, "*.[ch]"])),
        line <- File.read!(file) |> String.split("\n"),
        line =~ ~r/^\s*#\s*include\s*[<"](erl_nif|ei|erl_interface|uv|raft)[^>"]*[>"]/ do
      flunk("#{Path.relative_to(file, root)}: #{line}")
    end
  end

  test "record fields are %ExESDB.EventRecord{}'s, in term order" do
    fields = %EventRecord{} |> Map.keys()
    assert Enum.sort(@table.record_fields) == Enum.sort(fields)
    assert @table.record_fields == Enum.sort(@table.record_fields)
    assert @table.datetime_fields == Enum.sort(Map.keys(DateTime.utc_now()))
  end

  test "stats carry the protocol's fields" do
    %{store: s} = ExESDB.Test.NifBackend.start_store(%{})
    {:ok, store} = ExESDB.Store.fetch(s)
    {:ok, stats} = :ex_esdb_nif.stats(store.handle)
    assert Enum.sort(Map.keys(stats)) == Enum.sort(@table.stats_fields)
  end

  test "created_at is the date DateTime.from_unix! gives for the time stamp" do
    %{store: s} = ExESDB.Test.NifBackend.start_store(%{})
    {:ok, store} = ExESDB.Store.fetch(s)
    ref = make_ref()
    event = {:crypto.strong_rand_bytes(16), "t", "d", "m", nil, nil}
    :ok = :ex_esdb_nif.append(store.handle, ref, "s", :any, [event])
    assert_receive {^ref, {:ok, _, _}}, 5_000

    {:ok, [record], :eof} =
      :ex_esdb_nif.read_records(store.handle, {:stream, "s"}, 0, 10, :forward, {EventRecord, false})

    assert record.created_at == DateTime.from_unix!(record.created_epoch, :microsecond)
  end

  test "read_stream's tuples hold the protocol's event fields in its order" do
    %{store: s} = ExESDB.Test.NifBackend.start_store(%{})
    {:ok, store} = ExESDB.Store.fetch(s)
    ref = make_ref()
    id = :crypto.strong_rand_bytes(16)
    cause = :crypto.strong_rand_bytes(16)
    :ok = :ex_esdb_nif.append(store.handle, ref, "s", :any, [{id, "t", "d", "m", cause, nil}])
    assert_receive {^ref, {:ok, 1, position}}, 5_000
    {:ok, [tuple], :eof} = :ex_esdb_nif.read_stream(store.handle, "s", 0, 10, :forward)
    event = Enum.zip(@table.event_tuple, Tuple.to_list(tuple)) |> Map.new()
    assert tuple_size(tuple) == length(@table.event_tuple)

    assert %{
             position: ^position,
             stream_id: "s",
             stream_version: 1,
             event_id: ^id,
             event_type: "t",
             data: "d",
             metadata: "m",
             causation_id: ^cause,
             correlation_id: nil,
             created_us: created
           } = event

    assert is_integer(created) and created > 0
  end

  test "open takes exactly the protocol's options, each within its bounds" do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_proto_#{ExESDB.Test.Unique.id()}")
    on_exit(fn -> File.rm_rf!(dir) end)
    path = Path.join(dir, "s")
    File.mkdir_p!(dir)

    for option <- @table.options do
      name = elem(option, 0)

      bad =
        case option do
          {_, :atom, _} -> :no_such_atom
          {_, :boolean} -> :maybe
          {_, :integer, _, max} when max < 0xFFFFFFFFFFFFFFFF -> max + 1
          {_, :integer, min, _} when min > 0 -> min - 1
          {_, :integer, _, _} -> -1
          {_, :binary, max} -> :binary.copy("x", max + 1)
        end

      assert {:error, :invalid_option} ==
               :ex_esdb_nif.open(path, Map.put(%{create: true}, name, bad)),
             "#{name} => #{inspect(bad)}"
    end
  end
end
