defmodule ExESDB.CNode.PageTest do
  # A read_packed page is checked like any page the NIF reads: whatever
  # bytes a (broken or hostile) C node sends, the reader gets records or
  # {:error, {:corrupt, :record}} / {:error, {:undecodable, _}}, never a
  # raise. The pages here are built by pack/1 below, the layout of
  # c_src/cnode/reads.c's encode_packed; that the C node's own pages are
  # the NIF's records field for field is cnode_test's.
  # ESDB_PAGE_FUZZ sets the number of mutated pages (2,000), ESDB_SEED the seed.
  use ExUnit.Case, async: true
  import Bitwise

  alias ExESDB.Backend.CNode
  alias ExESDB.CNode.Page

  @us 1_700_000_000_123_456

  # {pos, sid, version, id, type, data_enc, data, meta_enc, meta, cause, corr, us}
  defp event(n, overrides \\ []) do
    Enum.into(overrides, %{
      pos: n,
      sid: "s",
      v: n,
      id: ExESDB.UUID.to_string(<<n::128>>),
      type: "T",
      de: 0,
      data: "data-#{n}",
      me: 0,
      meta: "",
      cause: nil,
      corr: nil,
      us: @us + div(n, 3)
    })
  end

  defp pack(events) do
    for e <- events, into: <<>> do
      dt = DateTime.from_unix!(e.us, :microsecond)
      {usec, 6} = dt.microsecond
      c = e.cause || ""
      r = e.corr || ""

      <<e.pos::64, e.v::64, e.us::64, dt.year::32, dt.month::8, dt.day::8, dt.hour::8, dt.minute::8,
        dt.second::8, usec::32, e.de::8, e.me::8, byte_size(c)::8, byte_size(r)::8,
        byte_size(e.sid)::32, byte_size(e.type)::32, byte_size(e.data)::32, byte_size(e.meta)::32,
        e.id::binary, e.sid::binary, e.type::binary, c::binary, r::binary, e.data::binary,
        e.meta::binary>>
    end
  end

  defp record(e, data, meta) do
    %ExESDB.EventRecord{
      event_id: e.id,
      event_type: e.type,
      stream_id: e.sid,
      event_number: e.v,
      stream_version: e.v,
      position: e.pos,
      data: data,
      metadata: meta,
      causation_id: e.cause,
      correlation_id: e.corr,
      created_at: DateTime.from_unix!(e.us, :microsecond),
      created_epoch: e.us
    }
  end

  test "a page becomes its records, payloads as the NIF's records hold them" do
    term = :erlang.term_to_binary(%{a: [1, "x"]})
    big = :binary.copy("b", 100_000)
    id = &ExESDB.UUID.to_string(<<&1::128>>)

    evs = [
      event(1, cause: id.(7), corr: id.(8), de: 1, data: term, me: 0, meta: "m"),
      event(2, sid: String.duplicate("é", 100), data: "", me: 2, meta: term),
      event(3, de: 2, data: "not a term", me: 2, meta: ""),
      event(4, data: big, meta: big, type: "Big")
    ]

    page = pack(evs)
    [e1, e2, e3, e4] = evs

    assert Page.records(page, true) ==
             {:ok,
              [
                record(e1, %{a: [1, "x"]}, "m"),
                record(e2, nil, %{a: [1, "x"]}),
                record(e3, "not a term", nil),
                record(e4, big, big)
              ]}

    # without decode every payload is its stored bytes, whatever its
    # encoding (a session's push marks encodings either way)
    assert Page.records(page, false) ==
             {:ok,
              [
                record(e1, term, "m"),
                record(e2, "", term),
                record(e3, "not a term", ""),
                record(e4, big, big)
              ]}

    plain = pack(Enum.map(evs, &%{&1 | de: 0, me: 0}))

    assert {:ok, [%{data: ^term}, %{data: ""}, %{data: "not a term"}, %{data: ^big}]} =
             Page.records(plain, false)

    assert Page.records(<<>>, true) == {:ok, []}
  end

  test "small fields do not keep the page alive; big payloads are sub-binaries of it" do
    big = :binary.copy("b", 1_000)
    page = pack([event(1, data: big, meta: "small", cause: ExESDB.UUID.to_string(<<9::128>>))])
    {:ok, [r]} = Page.records(page, false)
    # a heap binary is referenced by nothing else: its referenced size is its own
    for small <- [r.event_id, r.stream_id, r.event_type, r.metadata, r.causation_id],
        do: assert(:binary.referenced_byte_size(small) == byte_size(small))

    assert :binary.referenced_byte_size(r.data) >= byte_size(page)
  end

  test "payloads much smaller than their page are copied: a record kept does not keep " <>
         "the page alive" do
    mid = :binary.copy("m", 5_000)
    large = :binary.copy("l", 40_000)
    page = pack(for(n <- 1..100, do: event(n, data: mid, meta: mid)) ++ [event(101, data: large)])
    assert byte_size(page) > 1_000_000
    {:ok, rs} = Page.records(page, false)
    assert length(rs) == 101

    for r <- rs,
        p <- [r.data, r.metadata],
        do: assert(:binary.referenced_byte_size(p) == byte_size(p))

    assert List.last(rs).data == large
  end

  test "a term payload that may not be decoded fails the page, as the NIF's read" do
    bad = <<131, 100, 0, 20, "no_such_atom_c9f1e2d3">>
    page = pack([event(1), event(2, de: 1, data: bad)])
    assert Page.records(page, true) == {:error, {:undecodable, :unknown_atom}}
    fun = :erlang.term_to_binary(fn -> :ok end)
    assert Page.records(pack([event(1, me: 1, meta: fun)]), true) == {:error, {:undecodable, :fun}}
  end

  test "malformed pages answer {:corrupt, :record}" do
    good = pack([event(1), event(2)])
    one = pack([event(1)])

    bad = [
      # cut anywhere inside the second event
      binary_part(good, 0, byte_size(good) - 1),
      binary_part(good, 0, byte_size(one) + 10),
      # a length claiming more than the page holds
      pack([event(1, sid: "s")]) |> put_u32(41, 1_000_000),
      pack([event(1)]) |> put_u32(49, 0xFFFFFFFF),
      # an id length other than 0 or 36, an unknown encoding, a date out of range
      pack([event(1)]) |> put_u8(39, 35),
      pack([event(1)]) |> put_u8(37, 3),
      pack([event(1)]) |> put_u8(28, 13),
      pack([event(1)]) |> put_u8(31, 60),
      pack([event(1)]) |> put_u32(33, 1_000_000),
      # a day the month does not have, a year Calendar.ISO does not take
      pack([event(1)]) |> put_u8(28, 2) |> put_u8(29, 30),
      pack([event(1)]) |> put_u8(28, 4) |> put_u8(29, 31),
      pack([event(1)]) |> put_u8(28, 2) |> put_u8(29, 29) |> put_u32(24, 2023),
      pack([event(1)]) |> put_u32(24, 10_000),
      # trailing bytes
      good <> <<0>>
    ]

    for page <- bad,
        do: assert(Page.records(page, true) == {:error, {:corrupt, :record}}, inspect(page))

    assert Page.records(:not_a_page, true) == {:error, {:corrupt, :record}}
  end

  test "mutated pages answer records or an error, never a raise" do
    seed = String.to_integer(System.get_env("ESDB_SEED", "#{:erlang.unique_integer([:positive])}"))
    n = String.to_integer(System.get_env("ESDB_PAGE_FUZZ", "2000"))
    :rand.seed(:exsss, {seed, 13, 13})
    term = :erlang.term_to_binary({:ok, [1, 2.5, "x", %{k: :v}]})

    base =
      pack([
        event(1, de: 1, data: term, cause: ExESDB.UUID.to_string(<<3::128>>)),
        event(2, me: 2, meta: term),
        event(3)
      ])

    for _ <- 1..n do
      page = mutate(base)

      for decode <- [true, false] do
        case Page.records(page, decode) do
          {:ok, records} -> assert Enum.all?(records, &is_struct(&1, ExESDB.EventRecord))
          {:error, {:corrupt, :record}} -> :ok
          {:error, {:undecodable, _}} -> :ok
          other -> flunk("seed #{seed}: #{inspect(other)} for #{inspect(page)}")
        end
      end
    end
  end

  defp mutate(page) do
    case :rand.uniform(4) do
      1 -> binary_part(page, 0, :rand.uniform(byte_size(page)) - 1)
      2 -> put_u8(page, :rand.uniform(byte_size(page)) - 1, :rand.uniform(256) - 1)
      3 -> put_u32(page, :rand.uniform(byte_size(page) - 4) - 1, :rand.uniform(1 <<< 32) - 1)
      4 -> page |> put_u8(:rand.uniform(byte_size(page)) - 1, 0) |> mutate()
    end
  end

  defp put_u8(bin, at, v) do
    <<pre::binary-size(at), _, post::binary>> = bin
    <<pre::binary, v, post::binary>>
  end

  defp put_u32(bin, at, v) do
    <<pre::binary-size(at), _::32, post::binary>> = bin
    <<pre::binary, v::32, post::binary>>
  end

  describe "the C node backend's read, with a C node answering malformed pages" do
    # A stand-in for the C node registered as :esdb on this node, and the
    # relay the backend sends From as: its replies are what is tested.
    setup do
      relay = :"page_test_relay_#{ExESDB.Test.Unique.id()}"
      pid = spawn_link(fn -> relay_loop() end)
      Process.register(pid, relay)
      handle = %CNode.Handle{cnode: node(), store_id: :page_test, relay: relay}
      %{store: %{handle: handle, timeout: 5_000, serializer: ExESDB.Serializer.Term}}
    end

    defp relay_loop do
      receive do
        {ref, _} = msg when is_reference(ref) -> send(ref, msg)
      end

      relay_loop()
    end

    # :esdb answering every request with reply(request); {:reply, fun}
    # changes it
    defp fake_cnode(reply) do
      test = self()

      pid =
        spawn_link(fn ->
          Process.register(self(), :esdb)
          send(test, :registered)
          serve(reply)
        end)

      assert_receive :registered

      # the name free again before the next test registers it
      on_exit(fn ->
        ref = Process.monitor(pid)
        Process.exit(pid, :kill)
        assert_receive {:DOWN, ^ref, _, _, _}
      end)

      pid
    end

    defp serve(reply) do
      receive do
        {:call, from, ref, request} ->
          case reply.(request) do
            # read_parts' parts, then its reply
            {:with_parts, parts, last} ->
              for part <- parts, do: send(from, {ref, {:esdb_part, part}})
              send(from, {ref, last})

            last ->
              send(from, {ref, last})
          end

          serve(reply)

        {:reply, reply} ->
          serve(reply)
      end
    end

    # a C node without read_parts
    defp no_parts({:read_parts, _, _, _, _, _}),
      do: {:error, {:invalid_request, :unknown_operation}}

    test "answer {:corrupt, :record} and nothing crashes", %{store: store} do
      fake = fake_cnode(fn _ -> :none end)

      for page <- [
            :not_a_binary,
            [{1, "s"}],
            binary_part(pack([event(1)]), 0, 20),
            pack([event(1)]) |> put_u8(37, 9)
          ] do
        send(
          fake,
          {:reply,
           fn
             {:read_packed, _, _, _, _, _} -> {:ok, page, :eof}
             parts -> no_parts(parts)
           end}
        )

        assert CNode.read(store, :all, 0, 10, :forward) == {:error, {:corrupt, :record}}

        # read_parts: the same in a part or in its reply
        for answer <- [
              {:with_parts, [pack([event(1)]), page], {:ok, pack([event(2)]), :eof}},
              {:with_parts, [pack([event(1)])], {:ok, page, :eof}}
            ] do
          send(fake, {:reply, fn {:read_parts, _, _, _, _, _} -> answer end})
          assert CNode.read(store, :all, 0, 10, :forward) == {:error, {:corrupt, :record}}
        end
      end

      good = pack([event(1)])

      send(
        fake,
        {:reply,
         fn
           {:read_packed, :all, 0, 10, :forward, _} -> {:ok, good, 2}
           parts -> no_parts(parts)
         end}
      )

      assert {:ok, [%ExESDB.EventRecord{position: 1}], 2} = CNode.read(store, :all, 0, 10, :forward)

      assert Process.alive?(fake)
      # no part or reply left behind in the caller's mailbox
      refute_received {_, {:esdb_part, _}}
      refute_received {_, {:ok, _, _}}
    end

    test "read_parts: its parts and its reply's page are one page, in order", %{store: store} do
      fake = fake_cnode(fn _ -> :none end)
      term = :erlang.term_to_binary({:v, 1})

      send(
        fake,
        {:reply,
         fn
           {:read_parts, {:stream, "s"}, 1, 10, :forward, {ExESDB.EventRecord, true}} ->
             {:with_parts, [pack([event(1), event(2, de: 1, data: term)]), pack([event(3)])],
              {:ok, pack([event(4)]), 5}}
         end}
      )

      assert {:ok, records, 5} = CNode.read(store, {:stream, "s"}, 1, 10, :forward)
      assert Enum.map(records, & &1.position) == [1, 2, 3, 4]
      assert Enum.at(records, 1).data == {:v, 1}

      # a term that may not be decoded, in a part: the read fails as the NIF's
      bad = <<131, 100, 0, 20, "no_such_atom_c9f1e2d3">>

      send(
        fake,
        {:reply,
         fn {:read_parts, _, _, _, _, _} ->
           {:with_parts, [pack([event(1, de: 1, data: bad)])], {:ok, pack([event(2)]), :eof}}
         end}
      )

      assert CNode.read(store, :all, 0, 10, :forward) == {:error, {:undecodable, :unknown_atom}}

      # an error after parts (the store failed on a later event): the error
      send(
        fake,
        {:reply,
         fn {:read_parts, _, _, _, _, _} ->
           {:with_parts, [pack([event(1)])], {:error, {:corrupt, {:event, 2}}}}
         end}
      )

      assert CNode.read(store, :all, 0, 10, :forward) == {:error, {:corrupt, {:event, 2}}}
      assert Process.alive?(fake)
      refute_received {_, {:esdb_part, _}}
    end

    test "a C node without read_parts or read_packed is read with read_records", %{store: store} do
      tuple = {1, "s", 1, ExESDB.UUID.to_string(<<1::128>>), "T", "d", "", nil, nil, @us}

      fake_cnode(fn
        {:read_parts, _, _, _, _, _} -> {:error, {:invalid_request, :unknown_operation}}
        {:read_packed, _, _, _, _, _} -> {:error, {:invalid_request, :unknown_operation}}
        {:read_records, :all, 0, 10, :forward, _} -> {:ok, [tuple], :eof}
      end)

      assert {:ok, [%ExESDB.EventRecord{position: 1, data: "d", metadata: nil}], :eof} =
               CNode.read(store, :all, 0, 10, :forward)
    end
  end
end
