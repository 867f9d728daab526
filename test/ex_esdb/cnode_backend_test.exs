defmodule ExESDB.CNodeBackendTest do
  # ExESDB.Backend.CNode with real C nodes (priv/ex_esdb_cnode) and real
  # :peer client nodes: the launcher, a C node started elsewhere, kill -9
  # of the C node under load and of a client node.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [wait_until: 2, pause_os_process!: 1]
  alias ExESDB.{NewEvent, Streams, Subscriptions}
  alias ExESDB.CNode.Launcher
  alias ExESDB.Test.CNodeCluster

  @moduletag timeout: 180_000
  @bin CNodeCluster.bin()

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_cnb_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp start_system(dir, opts) do
    opts =
      Keyword.merge(
        [
          store_id: :"cnb_#{ExESDB.Test.Unique.id()}",
          data_dir: dir,
          durability: :nosync
        ],
        opts
      )

    start_supervised!({ExESDB.System, opts})
    opts[:store_id]
  end

  defp event(id), do: %NewEvent{event_type: "t", event_id: id, data: %{id: id}}

  defp ids(store, stream) do
    {:ok, events} = Streams.get_events(store, stream, 1, 100_000)
    MapSet.new(events, & &1.event_id)
  end

  test "a launched C node serves the store; this VM calls no NIF for it", %{dir: dir} do
    store = start_system(dir, backend: :cnode)
    assert {:ok, %{backend: ExESDB.Backend.CNode}} = ExESDB.Store.fetch(store)
    os_pid = Launcher.os_pid(store)
    assert File.read!("/proc/#{os_pid}/cmdline") =~ "ex_esdb_cnode"
    # the cookie is not on its command line
    refute File.read!("/proc/#{os_pid}/cmdline") =~ Atom.to_string(Node.get_cookie())
    # its idle limit is kept above this node's net tick time
    assert File.read!("/proc/#{os_pid}/cmdline") =~
             "--net-ticktime\0#{:net_kernel.get_net_ticktime()}\0"

    assert {:ok, 1} = Streams.append_events(store, "s", :any, [event(ExESDB.UUID.uuid4())])
    assert {:ok, [%{data: %{id: _}, event_number: 1}]} = Streams.get_events(store, "s", 1, 10)

    # a stored term naming a pid is refused as the NIF refuses it
    assert ExESDB.Backend.CNode.decode_term(:erlang.term_to_binary({self()})) ==
             {:error, {:undecodable, :pid}}

    assert ExESDB.Backend.CNode.decode_term(<<131, 100, 0, 3, "zq\x01">>) ==
             {:error, {:undecodable, :unknown_atom}}

    assert ExESDB.Backend.CNode.decode_term("nope") == {:error, {:undecodable, :malformed}}

    # maintenance runs in the C node
    assert :ok = ExESDB.System.verify(store)
    assert {:ok, %{events: 1, streams: 1}} = ExESDB.System.stats(store)
    # the copy's store id names its C node in epmd: unique on this machine
    copy_id = :"cnb_copy#{ExESDB.Test.Unique.id()}"
    assert :ok = ExESDB.System.backup(store, Path.join(dir, "copy/#{copy_id}"))
    copy = start_system(Path.join(dir, "copy"), store_id: copy_id, backend: :cnode)
    assert {:ok, [%{event_number: 1}]} = Streams.get_events(copy, "s", 1, 10)
  end

  test "a read of many parts (read_parts) is the NIF backend's read, record for record",
       %{dir: dir} do
    cnode = start_system(Path.join(dir, "c"), backend: :cnode)
    nif = start_system(Path.join(dir, "n"), [])
    pad = String.duplicate("x", 1_000)

    for n <- 1..4 do
      evs =
        for i <- 1..200,
            do: %NewEvent{
              event_type: "t#{rem(i, 3)}",
              event_id: ExESDB.UUID.uuid4(),
              data: %{n: n, i: i, pad: pad},
              metadata: if(rem(i, 2) == 0, do: %{m: i}, else: nil)
            }

      for store <- [cnode, nif],
          do: assert({:ok, _} = Streams.append_events(store, "s", :any, evs))
    end

    # the time stamps are each store's own
    strip = fn r -> %{r | created_at: nil, created_epoch: nil} end
    {:ok, c} = ExESDB.Store.fetch(cnode)
    {:ok, n} = ExESDB.Store.fetch(nif)

    # 800 events of ~1 KB: a page of them is a dozen parts
    for {source, from, dir} <- [
          {{:stream, "s"}, 1, :forward},
          {:all, 0, :forward},
          {{:stream, "s"}, 800, :backward}
        ],
        decode <- [true, false] do
      assert {:ok, records, next} = c.backend.read(c, source, from, 1_000, dir, decode: decode)
      assert {:ok, nif_records, ^next} = n.backend.read(n, source, from, 1_000, dir, decode: decode)
      assert length(records) == 800
      assert Enum.map(records, strip) == Enum.map(nif_records, strip)
    end

    # no part left behind in this process's mailbox
    refute_received {_ref, {:esdb_part, _}}
  end

  test "cnode_cookie: a 0400 file the launched C node and this node's connection read",
       %{dir: dir} do
    File.mkdir_p!(dir)
    file = Path.join(dir, "cookie")
    File.write!(file, Atom.to_string(Node.get_cookie()) <> "\n")
    File.chmod!(file, 0o400)
    store = start_system(dir, backend: :cnode, cnode_cookie: file)
    cmdline = File.read!("/proc/#{Launcher.os_pid(store)}/cmdline")
    assert cmdline =~ "--cookie-file"
    refute cmdline =~ Atom.to_string(Node.get_cookie())
    assert {:ok, 1} = Streams.append_events(store, "s", :any, [event(ExESDB.UUID.uuid4())])
  end

  defp ok({:ok, _} = ok), do: ok
  defp ok(_), do: nil

  test "a C node that does not answer in time: a write's outcome is unknown, a read times " <>
         "out, and the late replies reach no mailbox",
       %{dir: dir} do
    store = start_system(dir, backend: :cnode, timeout: 300)
    os_pid = Launcher.os_pid(store)
    pause_os_process!(os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{os_pid}"]) end)
    id = ExESDB.UUID.uuid4()
    assert {:error, :outcome_unknown} = Streams.append_events(store, "s", :any, [event(id)])
    assert {:error, :timeout} = Streams.get_version(store, "s")
    # a read (read_parts) too
    {:ok, s} = ExESDB.Store.fetch(store)
    assert {:error, :timeout} = ExESDB.Backend.CNode.read(s, :all, 0, 10, :forward)
    {_, 0} = System.cmd("kill", ["-CONT", "#{os_pid}"])
    # the C node answers both once it runs again (and the cancel the
    # write's give-up sent, which may withdraw it: its outcome is
    # unknown): nobody gets them
    {:ok, v} = wait_until(fn -> Streams.get_version(store, "s") |> ok() end, 10_000)
    assert v in [0, 1]
    if v == 1, do: assert(MapSet.member?(ids(store, "s"), id))
    refute_receive {_ref, _reply}, 500
  end

  test "kill -9 of the C node under load: callers get an error at once, the launcher " <>
         "starts it again, every acknowledged append is there, a persistent subscription " <>
         "resumes from its checkpoint with no gap, a transient subscriber is told",
       %{dir: dir} do
    # a long timeout: a caller answered before it learnt of the kill
    # from the connection, not from waiting
    store = start_system(dir, backend: :cnode, timeout: 60_000)
    os_pid = Launcher.os_pid(store)
    test = self()

    # a backlog on w1 the persistent subscription is far from done with
    # at the kill: what it has not read yet is only in the store
    for _ <- 1..100 do
      batch = for _ <- 1..100, do: event(ExESDB.UUID.uuid4())
      {:ok, _} = Streams.append_events(store, "w1", :any, batch)
    end

    # a transient subscriber to everything, told when the C node goes
    _transient =
      spawn_link(fn ->
        {:ok, t} = Subscriptions.subscribe(store, {:by_stream, "$all"}, self(), credit: :infinity)
        send(test, {:transient, t})
        transient_loop(test)
      end)

    assert_receive {:transient, t_sub}, 5_000

    # the persistent one: 20 delivered, 3 acknowledged (the checkpoint),
    # the others held unacknowledged at the kill
    {:ok, sub} = Subscriptions.subscribe_to(store, "p", {:by_stream, "w1"}, self(), buffer_size: 20)
    assert_receive {:subscribed, ^sub}, 5_000
    before = receive_numbers(20, [])
    assert before == Enum.to_list(1..20)
    :ok = Subscriptions.ack_event(store, sub, 3)
    wait_until(fn -> match?({:ok, {_, 3, _, _}}, checkpoint(store, "p")) end, 5_000)

    writers =
      for w <- 1..4 do
        Task.async(fn -> write_loop(store, "w#{w}", test, []) end)
      end

    # some acknowledged appends first
    wait_until(fn -> Enum.sum(for _ <- 1..4, do: receive_acks()) > 0 end, 10_000)
    wait_until(fn -> match?({:ok, v} when v > 10_020, Streams.get_version(store, "w1")) end, 10_000)
    {_, 0} = System.cmd("kill", ["-9", "#{os_pid}"])
    assert_receive {:transient_down, ^t_sub, :closed}, 5_000

    # started again, and serving
    wait_until(fn -> Launcher.os_pid(store) not in [nil, os_pid] end, 20_000)

    wait_until(
      fn ->
        match?({:ok, _}, Streams.append_events(store, "after", :any, [event(ExESDB.UUID.uuid4())]))
      end,
      20_000
    )

    for w <- writers, do: send(w.pid, :stop)
    results = Enum.map(writers, &Task.await(&1, 30_000))

    errors = for {_, log} <- results, {_, {:error, e}, _ms} <- log, do: e
    assert errors != [], "no caller was in flight at the kill"

    for e <- errors,
        do: assert(e in [:outcome_unknown] or match?({:unreachable, _}, e), inspect(e))

    # no call waited for its timeout: each learnt of the kill from the
    # connection
    slowest =
      results |> Enum.flat_map(fn {_, log} -> for {_, _, ms} <- log, do: ms end) |> Enum.max()

    assert slowest < 5_000

    # every acknowledged append is there
    for {stream, log} <- results do
      acked = for {id, {:ok, _}, _} <- log, do: id
      assert acked != []
      assert MapSet.subset?(MapSet.new(acked), ids(store, stream)), stream
    end

    # the persistent subscription went on from where it was (its
    # checkpoint, 3, or later): acking as it goes, its subscriber gets
    # every event of w1 after the checkpoint, in order, none missing,
    # through the last one written (those it held unacked at the kill
    # possibly twice: at least once)
    assert {:ok, {_, checkpoint, _, _}} = checkpoint(store, "p")
    assert checkpoint >= 3
    {:ok, last} = Streams.get_version(store, "w1")
    {_, w1_log} = List.keyfind(results, "w1", 0)
    :ok = Subscriptions.ack_event(store, sub, 20)
    records = receive_acking(store, sub, last, [])
    got = records |> Enum.map(& &1.event_number)
    first_seen = Enum.uniq(before ++ got) |> Enum.filter(&(&1 > 3))
    assert first_seen == Enum.to_list(4..last)

    delivered = MapSet.new(records, & &1.event_id)
    acked_ids = for {id, {:ok, _}, _} <- w1_log, do: id
    assert MapSet.subset?(MapSet.new(acked_ids), delivered)
    assert Process.alive?(sub)
  end

  # Events of the persistent subscription, each batch acked, until the
  # one numbered `last`.
  defp receive_acking(store, sub, last, acc) do
    receive do
      {:events, records} ->
        :ok = Subscriptions.ack_event(store, sub, List.last(records).event_number)
        acc = Enum.reverse(records, acc)

        if List.last(records).event_number >= last,
          do: Enum.reverse(acc),
          else: receive_acking(store, sub, last, acc)
    after
      20_000 ->
        got = Enum.map(acc, & &1.event_number)
        flunk("waited for #{last}, got up to #{inspect(Enum.take(got, 5))}")
    end
  end

  # Drops its events; tells the test when its subscription goes down.
  defp transient_loop(test) do
    receive do
      {:subscription_down, t, why} -> send(test, {:transient_down, t, why})
      _ -> transient_loop(test)
    end
  end

  # Event numbers of the next n events delivered.
  defp receive_numbers(n, acc) when length(acc) >= n, do: Enum.reverse(acc)

  defp receive_numbers(n, acc) do
    receive do
      {:events, records} ->
        receive_numbers(n, Enum.reverse(Enum.map(records, & &1.event_number), acc))
    after
      10_000 -> flunk("got #{inspect(Enum.reverse(acc))}, wanted #{n}")
    end
  end

  test "kill -9 of the C node: pub_sub broadcasts go on once it is back", %{dir: dir} do
    Process.register(self(), :cnb_pub_sub)
    store = start_system(dir, backend: :cnode, pub_sub: {ExESDB.Test.FakePubSub, :cnb_pub_sub})
    system = Process.whereis(ExESDB.System.system_name(store))
    broadcaster = child(system, ExESDB.Subscriptions.Broadcaster)
    os_pid = Launcher.os_pid(store)
    assert {:ok, 1} = Streams.append_events(store, "a", :any, [event(ExESDB.UUID.uuid4())])
    assert_receive {:broadcast, _, {:events, [%{position: 1}]}}, 5_000

    {_, 0} = System.cmd("kill", ["-9", "#{os_pid}"])
    wait_until(fn -> Launcher.os_pid(store) not in [nil, os_pid] end, 20_000)

    # appended once the broadcaster is a member again
    wait_until(
      fn ->
        Streams.append_events(store, "a", :any, [event(ExESDB.UUID.uuid4())])

        receive do
          {:broadcast, _, {:events, _}} -> true
        after
          100 -> false
        end
      end,
      20_000
    )

    # the same broadcaster: it joined again, it did not crash (a crash
    # for each restart would soon exhaust the system's restarts)
    assert child(system, ExESDB.Subscriptions.Broadcaster) == broadcaster
  end

  defp child(sup, id) do
    {^id, pid, _, _} = sup |> Supervisor.which_children() |> List.keyfind(id, 0)
    pid
  end

  defp checkpoint(store, name) do
    {:ok, s} = ExESDB.Store.fetch(store)
    s.backend.checkpoint_get(s, name)
  end

  # Positions of the next n events delivered that pass keep?.
  defp receive_positions(n, acc, _keep?) when length(acc) >= n,
    do: acc |> Enum.reverse() |> Enum.take(n)

  defp receive_positions(n, acc, keep?) do
    receive do
      {:events, records} ->
        new = for r <- records, keep?.(r.position), do: r.position
        receive_positions(n, Enum.reverse(new, acc) |> Enum.uniq(), keep?)
    after
      10_000 -> flunk("got #{inspect(Enum.reverse(acc))}, wanted #{n}")
    end
  end

  defp receive_acks do
    receive do
      :ack -> 1
    after
      10 -> 0
    end
  end

  # Appends one event a call until told to stop: [{id, reply, ms}].
  defp write_loop(store, stream, test, log) do
    receive do
      :stop -> {stream, Enum.reverse(log)}
    after
      0 ->
        id = ExESDB.UUID.uuid4()
        t0 = System.monotonic_time(:millisecond)
        reply = Streams.append_events(store, stream, :any, [event(id)])
        ms = System.monotonic_time(:millisecond) - t0
        if match?({:ok, _}, reply), do: send(test, :ack)
        # a C node down answers at once: do not spin on it
        if match?({:error, _}, reply), do: Process.sleep(5)
        write_loop(store, stream, test, [{id, reply, ms} | log])
    end
  end

  defp start_cnode(dir), do: CNodeCluster.start_single(@bin, "cnbext", Path.join(dir, "ext"))

  test "a C node started elsewhere (cnode:), and kill -9 of another client node",
       %{dir: dir} do
    cnode = start_cnode(dir)
    store = start_system(dir, cnode: cnode)
    assert {:ok, %{backend: ExESDB.Backend.CNode}} = ExESDB.Store.fetch(store)
    assert {:ok, 1} = Streams.append_events(store, "here", :any, [event(ExESDB.UUID.uuid4())])

    # a second client node on the same C node, writing when killed
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, peer_node} =
      ExESDB.Test.Peer.start(%{name: :"cnbpeer#{ExESDB.Test.Unique.id()}", args: args})

    :ok =
      :erpc.call(peer_node, ExESDB.Test.ClusterPeer, :start, [
        [store_id: store, data_dir: dir, cnode: cnode]
      ])

    assert {:ok, 1} =
             :erpc.call(peer_node, ExESDB.Test.ClusterPeer, :append, [
               store,
               "there",
               ExESDB.UUID.uuid4()
             ])

    peer_os_pid = :erpc.call(peer_node, :os, :getpid, [])

    # a subscriber there, one here: a member each on the C node
    there = :erpc.call(peer_node, :erlang, :spawn, [Process, :sleep, [:infinity]])

    {:ok, _} =
      :erpc.call(peer_node, ExESDB.Subscriptions, :subscribe, [store, {:by_stream, "$all"}, there])

    {:ok, sub} = Subscriptions.subscribe(store, {:by_stream, "here"})
    assert {:ok, %{subscribers: 2}} = ExESDB.System.stats(store)

    :erpc.cast(peer_node, ExESDB.Test.ClusterPeer, :read_your_writes, [store, "there", 100_000])
    wait_until(fn -> match?({:ok, v} when v > 20, Streams.get_version(store, "there")) end, 10_000)
    {_, 0} = System.cmd("kill", ["-9", "#{peer_os_pid}"])
    # the peer's control process notices its node gone
    ref = Process.monitor(peer)
    assert_receive {:DOWN, ^ref, _, _, _}, 10_000

    # its session and member are dropped on the C node
    wait_until(fn -> match?({:ok, %{subscribers: 1}}, ExESDB.System.stats(store)) end, 10_000)

    # this client goes on, on the same C node, unaffected, its
    # subscription too
    for n <- 2..50 do
      assert {:ok, ^n} = Streams.append_events(store, "here", :any, [event(ExESDB.UUID.uuid4())])
    end

    assert receive_positions(49, [], &(&1 > 1)) |> length() == 49
    refute_received {:subscription_down, ^sub, _}

    assert {:ok, v} = Streams.get_version(store, "there")
    assert {:ok, events} = Streams.get_events(store, "there", 1, v)
    assert length(events) == v
  end
end
