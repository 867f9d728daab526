defmodule ExESDB.StoredTermsTest do
  # Stored data never carries code: payloads record whether they were
  # written as terms, only those are decoded, and the decoder refuses funs,
  # pids, ports, references, unknown atoms and oversized compressed terms
  # with {:error, {:undecodable, reason}}. Records are forged on disk (a
  # payload written as bytes, then flagged as a term with a fresh CRC) to
  # reach the read path with terms the write path refuses.
  use ExUnit.Case, async: true
  import Bitwise
  import ExESDB.Test.Crc32c

  alias ExESDB.{NewEvent, Snapshots, Streams}
  alias ExESDB.Schema.SnapshotRecord

  @format {ExESDB.EventRecord, true}

  setup context do
    ExESDB.Test.NifBackend.start_store(context)
  end

  defp handle(store) do
    {:ok, s} = ExESDB.Store.fetch(store)
    s.handle
  end

  defp new_event(data, metadata \\ %{}),
    do: %NewEvent{event_type: "t", data: data, metadata: metadata}

  defp port do
    port = Port.open({:spawn, "cat"}, [])
    on_exit(fn -> if Port.info(port), do: Port.close(port) end)
    port
  end

  describe "writing through the Elixir API" do
    test "funs, pids, ports and references are refused, nothing is stored", %{store: store} do
      for {term, why} <- [
            {fn -> :ran end, :fun},
            {&Enum.map/2, :fun},
            {%{deep: [{self()}]}, :pid},
            {[make_ref()], :reference},
            {{:ok, port()}, :port}
          ] do
        assert Streams.append_events(store, "s", :any, [new_event(term)]) ==
                 {:error, {:undecodable, why}}

        assert Streams.append_events(store, "s", :any, [new_event(1, %{by: term})]) ==
                 {:error, {:undecodable, why}}

        snap = %SnapshotRecord{source_uuid: "a", source_version: 1, source_type: "T", data: term}
        assert Snapshots.record_snapshot(store, snap) == {:error, {:undecodable, why}}
      end

      assert Streams.get_version(store, "s") == {:ok, 0}
      assert Snapshots.read_snapshot(store, "a") == {:error, :snapshot_not_found}
    end

    test "terms round-trip", %{store: store} do
      data = %{list: Enum.to_list(1..100), bin: :binary.copy("x", 1000), atom: :héllo, f: 1.5}
      assert {:ok, 1} = Streams.append_events(store, "s", :any, [new_event(data, nil)])
      assert {:ok, [r]} = Streams.get_events(store, "s", 1, 1)
      assert {r.data, r.metadata} == {data, nil}

      snap = %SnapshotRecord{source_uuid: "a", source_version: 3, source_type: "T", data: data}
      assert :ok = Snapshots.record_snapshot(store, snap)

      assert {:ok, %SnapshotRecord{data: ^data, metadata: %{}}} =
               Snapshots.read_snapshot(store, "a")
    end
  end

  describe "compressed terms" do
    test "within the bound are written and read back; beyond it refused", %{store: store} do
      h = handle(store)
      big = :binary.copy("abc", 1_000_000)
      etf = :erlang.term_to_binary(big, compressed: 9)
      bomb = <<131, 80, 512 <<< 20::32, :zlib.compress(:binary.copy(<<0>>, 10))::binary>>
      id = :crypto.strong_rand_bytes(16)

      assert {:ok, 1, _} =
               call(
                 &:ex_esdb_nif.append(h, &1, "c", :any, [{id, "t", {:term, etf}, <<>>, nil, nil}])
               )

      assert {:ok, [%{data: ^big}]} = Streams.get_events(store, "c", 1, 1)

      assert call(
               &:ex_esdb_nif.append(h, &1, "c", :any, [{id, "t", <<>>, {:term, bomb}, nil, nil}])
             ) ==
               {:error, {:undecodable, :too_large}}

      assert :ok = call(&:ex_esdb_nif.snapshot_put(h, &1, "a", 1, "T", {:term, etf}, <<>>))
      assert {:ok, %SnapshotRecord{data: ^big}} = Snapshots.read_snapshot(store, "a")

      assert call(&:ex_esdb_nif.snapshot_put(h, &1, "a", 2, "T", <<>>, {:term, bomb})) ==
               {:error, {:undecodable, :too_large}}
    end
  end

  defp call(submit) do
    ref = make_ref()

    case submit.(ref) do
      :ok ->
        receive do
          {^ref, reply} -> reply
        after
          5000 -> :timeout
        end

      other ->
        other
    end
  end

  describe "bytes written through the Erlang API" do
    test "come back as the same bytes even when they look like terms", %{store: store} do
      h = handle(store)
      etf = :erlang.term_to_binary(%{looks: :like_a_term})

      assert {:ok, _} =
               :ex_esdb.append(h, "raw", any(), [%{event_type: "t", data: etf, metadata: etf}])

      assert {:ok, [r]} = Streams.get_events(store, "raw", 1, 1)
      assert {r.data, r.metadata} == {etf, etf}

      assert :ok = :ex_esdb.put_snapshot(h, "raw", 1, "T", etf, etf)

      assert {:ok, %SnapshotRecord{data: ^etf, metadata: ^etf}} =
               Snapshots.read_snapshot(store, "raw")
    end
  end

  # The same read in two halves (read_page, then page_records: a lazy
  # read's read-ahead) applies the same checks.
  defp via_page(h, source) do
    {:ok, page, _} = :ex_esdb_nif.read_page(h, source, 0, 10, :forward)
    :ex_esdb_nif.page_records(page, @format)
  end

  describe "reading records flagged as terms" do
    setup %{store: store, data_dir: dir} do
      # every forged record lives in this store, closed while patched
      %{forge: fn payloads -> forge(store, dir, payloads) end}
    end

    test "funs, pids, ports and references answer undecodable", %{forge: forge} do
      for {term, why} <- [
            {fn -> :ran end, :fun},
            {&Enum.map/2, :fun},
            {[1, {self()}], :pid},
            {make_ref(), :reference},
            {port(), :port}
          ] do
        {h, source} = forge.(%{data: :erlang.term_to_binary(term)})

        assert :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format) ==
                 {:error, {:undecodable, why}}

        assert via_page(h, source) == {:error, {:undecodable, why}}

        {h, source} = forge.(%{metadata: :erlang.term_to_binary(term)})

        assert :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format) ==
                 {:error, {:undecodable, why}}

        assert via_page(h, source) == {:error, {:undecodable, why}}
      end
    end

    test "a term needing an atom this VM does not have answers undecodable", %{forge: forge} do
      name = "ex_esdb_never_made_#{ExESDB.Test.Unique.id()}"
      etf = <<131, 119, byte_size(name), name::binary>>
      {h, source} = forge.(%{data: etf})

      assert :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format) ==
               {:error, {:undecodable, :unknown_atom}}

      assert via_page(h, source) == {:error, {:undecodable, :unknown_atom}}

      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
    end

    test "a compressed term declaring too much is refused before inflating", %{forge: forge} do
      # declares 512 MiB; its body inflates to 10 bytes, so a decoder that
      # inflated first would answer malformed, not too_large
      bomb = <<131, 80, 512 <<< 20::32, :zlib.compress(:binary.copy(<<0>>, 10))::binary>>
      assert :ex_esdb_nif.decode_term(bomb) == {:error, {:undecodable, :too_large}}
      {h, source} = forge.(%{data: bomb})

      assert :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format) ==
               {:error, {:undecodable, :too_large}}

      assert via_page(h, source) == {:error, {:undecodable, :too_large}}
    end

    test "a binary term whose length does not match its bytes answers malformed", %{
      forge: forge
    } do
      # a term that is one binary is read without the walk; one that only
      # looks like it (a length over or under its bytes) still gets it
      for etf <- [
            <<131, 109, 200::32, :binary.copy("x", 100)::binary>>,
            <<131, 109, 100::32, :binary.copy("x", 101)::binary>>,
            <<131, 109, 0::32, 1>>
          ] do
        {h, source} = forge.(%{data: etf})

        assert :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format) ==
                 {:error, {:undecodable, :malformed}}

        assert via_page(h, source) == {:error, {:undecodable, :malformed}}
      end
    end

    test "the same forged bytes unflagged read back as bytes", %{forge: forge} do
      etf = :erlang.term_to_binary(fn -> :ran end)
      {h, source} = forge.(%{data: etf, flag: false})

      assert {:ok, [%{data: ^etf}], :eof} =
               :ex_esdb_nif.read_records(h, source, 0, 10, :forward, @format)

      assert {:ok, [%{data: ^etf}]} = via_page(h, source)
    end
  end

  describe "subscription definitions" do
    test "a stored definition holding a fun answers undecodable", %{store: store} do
      definition = :erlang.term_to_binary(%{selector: fn -> :ran end, cursor: :position})
      assert :ok = :ex_esdb.put_checkpoint(handle(store), "sub", 0, definition)

      assert ExESDB.Subscriptions.get_subscriptions(store) ==
               {:error, {:undecodable, :fun}}
    end

    test "resuming from a stored definition holding a fun answers undecodable", %{store: store} do
      definition = :erlang.term_to_binary(%{selector: fn -> :ran end, cursor: :position})
      assert :ok = :ex_esdb.put_checkpoint(handle(store), "sub", 0, definition)

      assert ExESDB.Subscriptions.subscribe_to(store, "sub", {:by_stream, "$all"}) ==
               {:error, {:undecodable, :fun}}
    end
  end

  describe "decode_term/1" do
    test "decodes what term_to_binary makes, compressed too" do
      term = {:ok, [1, 2.5, "bin", %{a: [b: 1 <<< 100]}, <<1::3>>, -5, 70_000, {}, []]}
      assert :ex_esdb_nif.decode_term(:erlang.term_to_binary(term)) == {:ok, term}

      compressed = :erlang.term_to_binary(:binary.copy("abc", 100_000), compressed: 9)
      assert :ex_esdb_nif.decode_term(compressed) == {:ok, :binary.copy("abc", 100_000)}

      deep = Enum.reduce(1..100_000, [], &[&1 | [&2]])
      assert :ex_esdb_nif.decode_term(:erlang.term_to_binary(deep)) == {:ok, deep}
    end

    test "refuses malformed bytes, whatever is cut or added" do
      etf = :erlang.term_to_binary({:ok, "bin", [1, 2, 3], %{a: 1}})

      for n <- 0..(byte_size(etf) - 1) do
        assert :ex_esdb_nif.decode_term(binary_part(etf, 0, n)) ==
                 {:error, {:undecodable, :malformed}}
      end

      assert :ex_esdb_nif.decode_term(etf <> <<0>>) == {:error, {:undecodable, :malformed}}
      assert :ex_esdb_nif.decode_term("not a term") == {:error, {:undecodable, :malformed}}
      # a list claiming 2^32-1 elements in a few bytes
      assert :ex_esdb_nif.decode_term(<<131, 108, 255, 255, 255, 255, 106>>) ==
               {:error, {:undecodable, :malformed}}
    end
  end

  describe "decode_term/1 on mutated terms" do
    # Every byte of valid terms flipped, cut, duplicated: decode_term never
    # takes the VM down, and what it decodes is what binary_to_term [safe]
    # decodes, without funs, pids, ports or references in it.
    # ESDB_ETF_MUTATIONS scales the count.
    test "answers a checked term or undecodable, never a crash" do
      seed = String.to_integer(System.get_env("ESDB_SEED") || "20261126")
      :rand.seed(:exsss, {seed, seed, seed})
      n = String.to_integer(System.get_env("ESDB_ETF_MUTATIONS") || "20000")

      terms = [
        {:ok, [1, 2.5, "bin", %{a: [b: 1 <<< 100]}, <<1::3>>, -5, 70_000, {}, []]},
        %{"k" => {:x, ~c"chars", [1 | 2]}, 1 => %{}},
        Enum.to_list(1..40),
        {self(), make_ref(), fn -> :ran end, &Enum.map/2},
        :héllo
      ]

      etfs =
        Enum.flat_map(
          terms,
          &[:erlang.term_to_binary(&1), :erlang.term_to_binary(&1, compressed: 6)]
        )

      for _ <- 1..n do
        bin = mutate(Enum.random(etfs))

        case :ex_esdb_nif.decode_term(bin) do
          {:ok, term} ->
            assert term == :erlang.binary_to_term(bin, [:safe])
            refute carries_code?(term)

          {:error, {:undecodable, why}} ->
            assert why in [:fun, :pid, :port, :reference, :unknown_atom, :too_large, :malformed]
        end
      end
    end
  end

  defp mutate(bin) do
    size = byte_size(bin)
    at = :rand.uniform(size) - 1
    <<pre::binary-size(at), b, post::binary>> = bin

    case :rand.uniform(4) do
      1 -> <<pre::binary, Bitwise.bxor(b, 1 <<< (:rand.uniform(8) - 1)), post::binary>>
      2 -> <<pre::binary, :rand.uniform(256) - 1, post::binary>>
      3 -> pre
      4 -> <<pre::binary, b, b, post::binary>>
    end
  end

  defp carries_code?(t) when is_function(t) or is_pid(t) or is_port(t) or is_reference(t),
    do: true

  defp carries_code?(t) when is_list(t), do: improper_any?(t)
  defp carries_code?(t) when is_tuple(t), do: carries_code?(Tuple.to_list(t))
  defp carries_code?(t) when is_map(t), do: carries_code?(Enum.flat_map(t, fn {k, v} -> [k, v] end))
  defp carries_code?(_), do: false

  defp improper_any?([h | t]), do: carries_code?(h) or improper_any?(t)
  defp improper_any?([]), do: false
  defp improper_any?(t), do: carries_code?(t)

  defp any, do: :any

  # Write each payload as bytes through the Erlang API, then flag them as
  # terms in data.mdb (with the record's CRC recomputed) while the store
  # is closed. Returns a reopened handle and the forged event's stream.
  defp forge(store, dir, payloads) do
    h = handle(store)
    id = :crypto.strong_rand_bytes(16)
    stream = "forged-" <> Base.encode16(id)

    {:ok, _} =
      :ex_esdb.append(h, stream, :any, [
        %{
          event_type: "t",
          event_id: id,
          data: Map.get(payloads, :data, <<>>),
          metadata: Map.get(payloads, :metadata, <<>>)
        }
      ])

    :ok = stop_supervised(ExESDB.System.system_name(store))
    path = Path.join(Path.join(dir, Atom.to_string(store)), "data.mdb")
    mdb = File.read!(path)
    # the id is in the stream record too: the event record's starts 32
    # bytes earlier with version 2, kind 1
    [at] =
      for {at, 16} <- :binary.matches(mdb, id), :binary.part(mdb, at - 32, 2) == <<2, 1>>, do: at

    start = at - 32

    <<_::binary-size(start), head::binary-size(60), _::binary>> = mdb

    <<2, 1, flags::little-16, _crc::32, _::binary-size(40), sl::little-16, tl::little-16,
      dl::little-32, ml::little-32>> = head

    len = 60 + sl + tl + dl + ml
    <<before::binary-size(start), rec::binary-size(len), rest::binary>> = mdb
    <<v, k, _::16, _::32, body::binary>> = rec

    bits =
      if Map.get(payloads, :flag, true),
        do:
          if(Map.has_key?(payloads, :data), do: 0x4, else: 0) |||
            if(Map.has_key?(payloads, :metadata), do: 0x8, else: 0),
        else: 0

    head4 = <<v, k, flags ||| bits::little-16>>
    File.write!(path, [before, head4, <<crc32c(head4 <> body)::little-32>>, body, rest])

    {:ok, _} =
      start_supervised({ExESDB.System, [store_id: store, data_dir: dir, durability: :nosync]})

    {handle(store), {:stream, stream}}
  end
end
