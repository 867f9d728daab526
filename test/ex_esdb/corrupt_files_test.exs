defmodule ExESDB.CorruptFilesTest do
  # Random corruption of copies of a small store, each opened and read
  # whole from one reused :peer VM (started again when it dies). Every
  # read ends in data or {:error, {:corrupt, where}}; the VM dies only
  # where LMDB itself walks a garbage page (beyond our checks: the rate
  # is bounded here and reported). ESDB_CORRUPT_VM_RUNS sets the number
  # of copies (default 300). verify, run first on each copy, never takes
  # the VM down: its checks run in a child process. Event ids and the
  # corruptions come from :rand, which ExUnit seeds from --seed.
  use ExUnit.Case, async: false

  @moduletag timeout: 600_000

  @reader """
  s = :persistent_term.get(:corrupt_test_store)

  reads =
    [
      fn -> :ex_esdb.read_all(s, 0, 10_000, :forward) end,
      fn -> :ex_esdb.list_streams(s, <<>>, 1000) end,
      fn -> :ex_esdb.read_type(s, "happened", 0, 10_000) end
    ] ++
      for i <- 0..6 do
        fn -> :ex_esdb.read_stream(s, "stream-" <> Integer.to_string(i), 0, 10_000, :forward) end
      end

  Enum.reduce_while(reads, :read, fn read, acc ->
    case read.() do
      {:error, :stream_not_found} -> {:cont, acc}
      {:error, reason} -> {:halt, {:error, reason}}
      _ -> {:cont, acc}
    end
  end)
  """

  # open keeps the store in the peer for the calls that follow
  @opener """
  case :ex_esdb.open(dir, %{readonly: true, create: false}) do
    {:ok, s} -> :persistent_term.put(:corrupt_test_store, s)
    {:error, reason} -> {:open_error, reason}
  end
  """

  # verify runs its checks in a child process: it never takes the VM down
  @verifier ":ex_esdb.verify(:persistent_term.get(:corrupt_test_store))"

  @closer """
  :ex_esdb.close(:persistent_term.get(:corrupt_test_store))
  :persistent_term.erase(:corrupt_test_store)
  """

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_corrupt_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp build_store(dir) do
    {:ok, s} = :ex_esdb.open(dir, %{durability: :nosync})
    big = :binary.copy("b", 9000)

    for i <- 0..299 do
      data = if rem(i, 25) == 0, do: binary_part(big, 0, 2000 + i * 20), else: "{\"n\":#{i}}"
      event = %{event_id: seeded_uuid(), event_type: "happened", data: data}
      {:ok, _} = :ex_esdb.append(s, "stream-#{rem(i, 7)}", :any, [event])
    end

    :ok = :ex_esdb.close(s)
  end

  # a v4 UUID from :rand, so that --seed rebuilds the same ids
  defp seeded_uuid do
    <<a::48, _::4, b::12, _::2, c::62>> = :rand.bytes(16)
    <<a::48, 4::4, b::12, 2::2, c::62>>
  end

  # Point the root page of the named database past the end of the file,
  # in every copy of the main database's record of it (key with its
  # trailing zero, then an MDB_db whose last 8 bytes are the root).
  defp break_db_root(bin, name) do
    key = name <> <<0>>
    matches = :binary.matches(bin, key)
    assert matches != []

    Enum.reduce(matches, bin, fn {at, len}, acc ->
      root_at = at + len + 40
      <<pre::binary-size(root_at), _::binary-size(8), post::binary>> = acc
      <<pre::binary, 0xFFFFFFF0::little-64, post::binary>>
    end)
  end

  defp corrupt(orig) do
    size = byte_size(orig)

    Enum.reduce(1..:rand.uniform(4), orig, fn _, bin ->
      at = :rand.uniform(size) - 1
      <<pre::binary-size(at), b, post::binary>> = bin

      new =
        if :rand.uniform(2) == 1,
          do: Bitwise.bxor(b, Bitwise.bsl(1, :rand.uniform(8) - 1)),
          else: :rand.uniform(256) - 1

      <<pre::binary, new, post::binary>>
    end)
  end

  # where: {:event, position}, {:page, n} or the kind of record
  defp where_class({:event, pos}) when is_integer(pos) and pos > 0, do: :corrupt
  defp where_class({:page, n}) when is_integer(n) and n >= 0, do: :corrupt

  defp where_class(kind)
       when kind in [:event, :stream, :type, :snapshot, :checkpoint, :index, :unknown],
       do: :corrupt

  defp where_class(other), do: flunk("corrupt with a where of no known shape: #{inspect(other)}")

  defp start_peer(n) do
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, node} =
      ExESDB.Test.Peer.start(%{name: :"corrupt_peer_#{n}_#{ExESDB.Test.Unique.id()}", args: args})

    {peer, node}
  end

  # LMDB flags a transaction silently when a cursor's database root is a
  # page it refuses; the next call answered MDB_BAD_TXN, which reached
  # callers as {:error, :storage_error}.
  test "an index whose root page LMDB refuses reads as {:corrupt, :index}", %{dir: dir} do
    store = Path.join(dir, "store")
    build_store(store)
    copy = Path.join(dir, "copy")
    File.mkdir_p!(copy)

    bin =
      File.read!(Path.join(store, "data.mdb"))
      |> break_db_root("type_index")
      |> break_db_root("stream_index")

    File.write!(Path.join(copy, "data.mdb"), bin)
    {:ok, s} = :ex_esdb.open(copy, %{readonly: true, create: false})
    assert {:error, {:corrupt, :index}} = :ex_esdb.read_type(s, "happened", 0, 10)
    # stream-0 has 43 events: its first versions are in stream_index
    assert {:error, {:corrupt, :index}} = :ex_esdb.read_stream(s, "stream-0", 0, 10, :forward)

    # events are intact
    assert {:ok, [_ | _]} = :ex_esdb.read_all(s, 0, 10, :forward)
    :ok = :ex_esdb.close(s)
  end

  test "corrupt copies read or answer {:corrupt, where}; deaths stay rare", %{dir: dir} do
    runs = String.to_integer(System.get_env("ESDB_CORRUPT_VM_RUNS", "300"))
    store = Path.join(dir, "store")
    build_store(store)
    orig = File.read!(Path.join(store, "data.mdb"))
    copy = Path.join(dir, "copy")
    File.mkdir_p!(copy)

    {counts, peer, _node, _} =
      Enum.reduce(1..runs, {%{}, nil, nil, 0}, fn i, {counts, peer, node, n} ->
        {peer, node, n} = if peer, do: {peer, node, n}, else: Tuple.append(start_peer(n), n + 1)
        File.rm(Path.join(copy, "lock.mdb"))
        File.write!(Path.join(copy, "data.mdb"), corrupt(orig))

        call = fn code ->
          try do
            {result, _} = :erpc.call(node, Code, :eval_string, [code, [dir: copy]], 30_000)
            result
          catch
            :error, {:erpc, :noconnection} -> :died
          end
        end

        class =
          case call.(@opener) do
            # LMDB walking a garbage page while opening (beyond reach)
            :died ->
              :died_opening

            {:open_error, _} ->
              :open_refused

            :ok ->
              case call.(@verifier) do
                :ok -> :ok
                {:error, {:corrupt, n}} when is_integer(n) and n > 0 -> :ok
                :died -> flunk("copy #{i}: the VM died in verify")
                other -> flunk("copy #{i}: verify answered #{inspect(other)}")
              end

              class =
                case call.(@reader) do
                  :read -> :read
                  {:error, {:corrupt, where}} -> where_class(where)
                  :died -> :died
                  other -> flunk("copy #{i}: #{inspect(other)}")
                end

              if class != :died, do: call.(@closer)
              class
          end

        counts = Map.update(counts, class, 1, &(&1 + 1))

        if class in [:died, :died_opening],
          do: {counts, nil, nil, n},
          else: {counts, peer, node, n}
      end)

    if peer, do: :peer.stop(peer)
    IO.puts("\n  #{runs} corrupt copies read in a peer VM: #{inspect(counts)}")
    assert Map.get(counts, :read, 0) > 0
    assert Map.get(counts, :corrupt, 0) > 0
    # deaths are LMDB walking a garbage page (docs/TESTING.md)
    assert Map.get(counts, :died, 0) + Map.get(counts, :died_opening, 0) <= div(runs, 20)
  end
end
