defmodule ExESDB.CNodeTest do
  # priv/ex_esdb_cnode as a real OS process, reached over Erlang
  # distribution from this (distributed) test VM: start-up, the hello,
  # requests with the NIF's reply shapes, and what a hostile or broken
  # peer can send. Frames no BEAM node would send come from
  # build/esdb_cnode_probe (test/cnode/probe.c). ESDB_CNODE_FUZZ sets the
  # number of mutated requests (300 by default); ESDB_SEED the seed.
  use ExUnit.Case, async: false
  import Bitwise
  alias ExESDB.Test.CNodeCluster

  @moduletag timeout: 180_000
  # ESDB_CNODE_BIN runs another build (make asan-cnode: under ASan)
  @bin System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)
  @probe Path.expand("../../build/esdb_cnode_probe", __DIR__)
  @shim Path.expand("../../build/esdb_io_shim.so", __DIR__)

  setup_all do
    # `mix test` alone builds the NIF, the CLI and the C node, not the probe
    {_, 0} = System.cmd("make", ["build/esdb_cnode_probe"], cd: Path.expand("../..", __DIR__))
    :ok
  end

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnode")}
  end

  defp host, do: CNodeCluster.host()

  defp cookie, do: Atom.to_string(Node.get_cookie())

  # Starts the C node on a fresh store through a Port (stdin: the cookie,
  # then held open; its end stops the node); returns once it printed its
  # ready line.
  defp start_cnode(dir, args \\ nil, env \\ []) do
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"

    args =
      args ||
        [
          "--name",
          Atom.to_string(name),
          "--store",
          Path.join(dir, "store"),
          "--cookie-stdin",
          "--stop-on-eof",
          "--durability",
          "nosync"
        ]

    port =
      Port.open({:spawn_executable, @bin}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 1024},
        args: args,
        env: env
      ])

    # nil: a node that refused its arguments may have exited already (its
    # lines and exit status are in the mailbox), nothing to kill
    with {:os_pid, os_pid} <- Port.info(port, :os_pid),
         do: on_exit(fn -> System.cmd("kill", ["-9", "#{os_pid}"], stderr_to_stdout: true) end)

    # Only a node told to read its cookie from stdin gets it there: one
    # that refuses its arguments may be gone already, and writing to it
    # would end this test with the port's :epipe.
    if "--cookie-stdin" in args, do: Port.command(port, cookie() <> "\n")
    %{port: port, name: name}
  end

  defp await_ready(%{port: port, name: name} = cn) do
    assert {:ok, "ready " <> rest} = await_line(port, "ready ")
    [^name, tcp_port] = String.split(rest, " ") |> then(fn [n, p] -> [String.to_atom(n), p] end)
    assert String.to_integer(tcp_port) > 0
    cn
  end

  # The next output line starting with prefix (log lines skipped).
  defp await_line(port, prefix, ms \\ 10_000) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        if String.starts_with?(line, prefix), do: {:ok, line}, else: await_line(port, prefix, ms)

      {^port, {:exit_status, status}} ->
        {:exit, status}
    after
      ms -> :timeout
    end
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)

  defp hello!(node), do: {:ok, 1} = call(node, {:hello, 1})

  defp alive?(%{port: port}) do
    Port.info(port) != nil and
      receive do
        {^port, {:exit_status, _}} -> false
      after
        0 -> true
      end
  end

  defp probe(node, mode, cookie \\ nil) do
    {out, 0} =
      System.cmd(@probe, [Atom.to_string(node), mode],
        env: [{"ESDB_PROBE_COOKIE", cookie || cookie()}]
      )

    String.trim(out)
  end

  defp event(n, type \\ "T"), do: {<<n::128>>, type, "data-#{n}", "", nil, nil}

  test "prints its ready line; answers nothing but hello before hello; hello checks the version",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    assert call(cn.name, {:stream_info, "s"}) == {:error, :hello_required}
    assert call(cn.name, {:cluster_add, 2, "127.0.0.1:1"}) == {:error, :hello_required}
    assert call(cn.name, {:cluster_add, 2, "127.0.0.1:1", :a@b}) == {:error, :hello_required}
    assert call(cn.name, {:hello, 2}) == {:error, {:protocol_version, 1}}
    assert call(cn.name, {:hello, :one}) == {:error, {:protocol_version, 1}}
    assert call(cn.name, {:stream_info, "s"}) == {:error, :hello_required}
    assert call(cn.name, {:hello, 1}) == {:ok, 1}
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 0, false, false}
  end

  test "appends and reads with the NIF's reply and error shapes", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    assert call(cn.name, {:append, "s", :no_stream, [event(1), event(2)]}) == {:ok, 2, 1}
    assert call(cn.name, {:append, "s", 2, [event(3, "U")]}) == {:ok, 3, 3}
    # the same ids again at the same expected version: the first result
    assert call(cn.name, {:append, "s", 2, [event(3, "U")]}) == {:ok, 3, 3}
    assert call(cn.name, {:append, "s", 1, [event(4)]}) == {:error, :wrong_expected_version}
    assert call(cn.name, {:append, "s", :no_stream, [event(5)]}) == {:error, :stream_exists}
    assert call(cn.name, {:append, "$x", :any, [event(6)]}) == {:error, {:invalid_stream_id, "$x"}}
    assert call(cn.name, {:append, "s", :any, []}) == {:error, :no_events}

    assert {:ok, [e1, e2, e3], :eof} = call(cn.name, {:read_stream, "s", 0, 100, :forward})
    assert {1, "s", 1, <<1::128>>, "T", "data-1", "", nil, nil, us} = e1
    assert is_integer(us) and us > 0
    assert {2, "s", 2, <<2::128>>, "T", "data-2", "", nil, nil, _} = e2
    assert {3, "s", 3, <<3::128>>, "U", "data-3", "", nil, nil, _} = e3
    assert {:ok, [^e3, ^e2], 1} = call(cn.name, {:read_stream, "s", 3, 2, :backward})
    assert {:ok, [^e1], 2} = call(cn.name, {:read_all, 1, 1, :forward})
    assert call(cn.name, {:read_stream, "none", 0, 10, :forward}) == {:error, :stream_not_found}
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 3, true, false}
    assert call(cn.name, {:stream_info, "$all"}) == {:error, {:invalid_stream_id, "$all"}}

    # payloads given as terms are checked: no pids, refs or funs
    id = <<7::128>>
    ok_term = {id, "T", {:term, :erlang.term_to_binary({:a, [1]})}, "", nil, nil}
    assert {:ok, 4, 4} = call(cn.name, {:append, "s", 3, [ok_term]})
    # a marked retry (issue 12): found behind the stream's tail
    assert call(cn.name, {:append, "s", {:retry, :any}, [event(3, "U")]}) == {:ok, 3, 3}

    assert call(cn.name, {:delete_stream, "s", {:retry, :any}}) ==
             {:error, {:invalid_request, :delete_stream}}

    bad = {<<8::128>>, "T", {:term, :erlang.term_to_binary({:a, self()})}, "", nil, nil}
    assert call(cn.name, {:append, "s", :any, [bad]}) == {:error, {:undecodable, :pid}}

    assert call(cn.name, {:append, "s", :any, [{:not, :an, :event}]}) ==
             {:error, {:invalid_request, :append}}

    assert call(cn.name, {:nope, 1}) == {:error, {:invalid_request, :unknown_operation}}
    assert call(cn.name, {:hello, 1, 2}) == {:error, {:protocol_version, 1}}
    assert call(cn.name, {:append, "s"}) == {:error, {:invalid_request, :arity}}

    assert call(cn.name, {:subscribe, self(), :all, {:m, false}}) ==
             {:error, {:invalid_request, :pid}}

    assert call(cn.name, {:cancel}) == {:error, {:invalid_request, :cancel}}
    assert call(cn.name, {:cancel, :ref}) == {:error, {:invalid_request, :cancel}}
    # a reference goes into cancel only
    assert call(cn.name, {:stats, make_ref()}) == {:error, {:invalid_request, :reference}}

    assert call(cn.name, {:read_all, fn -> :ok end, 1, :forward}) ==
             {:error, {:invalid_request, :fun}}
  end

  # A big append keeps the writer busy; small appends sent behind it are
  # cancelled: ok (withdrawn: no reply, never applied), abandoned (no
  # reply, maybe applied) or not_queued (the reply comes), as the NIF's
  # cancel/2 answers.
  test "cancel withdraws a queued command, as the NIF's", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    big = for i <- 1..20, do: {<<i::128>>, "B", :binary.copy("x", 1_048_576), "", nil, nil}

    answers =
      Enum.reduce_while(1..10, [], fn r, acc ->
        bref = make_ref()
        send({:esdb, cn.name}, {:call, self(), bref, {:append, "big#{r}", :any, big}})

        sent =
          for i <- 1..20 do
            ref = make_ref()
            ev = {<<r::64, i::64>>, "T", "d", "", nil, nil}
            send({:esdb, cn.name}, {:call, self(), ref, {:append, "s#{r}-#{i}", :no_stream, [ev]}})
            {"s#{r}-#{i}", ref}
          end

        cancelled = for {id, ref} <- sent, do: {id, ref, call(cn.name, {:cancel, ref})}
        assert_receive {^bref, {:ok, _, _}}, 60_000
        # the writer answers in order: past this one, all are answered
        assert {:ok, 1, _} =
                 call(cn.name, {:append, "last#{r}", :any, [event(1000 + r, "T")]}, 60_000)

        acc = acc ++ cancelled

        if Enum.any?(acc, &match?({_, _, :ok}, &1)),
          do: {:halt, acc},
          else: {:cont, acc}
      end)

    assert Enum.any?(answers, &match?({_, _, :ok}, &1))

    for {id, ref, answer} <- answers do
      {:ok, version, _, _} = call(cn.name, {:stream_info, id})

      case answer do
        :ok ->
          assert version == 0, "#{id} applied after its cancel answered ok"
          refute_received {^ref, _}

        :abandoned ->
          refute_received {^ref, _}

        :not_queued ->
          assert_received {^ref, {:ok, 1, _}}
          assert version == 1
      end
    end

    # a cancel for a ref never sent, or already answered: not_queued
    assert call(cn.name, {:cancel, make_ref()}) == :not_queued
  end

  @async [
    :append,
    :delete_stream,
    :snapshot_put,
    :snapshot_delete,
    :checkpoint_put,
    :checkpoint_delete
  ]

  # The same request through the NIF: the store (and, for async
  # operations, a ref) added, the final reply awaited.
  defp nif_call(store, request) do
    [name | args] = Tuple.to_list(request)

    if name in @async do
      ref = make_ref()

      case apply(:ex_esdb_nif, name, [store, ref | args]) do
        :ok -> receive(do: ({^ref, reply} -> reply))
        error -> error
      end
    else
      apply(:ex_esdb_nif, name, [store | args])
    end
  end

  # Time stamps and store sizes differ between two stores.
  defp comparable({:ok, list, next}) when is_list(list),
    do: {:ok, Enum.map(list, &comparable/1), next}

  defp comparable({:ok, list}) when is_list(list), do: {:ok, Enum.map(list, &comparable/1)}
  defp comparable({:ok, %{} = m}), do: {:ok, Map.drop(m, [:bytes_used, :map_size, :commits])}
  defp comparable({:ok, t}) when is_tuple(t), do: {:ok, comparable(t)}

  defp comparable(t) when is_tuple(t) and tuple_size(t) in [4, 6, 10],
    do: put_elem(t, tuple_size(t) - 1, :time)

  defp comparable(other), do: other

  test "every served operation answers as the NIF does", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    {:ok, nif} = :ex_esdb_nif.open(Path.join(dir, "nif"), %{durability: :nosync})
    on_exit(fn -> :ex_esdb_nif.close(nif) end)

    e = fn n, type ->
      {<<n::128>>, type, "d#{n}", {:term, :erlang.term_to_binary(n)}, nil, <<9::128>>}
    end

    requests = [
      {:append, "a", :no_stream, [e.(1, "T"), e.(2, "T")]},
      {:append, "a", 2, [e.(3, "T")]},
      {:append, "b", :any, [e.(4, "U")]},
      {:append, "a", 1, [e.(5, "T")]},
      {:append, "a", :stream_exists, [e.(3, "T")]},
      {:append, "a", :any, [e.(9, "T")]},
      {:append, "a", {:retry, :any}, [e.(3, "T")]},
      {:append, "a", {:retry, :stream_exists}, [e.(1, "T"), e.(2, "T")]},
      {:append, "$x", :any, [e.(6, "T")]},
      {:append, "a", :any, []},
      {:read_stream, "a", 0, 10, :forward},
      {:read_stream, "a", 10, 2, :backward},
      {:read_stream, "none", 0, 1, :forward},
      {:read_stream, "$all", 0, 1, :forward},
      {:read_all, 0, 100, :forward},
      {:read_all, 2, 2, :forward},
      {:read_all, 99, 2, :backward},
      {:read_type, "U", 0, 10},
      {:read_type, "nope", 0, 10},
      {:stream_info, "a"},
      {:stream_info, "zz"},
      {:list_streams, nil, 10},
      {:list_streams, "a", 10},
      {:snapshot_put, "src", 3, "Agg", "data", {:term, :erlang.term_to_binary(:meta)}},
      {:snapshot_get, "src"},
      {:snapshot_get, "none"},
      {:snapshot_delete, "src"},
      {:snapshot_get, "src"},
      {:snapshot_delete, "src"},
      {:checkpoint_put, "cp", 5, "def"},
      {:checkpoint_put, "cq", 7, ""},
      {:checkpoint_get, "cp"},
      {:checkpoint_list, nil, 10},
      {:checkpoint_list, "cp", 10},
      {:checkpoint_delete, "cp"},
      {:checkpoint_get, "cp"},
      # with a request: a resend whose first try was applied is not
      # applied again (another writer's put in between stays)
      {:checkpoint_put, "cr", 1, "a", {<<1::128>>, false}},
      {:checkpoint_put, "cr", 2, "b"},
      {:checkpoint_put, "cr", 1, "a", {<<1::128>>, true}},
      {:checkpoint_get, "cr"},
      {:checkpoint_delete, "cr", {<<2::128>>, false}},
      {:checkpoint_put, "cr", 3, "c"},
      {:checkpoint_delete, "cr", {<<2::128>>, true}},
      {:checkpoint_get, "cr"},
      {:snapshot_put, "sr", 5, "t", "d", "", {<<3::128>>, false}},
      {:snapshot_put, "sr", 7, "t", "d", ""},
      {:snapshot_put, "sr", 5, "t", "d", "", {<<3::128>>, true}},
      {:snapshot_get, "sr"},
      {:snapshot_delete, "sr", {<<4::128>>, true}},
      {:snapshot_get, "sr"},
      {:delete_stream, "b", :any},
      {:delete_stream, "b", :any},
      {:stream_info, "b"},
      {:read_stream, "b", 0, 10, :forward},
      {:append, "b", :any, [e.(7, "T")]},
      {:list_streams, nil, 10},
      {:limits},
      {:stats}
    ]

    for request <- requests do
      assert comparable(call(cn.name, request)) == comparable(nif_call(nif, request)),
             "#{inspect(request)}"
    end

    # not two empty answers agreeing
    assert {:ok, [_, _, _, _], :eof} = call(cn.name, {:read_stream, "a", 0, 10, :forward})
    assert {:ok, {"cr", 3, "c", _}} = call(cn.name, {:checkpoint_get, "cr"})
    assert {:error, :not_found} = call(cn.name, {:snapshot_get, "sr"})
    # a malformed request: refused, nothing applied
    assert {:error, {:invalid_request, _}} =
             call(cn.name, {:checkpoint_put, "cr", 9, "x", {<<1::64>>, true}})

    assert {:error, {:invalid_request, _}} =
             call(cn.name, {:checkpoint_delete, "cr", {<<5::128>>, :yes}})

    assert :ok = call(cn.name, {:checkpoint_delete, "cr"})
    assert {:ok, [{"cq", 7, "", _}]} = call(cn.name, {:checkpoint_list, nil, 10})
    assert {:ok, %{events: 5, streams: 2, checkpoints: 1}} = call(cn.name, {:stats})
  end

  test "read_records answers event tuples with ids as text and the payloads as read",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    t = {:term, :erlang.term_to_binary(%{a: 1})}
    ev = fn n, type, data -> {<<n::128>>, type, data, "", nil, nil} end
    caused = {<<1::128>>, "T", t, "", <<5::128>>, <<6::128>>}
    assert {:ok, 2, 1} = call(cn.name, {:append, "s", :any, [caused, ev.(2, "U", "raw")]})
    assert {:ok, 1, 3} = call(cn.name, {:append, "r", :any, [ev.(3, "T", "x")]})
    fmt = {ExESDB.EventRecord, true}

    assert {:ok, [e1, e2], :eof} =
             call(cn.name, {:read_records, {:stream, "s"}, 0, 10, :forward, fmt})

    # ids as UUID text, as records hold them
    uuid = &ExESDB.UUID.to_string(<<&1::128>>)
    {id1, id2, id5, id6} = {uuid.(1), uuid.(2), uuid.(5), uuid.(6)}
    assert {1, "s", 1, ^id1, "T", ^t, "", ^id5, ^id6, us} = e1
    assert is_integer(us)
    assert {2, "s", 2, ^id2, "U", "raw", "", nil, nil, _} = e2
    # Decode false: the stored bytes, as the NIF's records hold them
    {:term, tb} = t

    assert {:ok, [{1, "s", 1, ^id1, "T", ^tb, "", ^id5, ^id6, _}], 2} =
             call(
               cn.name,
               {:read_records, {:stream, "s"}, 1, 1, :forward, {ExESDB.EventRecord, false}}
             )

    assert {:ok, [{3, "r", 1, _, _, "x", _, _, _, _}, {2, _, _, _, _, _, _, _, _, _}], 1} =
             call(cn.name, {:read_records, :all, 3, 2, :backward, fmt})

    # a type source reads forward whatever the direction
    assert {:ok, [{1, _, _, _, _, _, _, _, _, _}, {3, _, _, _, _, _, _, _, _, _}], :eof} =
             call(cn.name, {:read_records, {:type, "T"}, 0, 10, :backward, fmt})

    assert call(cn.name, {:read_records, {:stream, "none"}, 0, 10, :forward, fmt}) ==
             {:error, :stream_not_found}

    assert call(cn.name, {:read_records, {:stream, "$all"}, 0, 10, :forward, fmt}) ==
             {:error, {:invalid_stream_id, "$all"}}

    assert call(cn.name, {:read_records, {:nope, "s"}, 0, 10, :forward, fmt}) ==
             {:error, {:invalid_request, :read_records}}

    assert call(cn.name, {:read_records, :all, 0, 10, :forward, {ExESDB.EventRecord, 1}}) ==
             {:error, {:invalid_request, :read_records}}
  end

  test "read_packed pages and read_parts parts are the NIF's records field for field, " <>
         "large events too",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    {:ok, nif} = :ex_esdb_nif.open(Path.join(dir, "nif"), %{durability: :nosync})
    on_exit(fn -> :ex_esdb_nif.close(nif) end)
    term = {:term, :erlang.term_to_binary(%{a: [1, "x", 2.5]})}
    plain = {:term, :erlang.term_to_binary("just a binary")}
    big = :binary.copy(<<0xA5>>, 1_000_000)
    long = String.duplicate("é", 100)
    # 300 events of ~500 bytes: reads of them come in parts
    pad = :binary.copy("-", 400)

    commits = [
      {"s",
       [
         {<<1::128>>, "T", term, "", <<5::128>>, <<6::128>>},
         {<<2::128>>, "U", "raw", plain, nil, nil}
       ]},
      {long, [{<<3::128>>, "T", "", "", nil, <<7::128>>}]},
      {"big", [{<<4::128>>, "Big", big, big, nil, nil}, {<<8::128>>, "Big", term, "m", nil, nil}]},
      {"s", for(i <- 10..309, do: {<<i::128>>, "T#{rem(i, 3)}", "d#{i}" <> pad, "", nil, nil})}
    ]

    for {stream, evs} <- commits do
      assert {:ok, _, _} = call(cn.name, {:append, stream, :any, evs})
      ref = make_ref()
      :ok = :ex_esdb_nif.append(nif, ref, stream, :any, evs)
      assert_receive {^ref, {:ok, _, _}}, 10_000
    end

    # the time stamps are each store's own: compared apart
    strip = fn r ->
      assert r.created_at == DateTime.from_unix!(r.created_epoch, :microsecond)
      %{r | created_at: nil, created_epoch: nil}
    end

    reads = [
      {{:stream, "s"}, 0, :forward},
      {{:stream, "s"}, 150, :backward},
      {{:stream, long}, 0, :forward},
      {{:stream, "big"}, 0, :forward},
      {:all, 0, :forward},
      {:all, 18_446_744_073_709_551_615, :backward},
      {{:type, "T1"}, 0, :forward},
      {{:type, "none"}, 0, :forward}
    ]

    counts =
      for {source, from, dir} <- reads, count <- [1, 7, 1000], decode <- [true, false] do
        fmt = {ExESDB.EventRecord, decode}
        {:ok, page, next} = call(cn.name, {:read_packed, source, from, count, dir, fmt}, 30_000)
        assert {:ok, records} = ExESDB.CNode.Page.records(page, decode)

        assert {:ok, nif_records, ^next} =
                 :ex_esdb_nif.read_records(nif, source, from, count, dir, fmt)

        assert Enum.map(records, strip) == Enum.map(nif_records, strip),
               inspect({source, from, count, dir, decode})

        # read_parts: the same page, its parts ahead of the reply
        {parts, {:ok, last, ^next}} = read_parts(cn.name, {source, from, count, dir, fmt})
        cut = for p <- parts ++ [last], do: elem(ExESDB.CNode.Page.records(p, decode), 1)
        assert Enum.concat(cut) == records
        length(parts)
      end

    # the reads of more than a part's 64 KiB came in parts
    assert Enum.max(counts) >= 2

    # as read_records: errors, and the request's own name when malformed
    fmt = {ExESDB.EventRecord, true}

    assert call(cn.name, {:read_packed, {:stream, "none"}, 0, 10, :forward, fmt}) ==
             {:error, :stream_not_found}

    assert call(cn.name, {:read_packed, {:stream, "$all"}, 0, 10, :forward, fmt}) ==
             {:error, {:invalid_stream_id, "$all"}}

    assert call(cn.name, {:read_packed, {:nope, "s"}, 0, 10, :forward, fmt}) ==
             {:error, {:invalid_request, :read_packed}}

    assert call(cn.name, {:read_packed, :all, 0, 10, :forward}) ==
             {:error, {:invalid_request, :arity}}

    for {request, reply} <- [
          {{{:stream, "none"}, 0, 10, :forward, fmt}, {:error, :stream_not_found}},
          {{{:stream, "$all"}, 0, 10, :forward, fmt}, {:error, {:invalid_stream_id, "$all"}}},
          {{{:nope, "s"}, 0, 10, :forward, fmt}, {:error, {:invalid_request, :read_parts}}},
          {{:all, 0, 10, :forward}, {:error, {:invalid_request, :arity}}}
        ],
        do: assert(read_parts(cn.name, request) == {[], reply})
  end

  # {read_parts, ...}'s parts (binaries) and its reply
  defp read_parts(node, args) do
    ref = make_ref()
    send({:esdb, node}, {:call, self(), ref, Tuple.insert_at(args, 0, :read_parts)})
    parts(ref, [])
  end

  defp parts(ref, acc) do
    receive do
      {^ref, {:esdb_part, part}} when is_binary(part) -> parts(ref, [part | acc])
      {^ref, reply} -> {Enum.reverse(acc), reply}
    after
      30_000 -> flunk("no reply to read_parts")
    end
  end

  test "verify and backup run on threads of their own and answer as the NIF's", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    assert {:ok, 1, 1} = call(cn.name, {:append, "s", :any, [event(1)]})
    assert call(cn.name, {:verify}, 60_000) == :ok
    dest = Path.join(dir, "copy")
    assert call(cn.name, {:backup, dest}, 60_000) == :ok
    {:ok, copy} = :ex_esdb_nif.open(dest, %{create: false})

    assert {:ok, [{1, "s", 1, _, "T", "data-1", _, _, _, _}], :eof} =
             :ex_esdb_nif.read_stream(copy, "s", 0, 10, :forward)

    :ex_esdb_nif.close(copy)
    # a directory holding a store already: refused as the NIF refuses it
    {:ok, nif} = :ex_esdb_nif.open(Path.join(dir, "nif"), %{durability: :nosync})
    on_exit(fn -> :ex_esdb_nif.close(nif) end)
    ref = make_ref()
    :ok = :ex_esdb_nif.backup(nif, ref, dest)
    nif_reply = receive(do: ({^ref, r} -> r))
    assert {:error, _} = nif_reply
    assert call(cn.name, {:backup, dest}, 60_000) == nif_reply
    assert call(cn.name, {:backup, ""}) == {:error, {:invalid_request, :backup}}
    assert call(cn.name, {:backup, "a\0b"}) == {:error, {:invalid_request, :backup}}
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 1, true, false}
  end

  # One job per store at a time: the ones asked meanwhile are refused as
  # the NIF refuses them, not piled up on threads. The job is held (the
  # I/O shim holds the flush of a backup's copy while a file exists): one
  # that had ended already on a loaded machine let every later one run.
  @tag skip: not File.exists?(@shim) && "run make first"
  test "verify and backup asked while a job runs are refused as the NIF refuses them",
       %{dir: dir} do
    hold = Path.join(dir, "hold")
    shim = [{~c"LD_PRELOAD", String.to_charlist(@shim)}, {~c"ESDB_SHIM_HOLD_SYNC", ~c"#{hold}"}]
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    name = :"held_job_#{ExESDB.Test.Unique.id()}"
    {:ok, peer, node} = ExESDB.Test.Peer.start(%{name: name, args: args, env: shim})

    nif =
      try do
        :erpc.call(
          node,
          ExESDB.Test.HeldJob,
          :run,
          [Path.join(dir, "nif"), Path.join(dir, "nif_copy"), hold],
          120_000
        )
      after
        :peer.stop(peer)
      end

    assert nif.held, "the NIF's backup was not held in its flush"
    assert nif.refused == [{:error, :overloaded}, {:error, :overloaded}]
    assert nif.backup == :ok and nif.verify == :ok

    cn = dir |> start_cnode(nil, shim) |> await_ready()
    on_exit(fn -> File.rm(hold) end)
    hello!(cn.name)
    assert {:ok, 1, 1} = call(cn.name, {:append, "s", :any, [event(1)]})
    File.write!(hold, "")
    send({:esdb, cn.name}, {:call, self(), held = make_ref(), {:backup, Path.join(dir, "copy")}})
    ExESDB.Test.ClusterHelpers.wait_until(fn -> File.exists?(hold <> ".held") end, 30_000)
    refs = for _ <- 1..5, do: make_ref()
    for r <- refs, do: send({:esdb, cn.name}, {:call, self(), r, {:verify}})
    replies = for r <- refs, do: receive(do: ({^r, reply} -> reply))
    assert replies == List.duplicate({:error, :overloaded}, 5)
    assert call(cn.name, {:backup, Path.join(dir, "copy2")}) == {:error, :overloaded}
    File.rm!(hold)
    assert_receive {^held, :ok}, 60_000
    assert call(cn.name, {:verify}, 60_000) == :ok
  end

  test "term payloads are refused as the NIF refuses them", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    {:ok, nif} = :ex_esdb_nif.open(Path.join(dir, "nif"), %{durability: :nosync})
    on_exit(fn -> :ex_esdb_nif.close(nif) end)
    big = :erlang.term_to_binary(:binary.copy(<<0>>, 17 <<< 20), compressed: 9)
    cut = :erlang.term_to_binary({:a, "b"}) |> binary_part(0, 8)

    payloads = [
      {:term, :erlang.term_to_binary({:ok, [1, 2.5, "x", %{a: 1}]})},
      {:term, :erlang.term_to_binary(:binary.copy("abc", 1000), compressed: 6)},
      {:term, :erlang.term_to_binary(self())},
      {:term, :erlang.term_to_binary(make_ref())},
      {:term, :erlang.term_to_binary(fn -> :ok end)},
      {:term, :erlang.term_to_binary(hd(Port.list()))},
      {:term, :erlang.term_to_binary([self()], compressed: 6)},
      {:term, big},
      {:term, cut},
      {:term, "not a term"}
    ]

    for {p, i} <- Enum.with_index(payloads) do
      # the data refused, the metadata fine: the data's refusal stands
      ev = {<<i::128>>, "T", p, {:term, :erlang.term_to_binary(:ok)}, nil, nil}
      ref = make_ref()

      nif_reply =
        case :ex_esdb_nif.append(nif, ref, "s#{i}", :any, [ev]) do
          :ok -> receive(do: ({^ref, r} -> r))
          error -> error
        end

      assert call(cn.name, {:append, "s#{i}", :any, [ev]}) == nif_reply,
             "payload #{i}: the NIF answered #{inspect(nif_reply)}"
    end
  end

  test "a wrong cookie is refused and the C node goes on serving", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    good = Node.get_cookie()
    # Node.connect, not Node.ping: ping is a call to net_kernel, which a
    # C node does not serve
    :erlang.set_cookie(cn.name, :wrong_cookie)
    refute Node.connect(cn.name)
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: refused a connection")
    assert probe(cn.name, "hello", "wrong_cookie") == "refused"
    :erlang.set_cookie(cn.name, good)
    assert Node.connect(cn.name)
    hello!(cn.name)
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 0, false, false}
  end

  test "a frame over the cap closes that connection alone; the C node and others go on",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    # a peer claiming a 2 GiB frame: closed before anything is allocated
    assert probe(cn.name, "big_frame") == "closed"
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: probe")
    assert call(cn.name, {:append, "s", :any, [event(1)]}) == {:ok, 1, 1}

    # this VM sending more than max_append_bytes + 1 MiB in one message
    # a C node is a hidden node
    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    big = {<<2::128>>, "T", :binary.copy(<<0>>, 66 <<< 20), "", nil, nil}
    assert call(cn.name, {:append, "s", :any, [big]}, 2_000) == :no_reply
    assert_receive {:nodedown, node, _} when node == cn.name, 10_000
    :ok = :net_kernel.monitor_nodes(false, node_type: :all)
    assert alive?(cn)
    hello!(cn.name)
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 1, true, false}
  end

  test "frames and terms no BEAM sends are refused and the next request works",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    assert probe(cn.name, "non_term") == "closed"
    assert probe(cn.name, "not_a_message") == "no_reply"
    assert probe(cn.name, "foreign_pid") == "no_reply"

    for {mode, why} <- [
          truncated_binary: "truncated",
          huge_arity: "truncated",
          fun_request: "fun"
        ] do
      assert probe(cn.name, "#{mode}") =~ "{error, {invalid_request, #{why}}}"
      assert call(cn.name, {:stream_info, "s"}) == {:ok, 0, false, false}
    end

    assert probe(cn.name, "hello") =~ "{ok, 1}"
    assert alive?(cn)
  end

  test "a client that reads no replies stalls neither the store nor other clients",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    # 2,000 events of 1 KiB: each of the flood's 300 reads answers 2 MiB
    for n <- 1..20 do
      events =
        for i <- 1..100, do: {<<n * 1000 + i::128>>, "T", :binary.copy("x", 1024), "", nil, nil}

      assert {:ok, _, _} = call(cn.name, {:append, "s#{n}", :any, events})
    end

    flood =
      Port.open({:spawn_executable, @probe}, [
        :binary,
        {:line, 256},
        :exit_status,
        args: [Atom.to_string(cn.name), "flood"],
        env: [{~c"ESDB_PROBE_COOKIE", String.to_charlist(cookie())}]
      ])

    assert_receive {^flood, {:data, {:eol, "flooded"}}}, 10_000

    for n <- 1..20 do
      assert {:ok, _, _} = call(cn.name, {:append, "after", :any, [event(n)]})
      assert {:ok, [_ | _], _} = call(cn.name, {:read_stream, "s#{n}", 0, 100, :forward})
    end

    assert call(cn.name, {:stream_info, "after"}) == {:ok, 20, true, false}

    # kill -9 of that client with its replies unsent: its connection goes,
    # the C node and this VM's connection stay
    {:os_pid, os_pid} = Port.info(flood, :os_pid)
    {_, 0} = System.cmd("kill", ["-9", "#{os_pid}"])
    assert_receive {^flood, {:exit_status, 137}}, 10_000
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: probe")
    assert alive?(cn)
    assert {:ok, 21, _} = call(cn.name, {:append, "after", :any, [event(21)]})
  end

  test "replies larger than the socket holds, read late, arrive whole and the connection goes on",
       %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)
    # 8 events of 1 MiB of random bytes: each read answers 8 MiB, over
    # the C node's send buffer and the probe's receive window together
    for n <- 1..8 do
      ev = {<<n::128>>, "T", :crypto.strong_rand_bytes(1 <<< 20), "", nil, nil}
      assert {:ok, ^n, _} = call(cn.name, {:append, "big", :any, [ev]})
    end

    # what the probe's reads must answer, read an event at a time (each
    # reply fits the socket)
    events =
      for n <- 1..8 do
        assert {:ok, [e], _} = call(cn.name, {:read_stream, "big", n, 1, :forward})
        e
      end

    assert Enum.map(events, &elem(&1, 0)) == Enum.to_list(1..8)
    file = Path.join(dir, "reply")

    {out, 0} =
      System.cmd(@probe, [Atom.to_string(cn.name), "slow_reader", file],
        env: [{"ESDB_PROBE_COOKIE", cookie()}]
      )

    # the first reply was part written, the rest left to the writer; the
    # two after it queued behind
    assert ["read 3", "reply " <> hello] = String.split(String.trim(out), "\n")
    assert hello =~ "{ok, 1}"

    for r <- 1..3 do
      assert {_ref, {:ok, ^events, :eof}} = :erlang.binary_to_term(File.read!("#{file}.#{r}"))
    end

    assert alive?(cn)
    assert call(cn.name, {:stream_info, "big"}) == {:ok, 8, true, false}
  end

  test "clients that connect and never handshake hold up no one else", %{dir: dir} do
    cn = dir |> start_cnode() |> await_ready()

    {:ok, [{_, port}]} =
      :erl_epmd.names(~c"localhost")
      |> then(fn {:ok, ns} ->
        {:ok,
         for(
           {n, p} <- ns,
           List.to_atom(n ++ ~c"@" ++ String.to_charlist(host())) == cn.name,
           do: {n, p}
         )}
      end)

    # each would hold a handshake for its 5 s limit: three in a row
    # outlast net_kernel's 7 s connection setup
    silent =
      for _ <- 1..3 do
        {:ok, s} = :gen_tcp.connect(~c"127.0.0.1", port, [:binary, active: false])
        s
      end

    assert Node.connect(cn.name)
    hello!(cn.name)
    Enum.each(silent, &:gen_tcp.close/1)
  end

  test "links and exit signals to the C node's pids are ignored", %{dir: dir} do
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"

    args =
      ~w(--name #{name} --store #{Path.join(dir, "store")} --cookie-stdin --stop-on-eof --creation 123457)

    cn = dir |> start_cnode(args) |> Map.put(:name, name) |> await_ready()
    hello!(cn.name)
    # a pid on the C node, as its creation makes them
    node_name = Atom.to_string(name)

    pid =
      :erlang.binary_to_term(
        <<131, 88, 119, byte_size(node_name), node_name::binary, 0::32, 0::32, 123_457::32>>
      )

    assert node(pid) == name
    Process.flag(:trap_exit, true)
    true = Process.link(pid)
    true = Process.exit(pid, :kill)
    true = Process.unlink(pid)
    # a request sent to a pid (SEND, not REG_SEND) is served the same
    ref = make_ref()
    send(pid, {:call, self(), ref, {:stats}})
    assert_receive {^ref, {:ok, %{events: 0}}}, 5_000
    assert call(cn.name, {:append, "s", :any, [event(1)]}) == {:ok, 1, 1}
    refute_received {:EXIT, ^pid, _}
    assert alive?(cn)
  end

  test "connections over --max-conns are closed after their handshake", %{dir: dir} do
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"

    args =
      ~w(--name #{name} --store #{Path.join(dir, "store")} --cookie-stdin --stop-on-eof --max-conns 1)

    cn = dir |> start_cnode(args) |> Map.put(:name, name) |> await_ready()
    hello!(cn.name)
    assert probe(cn.name, "hello") == "closed"
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: refused probe")
    assert call(cn.name, {:stream_info, "s"}) == {:ok, 0, false, false}
  end

  test "a connection silent for longer than --idle-ms is closed", %{dir: dir} do
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"

    # a 1 s limit is allowed only for clients whose net_ticktime is 1 s
    # (they tick every 250 ms); the probe sends nothing at all
    args = ~w(--name #{name} --store #{Path.join(dir, "store")} --cookie-stdin --stop-on-eof
         --net-ticktime 1 --idle-ms 1000)

    cn = dir |> start_cnode(args) |> Map.put(:name, name) |> await_ready()
    assert probe(cn.name, "silent") == "closed"
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: probe")
    hello!(cn.name)
  end

  test "an --idle-ms under the clients' net tick time is refused: a healthy idle node " <>
         "ticks only every net_ticktime / 4 (15 s by default)",
       %{dir: dir} do
    base = ~w(--name cnode#{ExESDB.Test.Unique.id()}@#{host()} --store #{Path.join(dir, "store")})

    for {args, line} <- [
          {~w(--idle-ms 14999), "--idle-ms below the net tick time"},
          {~w(--idle-ms 59999), "--idle-ms below the net tick time"},
          {~w(--net-ticktime 5 --idle-ms 4999), "--idle-ms below the net tick time"},
          {~w(--net-ticktime 0), "--net-ticktime out of range"},
          # no longer taken modulo 2^32 (as 120,000 ms)
          {~w(--idle-ms 4295087296), "--idle-ms out of range"}
        ] do
      cn = start_cnode(dir, base ++ ["--cookie-stdin" | args])
      assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: " <> line), inspect(args)
      assert_receive {_, {:exit_status, 2}}, 5_000
    end

    # the tick time itself is a limit, the default's floor
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"
    args = ~w(--name #{name} --store #{Path.join(dir, "s2")} --cookie-stdin --idle-ms 60000)
    dir |> start_cnode(args) |> Map.put(:name, name) |> await_ready()
    hello!(name)
  end

  # What a BEAM node needs to reach a C node that epmd does not know:
  # an -epmd_module answering the C node's port (ESDB_CNODE_PORT).
  @no_epmd_module ~S'''
  -module(cnode_test_epmd).
  -export([start_link/0, register_node/2, register_node/3, listen_port_please/2,
           port_please/2, port_please/3, address_please/3, names/1]).
  start_link() -> ignore.
  register_node(_Name, _Port) -> {ok, 16#5eed}.
  register_node(_Name, _Port, _Family) -> {ok, 16#5eed}.
  listen_port_please(_Name, _Host) -> {ok, 0}.
  port_please(Name, Host) -> port_please(Name, Host, infinity).
  port_please(_Name, _Host, _Timeout) ->
      {port, list_to_integer(os:getenv("ESDB_CNODE_PORT")), 6}.
  address_please(_Name, Host, Family) -> inet:getaddr(Host, Family).
  names(_Host) -> {error, address}.
  '''
  @call_module ~S'''
  -module(cnode_test_call).
  -export([call/2]).
  call(Node, Request) ->
      Ref = make_ref(),
      {esdb, Node} ! {call, self(), Ref, Request},
      receive {Ref, Reply} -> Reply after 5000 -> no_reply end.
  '''

  defp load_into(peer, dir, source) do
    [_, mod] = Regex.run(~r/-module\((\w+)\)/, source)
    path = Path.join(dir, mod <> ".erl")
    File.write!(path, source)
    {:ok, mod, bin} = :compile.file(String.to_charlist(path), [:binary, :report])
    {:module, ^mod} = :peer.call(peer, :code, :load_binary, [mod, String.to_charlist(path), bin])
    mod
  end

  test "with --no-epmd it is not registered, and a node with an -epmd_module reaches it",
       %{dir: dir} do
    name = :"cnode#{ExESDB.Test.Unique.id()}@#{host()}"

    args =
      ~w(--name #{name} --store #{Path.join(dir, "store")} --cookie-stdin --stop-on-eof --no-epmd)

    cn = dir |> start_cnode(args) |> Map.put(:name, name)
    assert {:ok, "ready " <> rest} = await_line(cn.port, "ready ")
    [_, port] = String.split(rest, " ")
    {:ok, names} = :erl_epmd.names(~c"localhost")

    refute Enum.any?(names, fn {n, _} ->
             List.to_atom(n ++ ~c"@" ++ String.to_charlist(host())) == name
           end)

    refute Node.connect(name)

    {:ok, peer, _} =
      ExESDB.Test.Peer.start(%{
        connection: :standard_io,
        # read when distribution starts, below, once the module is loaded
        args: [~c"-epmd_module", ~c"cnode_test_epmd"],
        env: [{~c"ESDB_CNODE_PORT", String.to_charlist(port)}]
      })

    epmd = load_into(peer, dir, @no_epmd_module)
    call = load_into(peer, dir, @call_module)
    assert epmd == :cnode_test_epmd
    peer_name = :"noepmd#{ExESDB.Test.Unique.id()}@#{host()}"
    {:ok, _} = :peer.call(peer, :net_kernel, :start, [[peer_name, :shortnames]])
    true = :peer.call(peer, :erlang, :set_cookie, [Node.get_cookie()])
    assert :peer.call(peer, call, :call, [name, {:hello, 1}]) == {:ok, 1}
    assert :peer.call(peer, call, :call, [name, {:stream_info, "s"}]) == {:ok, 0, false, false}
    :peer.stop(peer)
  end

  test "the cookie is never an argument and never a file others can read", %{dir: dir} do
    store = Path.join(dir, "store")
    name = "cnode#{ExESDB.Test.Unique.id()}@#{host()}"
    base = ["--name", name, "--store", store]
    cn = start_cnode(dir, base ++ ["--cookie", "x"])
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: the cookie is never an argument")

    file = Path.join(dir, "cookie")
    File.write!(file, cookie() <> "\n")
    File.chmod!(file, 0o644)
    cn = start_cnode(dir, base ++ ["--cookie-file", file])
    assert {:ok, _} = await_line(cn.port, "ex_esdb_cnode: cookie file is readable by others")
    assert_receive {_, {:exit_status, 2}}, 5_000

    File.chmod!(file, 0o400)
    cn = start_cnode(dir, base ++ ["--cookie-file", file]) |> Map.put(:name, String.to_atom(name))
    await_ready(cn)
    hello!(cn.name)
  end

  @atoms [:any, :no_stream, :stream_exists, :forward, :backward, nil, :term, :hello, :append]

  defp junk(depth \\ 0) do
    case :rand.uniform(if depth > 2, do: 9, else: 13) do
      1 -> :rand.uniform(1 <<< 20) - 1000
      2 -> Enum.random([0, 1, -1, 1 <<< 64, (1 <<< 64) - 1, (1 <<< 64) - 3, 1 <<< 300])
      3 -> Enum.random(@atoms)
      4 -> :crypto.strong_rand_bytes(:rand.uniform(40) - 1)
      5 -> :crypto.strong_rand_bytes(16)
      6 -> :rand.uniform() * 1.0e6
      7 -> Enum.random([make_ref(), self(), fn -> :ok end, &Enum.map/2])
      8 -> Enum.random(["s", "", "$all", String.duplicate("x", 1025)])
      9 -> {:term, Enum.random([<<131, 200>>, :erlang.term_to_binary(self()), <<131, 97>>])}
      10 -> for _ <- 1..:rand.uniform(4), do: junk(depth + 1)
      11 -> [junk(depth + 1) | junk(depth + 1)]
      12 -> %{junk(depth + 1) => junk(depth + 1)}
      13 -> List.to_tuple(for _ <- 0..:rand.uniform(6), do: junk(depth + 1))
    end
  end

  # A valid request with one element (at any depth) replaced by junk.
  defp mutate(term) when is_tuple(term) and tuple_size(term) > 0 do
    i = :rand.uniform(tuple_size(term)) - 1
    put_elem(term, i, mutate_or_replace(elem(term, i)))
  end

  defp mutate([_ | _] = list) do
    i = :rand.uniform(length(list)) - 1
    List.update_at(list, i, &mutate_or_replace/1)
  end

  defp mutate(_), do: junk()

  defp mutate_or_replace(t), do: if(:rand.uniform(3) == 1, do: junk(), else: mutate(t))

  test "mutated requests get an {:ok, _} or {:error, _} reply, never a crash", %{dir: dir} do
    seed = String.to_integer(System.get_env("ESDB_SEED") || "20261201")
    :rand.seed(:exsss, {seed, seed, seed})
    runs = String.to_integer(System.get_env("ESDB_CNODE_FUZZ") || "300")
    cn = dir |> start_cnode() |> await_ready()
    hello!(cn.name)

    valid = [
      {:append, "s", :any, [event(1), event(2)]},
      {:read_stream, "s", 0, 10, :forward},
      {:read_all, 0, 10, :backward},
      {:stream_info, "s"},
      {:hello, 1},
      # this process as a session: pushes may come, call/3 skips them
      {:session_open, 100},
      {:session_join, {:stream, "s"}},
      {:session_credit, 10},
      {:session_leave, 1},
      {:session_close}
    ]

    for i <- 1..runs do
      request = valid |> Enum.random() |> mutate()
      reply = call(cn.name, request, 10_000)

      assert match?({:ok, _}, reply) or match?({:ok, _, _}, reply) or
               match?({:ok, _, _, _}, reply) or match?({:error, _}, reply) or reply == :ok,
             "run #{i} (seed #{seed}): #{inspect(request, limit: 20)} -> #{inspect(reply)}"
    end

    assert alive?(cn)
    # and serving
    assert {:ok, 1, _} = call(cn.name, {:append, "after", :no_stream, [event(1)]})
    assert {:ok, 1, true, false} = call(cn.name, {:stream_info, "after"})
  end
end
