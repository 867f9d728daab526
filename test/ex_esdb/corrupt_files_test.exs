defmodule ExESDB.CorruptFilesTest do
  # Random corruption of copies of a small store, each opened and read
  # whole from one reused :peer VM (started again when it dies). Every
  # read ends in data or {:error, {:corrupt, where}}; the VM dies only
  # where LMDB itself walks a garbage page (beyond our checks: the rate
  # is bounded here and reported). ESDB_CORRUPT_VM_RUNS sets the number
  # of copies (default 300). verify, run first on each copy, never takes
  # the VM down: its checks run in a child process.
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
    dir = Path.join(System.tmp_dir!(), "ex_esdb_corrupt_#{System.unique_integer([:positive])}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp build_store(dir) do
    {:ok, s} = :ex_esdb.open(dir, %{durability: :nosync})
    big = :binary.copy("b", 9000)

    for i <- 0..299 do
      data = if rem(i, 25) == 0, do: binary_part(big, 0, 2000 + i * 20), else: "{\"n\":#{i}}"
      event = %{event_id: :ex_esdb.uuid_v4(), event_type: "happened", data: data}
      {:ok, _} = :ex_esdb.append(s, "stream-#{rem(i, 7)}", :any, [event])
    end

    :ok = :ex_esdb.close(s)
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
      :peer.start(%{name: :"corrupt_peer_#{n}_#{System.unique_integer([:positive])}", args: args})

    {peer, node}
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
