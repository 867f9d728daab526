defmodule ExESDB.CNodeSessionTest do
  # Subscriptions on a real C node (priv/ex_esdb_cnode started through a
  # Port, as cnode_test.exs starts it) through ExESDB.CNode.Session:
  # what subscribers get (the NIF's records and messages, in order, none
  # missing), credit and the session's window under load, and how the C
  # node learns that subscribers, sessions and client nodes are gone.
  use ExUnit.Case, async: false
  import Bitwise

  alias ExESDB.CNode.Session
  alias ExESDB.Test.CNodeCluster

  @moduletag timeout: 180_000
  @bin System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnsub")}
  end

  defp host, do: CNodeCluster.host()

  defp start_cnode(dir, extra \\ []) do
    name = :"cnsub#{ExESDB.Test.Unique.id()}@#{host()}"

    args =
      ~w(--name #{name} --store #{Path.join(dir, "store")} --cookie-stdin --stop-on-eof --durability nosync) ++
        extra

    {port, os_pid} = CNodeCluster.open(@bin, args)
    CNodeCluster.kill_at_exit(os_pid)
    {:ok, _} = await_line(port, "ready ")
    %{port: port, name: name, os_pid: os_pid}
  end

  defp await_line(port, prefix) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        if String.starts_with?(line, prefix), do: {:ok, line}, else: await_line(port, prefix)

      {^port, {:exit_status, status}} ->
        {:exit, status}
    after
      10_000 -> :timeout
    end
  end

  defp call(node, request), do: CNodeCluster.call(node, request, 5_000)

  defp subscribers(node) do
    {:ok, %{subscribers: n}} = call(node, {:stats})
    n
  end

  defp wait_until(fun, ms \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    wait_loop(fun, deadline)
  end

  defp wait_loop(fun, deadline) do
    cond do
      fun.() ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        flunk("condition not met in time")

      true ->
        Process.sleep(10)
        wait_loop(fun, deadline)
    end
  end

  defp event(n, type \\ "T"),
    do: {<<n::128>>, type, {:term, :erlang.term_to_binary({:n, n})}, "m#{n}", nil, <<9::128>>}

  defp append!(node, stream, events) do
    {:ok, _, _} = call(node, {:append, stream, :any, events})
  end

  # Collects subscriber messages into the test process: {:got, tag, msg}.
  defp collector(test, tag) do
    spawn_link(fn -> collect(test, tag) end)
  end

  defp collect(test, tag) do
    receive do
      msg ->
        send(test, {:got, tag, msg})
        collect(test, tag)
    end
  end

  # The records the subscriber collected under `tag` got, until `want`.
  defp take(tag, want, acc \\ []) do
    if length(acc) >= want do
      Enum.reverse(acc)
    else
      receive do
        {:got, ^tag, {:events, records}} ->
          take(tag, want, add(acc, records))

        {:got, ^tag, {:events, id, records}} when is_integer(id) ->
          take(tag, want, add(acc, records))

        {:got, ^tag, {:events, records, since}} when is_integer(since) ->
          take(tag, want, add(acc, records))

        {:got, ^tag, other} ->
          flunk("#{tag}: #{inspect(other)}")
      after
        10_000 -> flunk("#{tag}: #{length(acc)} of #{want}")
      end
    end
  end

  defp add(acc, records) do
    assert length(records) in 1..256
    Enum.reverse(records, acc)
  end

  defp positions(records), do: Enum.map(records, & &1.position)

  test "a malformed push from the C node: the session stays, its subscribers hear of the gap",
       %{dir: dir} do
    Process.flag(:trap_exit, true)
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    {:ok, _, 0} = Session.subscribe(s, self(), :all)
    [cid] = Map.keys(:sys.get_state(s).members)

    for pushed <- [[:not_a_record], [%{data: {:unknown, "x"}, metadata: ""}]],
        do: send(s, {:esdb_events, cid, 0, pushed})

    assert %{} = Session.info(s)
    refute_received {:EXIT, ^s, _}
    assert_receive {:subscription_overflow, _, _}
  end

  test "a page push that does not parse: the session stays, its subscribers hear of the gap",
       %{dir: dir} do
    Process.flag(:trap_exit, true)
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    {:ok, _, 0} = Session.subscribe(s, self(), :all)
    [cid] = Map.keys(:sys.get_state(s).members)
    send(s, {:esdb_page, cid, 0, 1, "not a page"})
    assert %{} = Session.info(s)
    refute_received {:EXIT, ^s, _}
    assert_receive {:subscription_overflow, _, 1}
  end

  test "subscribers get every matching event once, in order, as the NIF's records",
       %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    test = self()
    all = collector(test, :all)
    stream = collector(test, :stream)
    type = collector(test, :type)
    {:ok, a, 0} = Session.subscribe(s, all, :all)
    {:ok, b, 0} = Session.subscribe(s, stream, {:stream, "s1"}, shape: :tagged)
    {:ok, _, 0} = Session.subscribe(s, type, {:type, "U"}, shape: :ranged)
    # a second subscriber of $all shares the member
    all2 = collector(test, :all2)
    {:ok, a2, 0} = Session.subscribe(s, all2, :all, format: {ExESDB.EventRecord, false})
    assert a != a2
    assert %{subscribers: 4, members: 3} = Session.info(s)
    # the C node counts subscriptions, as the NIF does, on 3 members
    assert subscribers(cn.name) == 4

    # 3,000 events: single appends, batches, and commits of 600 (three pushes)
    {:ok, nif} = :ex_esdb_nif.open(Path.join(dir, "nif"), %{durability: :nosync})
    on_exit(fn -> :ex_esdb_nif.close(nif) end)
    {:ok, _, _} = :ex_esdb_nif.subscribe(nif, self(), :all, {ExESDB.EventRecord, true})

    batches =
      Enum.map(1..200, &[&1]) ++
        Enum.chunk_every(201..1_000, 50) ++ Enum.chunk_every(1_001..3_000, 600)

    for batch <- batches do
      stream_id = if rem(hd(batch), 2) == 0, do: "s1", else: "s2"
      evs = Enum.map(batch, &event(&1, if(rem(&1, 3) == 0, do: "U", else: "T")))
      append!(cn.name, stream_id, evs)
      ref = make_ref()
      :ok = :ex_esdb_nif.append(nif, ref, stream_id, :any, evs)
      # a commit of 600 took over 100 ms (assert_receive's default) at load 18
      assert_receive {^ref, {:ok, _, _}}, 5_000
    end

    all_records = take(:all, 3_000)
    assert positions(all_records) == Enum.to_list(1..3_000)
    raw = take(:all2, 3_000)
    assert positions(raw) == Enum.to_list(1..3_000)
    assert {hd(raw).data, hd(raw).metadata} == {:erlang.term_to_binary({:n, 1}), "m1"}
    assert {hd(all_records).data, hd(all_records).metadata} == {{:n, 1}, "m1"}

    s1 = for b <- batches, rem(hd(b), 2) == 0, n <- b, do: n
    assert positions(take(:stream, length(s1))) == s1
    assert positions(take(:type, 1_000)) == Enum.filter(1..3_000, &(rem(&1, 3) == 0))

    # the records are the NIF's (but for the time they were written)
    strip = fn r -> %{r | created_at: nil, created_epoch: nil} end
    assert Enum.map(all_records, strip) == Enum.map(nif_records(3_000, []), strip)
    assert %DateTime{time_zone: "Etc/UTC"} = hd(all_records).created_at
    assert is_integer(b) and is_integer(a2)
    refute_received {:got, _, _}
  end

  test "a subscriber joining a member while pushes are on their way gets what follows its position, and all of it",
       %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    a = collector(self(), :a)
    b = collector(self(), :b)
    {:ok, _, 0} = Session.subscribe(s, a, :all)
    :sys.suspend(s)
    for n <- 1..50, do: append!(cn.name, "s", [event(n)])
    joined = Task.async(fn -> Session.subscribe(s, b, :all) end)
    # the call is in the session's mailbox behind 50 pushes
    wait_until(fn -> Process.info(s, :message_queue_len) >= {:message_queue_len, 51} end)
    for n <- 51..100, do: append!(cn.name, "s", [event(n)])
    wait_until(fn -> Process.info(s, :message_queue_len) >= {:message_queue_len, 101} end)
    :sys.resume(s)
    assert {:ok, _, last} = Task.await(joined)
    # the join came after the C node had pushed all 100
    assert last == 100
    for n <- 101..120, do: append!(cn.name, "s", [event(n)])
    assert positions(take(:a, 120)) == Enum.to_list(1..120)
    assert positions(take(:b, 20)) == Enum.to_list(101..120)
    assert subscribers(cn.name) == 2
  end

  test "a subscriber's credit: events past it end it with the first one it missed", %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    c = collector(self(), :c)
    {:ok, id, 0} = Session.subscribe(s, c, :all, credit: 100)
    append!(cn.name, "s", Enum.map(1..60, &event/1))
    assert length(take(:c, 60)) == 60
    assert Session.grant(s, id, 10) == :ok
    # 50 left: a commit of 50 fits, the next event does not
    append!(cn.name, "s", Enum.map(61..110, &event/1))
    assert positions(take(:c, 50)) == Enum.to_list(61..110)
    append!(cn.name, "s", [event(111)])
    assert_receive {:got, :c, {:subscription_overflow, {:transient, ^id}, 111}}, 5_000
    assert Session.grant(s, id, 1) == {:error, :subscription_not_found}
    # its member on the C node was left with it
    wait_until(fn -> subscribers(cn.name) == 0 end)
    assert %{subscribers: 0, members: 0} = Session.info(s)
  end

  test "a session that does not keep up: the C node queues at most its window, plain subscribers end, ranged ones see the gap",
       %{dir: dir} do
    cn = start_cnode(dir)
    window = 512
    {:ok, s} = Session.start_link(cnode: cn.name, window: window)
    plain = collector(self(), :plain)
    ranged = collector(self(), :ranged)
    {:ok, p, 0} = Session.subscribe(s, plain, :all)
    {:ok, _, 0} = Session.subscribe(s, ranged, {:type, "T"}, shape: :ranged)
    :sys.suspend(s)
    # 3,000 commits while the session reads nothing (fan-out follows the
    # acknowledgements: wait until the window is used up, then 1,000 more)
    for n <- 1..2_000, do: append!(cn.name, "s", [event(n)])
    wait_until(fn -> Process.info(s, :message_queue_len) >= {:message_queue_len, window} end)
    for n <- 2_001..3_000, do: append!(cn.name, "s", [event(n)])
    # a push per commit up to the window, a notice per member
    {:message_queue_len, queued} = Process.info(s, :message_queue_len)
    assert queued <= window + 2, "#{queued} messages queued"
    :sys.resume(s)
    # both members take from the one window: half of it each
    half = div(window, 2)
    assert positions(take(:plain, half)) == Enum.to_list(1..half)
    assert_receive {:got, :plain, {:subscription_overflow, {:transient, ^p}, first}}, 5_000
    assert first == half + 1
    assert positions(take(:ranged, half)) == Enum.to_list(1..half)
    # the ranged subscriber's next push says from where it goes on: a
    # gap after what it had, which it reads from the store
    append!(cn.name, "s", [event(3_001)])
    assert [{since, [at | _]} | _] = ranged_until(3_001, [])
    assert since > half + 1 and at >= since
    refute_received {:got, _, _}
    wait_until(fn -> subscribers(cn.name) == 1 end)
  end

  test "a subscriber's death, the session's end and its connection's close drop the C node's members",
       %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = GenServer.start(Session, cnode: cn.name)
    a = spawn(fn -> Process.sleep(:infinity) end)
    b = spawn(fn -> Process.sleep(:infinity) end)
    {:ok, _, _} = Session.subscribe(s, a, :all)
    {:ok, _, _} = Session.subscribe(s, b, {:stream, "x"})
    assert subscribers(cn.name) == 2
    Process.exit(b, :kill)
    wait_until(fn -> subscribers(cn.name) == 1 end)
    assert %{subscribers: 1, members: 1} = Session.info(s)
    # the session killed: the link's EXIT reaches the C node
    Process.exit(s, :kill)
    wait_until(fn -> subscribers(cn.name) == 0 end)

    # a session ending normally, too
    {:ok, s} = GenServer.start(Session, cnode: cn.name)
    {:ok, _, _} = Session.subscribe(s, a, :all)
    assert subscribers(cn.name) == 1
    GenServer.stop(s)
    wait_until(fn -> subscribers(cn.name) == 0 end)

    # kill -9 of a client node: its connection closes
    args = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, peer, pnode} =
      ExESDB.Test.Peer.start(%{name: :"cnsub_peer#{ExESDB.Test.Unique.id()}", args: args})

    on_exit(fn -> catch_exit(:peer.stop(peer)) end)
    {:ok, ps} = :erpc.call(pnode, GenServer, :start, [Session, [cnode: cn.name]])
    holder = :erpc.call(pnode, :erlang, :spawn, [:timer, :sleep, [:infinity]])
    {:ok, _, _} = :erpc.call(pnode, Session, :subscribe, [ps, holder, :all])
    {:ok, _, _} = :erpc.call(pnode, Session, :subscribe, [ps, holder, {:type, "T"}])
    {:ok, mine} = GenServer.start(Session, cnode: cn.name)
    me = collector(self(), :me)
    {:ok, _, _} = Session.subscribe(mine, me, :all)
    assert subscribers(cn.name) == 3
    os_pid = :erpc.call(pnode, :os, :getpid, [])
    {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])
    wait_until(fn -> subscribers(cn.name) == 1 end)
    # this node's session goes on
    append!(cn.name, "s", [event(1)])
    assert positions(take(:me, 1)) == [1]
  end

  test "sessions and subscriptions per connection are capped", %{dir: dir} do
    cn = start_cnode(dir, ~w(--max-sessions 1 --max-subscriptions 2))
    {:ok, s} = Session.start_link(cnode: cn.name)

    assert GenServer.start(Session, cnode: cn.name) ==
             {:error, {:limit_exceeded, :max_sessions, 1}}

    p = collector(self(), :p)
    {:ok, _, _} = Session.subscribe(s, p, :all)
    {:ok, a, _} = Session.subscribe(s, p, {:stream, "a"})

    # subscriptions count, whether or not they share a member
    for source <- [{:stream, "a"}, {:stream, "b"}] do
      assert Session.subscribe(s, p, source) ==
               {:error, {:limit_exceeded, :max_subscriptions, 2}}
    end

    assert subscribers(cn.name) == 2
    append!(cn.name, "a", [event(1)])
    assert length(take(:p, 2)) == 2
    :ok = Session.unsubscribe(s, a)
    {:ok, _, _} = Session.subscribe(s, p, {:stream, "b"})
  end

  test "a C node killed: subscribers are told", %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = GenServer.start(Session, cnode: cn.name)
    p = collector(self(), :p)
    {:ok, id, _} = Session.subscribe(s, p, :all, shape: :ranged)
    ref = Process.monitor(s)
    {_, 0} = System.cmd("kill", ["-9", "#{cn.os_pid}"])
    assert_receive {:got, :p, {:subscription_down, {:transient, ^id}, :closed}}, 10_000
    assert_receive {:DOWN, ^ref, :process, _, {:shutdown, {:cnode_down, :noconnection}}}, 5_000
  end

  test "session requests: checked, refused without a session, answered as documented",
       %{dir: dir} do
    cn = start_cnode(dir)
    node = cn.name
    assert call(node, {:session_open, 10}) == {:error, :hello_required}
    {:ok, 1} = call(node, {:hello, 1})
    assert call(node, {:session_join, :all}) == {:error, :no_session}
    assert call(node, {:session_leave, 1}) == {:error, :no_session}
    assert call(node, {:session_credit, 1}) == {:error, :no_session}
    assert call(node, {:session_close}) == {:error, :no_session}
    assert call(node, {:session_open, 0}) == {:error, {:invalid_request, :session_open}}
    assert call(node, {:session_open, 1 <<< 21}) == {:error, {:invalid_request, :session_open}}
    assert call(node, {:session_open}) == {:error, {:invalid_request, :arity}}
    assert call(node, {:session_nope, 1}) == {:error, {:invalid_request, :unknown_operation}}
    assert {:ok, cpid} = call(node, {:session_open, 10})
    assert node(cpid) == node
    assert call(node, {:session_open, 10}) == {:error, {:invalid_request, :session_exists}}

    for bad <- [{:stream, ""}, {:stream, :a}, {:nope, "a"}, :none, {:type, "a", "b"}] do
      assert call(node, {:session_join, bad}) == {:error, {:invalid_request, :session_join}}
    end

    assert call(node, {:session_credit, 0}) == {:error, {:invalid_request, :session_credit}}
    assert {:ok, m, 0} = call(node, {:session_join, {:stream, "s"}})
    assert subscribers(node) == 1
    append!(node, "s", [event(1)])

    assert_receive {:esdb_events, ^m, since, [record]} when since <= 1, 5_000
    # the NIF's record but for the payloads: as read, decoded by the session
    assert %ExESDB.EventRecord{
             position: 1,
             stream_id: "s",
             event_number: 1,
             stream_version: 1,
             event_id: "00000000-0000-0000-0000-000000000001",
             event_type: "T",
             data: {:term, data},
             metadata: "m1",
             causation_id: nil,
             correlation_id: "00000000-0000-0000-0000-000000000009",
             created_at: %DateTime{} = at,
             created_epoch: us
           } = record

    assert :erlang.binary_to_term(data) == {:n, 1}
    assert DateTime.to_unix(at, :microsecond) == us

    assert call(node, {:session_leave, m}) == :ok
    assert call(node, {:session_leave, m}) == {:error, :not_found}
    append!(node, "s", [event(2)])
    assert call(node, {:session_credit, 5}) == :ok
    refute_received {:esdb_events, _, _, _}
    assert subscribers(node) == 0
    {:ok, _, _} = call(node, {:session_join, :all})
    assert call(node, {:session_close}) == :ok
    assert subscribers(node) == 0
  end

  test "session_open_packed: pushes are esdb_page pages of the records a list push holds",
       %{dir: dir} do
    cn = start_cnode(dir)
    node = cn.name
    {:ok, 1} = call(node, {:hello, 1})

    assert call(node, {:session_open_packed, 0}) ==
             {:error, {:invalid_request, :session_open_packed}}

    assert {:ok, cpid} = call(node, {:session_open_packed, 10})
    assert node(cpid) == node
    assert {:ok, m, 0} = call(node, {:session_join, {:stream, "s"}})
    append!(node, "s", [event(1), event(2)])

    assert_receive {:esdb_page, ^m, since, 2, page} when since <= 1 and is_binary(page), 5_000
    # payloads as read: a term payload is its bytes without decode
    assert {:ok, [r1, r2]} = ExESDB.CNode.Page.records(page, false)
    assert {r1.position, r2.position} == {1, 2}
    assert {r1.data, r1.metadata} == {:erlang.term_to_binary({:n, 1}), "m1"}
    assert {:ok, [d1, _]} = ExESDB.CNode.Page.records(page, true)
    assert {d1.data, d1.event_id, d1.stream_id} == {{:n, 1}, r1.event_id, "s"}
    assert call(node, {:session_close}) == :ok
  end

  # Stands in for a C node that predates session_open_packed: registered
  # as esdb on this node, it answers that request as such a C node does
  # (an unknown session_* operation) and passes every other to the real
  # C node, whose replies and pushes go to the session straight, over
  # this node's connection. Tells the test each operation it saw.
  defp older_cnode(cnode, test) do
    receive do
      {:call, from, ref, req} = msg ->
        op = elem(req, 0)
        send(test, {:older_cnode, op})

        if op == :session_open_packed,
          do: send(from, {ref, {:error, {:invalid_request, :unknown_operation}}}),
          else: send({:esdb, cnode}, msg)

        older_cnode(cnode, test)
    end
  end

  test "a C node without session_open_packed: the session opens with session_open and " <>
         "its subscribers get list pushes as records",
       %{dir: dir} do
    cn = start_cnode(dir)
    test = self()
    stand_in = spawn_link(fn -> older_cnode(cn.name, test) end)
    true = Process.register(stand_in, :esdb)
    {:ok, s} = Session.start_link(cnode: node())
    assert_received {:older_cnode, :hello}
    assert_received {:older_cnode, :session_open_packed}
    assert_received {:older_cnode, :session_open}
    all = collector(test, :all)
    stream = collector(test, :stream)
    {:ok, _, 0} = Session.subscribe(s, all, :all)
    {:ok, _, 0} = Session.subscribe(s, stream, {:stream, "s1"}, shape: :tagged)
    assert subscribers(cn.name) == 2

    for n <- 1..300, do: append!(cn.name, "s#{rem(n, 2)}", [event(n)])
    records = take(:all, 300)
    assert positions(records) == Enum.to_list(1..300)
    assert {hd(records).data, hd(records).metadata} == {{:n, 1}, "m1"}
    assert positions(take(:stream, 150)) == Enum.filter(1..300, &(rem(&1, 2) == 1))
    refute_received {:got, _, _}
    refute_received {:older_cnode, :session_open_packed}
  end

  test "several stores: requests and sessions name theirs, the first serves requests that name none",
       %{dir: dir} do
    b = Path.join(dir, "bravo")
    cn = start_cnode(dir, ["--store", "b=#{b}", "--store", Path.join(dir, "charlie")])
    node = cn.name
    {:ok, 1} = call(node, {:hello, 1})
    # the first store (from start_cnode) is named by its directory: "store"
    append!(node, "s", [event(1)])
    assert {:ok, 2, 1} = call(node, {:at, "b", {:append, "s", :any, [event(2), event(3)]}})
    assert {:ok, 1, 1} = call(node, {:at, "charlie", {:append, "t", :any, [event(4)]}})
    assert {:ok, 2, 2} = call(node, {:at, "store", {:append, "s", :any, [event(5)]}})

    assert {:ok, [{1, "s", 1, <<2::128>>, _, _, _, _, _, _}, _], :eof} =
             call(node, {:at, "b", {:read_stream, "s", 0, 10, :forward}})

    assert {:ok, %{events: 2}} = call(node, {:stats})
    assert {:ok, %{events: 2}} = call(node, {:at, "b", {:stats}})
    assert {:ok, %{events: 1}} = call(node, {:at, "charlie", {:stats}})
    assert call(node, {:at, "nope", {:stats}}) == {:error, :no_store}
    assert call(node, {:at, :b, {:stats}}) == {:error, {:invalid_request, :at}}
    assert call(node, {:at, "b", {:at, "b", {:stats}}}) == {:error, {:invalid_request, :at}}
    assert call(node, {:at, "b", {:hello, 1}}) == {:error, {:invalid_request, :at}}
    assert call(node, {:at, "b", :stats}) == {:error, {:invalid_request, :not_a_request}}

    # a session per store: each gets its own store's events
    {:ok, sb} = Session.start_link(cnode: node, store: "b")
    {:ok, sd} = Session.start_link(cnode: node)
    pb = collector(self(), :b)
    pd = collector(self(), :d)
    {:ok, _, 2} = Session.subscribe(sb, pb, :all)
    {:ok, _, 2} = Session.subscribe(sd, pd, :all)
    assert {:ok, %{subscribers: 1}} = call(node, {:at, "b", {:stats}})
    assert {:ok, %{subscribers: 0}} = call(node, {:at, "charlie", {:stats}})
    {:ok, _, _} = call(node, {:at, "b", {:append, "x", :any, [event(6)]}})
    append!(node, "x", [event(7)])
    assert [%{position: 3, event_id: "00000000-0000-0000-0000-000000000006"}] = take(:b, 1)
    assert [%{position: 3, event_id: "00000000-0000-0000-0000-000000000007"}] = take(:d, 1)
    refute_received {:got, _, _}
    assert {:error, :no_store} = GenServer.start(Session, cnode: node, store: "nope")
    # a session's end drops its own store's members
    Process.unlink(sb)
    Process.exit(sb, :kill)
    wait_until(fn -> match?({:ok, %{subscribers: 0}}, call(node, {:at, "b", {:stats}})) end)
    assert subscribers(node) == 1
  end

  test "a join that timed out is left when its answer comes", %{dir: dir} do
    cn = start_cnode(dir)
    {:ok, s} = Session.start_link(cnode: cn.name)
    p = collector(self(), :p)
    # stopped (T) before anything is asked of it
    ExESDB.Test.ClusterHelpers.pause_os_process!(cn.os_pid)
    # the session waits 5 s for the C node's answer
    assert Session.subscribe(s, p, :all) == {:error, :timeout}
    assert MapSet.size(:sys.get_state(s).stale_joins) == 1
    {_, 0} = System.cmd("kill", ["-CONT", "#{cn.os_pid}"])
    # the member the C node made for it is left, not held for no one
    wait_until(fn -> MapSet.size(:sys.get_state(s).stale_joins) == 0 end)
    wait_until(fn -> subscribers(cn.name) == 0 end)
    assert %{subscribers: 0, members: 0} = Session.info(s)
    {:ok, _, _} = Session.subscribe(s, p, :all)
    append!(cn.name, "s", [event(1)])
    assert positions(take(:p, 1)) == [1]
  end

  # {since, positions} of the ranged collector's pushes up to position `last`.
  defp ranged_until(last, acc) do
    receive do
      {:got, :ranged, {:events, records, since}} ->
        ps = positions(records)
        acc = [{since, ps} | acc]
        if List.last(ps) == last, do: Enum.reverse(acc), else: ranged_until(last, acc)
    after
      5_000 -> flunk("ranged: #{inspect(Enum.reverse(acc))}")
    end
  end

  defp nif_records(left, acc) when left <= 0, do: acc

  defp nif_records(left, acc) do
    receive do
      {:events, records} -> nif_records(left - length(records), acc ++ records)
    after
      10_000 -> flunk("the NIF subscriber got #{length(acc)}")
    end
  end
end
